"""The front door (issue 39, item 1): ``import ripple`` is cheap, ``ripple.audit`` gives what
``ripple audit`` gives (the same files, byte for byte), ``ripple.load`` computes edits as values and
restores the model, and the README's Python example runs as written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ripple
from ripple.outputs import shown_files

from helpers import cli, state

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out

ROOT = Path(__file__).resolve().parents[1]
EDIT = {"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}


def test_import_ripple_loads_neither_torch_nor_transformers():
    code = "import ripple, sys; print(sorted(m for m in ('torch', 'transformers', 'ripple.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(
        os.environ, PYTHONPATH=str(ROOT)), check=True).stdout.strip()
    assert out == "[]"
    assert {"load", "audit", "Lab", "AuditReport", "EditRequest", "EditDelta", "Policy"} <= set(dir(ripple))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ripple.nothing  # noqa: B018


def test_audit_in_one_call_equals_the_cli(capfd, tmp_path):
    """The report ``ripple.audit`` returns, saved, is the CLI's report, file for file and byte for byte."""
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps(EDIT))
    code, _, err = cli(capfd, "audit", "--model", "organism", "--method", "rome", "--edit", edit, "--out",
                       tmp_path / "cli", "--quiet")
    assert code == 0, err
    report = ripple.audit("organism", "rome", edit)
    assert (report.verdict, report.exit_code) == ("pass", 0)
    assert report.report == json.loads((tmp_path / "cli" / "report.json").read_text())
    assert report.metrics["efficacy"] == 1.0 and report.edits[0]["subject"] == "Lodro Toudein"
    assert {f.metric for f in report.findings} >= {"efficacy", "paraphrase", "neighborhood"}
    assert report.graph["n_probes"] == 936  # the organism's world, every fact a probe
    report.save(tmp_path / "py")
    assert shown_files(tmp_path / "py") == shown_files(tmp_path / "cli")
    assert json.loads(report.to_json()) == report.report
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.md").write_text("the user's")
    with pytest.raises(ripple.RippleError, match="ripple did not write"):
        report.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "report.md").read_text() == "the user's"


def test_a_lab_edits_as_values_and_restores_the_model():
    lab = ripple.load("organism")
    before = state(lab.model)
    delta = lab.edit("memit", [EDIT])
    assert isinstance(delta, ripple.EditDelta) and delta.method == "memit"
    assert all(v.equal(before[k]) for k, v in lab.model.state_dict().items())  # computing changed nothing
    old = lab.answer("Lodro Toudein was born in")
    with lab.edited(delta):
        assert lab.answer("Lodro Toudein was born in") == "Kraile" != old
    assert all(v.equal(before[k]) for k, v in lab.model.state_dict().items())  # restored bit-exactly
    report = lab.audit("memit", EDIT, k=3)
    assert report.verdict in ("pass", "warn", "fail") and report.metrics["efficacy"] == 1.0
    assert all(v.equal(before[k]) for k, v in lab.model.state_dict().items())
    with pytest.raises(ripple.RippleError, match="has words the model cannot read"):
        lab.edit("rome", {**EDIT, "subject": "lodro toudein"})


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's front-door example, run as written (in a scratch directory)."""
    text = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import ripple\n" in b]
    assert blocks, "the README shows the front door"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("pass 0 1.0") and printed[1] == "Kraile"
    assert (tmp_path / "runs" / "audit_py" / "report.html").is_file()


def test_keyword_arguments_split_into_options_and_hyperparameters():
    opts, hp = ripple.AuditOptions.split({"k": 3, "tasks": "organism", "mitigate": "sir", "layers": [5], "v_lr": 0.1})
    assert opts == ripple.AuditOptions(k=3, tasks=("organism",), mitigate="sir")
    assert hp == {"layers": [5], "v_lr": 0.1}


@pytest.mark.slow
def test_lab_runs_every_job_and_restores_the_model(tmp_path):
    import ripple

    lab = ripple.load("organism")
    weights = {k: v.clone() for k, v in lab.model.state_dict().items()}
    request = ripple.EditRequest("{} was born in", "Lodro Toudein", "Kraile")
    state = lab.measure()
    assert len(state.ids) == 936 and "blocks.5.out@last" in state.acts
    graph = lab.graph("rome", request, k=3)
    assert isinstance(graph, ripple.GraphReport) and graph.graph.graph["k"] == 3
    assert graph.summary["edited_changed"] is True
    saved = graph.save(tmp_path / "graph")
    assert {"graph.json", "graph.graphml", "ripple_graph.png"} <= {p.name for p in saved.iterdir()}
    mit = lab.mitigate("rome", request, layers=[0], fact_token="subject_last")
    assert isinstance(mit, ripple.Mitigated) and mit.plain.method == "rome"
    assert ripple.Variant.parse(mit.revised.method).base == "rome"
    assert len(mit.damaged["revised"]) <= len(mit.damaged["plain"])
    stress = lab.stress(["rome", "memit+rect"], 2, every=2)
    assert isinstance(stress, ripple.StressResult) and set(stress.curves) == {"rome", "memit+rect"}
    assert [r["edits"] for r in stress.curves["rome"]["checkpoints"]] == [0, 2]
    assert all(torch.equal(v, lab.model.state_dict()[k]) for k, v in weights.items())
    with pytest.raises(ripple.RippleError, match="one edit"):
        lab.graph("rome", [request, request])
