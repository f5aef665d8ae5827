"""--out as one unit: a crash at any step of a commit, and a kill at any moment of ``ripple edit``
into an existing --out, leave one complete run (the model there is the base plus the delta saved
beside it); SIGTERM leaves no staging folder; files ripple did not write are never touched."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import ripple.outputs as outputs
from ripple.editing.delta import EditDelta
from ripple.outputs import RIPPLE_DIR, output_unit

from helpers import edit_requests, save_tiny_gpt2, stats_corpus

ROOT = Path(__file__).resolve().parents[1]


def write_run(out, files: dict):
    with output_unit(out) as stage:
        for name, text in files.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_text(text)


def shown(out) -> dict:
    """What a reader sees in ``out``: name -> text (ripple's names only; None for a dangling link)."""
    res = {}
    for p in sorted(out.iterdir()):
        if p.name == RIPPLE_DIR or p.name == "notes.txt":
            continue
        target = p / "f" if p.is_dir() else p
        res[p.name] = target.read_text() if target.exists() else None
    return res


def test_a_new_run_replaces_the_old_one_and_leaves_other_files_alone(tmp_path):
    out = tmp_path / "out"
    write_run(out, {"a.json": "old a", "b.json": "old b", "sub/f": "old sub"})
    (out / "notes.txt").write_text("mine")
    write_run(out, {"a.json": "new a", "c.json": "new c"})
    assert shown(out) == {"a.json": "new a", "c.json": "new c"}  # b and sub were the old run's: gone
    assert (out / "notes.txt").read_text() == "mine"
    runs = [p.name for p in (out / RIPPLE_DIR).iterdir()]
    assert sorted(n.split("-")[0] for n in runs) == ["current", "manifest.json", "run"]  # one run, no staging
    assert json.loads((out / RIPPLE_DIR / "manifest.json").read_text())["names"] == ["a.json", "c.json"]


def test_a_failed_run_leaves_the_previous_one_and_no_new_folder(tmp_path):
    out = tmp_path / "out"
    write_run(out, {"a.json": "old"})
    with pytest.raises(RuntimeError):
        with output_unit(out) as stage:
            (stage / "a.json").write_text("half")
            raise RuntimeError("boom")
    assert shown(out) == {"a.json": "old"}
    assert not list((out / RIPPLE_DIR).glob("staging-*"))
    fresh = tmp_path / "deep" / "fresh"
    with pytest.raises(KeyboardInterrupt):
        with output_unit(fresh):
            raise KeyboardInterrupt
    assert not (tmp_path / "deep").exists()


def test_plain_files_are_converted_only_where_a_manifest_proves_ripple_wrote_them(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_run(src, {"a.json": "old a", "edit-01/f": "old dir", "b.json": "old b"})
    outputs.copy_run(src, out)  # plain files, with the manifest of what was copied
    assert (out / "a.json").is_file() and not (out / "a.json").is_symlink()
    write_run(out, {"a.json": "new", "edit-01/f": "new dir"})
    assert shown(out) == {"a.json": "new", "b.json": "old b", "edit-01": "new dir"}
    write_run(out, {"b.json": "newer b"})  # b.json is still proven ripple's: replaced
    assert shown(out) == {"b.json": "newer b"}


@pytest.mark.parametrize("kind", ["file", "folder", "changed copy", "link elsewhere"])
def test_what_ripple_did_not_write_is_never_replaced(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "changed copy":  # a copied file the user edited afterwards: no longer ripple's bytes
        src = tmp_path / "src"
        write_run(src, {"report.md": "ripple's"})
        outputs.copy_run(src, out)
        (out / "report.md").write_text("the user's edit")
    else:
        out.mkdir()
        if kind == "file":
            (out / "report.md").write_text("the user's")
        elif kind == "folder":
            (out / "report.md").mkdir()
            (out / "report.md" / "keep").write_text("the user's")
        else:
            (tmp_path / "elsewhere").write_text("the user's")
            (out / "report.md").symlink_to(tmp_path / "elsewhere")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and RIPPLE_DIR not in p.parts}
    with pytest.raises(outputs.RippleError, match="ripple did not write.*pass another --out"):
        outputs.check_out(out, writes=("report.*",))
    with pytest.raises(outputs.RippleError, match="ripple did not write"):
        write_run(out, {"report.md": "new", "report.json": "{}"})
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and RIPPLE_DIR not in p.parts}
    assert after == before
    assert not (out / "report.json").exists() and not list((out / RIPPLE_DIR).glob("staging-*"))
    outputs.check_out(out, writes=("graph.*",))  # other names: fine


def test_copy_run_never_replaces_a_folder_it_did_not_write(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_run(src, {"a.json": "a"})
    dest.mkdir()
    (dest / "mine.txt").write_text("the user's")
    with pytest.raises(outputs.RippleError, match="not written by ripple's copy"):
        outputs.copy_run(src, dest)
    assert (dest / "mine.txt").read_text() == "the user's" and not (dest / "a.json").exists()
    (dest / "mine.txt").unlink()
    dest.rmdir()
    outputs.copy_run(src, dest)
    outputs.copy_run(src, dest)  # its own earlier copy: replaced
    (dest / "extra.txt").write_text("the user's")
    with pytest.raises(outputs.RippleError, match="extra.txt was not written"):
        outputs.copy_run(src, dest)


def test_a_dangling_link_out_is_named_as_such(tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(outputs.RippleError, match="symbolic link to .*gone, which does not exist"):
        outputs.check_out(tmp_path / "out")


@pytest.mark.parametrize("fail_at", range(12))
def test_a_crash_at_any_step_of_a_commit_shows_one_complete_run(tmp_path, monkeypatch, fail_at):
    out = tmp_path / "out"
    old = {"a.json": "old a", "b.json": "old b"}
    new = {"a.json": "new a", "c.json": "new c"}
    write_run(out, old)
    calls = {"n": 0}
    real = {name: getattr(os, name) for name in ("replace", "symlink", "unlink")}

    def counting(name):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == fail_at + 1:
                raise OSError("disk gone")
            return real[name](*args, **kwargs)
        return call

    for name in real:
        monkeypatch.setattr(outputs.os, name, counting(name))
    try:
        write_run(out, new)
    except OSError:
        pass
    monkeypatch.undo()
    seen = {k: v for k, v in shown(out).items() if v is not None}
    olds = {k: v for k, v in seen.items() if v.startswith("old")}
    news = {k: v for k, v in seen.items() if v.startswith("new")}
    assert not (olds and news), seen  # never a mix of two runs
    assert all(v == old.get(k) for k, v in seen.items()) or all(v == new.get(k) for k, v in seen.items()), seen
    assert seen == old or set(seen) >= {"a.json"}, seen  # the run's file is always shown


# ---- a real process, killed ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny gpt2 directory, two one-request edit files, a corpus, and the edit command."""
    root = tmp_path_factory.mktemp("kill")
    model = root / "gpt2"
    save_tiny_gpt2(model)
    edits = []
    for i, req in enumerate(edit_requests()):
        path = root / f"edit{i}.json"
        path.write_text(json.dumps(req.to_dict()))
        edits.append(path)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(stats_corpus()) + "\n")

    def command(edit, out):
        return [sys.executable, "-m", "ripple.cli", "edit", "--model", str(model), "--method", "rome", "--edits",
                str(edit), "--stats-corpus", str(corpus), "--out", str(out), "--force", "--set", "v_steps=2",
                "context_prefixes=0", "stats_samples=300", "layers=0", "fact_token=last"]

    env = dict(os.environ, RIPPLE_THREADS="1", HF_HUB_OFFLINE="1", RIPPLE_CACHE=str(root / "cache"),
               PYTHONPATH=str(ROOT))
    return model, edits, command, env


def one_complete_run(out, model) -> str:
    """The case id of the run ``out`` shows, after checking it is whole: model = base + delta, and
    metrics.json describes the same requests as the delta."""
    delta = EditDelta.load(out / "delta.safetensors")
    metrics = json.loads((out / "metrics.json").read_text())
    case_ids = [r["case_id"] for r in delta.requests]
    assert [r["case_id"] for r in metrics["per_request"]] == case_ids
    with safe_open(str(model / "model.safetensors"), "pt") as base, \
            safe_open(str(out / "model.safetensors"), "pt") as edited:
        assert set(edited.keys()) == set(base.keys())
        for key in base.keys():
            expected = base.get_tensor(key)
            if key in delta.deltas:
                expected = expected + delta.deltas[key]
                assert not torch.equal(expected, base.get_tensor(key))
            assert torch.equal(edited.get_tensor(key), expected), key
    return case_ids[0]


@pytest.mark.slow
def test_killing_an_edit_at_many_points_leaves_one_complete_run(tiny_run, tmp_path):
    model, edits, command, env = tiny_run
    out = tmp_path / "out"
    assert subprocess.run(command(edits[0], out), env=env, capture_output=True).returncode == 0
    (out / "notes.txt").write_text("mine")
    assert one_complete_run(out, model) == "a"
    t0 = time.perf_counter()
    done = subprocess.run(command(edits[1], tmp_path / "timing"), env=env, capture_output=True)
    total = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    points = [total * f for f in (0.4, 0.6, 0.75, 0.85, 0.9, 0.94, 0.97, 1.0, 1.03)]
    seen = []
    for i, at in enumerate(points):
        sig = signal.SIGKILL if i % 2 else signal.SIGTERM
        started = "b" if seen[-1:] in ([], ["a"]) else "a"  # never the run --out shows now
        proc = subprocess.Popen(command(edits["ab".index(started)], out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(at)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        seen.append(one_complete_run(out, model))
        print(f"kill {i}: {sig.name} at {at:.2f}s of {total:.2f}s -> exit {proc.returncode}, --out shows run "
              f"{seen[-1]!r} (started run {started!r})")
        assert (out / "notes.txt").read_text() == "mine"
        if proc.returncode == 0:  # the run finished before the signal: its output is the one shown
            assert seen[-1] == started
        if sig == signal.SIGTERM:
            # 143: ripple's handler ran; -15: the signal came before ripple started (nothing written yet)
            assert proc.returncode in (0, 143, -signal.SIGTERM), err
            # SIGTERM cleans up its own staging folder (one of an earlier SIGKILL may wait for the next commit)
            assert not list((out / RIPPLE_DIR).glob(f"staging-{proc.pid}-*")), (i, err)
            if proc.returncode == 143:
                assert err.decode().strip().splitlines()[-1] == \
                    "ripple: terminated (nothing half-written is left in --out)"
    assert set(seen) <= {"a", "b"}
    # a completed run after kills leaves no staging folder of a killed process behind
    assert subprocess.run(command(edits[0], out), env=env, capture_output=True).returncode == 0
    assert one_complete_run(out, model) == "a"
    assert not list((out / RIPPLE_DIR).glob("staging-*"))


def test_copy_run_publishes_plain_files(tmp_path):
    out = tmp_path / "out"
    write_run(out, {"a.json": "one", "sub/f": "two"})
    dest = tmp_path / "reports" / "sample"
    dest.parent.mkdir()
    for _ in range(2):  # the second copy replaces the first
        outputs.copy_run(out, dest)
    assert sorted(p.name for p in dest.iterdir()) == [RIPPLE_DIR, "a.json", "sub"]
    manifest = json.loads((dest / RIPPLE_DIR / "manifest.json").read_text())
    assert manifest["plain"] == {"a.json": {"": hashlib.sha256(b"one").hexdigest()},
                                 "sub": {"f": hashlib.sha256(b"two").hexdigest()}}
    assert not (dest / "a.json").is_symlink() and (dest / "a.json").read_text() == "one"
    assert (dest / "sub" / "f").read_text() == "two" and not (dest / "sub").is_symlink()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["sample"]


def test_a_run_folder_has_the_usual_permissions(tmp_path):
    out = tmp_path / "out"
    write_run(out, {"a.json": "x"})
    umask = os.umask(0)
    os.umask(umask)
    run = (out / RIPPLE_DIR / "current").resolve()
    assert run.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
