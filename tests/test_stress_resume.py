"""``ripple stress --resume``: a run stopped at a checkpoint goes on from it and writes the same
curves as a run that never stopped, byte for byte; the stop leaves the model unedited; other
settings are refused."""

import json

import pytest

from ripple.organism.paths import model_dir
from ripple.stress import run as stress_run
from ripple.stress.resume import ResumeStore

from helpers import assert_one_line_error, cli, digest

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out

# AlphaEdit keeps running key sums and RLEdit running moments: both must come back on resume
ARGS = ["stress", "--model", "organism", "--method", "alphaedit", "--compare", "rledit", "--edits", "6",
        "--every", "2", "--limit", "10", "--tasks", "organism_skill", "--quiet"]


def stop_at(monkeypatch, n_measure: int):
    """Raise KeyboardInterrupt at the ``n_measure``-th checkpoint (counting the unedited one)."""
    real, calls = stress_run.Checkpoints.measure, []

    def measure(self, n_done):
        calls.append(n_done)
        if len(calls) == n_measure:
            raise KeyboardInterrupt
        return real(self, n_done)

    monkeypatch.setattr(stress_run.Checkpoints, "measure", measure)
    return calls


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from ripple.cli import main

    out = tmp_path_factory.mktemp("whole") / "out"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def test_resumed_run_writes_the_same_curves(capfd, monkeypatch, tmp_path, uninterrupted):
    out = tmp_path / "out"
    disk = digest(model_dir())
    # alphaedit: 0, 2, 4, 6 (saved complete); rledit: 0, 2, then stopped before measuring at 4
    calls = stop_at(monkeypatch, 7)
    code, _, err = cli(capfd, *ARGS, "--out", out)
    assert code != 0 and calls == [0, 2, 4, 6, 0, 2, 4]
    assert "--resume" in err and not (out / "stress.json").exists()
    saved = json.loads((out / ".ripple" / "resume" / "rledit.json").read_text())
    assert saved["edits"] == 2 and len(saved["rows"]) == 2
    progress = ResumeStore(out, {}, "").progress("rledit")  # what a report of a partial run reads
    assert progress["rows"] == saved["rows"] and progress["key"]["edits"] == 6
    assert ResumeStore(out, {}, "").progress("rome") is None
    assert json.loads((out / ".ripple" / "resume" / "alphaedit.json").read_text())["edits"] == 6
    monkeypatch.undo()
    calls = stop_at(monkeypatch, 10**6)  # count only
    code, _, err = cli(capfd, *ARGS, "--out", out, "--resume")
    assert code == 0, err
    assert calls == [4, 6]  # alphaedit not run again; rledit from edit 2 on
    assert (out / "stress.json").read_bytes() == (uninterrupted / "stress.json").read_bytes()
    timing = json.loads((out / "timing.json").read_text())
    assert [s["from_edit"] for s in timing["rledit"]["segments"]] == [0, 2]
    assert "segments" not in timing["alphaedit"]  # finished in one stretch
    assert not (out / ".ripple" / "resume").exists()  # cleared once the outputs are written
    assert digest(model_dir()) == disk


def test_interrupted_run_leaves_the_model_unedited(monkeypatch, tmp_path):
    from ripple.editing.setup import load_setup

    setup = load_setup("organism")
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    stream, world = stress_run.stress_stream(setup, 4)
    checkpoints = stress_run.Checkpoints(setup, world, stream, ["The cat sat."])
    from ripple.stress.resume import ResumeStore

    store = ResumeStore(tmp_path, {"test": 1}, "code")
    stop_at(monkeypatch, 3)  # 0, 2, then stop at 4
    with pytest.raises(KeyboardInterrupt):
        stress_run.stress_method(setup, "alphaedit", stream, checkpoints, stress_run.StressOptions(every=2), store=store)
    assert all(v.equal(before[k]) for k, v in setup.model.state_dict().items())
    assert setup.ctx.state.get("alphaedit", {}) == {}
    monkeypatch.undo()
    curve = stress_run.stress_method(setup, "alphaedit", stream, checkpoints, stress_run.StressOptions(every=2),
                                     store=store, resume=True)
    assert [r["edits"] for r in curve["checkpoints"]] == [0, 2, 4]
    assert all(v.equal(before[k]) for k, v in setup.model.state_dict().items())


def test_other_settings_are_refused(capfd, monkeypatch, tmp_path):
    out = tmp_path / "out"
    stop_at(monkeypatch, 3)
    code, _, _ = cli(capfd, *ARGS, "--out", out)
    assert code != 0
    monkeypatch.undo()
    code, _, err = cli(capfd, *[a if a != "6" else "8" for a in ARGS], "--out", out, "--resume")
    line = assert_one_line_error(code, err)
    assert "other settings" in line and "edits" in line and "another --out" in line
    saved = digest(out / ".ripple" / "resume")
    # another method, or no --resume at all, never throws the saved state away
    other = [a if a != "alphaedit" else "memit" for a in ARGS]
    code, _, err = cli(capfd, *other, "--out", out, "--resume")
    line = assert_one_line_error(code, err)
    assert "is of alphaedit" in line and "without alphaedit" in line, line
    code, _, err = cli(capfd, *ARGS, "--out", out)
    line = assert_one_line_error(code, err)
    assert "holds a partial run of alphaedit" in line and "pass --resume" in line, line
    assert digest(out / ".ripple" / "resume") == saved
