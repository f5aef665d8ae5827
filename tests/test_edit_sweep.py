"""benchmarks/editors/sweep.py on the organism: with the value cache, configurations that differ only
in what the value optimization does not read compute each value once and measure the same."""

import pytest

from benchmarks.editors import sweep


@pytest.fixture(scope="module")
def setup():
    from ripple.editing.setup import load_setup

    return load_setup("organism")


@pytest.mark.slow
def test_configurations_share_values_through_the_cache_and_measure_the_same(setup, tmp_path, monkeypatch):
    from ripple.editing.compute import token_requests
    from ripple.editing.from_world import sample_edits
    from ripple.editing.value_cache import ValueCache

    reqs = sample_edits(setup.world, 2, seed=1)
    configs = sweep.parse_grid("memit:lam=100,20000")
    plain = sweep.run_sweep(setup, reqs, configs)
    monkeypatch.setattr(setup.ctx, "value_cache", cache := ValueCache(tmp_path / "values"), raising=False)
    shared = sweep.run_sweep(setup, reqs, configs)
    n = len(token_requests(setup.tok, reqs, setup.hparams_for("memit").fact_token))
    assert (cache.misses, cache.hits) == (n, n)  # the first configuration computes, the second reads
    for a, b in zip(plain, shared):
        assert {k: v for k, v in a.items() if k != "seconds_per_edit"} == \
               {k: v for k, v in b.items() if k != "seconds_per_edit"}
        assert b["seconds_per_edit"] > 0
