"""Data-parallel key statistics: one process equals second_moment to the float32 rounding of the keys; two processes under torchrun
(gloo, CPU) equal one to float64 rounding and land in the editors' cache; a stopped run goes on
from its partial sums; the token plan takes the first n tokens in corpus order."""

import os
import subprocess
import sys

import pytest
import torch

from ripple.arch import get_spec
from ripple.editing.dist_stats import cache_path, second_moments, token_plan
from ripple.editing.stats import second_moment
from ripple.errors import RippleError

from helpers import make_tiny_model, save_tiny_gpt2, stats_corpus


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_token_plan_takes_the_first_tokens_in_order(tiny_tokenizer):
    corpus = ["w1 w2 w3", "", "w4 w5", "w6 w7 w8 w9"]
    assert token_plan(tiny_tokenizer, corpus, 6) == [(0, 3), (2, 2), (3, 1)]
    assert token_plan(tiny_tokenizer, corpus, 100) == [(0, 3), (2, 2), (3, 4)]
    with pytest.raises(RippleError, match="empty"):
        token_plan(tiny_tokenizer, ["", ""], 5)


def test_one_process_equals_second_moment(tiny_tokenizer, cache):
    model = make_tiny_model("gpt2")
    corpus = stats_corpus(40)
    out = second_moments(model, tiny_tokenizer, get_spec(model), [0, 1], corpus, 150, batch_size=7)
    for layer in (0, 1):
        ref = second_moment(model, tiny_tokenizer, get_spec(model), layer, corpus, 150, use_cache=False)
        # batched otherwise, so equal to the float32 rounding of the keys (a CPU's kernels need not
        # give a sequence bit-equal keys in another batch)
        assert float((out[layer] - ref).norm() / ref.norm()) < 1e-6
        # written where the editors look for it, so second_moment now reads it from the cache
        assert cache_path(model, tiny_tokenizer, layer, corpus, 150).is_file()
        assert torch.equal(second_moment(model, tiny_tokenizer, get_spec(model), layer, corpus, 150), out[layer])
    assert out[None]["tokens"] == 150 and out[None]["forward_tokens"] >= 150


def test_a_stopped_run_goes_on_from_its_partial_sums(tiny_tokenizer, cache):
    model = make_tiny_model("gpt2")
    corpus = stats_corpus(40)
    spec = get_spec(model)
    with pytest.raises(RippleError, match="stopped after 2 batches"):
        second_moments(model, tiny_tokenizer, spec, [1], corpus, 200, batch_size=5, save_every=1, stop_after=2)
    assert list((cache / "mom2_partial").rglob("*.pt"))  # the partial sums are on disk
    resumed = second_moments(model, tiny_tokenizer, spec, [1], corpus, 200, batch_size=5, save_every=1)
    whole = second_moments(model, tiny_tokenizer, spec, [1], corpus, 200, batch_size=5, use_cache=False)
    torch.testing.assert_close(resumed[1], whole[1], rtol=1e-12, atol=1e-14)
    assert not list((cache / "mom2_partial").rglob("*.pt"))  # removed once done


TWO_GPUS = torch.cuda.device_count() >= 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["gloo", pytest.param("nccl", marks=pytest.mark.skipif(
    not TWO_GPUS, reason="nccl's all-reduce needs two GPUs (one rank per GPU); this machine has fewer"))])
def test_two_processes_under_torchrun_equal_one(tmp_path, cache, tiny_tokenizer, backend):
    model_dir = tmp_path / "gpt2"
    model = save_tiny_gpt2(model_dir)
    corpus_file = tmp_path / "corpus.txt"
    corpus = stats_corpus(40)
    corpus_file.write_text("\n".join(corpus) + "\n")
    env = dict(os.environ, RIPPLE_CACHE=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    if backend == "gloo":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU processes of a GPU machine too
    port = {"gloo": "29533", "nccl": "29534"}[backend]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "ripple.cli", "stats", "--model", str(model_dir), "--corpus", str(corpus_file),
           "--samples", "170", "--layers", "0", "1", "--batch-size", "4"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "on 2 process(es)" in res.stdout
    assert (f"backend {backend}") in res.stdout  # the group ran on the backend asked for
    from ripple.editing.corpora import file_corpus
    from ripple.loading import load_model

    loaded, tok, spec = load_model(str(model_dir))
    lines = file_corpus(str(corpus_file))
    one = second_moments(loaded, tok, spec, [0, 1], lines, 170, batch_size=4, use_cache=False)
    for layer in (0, 1):
        two = torch.load(cache_path(loaded, tok, layer, lines, 170), weights_only=True)
        torch.testing.assert_close(two, one[layer], rtol=1e-12, atol=1e-14)  # float64 rounding only
    del model


@pytest.mark.parametrize("backend", ["gloo", pytest.param("nccl", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="nccl needs a CUDA GPU"))])
def test_the_all_reduce_of_a_one_rank_group(tmp_path, backend):
    """ripple's reduce in a group of one on each backend (nccl takes CUDA tensors only: the sums,
    kept on the CPU, travel to the rank's GPU and back); a rank with no passages joins with zeros."""
    import torch.distributed as dist

    from ripple.editing.dist_stats import _reduce, rank_device

    if backend == "nccl":
        torch.cuda.set_device(0)
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert rank_device().type == ("cuda" if backend == "nccl" else "cpu")
        sums = {3: torch.arange(9, dtype=torch.float64).reshape(3, 3), 4: None}
        total, forward, secs = _reduce(sums, {"count": 7, "forward_tokens": 9}, 1.5)
        assert (total, forward, secs) == (7, 9, 1.5)
        assert sums[3].device.type == "cpu" and torch.equal(sums[3], torch.arange(9.0, dtype=torch.float64).reshape(3, 3))
        assert torch.equal(sums[4], torch.zeros(3, 3, dtype=torch.float64))
    finally:
        dist.destroy_process_group()


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    """nccl cannot put two ranks on one GPU: the error says so and how to go on, before any group."""
    from ripple.editing.dist_stats import init_from_env

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RippleError, match="started 2 processes on a node with 1 GPU.*--nproc_per_node 1"):
        init_from_env()


def test_bad_layer_is_one_line(saved_gpt2, cache, capfd):
    from ripple.cli import main

    model_dir, _ = saved_gpt2
    assert main(["stats", "--model", str(model_dir), "--corpus", "english", "--samples", "10", "--layers", "7"]) == 2
    err = capfd.readouterr().err
    assert "out of range" in err and len(err.strip().splitlines()) == 1
