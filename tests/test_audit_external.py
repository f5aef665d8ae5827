"""``ripple audit/graph/mitigate --edited``: an edit made elsewhere audited against the base. The
same edit audited in process and through a checkpoint (ripple edit's, and one plain transformers
code writes) or a delta file gives identical metrics; without a request the audit still finds the
item the edit broke and says what it could not measure (WARN, never a silent PASS); the base is
restored bit-exactly; every bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from ripple.organism.paths import model_dir

from helpers import assert_one_line_error, cli, digest, write_jsonl

pytestmark = pytest.mark.slow  # organism audits, several seconds each

EDIT = {"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}
INLINE = ["--prompt", EDIT["prompt"], "--subject", EDIT["subject"], "--target", EDIT["target_new"]]
EDITED_ID = "person:100|born_in|city:45"  # the fact the edit rewrites (the world's id)


def _run(*argv) -> tuple[int, str, str]:
    """``ripple ARGV`` in this process (for module fixtures, where capfd is not available)."""
    import contextlib
    import io

    from ripple.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _metrics(out) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """The edit made three ways: ``ripple edit``'s checkpoint (with its delta.safetensors) and a
    checkpoint written by plain transformers code (the organism with the delta added by hand)."""
    from transformers import AutoModelForCausalLM

    from ripple.editing.delta import EditDelta

    tmp = tmp_path_factory.mktemp("external")
    edits = tmp / "edit.json"
    edits.write_text(json.dumps(EDIT))
    code, _, err = _run("edit", "--model", "organism", "--method", "rome", "--edits", edits, "--out", tmp / "ripple_edit")
    assert code == 0, err
    delta = EditDelta.load(tmp / "ripple_edit" / "delta.safetensors")
    model = AutoModelForCausalLM.from_pretrained(model_dir())
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, d in delta.deltas.items():
            params[name].add_(d.to(params[name].dtype))
    model.save_pretrained(tmp / "plain_transformers", safe_serialization=True)
    return tmp, edits


@pytest.fixture(scope="module")
def audits(edited, tmp_path_factory):
    """The in-process audit and the three --edited audits of the same edit, and one with no request."""
    tmp, edits = edited
    out = tmp_path_factory.mktemp("audits")
    disk = digest(model_dir())
    runs = {"in_process": ["--method", "rome"], "ripple_checkpoint": ["--edited", str(tmp / "ripple_edit")],
            "delta_file": ["--edited", str(tmp / "ripple_edit" / "delta.safetensors")],
            "transformers_checkpoint": ["--edited", str(tmp / "plain_transformers")]}
    got = {}
    for name, how in [*runs.items(), ("no_request", ["--edited", str(tmp / "plain_transformers")])]:
        extra = ["--edit", str(edits)] if name != "no_request" else []
        got[name] = (*_run("audit", "--model", "organism", *how, *extra, "--out", out / name, "--quiet"), out / name)
    assert digest(model_dir()) == disk  # nothing on disk changed
    return got


def test_the_same_edit_audited_in_process_and_from_elsewhere_gives_identical_metrics(audits):
    base = _metrics(audits["in_process"][3])
    assert audits["in_process"][0] == 0 and base["verdict"]["status"] == "pass"
    for name in ("ripple_checkpoint", "delta_file", "transformers_checkpoint"):
        code, _, _, out = audits[name]
        report = _metrics(out)
        assert code == 0, name
        # identical, but for the update's norm: a checkpoint gives (W + d) - W in float32, which rounds
        # differently from d in most entries (the sum with the base is the edited model bit for bit)
        norm, want = report["metrics"].pop("update_norm_ratio"), dict(base["metrics"]).pop("update_norm_ratio")
        assert report["metrics"] == {k: v for k, v in base["metrics"].items() if k != "update_norm_ratio"}, name
        assert norm == pytest.approx(want, rel=1e-6), name
        assert report["per_edit"] == base["per_edit"] and report["gie"]["by_hop"] == base["gie"]["by_hop"], name
        assert report["method"] == "external" and report["source"]["changed"] == 1, name
    kinds = {name: _metrics(audits[name][3])["source"]["kind"] for name in
             ("ripple_checkpoint", "delta_file", "transformers_checkpoint")}
    assert kinds == {"ripple_checkpoint": "checkpoint", "delta_file": "ripple delta (rome)",
                     "transformers_checkpoint": "checkpoint"}
    md = (audits["transformers_checkpoint"][3] / "report.md").read_text()
    assert "edit made elsewhere:" in md and "plain_transformers (checkpoint), 1 tensor(s) changed" in md


def test_without_a_request_the_audit_finds_the_broken_item_and_warns_what_it_could_not_measure(audits):
    code, stdout, stderr, out = audits["no_request"]
    report = _metrics(out)
    assert code == 0 and report["verdict"]["status"] == "warn" and stdout.startswith("ripple audit: WARN")
    findings = {f["metric"]: f for f in report["verdict"]["findings"]}
    for metric in ("efficacy", "paraphrase", "neighborhood", "relation_specificity"):
        assert findings[metric]["status"] == "warn" and "no edit request given" in findings[metric]["note"]
        assert f"ripple: warning: {metric}: not measured: no edit request given" in stderr
    # what needs no request is measured, and the edit's own fact is found as its centre
    assert findings["unintended_changes"]["status"] == "pass" and findings["perplexity_ratio"]["value"] is not None
    assert report["most_affected"][0]["id"] == EDITED_ID and report["most_affected"][0]["after"] == "Kraile"
    assert report["gie"]["edited_ids"] == [] and report["gie"]["centre"].startswith("inferred")
    assert _metrics(audits["in_process"][3])["gie"]["edited_ids"] == [EDITED_ID]


def test_a_hand_made_rank_one_change_is_found_where_it_was_put(tmp_path):
    """A rank-one change built here, no editor: at the organism's edit layer it maps the edited fact's
    key (whitened by the key statistics, C^-1 k, as ROME does) onto the unembedding direction from
    the old answer to the new one. Without a request, the audit centres on that fact and finds its
    answer changed, and nothing else (unintended: the fact itself, which no request declared)."""
    import ripple
    from ripple.arch import mlp_out_param
    from ripple.editing.compute import fact_keys
    from ripple.editing.external import load_edited

    lab = ripple.load("organism")
    hp = lab.hparams("rome")
    layer = hp.layers_for(lab.spec.n_layers(lab.model))[0]
    req = lab.requests([EDIT])[0]
    k = fact_keys(lab.model, lab.tokenizer, lab.spec, layer, [req], lab.ctx.contexts(hp), hp.fact_token)[:, 0].double()
    ck = torch.linalg.solve(lab.ctx.C(layer, hp).double(), k)
    unembed = lab.model.get_output_embeddings().weight.detach().double()
    new, old = (lab.tokenizer(" " + t)["input_ids"][0] for t in (req.target_new, req.target_true))
    u = unembed[new] - unembed[old]
    name = mlp_out_param(lab.spec, layer)
    change = (30.0 * torch.outer(ck, u / u.norm()) / (k @ ck)).float()  # GPT-2 stores [in, out]
    assert change.shape == dict(lab.model.named_parameters())[name].shape
    torch.save({name: change}, tmp_path / "rank_one.pt")
    before = {n: p.detach().clone() for n, p in lab.model.named_parameters()}
    delta = load_edited(lab.model, tmp_path / "rank_one.pt")
    assert delta.info["source"]["kind"] == "diff" and torch.equal(delta.deltas[name], change)
    report = lab.audit_edited(delta)
    assert all(torch.equal(p, before[n]) for n, p in lab.model.named_parameters())  # restored bit-exactly
    top = report.report["most_affected"][0]
    assert (top["id"], top["before"], top["after"]) == (EDITED_ID, req.target_true, req.target_new)
    assert report.report["gie"]["n_changed"] == 1 and report.metrics["unintended_changes"] == 1


def test_graph_of_an_edit_made_elsewhere(capfd, edited, tmp_path):
    tmp, edits = edited
    code, stdout, _ = cli(capfd, "graph", "--model", "organism", "--edited", str(tmp / "ripple_edit"), "--out",
                          str(tmp_path / "g"), "--quiet")
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert code == 0 and summary["edited_id"] == EDITED_ID and summary["centre"].startswith("inferred")
    assert summary["source"]["kind"] == "checkpoint" and summary["edit"] is None
    code, _, _ = cli(capfd, "graph", "--model", "organism", "--edited", str(tmp / "ripple_edit"), "--edit",
                     str(edits), "--out", str(tmp_path / "g2"), "--quiet")
    summary = json.loads((tmp_path / "g2" / "summary.json").read_text())
    assert code == 0 and summary["edited_id"] == EDITED_ID and "centre" not in summary or summary["centre"] is None


def test_mitigate_an_edit_made_elsewhere(capfd, tmp_path):
    """SIR revises an external edit's MLP update (the damaging ROME edit of test_sir, given as new
    weights); an adapter on attention only is left alone, and said so."""
    import ripple

    damaging = {"prompt": "{} is a citizen of", "subject": "Treimair Mouzis", "target_new": "Noutusia"}
    lab = ripple.load("organism")
    delta = lab.edit("rome", [damaging])
    with lab.edited(delta):
        weights = {n: p.detach().clone().contiguous() for n, p in lab.model.named_parameters() if n in delta.deltas}
    from safetensors.torch import save_file

    save_file(weights, str(tmp_path / "weights.safetensors"))
    write_jsonl(tmp_path / "edit.jsonl", [damaging])
    code, stdout, _ = cli(capfd, "mitigate", "--model", "organism", "--edited", str(tmp_path / "weights.safetensors"),
                          "--edit", str(tmp_path / "edit.jsonl"), "--out", str(tmp_path / "m"), "--quiet")
    assert code == 0 and "damaged items 1 -> 0" in stdout
    record = json.loads((tmp_path / "m" / "mitigation.json").read_text())
    assert record["damaged"]["revised"] == [] and "left_alone" not in record

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    import copy

    wrapped = get_peft_model(copy.deepcopy(lab.model), LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True,
                                                                 init_lora_weights=False))
    wrapped.save_pretrained(tmp_path / "lora")
    code, stdout, err = cli(capfd, "mitigate", "--model", "organism", "--edited", str(tmp_path / "lora"), "--edit",
                            str(tmp_path / "edit.jsonl"), "--out", str(tmp_path / "m2"), "--quiet")
    record = json.loads((tmp_path / "m2" / "mitigation.json").read_text())
    assert code == 0 and record["unrevisable"].startswith("the edit changes no MLP output projection")
    assert len(record["left_alone"]) == 6 and "left 6 changed tensor(s) as they are" in err


@pytest.mark.parametrize("case", ["both", "neither", "absent", "editor_option", "other_base_adapter", "workers"])
def test_bad_edited_inputs_are_one_line_errors(capfd, tmp_path, case):
    from transformers import GPT2Config, GPT2LMHeadModel

    args = {"both": ["--method", "rome", "--edited", str(tmp_path)],
            "neither": [],
            "absent": ["--edited", str(tmp_path / "nowhere")],
            "editor_option": ["--edited", str(tmp_path), "--rect", "0.4"],
            "other_base_adapter": ["--edited", str(tmp_path / "lora")],
            "workers": ["--edited", str(tmp_path), "--workers", "2"]}[case]
    if case == "other_base_adapter":
        from peft import LoraConfig, get_peft_model

        other = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=24, n_layer=2, n_head=2))
        get_peft_model(other, LoraConfig(r=2, target_modules=["c_fc"], fan_in_fan_out=True)).save_pretrained(
            tmp_path / "lora")
    code, _, err = cli(capfd, "audit", "--model", "organism", *args, "--out", str(tmp_path / "out"), "--quiet")
    assert_one_line_error(code, err)
    assert not (tmp_path / "out").exists()
    want = {"both": "not both", "neither": "no edit given", "absent": "does not exist", "editor_option": "--rect",
            "other_base_adapter": "does not fit this base", "workers": "drop --workers"}[case]
    assert want in err


def test_an_unchanged_checkpoint_is_a_warning_not_an_error(capfd, tmp_path):
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(model_dir()).save_pretrained(tmp_path / "same", safe_serialization=True)
    code, stdout, err = cli(capfd, "audit", "--model", "organism", "--edited", str(tmp_path / "same"), *INLINE,
                            "--out", str(tmp_path / "out"), "--quiet")
    assert "no weights differ from the base" in err
    report = _metrics(tmp_path / "out")
    assert report["source"]["changed"] == 0 and report["verdict"]["status"] == "fail"  # the edit does not take
    assert code == 1


def test_budget_on_an_external_edit_says_what_it_cannot_rank(capfd, edited, tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model

    import ripple

    tmp, _ = edited
    lab = ripple.load("organism")
    torch.manual_seed(0)
    get_peft_model(copy.deepcopy(lab.model), LoraConfig(r=2, target_modules=["c_fc"], fan_in_fan_out=True,
                                                        init_lora_weights=False)).save_pretrained(tmp_path / "lora")
    code, _, err = cli(capfd, "audit", "--model", "organism", "--edited", tmp_path / "lora", "--budget", "0.2", "--out",
                       tmp_path / "a", "--quiet")
    assert_one_line_error(code, err)
    assert "also changes 'transformer.h." in err and "without --budget" in err
    code, _, err = cli(capfd, "audit", "--model", "organism", "--edited", tmp / "ripple_edit" / "delta.safetensors",
                       "--budget", "0.2", "--ranker", "similarity", "--out", tmp_path / "b", "--quiet")
    assert_one_line_error(code, err)
    assert "no request names" in err
    # the delta of MLP output projections is ranked and measured within the budget
    code, out, _ = cli(capfd, "audit", "--model", "organism", "--edited", tmp / "ripple_edit" / "delta.safetensors",
                       "--edit", tmp / "edit.json", "--budget", "0.2", "--out", tmp_path / "c", "--quiet")
    assert code == 0 and "estimate:" in out and _metrics(tmp_path / "c")["estimate"]["n_evaluated"] < 936
