"""``ripple audit --edit FILE --workers N``: the batch's audits in worker processes, each with its
own model, give the serial run's reports byte for byte; a worker's error reaches the caller as
it is and leaves no report."""

import pytest

from ripple.auditing.measure import AuditInputs
from ripple.auditing.parallel import worker_device
from ripple.auditing.policy import DEFAULT_POLICY
from ripple.auditing.run import AuditConfig, run_audit
from ripple.editing.requests import EditRequest
from ripple.editing.setup import load_setup
from ripple.errors import RippleError
from ripple.evaluate.perplexity import general_sentences_for
from ripple.outputs import shown_files
from ripple.probes.sets import world_probe_set

from helpers import cli, write_jsonl

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out

EDITS = [{"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"},
         {"prompt": "{} works for", "subject": "Baita Vazux", "target_new": "Setresco"}]


def test_workers_give_the_serial_reports_byte_for_byte(capfd, tmp_path):
    edits = tmp_path / "edits.jsonl"
    write_jsonl(edits, EDITS)
    common = ["audit", "--model", "organism", "--method", "memit", "--edit", edits, "--quiet"]
    code_serial, out_serial, _ = cli(capfd, *common, "--out", tmp_path / "serial")
    code_par, out_par, _ = cli(capfd, *common, "--out", tmp_path / "parallel", "--workers", "2")
    serial, parallel = shown_files(tmp_path / "serial"), shown_files(tmp_path / "parallel")
    assert code_par == code_serial
    assert {"report.json", "edit-01/report.json", "edit-02/ripple_graph.png", "together/report.html"} <= set(serial)
    assert sorted(parallel) == sorted(serial)
    assert [name for name in serial if serial[name] != parallel[name]] == []
    assert out_par.replace("parallel", "serial") == out_serial


def test_one_edit_with_workers_runs_in_process_with_a_warning(capfd, tmp_path):
    code, out, err = cli(capfd, "audit", "--model", "organism", "--method", "rome", "--prompt", "{} was born in",
                         "--subject", "Lodro Toudein", "--target", "Kraile", "--out", tmp_path / "one", "--quiet",
                         "--workers", "3")
    assert code == 0 and "PASS" in out
    assert "--workers: one edit is one audit" in err
    assert (tmp_path / "one" / "report.json").is_file()


def failing_build(index):
    raise RippleError(f"worker {index} cannot load the model: no such file models/missing")


def test_a_worker_error_is_raised_and_leaves_no_report(tmp_path):
    reqs = [EditRequest(e["prompt"], e["subject"], e["target_new"]) for e in EDITS]
    setup = load_setup("organism", "memit", reqs)
    items = world_probe_set(setup.world)[:40]
    out = tmp_path / "out"
    with pytest.raises(RippleError, match="cannot load the model"):
        run_audit(AuditInputs(setup, items, general_sentences_for(setup.world)[:3]), setup.requests,
                  AuditConfig(DEFAULT_POLICY, "organism"), out, workers=2, build=failing_build)
    assert not (out / "report.json").exists()
    with pytest.raises(ValueError, match="needs build"):
        run_audit(AuditInputs(setup, items, []), setup.requests, AuditConfig(DEFAULT_POLICY, "organism"), out,
                  workers=2)


def test_worker_devices():
    assert [worker_device("cuda", i, 2) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_device("cuda", 1, 1) == "cuda"
    assert worker_device("cuda:1", 0, 4) == "cuda:1"
    assert worker_device("cpu", 5, 0) == "cpu"


def test_statistics_are_warmed_only_for_editors_that_read_them():
    from types import SimpleNamespace

    from ripple.auditing.parallel import warm_statistics
    from ripple.editing.context import EditContext

    calls = []
    for method, mitigation, expect in (("ft", None, 0), ("ft", ("sir", {}), 1), ("rome", None, 1)):
        calls.clear()
        hp = SimpleNamespace(layers_for=lambda n: [2])
        ctx = EditContext(None, None, SimpleNamespace(n_layers=lambda m: 6), [])
        ctx.C = lambda layer, hp: calls.append(layer)
        ctx.contexts = lambda hp: None
        setup = SimpleNamespace(method=method, hp=hp, model=None, spec=ctx.spec, ctx=ctx)
        warm_statistics(setup, mitigation)
        assert calls == [2] * expect, method
