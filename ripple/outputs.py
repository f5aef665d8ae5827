"""What a command writes into ``--out``, as one unit: never a mix of two runs, never an input lost.

Layout of an output directory ``OUT``::

    OUT/report.html  -> .ripple/current/report.html     (one link per file or folder a run wrote)
    OUT/.ripple/current -> run-20261201T091500-4f2a      (the run the links show)
    OUT/.ripple/run-20261201T091500-4f2a/...            (the files themselves)
    OUT/notes.txt                                        (anything else: never touched)

A run is written to a staging folder ``OUT/.ripple/staging-PID-*`` and committed by renaming it
to ``run-*`` and switching the ``current`` link with one atomic rename. The links of a run's
names are made before the switch (a new name's link dangles until then) and the links of names
the new run lacks are removed after it, so at every moment, a kill included, each name shows the
previous complete run or the new complete one. SIGINT and SIGTERM are held back during the
commit (a few renames), so an interrupted command leaves the previous run; the staging folder is
removed on any failure, and a staging folder of a killed process is removed by the next commit.
A run that fails leaves no new directory behind.

ripple replaces or removes only what it wrote: the links it made (``OUT/name ->
.ripple/current/name``) and the files a manifest of its own lists (``OUT/.ripple/manifest.json``,
written at every commit and by :func:`copy_run`, with each plain file's sha256). Anything else in
``OUT`` with the name of an output (a user's ``config.json`` or ``report.md``, a folder named like
a per-edit output) is a one-line error before any work (:func:`check_out` with the names a
command writes) and again at the commit, before anything is switched. An ``OUT`` in the plain-file
layout is converted only where its manifest proves ripple wrote the files (same name, same bytes).

Readers need nothing special: ``OUT/report.json``, ``from_pretrained(OUT)`` follow the links.

>>> import pathlib, tempfile
>>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> with output_unit(out) as stage:
...     _ = (stage / "report.json").write_text("{}")
>>> (out / "report.json").read_text(), (out / "report.json").is_symlink()
('{}', True)
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ripple.errors import RippleError
from ripple.io import absent

RIPPLE_DIR = ".ripple"
CURRENT = "current"
MANIFEST = "manifest.json"
_LINK_PREFIX = f"{RIPPLE_DIR}/{CURRENT}/"


#: The names a saved transformers model directory may hold (``save_pretrained``), with ripple's own
#: files beside them: what ``ripple edit``, ``mitigate`` and ``organism train`` write into ``--out``.
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model-[0-9]*-of-[0-9]*.safetensors",
               "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
               "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
               "chat_template.jinja", "world.json", "ripple_hparams.json", "ripple_base.json")


def _manifest(out: Path) -> dict:
    """``OUT/.ripple/manifest.json`` (empty when missing or unreadable: then nothing is proven)."""
    try:
        data = json.loads((out / RIPPLE_DIR / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    if not isinstance(data.get("plain", {}), dict):
        data["plain"] = {}
    return data


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _tree_hashes(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (itself when a file)."""
    if path.is_file():
        return {"": _sha256(path)}
    return {p.relative_to(path).as_posix(): _sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}


def owned(entry: Path, manifest: dict | None = None) -> bool:
    """Whether ripple wrote ``entry`` (a top-level entry of an output directory): a link of its own
    into ``.ripple/current``, or a plain file or folder its manifest lists with the same bytes."""
    entry = Path(entry)
    if entry.is_symlink():
        return os.readlink(entry) == _LINK_PREFIX + entry.name
    if not entry.exists():
        return True  # nothing there: nothing to lose
    manifest = _manifest(entry.parent) if manifest is None else manifest
    plain = manifest.get("plain", {})
    return isinstance(plain, dict) and entry.name in plain and plain[entry.name] == _tree_hashes(entry)


def foreign(out, patterns: Iterable[str]) -> list[Path]:
    """The entries of ``out`` named like ``patterns`` (``fnmatch``) that ripple did not write. A
    name without wildcards is looked up by path, so that a case-insensitive filesystem's own rule
    applies (a user's ``Report.md`` is the ``report.md`` a run would write there)."""
    out = Path(out)
    if not out.is_dir():
        return []
    manifest = _manifest(out)
    found: dict[str, Path] = {}
    for pat in patterns:
        if any(c in pat for c in "*?["):
            found.update({e.name: e for e in out.iterdir() if fnmatch.fnmatchcase(e.name, pat)})
        elif (out / pat).exists() or (out / pat).is_symlink():
            found[pat] = out / pat
    return [e for name, e in sorted(found.items()) if name != RIPPLE_DIR and not owned(e, manifest)]


def _refuse_foreign(out, entries: list[Path]) -> None:
    if entries:
        first, more = entries[0], len(entries) - 1
        also = f" (and {more} more: {', '.join(e.name for e in entries[1:4])})" if more else ""
        kind = "folder" if first.is_dir() else "file"
        raise RippleError(f"{first} is a {kind} ripple did not write{also}, and this run writes that name into "
                          f"--out {out}; pass another --out (ripple never replaces what it did not write)")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_out(out, inputs: Iterable[tuple[str, object]] = (), writes: Iterable[str] = ()) -> Path:
    """Check ``--out`` before any work and create nothing: not a file, writable, no input
    (``(label, path)`` pairs: the model directory, an edit file, a policy, a probe set, ...) at or
    inside it, where a run could replace it, and nothing ripple did not write under a name the
    command writes (``writes``: ``fnmatch`` patterns, e.g. ``("report.*", "edit-*")``)."""
    if out is None or not str(out).strip():
        raise RippleError("--out is empty; pass a directory for the outputs")
    p = Path(out).expanduser()
    if p.is_symlink() and not p.exists():

        raise RippleError(f"output path {out} {absent(p)}; pass another --out (or make the link point at a folder)")
    if p.exists() and not p.is_dir():
        raise RippleError(f"output path {out} is a file, not a directory; pass a directory for --out")
    base = _nearest_existing(p.absolute())
    if not base.is_dir():
        raise RippleError(f"output path {out} is under {base}, which is a file; pass a directory for --out")
    if not os.access(base, os.W_OK | os.X_OK):
        raise RippleError(f"cannot write to {base} (permission denied); pass an --out you may write to")
    resolved = Path(os.path.realpath(p))  # never raises, a symbolic link loop included
    for label, path in inputs:
        if path is None:
            continue
        ip = Path(os.path.realpath(Path(path).expanduser()))
        if ip == resolved:
            raise RippleError(f"--out {out} is the {label} itself; pass a new directory for --out, "
                              "so that the outputs never replace an input")
        if resolved in ip.parents:
            raise RippleError(f"the {label} {path} is inside --out {out}, where this run writes; "
                              "choose another --out or move the input")
    rdir = p / RIPPLE_DIR
    if (rdir.exists() or rdir.is_symlink()) and (rdir.is_symlink() or not rdir.is_dir()):
        raise RippleError(f"{rdir} is not ripple's folder (ripple keeps its runs there); pass another --out")
    _refuse_foreign(out, foreign(p, writes))
    return p


def _mkdtemp(parent, prefix: str) -> Path:
    """A new folder with the usual permissions (``mkdtemp`` alone makes it private, 0700)."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (then they arrive as usual)."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (ValueError, OSError):  # not the main thread, or no signal support: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _replace_with_link(path: Path, target: str, rdir: Path) -> None:
    """Make ``path`` a symbolic link to ``target`` (atomically; a folder the manifest proves
    ripple wrote is set aside first and removed after the switch)."""
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_dir() and not path.is_symlink():
        path.rename(Path(tempfile.mkdtemp(dir=rdir, prefix="old-")) / path.name)
    tmp = path.parent / f".{path.name}.{os.getpid()}.link"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _commit(out: Path, staging: Path) -> None:
    rdir = out / RIPPLE_DIR
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    names_now = sorted(p.name for p in staging.iterdir())
    _refuse_foreign(out, foreign(out, names_now))  # before anything is switched
    before = _manifest(out)
    plain = {n: h for n, h in before.get("plain", {}).items()  # proven plain files this run leaves alone
             if n not in names_now and (out / n).exists() and owned(out / n, before)}
    manifest_tmp = _manifest_tmp(rdir, {"names": names_now, **({"plain": plain} if plain else {})})
    try:
        _switch(out, rdir, staging, stamp, manifest_tmp)
    finally:
        manifest_tmp.unlink(missing_ok=True)  # renamed into place unless the switch failed first


def _switch(out: Path, rdir: Path, staging: Path, stamp: str, manifest_tmp: Path) -> None:
    with _signals_held():
        run = Path(tempfile.mkdtemp(dir=rdir, prefix=f"run-{stamp}-"))
        run.rmdir()
        staging.rename(run)
        names = sorted(p.name for p in run.iterdir())
        for name in names:
            _replace_with_link(out / name, _LINK_PREFIX + name, rdir)
        tmp = rdir / f".{CURRENT}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(run.name, tmp)
        os.replace(tmp, rdir / CURRENT)  # the switch
        os.replace(manifest_tmp, rdir / MANIFEST)  # written before the switch: a rename now
        for entry in out.iterdir():
            if entry.is_symlink() and os.readlink(entry) == _LINK_PREFIX + entry.name and entry.name not in names:
                entry.unlink()
    for entry in rdir.iterdir():  # earlier runs, folders set aside, staging of dead processes
        kind = entry.name.split("-", 2)
        stale = entry.name.startswith(("run-", "old-")) and entry.name != run.name
        if entry.name.startswith("staging-") and len(kind) > 1 and kind[1].isdigit():
            stale = not _pid_alive(int(kind[1]))
        if stale and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def _manifest_tmp(rdir: Path, data: dict) -> Path:
    """The manifest written beside its place, to be renamed into it (a failure leaves nothing)."""
    tmp = rdir / f".{MANIFEST}.{os.getpid()}"
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _write_manifest(rdir: Path, data: dict) -> None:
    os.replace(_manifest_tmp(rdir, data), rdir / MANIFEST)


@contextlib.contextmanager
def output_unit(out) -> Iterator[Path]:
    """A staging folder for one run's outputs, committed into ``out`` as one unit when the block
    succeeds (see the module docstring); on any failure it is removed, and so is every folder the
    run created."""
    out = Path(out).expanduser()
    created = []
    for parent in [*reversed(out.absolute().parents), out.absolute()]:
        if not parent.exists():
            created.append(parent)
    staging = None
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
            rdir = out / RIPPLE_DIR
            if not rdir.exists():
                created.append(rdir)
            rdir.mkdir(exist_ok=True)
            staging = _mkdtemp(rdir, f"staging-{os.getpid()}-")
        except PermissionError:
            raise RippleError(f"cannot write to {out} (permission denied); pass an --out you may write to") from None
        except FileExistsError:
            raise RippleError(f"output path {out} is a file, not a directory; pass a directory for --out") from None
        yield staging
        _commit(out, staging)
        staging = None
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for path in reversed(created):  # deepest first; only folders that are empty again
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def copy_run(out, dest) -> Path:
    """Copy the run ``out`` shows into ``dest`` as plain files (links followed, no ``.ripple``), e.g.
    to publish it in a repository, with a manifest of what was copied (``dest/.ripple/manifest.json``:
    each entry's files and sha256); ``dest`` is replaced as a whole, through a sibling folder, only
    where everything in it is an earlier copy's (else a one-line error, and nothing changes)."""
    out, dest = Path(out), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        manifest = _manifest(dest) if dest.is_dir() else {}
        theirs = [e for e in sorted(dest.iterdir()) if e.name != RIPPLE_DIR
                  and not owned(e, manifest)] if dest.is_dir() else [dest]
        if theirs or not manifest.get("copied"):
            what = theirs[0] if theirs else dest
            raise RippleError(f"{what} was not written by ripple's copy (no manifest proves it); copy into "
                              "another folder or move it away")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _mkdtemp(dest.parent, f".{dest.name}-")
    try:
        for entry in sorted(out.iterdir()):
            if entry.name == RIPPLE_DIR or not entry.exists():
                continue
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name, symlinks=False)
            else:
                shutil.copyfile(entry, tmp / entry.name)
        (tmp / RIPPLE_DIR).mkdir()
        plain = {e.name: _tree_hashes(e) for e in sorted(tmp.iterdir()) if e.name != RIPPLE_DIR}
        _write_manifest(tmp / RIPPLE_DIR, {"copied": True, "plain": plain})
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}-old-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def shown_files(out) -> dict[str, bytes]:
    """Every file the run ``out`` shows, by path relative to ``out`` (links followed, ``.ripple``
    left out): what two runs are compared on, e.g. to check they wrote the same bytes."""
    out, got = Path(out), {}
    for root, dirs, names in os.walk(out, followlinks=True):
        dirs[:] = [d for d in dirs if d != RIPPLE_DIR]
        for name in names:
            p = Path(root) / name
            got[p.relative_to(out).as_posix()] = p.read_bytes()
    return got
