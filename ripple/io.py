"""Atomic file output: a reader never sees a half-written report.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
>>> atomic_write_json(p, {"a": 1}); p.read_text()
'{\\n  "a": 1\\n}\\n'
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

from ripple.errors import RippleError


def cache_dir() -> Path:
    """Where ripple caches what it computes once (statistics, sampled corpora, converted GGUF models,
    hypernetworks): ``$RIPPLE_CACHE``, else ``~/.cache/ripple``."""
    return Path(os.environ.get("RIPPLE_CACHE", Path.home() / ".cache" / "ripple"))


def loads_json(text, where):
    """``json.loads``, with a one-line error naming ``where`` for input nested past what Python can
    read (``[[[[...`` thousands deep); a syntax error is left to the caller.

    >>> loads_json("[" * 100000 + "]" * 100000, "edits.json")
    Traceback (most recent call last):
    ...
    ripple.errors.RippleError: edits.json is nested too deeply to read (JSON deeper than Python's recursion limit); flatten it
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise RippleError(f"{where} is nested too deeply to read (JSON deeper than Python's recursion limit); "
                          "flatten it") from None


def absent(path) -> str:
    """Why ``path`` cannot be opened as a file, in words: "is a directory", "is a symbolic link loop",
    "is a symbolic link to X, which does not exist" or "does not exist".

    >>> absent("/nonexistent/file.json")
    'does not exist'
    """
    p = Path(path)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if p.is_symlink():
            return f"is a symbolic link to {os.readlink(p)}, which does not exist"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "cannot be reached (permission denied)"
        return "does not exist"
    return "is a directory" if p.is_dir() else "is not a regular file"


def prepare_out_dir(path) -> Path:
    """Create ``path`` as a directory; a one-line error if it exists as a file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RippleError(f"output path {p} is a file, not a directory; pass a directory for --out")
    p.mkdir(parents=True, exist_ok=True)
    return p


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`: a full disk (or a file size limit) is an
    ``OSError`` that names it, not torch's ``unexpected pos`` from its own writer, and no partial
    file is left."""

    import torch  # lazy: start-up

    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_savefig(fig, path, **kwargs) -> None:
    """Save a matplotlib figure atomically (format from the file suffix)."""

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    atomic_write_bytes(path, buf.getvalue())


def source_fingerprint() -> str:
    """12 hex digits of a hash over the ripple package's Python sources (paths and contents): a
    resumed stress run records which version applied which edits, and rows a benchmark appends
    carry it, so a resumed run shows which rows an older version of the code made."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
