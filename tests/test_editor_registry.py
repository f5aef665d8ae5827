"""The editor registry as a contributor uses it: a small editor declared in one place (here, in the
test) runs through ``ripple edit`` and ``ripple audit``, resolves its hyperparameters like the built-in
ones, and is restored bit-exactly; plus the registry's own contract and the sandbox."""

import dataclasses
import json
import time

import pytest
import torch

from ripple.arch import get_spec, mlp_out_param, out_in_to_storage
from ripple.editing.compute import fact_keys
from ripple.editing.context import EditContext
from ripple.editing.delta import EditDelta
from ripple.editing.editor import EDITORS, Editor, editor_help, get_editor, make_delta
from ripple.editing.hparams import LayeredHParams, resolve_hparams
from ripple.editing.requests import parse_request
from ripple.editing.session import auto_mode, edited, run_edits
from ripple.editing.setup import load_setup
from ripple.errors import RippleError
from ripple.loading import load_model
from ripple.registry import Registry
from ripple.tokens import answer_ids

from helpers import assert_state, cli, edit_requests, make_tiny_model, state, stats_corpus, write_jsonl

# ---- the example editor: the whole of what a contributor writes --------------------------------


@dataclasses.dataclass(frozen=True)
class NudgeHParams(LayeredHParams):
    strength: float = 8.0


def compute_nudge(ctx, requests, hp):
    """Rank one at one layer: the fact key, mapped onto the new target's unembedding direction."""
    t0 = time.perf_counter()
    (layer,) = hp.layers_for(ctx.n_layers())[:1]
    k = fact_keys(ctx.model, ctx.tok, ctx.spec, layer, requests, ["{}"], hp.fact_token)[:, 0]
    u = ctx.model.get_output_embeddings().weight[answer_ids(ctx.tok, requests[0].target_new)[0]].detach().double()
    delta_oi = hp.strength * torch.outer(u / u.norm(), k / k.norm() ** 2)
    deltas = {mlp_out_param(ctx.spec, layer): out_in_to_storage(delta_oi, ctx.spec).float().contiguous()}
    return make_delta(ctx, "nudge", requests, hp, deltas, {"layers": [layer]}, t0)


NUDGE = Editor("nudge", NudgeHParams, compute_nudge, one_request_per_solve=True,
               arch_defaults={"gpt2": {"layer_fracs": (1.0,)}})

# -------------------------------------------------------------------------------------------------


@pytest.fixture
def nudge():
    EDITORS.register(NUDGE)
    yield NUDGE
    EDITORS.unregister("nudge")


REQUEST = {"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}


def test_the_example_editor_runs_through_ripple_edit(nudge, capfd, tmp_path):
    edits = tmp_path / "edits.jsonl"
    write_jsonl(edits, [REQUEST])
    code, out, err = cli(capfd, "edit", "--model", "organism", "--method", "nudge", "--edits", edits, "--out",
                         tmp_path / "run")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "nudge" and metrics["hparams"]["strength"] == 8.0
    assert metrics["hparams"]["fact_token"] == "last"  # the organism's shipped "all" settings apply to it too
    delta = EditDelta.load(tmp_path / "run" / "delta.safetensors")
    base, _, _ = load_model("organism")
    edited_model, _, _ = load_model(str(tmp_path / "run"))
    name = mlp_out_param(get_spec(base), 5)  # gpt2 default: the last layer (layer_fracs=(1.0,))
    assert list(delta.deltas) == [name]
    assert torch.equal(edited_model.get_parameter(name), base.get_parameter(name) + delta.deltas[name])


@pytest.mark.slow
def test_the_example_editor_runs_through_ripple_audit_and_restores_exactly(nudge, capfd, tmp_path):
    code, _, err = cli(capfd, "audit", "--model", "organism", "--method", "nudge", "--prompt", REQUEST["prompt"],
                       "--subject", REQUEST["subject"], "--target", REQUEST["target_new"], "--out", tmp_path / "a",
                       "--quiet")
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert code == report["verdict"]["exit_code"] in (0, 1), err
    assert report["method"] == "nudge" and report["mode"] == "single" and report["hparams"]["strength"] == 8.0

    from ripple.auditing.measure import AuditInputs, audit_edits
    from ripple.evaluate.perplexity import general_sentences_for
    from ripple.probes.sets import world_probe_set

    setup = load_setup("organism", "nudge", [parse_request(REQUEST, "the test's request")])
    before = state(setup.model)
    items = [dataclasses.replace(it, links=()) for it in world_probe_set(setup.world)[:40]]
    result = audit_edits(AuditInputs(setup, items, general_sentences_for(setup.world)[:4]), setup.requests)
    assert result.metrics["update_norm_ratio"] > 0
    assert_state(setup.model, before)


def test_a_registered_editor_is_listed_and_resolved_like_the_built_in_ones(nudge):
    assert "nudge" in EDITORS.names() and "nudge" in editor_help()
    hp = resolve_hparams("nudge", "gpt2", 12, overrides=["strength=2"])
    assert isinstance(hp, NudgeHParams) and hp.strength == 2.0 and hp.layers_for(12) == (11,)
    assert auto_mode("nudge", 3) == "sequential" and auto_mode("memit", 3) == "batch"
    with pytest.raises(RippleError, match="nudge edits one fact per solve"):
        run_edits(None, "nudge", edit_requests(), hp)


def test_registry_contract():
    reg = Registry("widget")
    w = reg.register(dataclasses.make_dataclass("W", ["name"])("a"))
    assert reg.get("a") is w and "a" in reg and len(reg) == 1
    with pytest.raises(RippleError, match="a widget named 'a' is registered already"):
        reg.register(dataclasses.make_dataclass("W", ["name"])("a"))
    with pytest.raises(RippleError, match="needs a name"):
        reg.register(dataclasses.make_dataclass("W", ["name"])("no spaces"))
    with pytest.raises(RippleError) as e:
        reg.get("b")
    assert str(e.value) == "unknown widget 'b'; available: a"
    reg.unregister("a")
    assert reg.names() == ()
    with pytest.raises(RippleError, match="choose one of alphaedit, emmet, ft, memit, rledit, rome"):
        get_editor("romee")


# ---- the sandbox ---------------------------------------------------------------------------------


def alphaedit_setup(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    ctx = EditContext(model, tiny_tokenizer, get_spec(model), stats_corpus(), use_disk_cache=False)
    hp = resolve_hparams("alphaedit", "gpt2", 2, overrides=["v_steps=2", "context_prefixes=0", "stats_samples=300",
                                                            "layers=(0,1)", "fact_token=last", "null_threshold=0.1"])
    return model, ctx, hp


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_the_sandbox_restores_weights_and_editor_state_however_the_block_ends(exc, tiny_tokenizer):
    model, ctx, hp = alphaedit_setup(tiny_tokenizer)
    earlier = {0: torch.eye(128, dtype=torch.float64)}
    ctx.editor_state("alphaedit").update(earlier)
    before = state(model)
    with pytest.raises(exc):
        with edited(ctx, "alphaedit", edit_requests(), hp, mode="sequential", force=True) as run:
            assert len(run.deltas) == 2 and sorted(ctx.editor_state("alphaedit")) == [0, 1]
            assert not torch.equal(model.get_parameter(mlp_out_param(ctx.spec, 0)), before[mlp_out_param(ctx.spec, 0)])
            raise exc()
    assert_state(model, before)
    assert list(ctx.editor_state("alphaedit")) == [0] and torch.equal(ctx.editor_state("alphaedit")[0], earlier[0])


def test_the_sandbox_restores_on_a_normal_exit_and_the_run_stays_readable(tiny_tokenizer):
    model, ctx, hp = alphaedit_setup(tiny_tokenizer)
    before = state(model)
    with edited(ctx, "alphaedit", edit_requests(), hp, force=True) as run:
        inside = {n: model.get_parameter(n).detach().clone() for n in run.total.deltas}
    assert_state(model, before)
    assert ctx.editor_state("alphaedit") == {}
    for name, d in run.total.deltas.items():  # what the block saw was base + delta, exactly
        assert torch.equal(inside[name], before[name] + d)
