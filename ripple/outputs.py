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
A run that fails leaves no new directory behind. An ``OUT`` written by ripple before this layout
(plain files) is converted on its first run: its files with the run's names are replaced.

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
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ripple.errors import RippleError

RIPPLE_DIR = ".ripple"
CURRENT = "current"
_LINK_PREFIX = f"{RIPPLE_DIR}/{CURRENT}/"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_out(out, inputs: Iterable[tuple[str, object]] = ()) -> Path:
    """Check ``--out`` before any work and create nothing: not a file, writable, and no input
    (``(label, path)`` pairs: the model directory, an edit file, a policy, a probe set, ...) at or
    inside it, where a run could replace it."""
    if out is None or not str(out).strip():
        raise RippleError("--out is empty; pass a directory for the outputs")
    p = Path(out).expanduser()
    if p.exists() and not p.is_dir():
        raise RippleError(f"output path {out} is a file, not a directory; pass a directory for --out")
    base = _nearest_existing(p.absolute())
    if not base.is_dir():
        raise RippleError(f"output path {out} is under {base}, which is a file; pass a directory for --out")
    if not os.access(base, os.W_OK | os.X_OK):
        raise RippleError(f"cannot write to {base} (permission denied); pass an --out you may write to")
    resolved = p.resolve()
    for label, path in inputs:
        if path is None:
            continue
        ip = Path(path).expanduser().resolve()
        if ip == resolved:
            raise RippleError(f"--out {out} is the {label} itself; pass a new directory for --out, "
                              "so that the outputs never replace an input")
        if resolved in ip.parents:
            raise RippleError(f"the {label} {path} is inside --out {out}, where this run writes; "
                              "choose another --out or move the input")
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
    """Make ``path`` a symbolic link to ``target`` (atomically, except over a real folder)."""
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_dir() and not path.is_symlink():  # a folder an older ripple wrote: set it aside
        path.rename(Path(tempfile.mkdtemp(dir=rdir, prefix="old-")) / path.name)
    tmp = path.parent / f".{path.name}.{os.getpid()}.link"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _commit(out: Path, staging: Path) -> None:
    rdir = out / RIPPLE_DIR
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
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
        for entry in out.iterdir():
            if entry.is_symlink() and os.readlink(entry).startswith(_LINK_PREFIX) and entry.name not in names:
                entry.unlink()
    for entry in rdir.iterdir():  # earlier runs, folders set aside, staging of dead processes
        kind = entry.name.split("-", 2)
        stale = entry.name.startswith(("run-", "old-")) and entry.name != run.name
        if entry.name.startswith("staging-") and len(kind) > 1 and kind[1].isdigit():
            stale = not _pid_alive(int(kind[1]))
        if stale and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


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
    to publish it in a repository; ``dest`` is replaced as a whole, through a sibling folder."""
    out, dest = Path(out), Path(dest)
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
