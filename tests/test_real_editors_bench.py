"""benchmarks/real_models/editors.py's drawing of CounterFact-style edits and its batch's specificity
queries, on the organism: the rules its docstring states."""

import json

import pytest

from benchmarks.common import known_facts
from benchmarks.real_models import editors as re_bench
from ripple.world.edits import WorldEdit

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out


@pytest.fixture(scope="module")
def setup():
    from ripple.editing.setup import load_setup

    return load_setup("organism")


def _known(setup):
    return known_facts(setup)


def test_one_edit_per_known_fact_each_new_object_another_subjects_answer(setup):
    reqs, n_known = re_bench.counterfact_edits(setup, None, seed=0)
    known = _known(setup)
    assert n_known == len(known) and len(reqs) <= n_known
    world = setup.world
    facts = [WorldEdit.require(r).fact for r in reqs]
    assert len(set(facts)) == len(facts), "a fact drawn twice in the distinct set"
    assert set(facts) <= set(known)
    for r, (s, rel) in zip(reqs, facts):
        new = WorldEdit.require(r).new
        assert new not in world.objects(s, rel)
        others = {o for s2, r2 in known if r2 == rel and s2 != s for o in world.objects(s2, r2)}
        assert new in others, f"{r.case_id}: the new object is no other known subject's answer"
    # every known fact whose relation offers another answer is drawn
    offered = sum(1 for s, rel in known if {o for s2, r2 in known if r2 == rel for o in world.objects(s2, r2)}
                  - set(world.objects(s, rel)))
    assert len(reqs) == offered


def test_more_edits_than_facts_go_round_with_other_objects_and_repeat_exactly(setup):
    distinct, n_known = re_bench.counterfact_edits(setup, None, seed=0)
    n = len(distinct) + 7
    reqs, _ = re_bench.counterfact_edits(setup, n, seed=0)
    assert len(reqs) == n
    assert [r.case_id for r in reqs[:len(distinct)]] == [r.case_id for r in distinct]
    assert len({r.case_id for r in reqs}) == n, "an edit (subject, relation, new object) drawn twice"
    again, _ = re_bench.counterfact_edits(setup, n, seed=0)
    assert [r.case_id for r in again] == [r.case_id for r in reqs]
    other, _ = re_bench.counterfact_edits(setup, n, seed=1)
    assert [r.case_id for r in other] != [r.case_id for r in reqs]


def test_batch_specificity_leaves_out_edited_facts_and_races_each_editing_request(setup):
    distinct, _ = re_bench.counterfact_edits(setup, None, seed=0)
    reqs = distinct[:40]
    world = setup.world
    queries, known, pairs = re_bench.batch_queries(setup, reqs)
    edited = {(world.name(s), rel) for s, rel in (WorldEdit.require(r).fact for r in reqs)}
    assert queries and len(known) == len(queries)
    assert not {(q.subject, q.relation) for q in queries} & edited
    assert len({q.prompt for q in queries}) == len(queries)
    news_by_subject = {}
    for r in reqs:
        news_by_subject.setdefault(world.name(WorldEdit.require(r).subject), set()).add(r.target_new)
    assert {i for i, _ in pairs} == set(range(len(queries)))
    for i, new in pairs:
        assert new in news_by_subject[queries[i].subject]
    # every (query, editing request's new object) pair is there once
    want = {(i, t) for i, q in enumerate(queries) for t in news_by_subject[q.subject]}
    assert set(pairs) == want and len(pairs) == len(want)


def test_single_rows_for_every_method_plain_and_rect_and_a_rerun_goes_on(setup, tmp_path, monkeypatch):
    """Every method, FT included, writes one row per edit with both measurements; a rerun with the
    same settings finds every row made and adds nothing."""
    from argparse import Namespace

    from ripple.editing.value_cache import ValueCache

    monkeypatch.setattr(re_bench, "REPORTS", tmp_path)
    monkeypatch.setattr(setup.ctx, "value_cache", ValueCache(tmp_path / "values"), raising=False)
    args = Namespace(model="organism", edits=1, seed=0, methods=list(re_bench.METHODS))
    re_bench.single(args, setup)
    first = {}
    for method in re_bench.METHODS:
        data = json.loads((tmp_path / "real_editors" / "organism" / f"{method}.json").read_text())
        assert len(data["rows"]) == 1, method
        for row in data["rows"]:
            for label in ("plain", "rect"):
                assert 0.0 <= row[label]["efficacy"] <= 1.0 and row[label]["perplexity_ratio"] > 0
            assert row["seconds"] >= row["values_reused_s"] >= 0.0
        first[method] = data["rows"]
    re_bench.single(args, setup)  # nothing left to do
    for method in re_bench.METHODS:
        data = json.loads((tmp_path / "real_editors" / "organism" / f"{method}.json").read_text())
        assert data["rows"] == first[method]


def test_values_part_fills_the_cache_the_batch_reads(setup, tmp_path, monkeypatch, capsys):
    """``--part values`` computes the largest batch's target values once for the methods that
    share them; MEMIT's batch then computes none."""
    from argparse import Namespace

    from ripple.editing.compute import token_requests
    from ripple.editing.editors.memit import memit_targets
    from ripple.editing.value_cache import ValueCache

    monkeypatch.setattr(re_bench, "LARGEST", 2)
    monkeypatch.setattr(setup.ctx, "value_cache", ValueCache(tmp_path / "values"), raising=False)
    re_bench.values(Namespace(seed=0, methods=["memit", "alphaedit"]), setup)
    out = capsys.readouterr().out
    distinct, _ = re_bench.counterfact_edits(setup, None, seed=0)
    hp = setup.hparams_for("memit")
    n = len(token_requests(setup.tok, distinct[:2], hp.fact_token))  # one value a target token
    assert f"values memit: 2 requests ({n} values, one a target token): {n} computed, 0 in the cache" in out
    assert f"values alphaedit: 2 requests ({n} values, one a target token): 0 computed, {n} in the cache" in out
    fresh = ValueCache(tmp_path / "values")
    monkeypatch.setattr(setup.ctx, "value_cache", fresh)
    memit_targets(setup.ctx, distinct[:2], hp)
    assert (fresh.hits, fresh.misses) == (n, 0)


def test_batch_parts_without_a_batched_method_are_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        re_bench.main(["--part", "values", "--methods", "rome", "ft"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--part values runs memit, emmet, alphaedit only; name at least one in --methods" in err


def test_batch_rows_from_two_processes_are_all_kept(tmp_path):
    """Two processes measuring different methods each read batch.json at their start; a row one of
    them appends later must not drop the row the other wrote meanwhile (the lost update that cost
    MEMIT's 314-fact Gemma row once). A row of the same method and size replaces the old one."""
    config = {"version": 2, "model": "m"}
    path = tmp_path / "batch.json"
    first_seen = re_bench.read_batch(path, config)  # both processes start on an empty file
    re_bench.append_batch_row(path, config, {"method": "memit", "requested": 3, "x": 1})
    re_bench.append_batch_row(path, config, {"method": "emmet", "requested": 3, "x": 2})
    re_bench.append_batch_row(path, config, {"method": "memit", "requested": 3, "x": 3})
    rows = json.loads(path.read_text())["batch"]
    assert first_seen["batch"] == []
    assert [(r["method"], r["x"]) for r in rows] == [("emmet", 2), ("memit", 3)]
    other = {"version": 3, "model": "m"}  # rows made under another configuration are not kept
    re_bench.append_batch_row(path, other, {"method": "alphaedit", "requested": 3, "x": 4})
    assert [r["method"] for r in json.loads(path.read_text())["batch"]] == ["alphaedit"]
