"""Edit request files: JSON (one object or a list) or JSON lines, from a path, a pipe or
``/dev/stdin``; and what one solve may hold (:func:`one_batch`: exact repeats merged, two targets
for one prompt refused).

>>> import json, pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "edits.jsonl"
>>> _ = path.write_text(json.dumps({"prompt": "{} was born in", "subject": "Kalo Miren", "target_new": "Tesvar"}))
>>> [r.rendered for r in load_requests(path)]
['Kalo Miren was born in']
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from ripple.editing.requests import EditRequest, parse_request
from ripple.errors import RippleError
from ripple.io import absent, loads_json


def _json_error(where: str, exc: json.JSONDecodeError, hint: str) -> RippleError:
    return RippleError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); {hint}")


def load_requests(path, batch: bool = False, notes: list | None = None, chunk: int | None = None
                  ) -> list[EditRequest]:
    """Edit requests from a ``.json`` file (one object or a list) or ``.jsonl`` (one object a line).

    ``batch``: the requests go into one solve, so two that ask one prompt (as rendered) for two
    targets are a one-line error naming both lines, and exact repeats are merged (a note for each
    is appended to ``notes``). ``chunk``: they go in solves of that many, one after another; two in
    one chunk that contradict each other are the same error."""
    p = Path(path)
    text, suffix = _read(p)
    requests, labels = _parse_lines(p, text) if suffix == ".jsonl" else _parse_json(p, text)
    if not requests:
        raise RippleError(f"no edit requests in {p}; add at least one request object")
    if batch and len(requests) > 1:
        requests = one_batch(requests, labels, notes, where=str(p))
    elif chunk and chunk > 1:
        check_chunks(requests, chunk, labels, where=str(p))
    return requests


def check_chunks(requests: list[EditRequest], chunk: int, labels=None, where: str = "the requests") -> None:
    """A one-line error for two requests of one chunk (one solve of ``chunk`` in a sequential run)
    that give one prompt two targets (:func:`one_batch`'s rule; repeats are left as they are)."""
    labels = labels or [f"request {i}" for i in range(1, len(requests) + 1)]
    for lo in range(0, len(requests), chunk):
        one_batch(requests[lo:lo + chunk], labels[lo:lo + chunk], [], where=f"{where} (a chunk of --chunk {chunk})")


def _read(p: Path) -> tuple[str, str]:
    """The file's text and its form (``.json`` or ``.jsonl``; a pipe's told by its text)."""
    stream = _is_stream(p)  # a pipe such as the shell's <(cmd): read once, its form told by its text
    if not p.is_file() and not stream:
        raise RippleError(f"edit request file {p} {absent(p)}; pass a .json or .jsonl file of edit requests")
    suffix = p.suffix.lower()
    if suffix not in (".json", ".jsonl") and not stream:
        raise RippleError(f"edit request file {p} must end in .json (an object or a list) "
                          "or .jsonl (one object per line)")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RippleError(f"edit request file {p} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"{exc.start}); pass a JSON or JSONL text file of edit requests") from None
    except OSError as exc:
        raise RippleError(f"cannot read edit request file {p}: {exc.strerror or exc}; check its permissions") from None
    if suffix not in (".json", ".jsonl"):
        suffix = ".json" if _whole_json(text) else ".jsonl"
    return text, suffix


def _parse_lines(p: Path, text: str) -> tuple[list[EditRequest], list[str]]:
    """JSON lines: one request a line, labelled by its line number."""
    requests, labels = [], []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = loads_json(line, f"{p} line {n}")
        except json.JSONDecodeError as exc:
            raise _json_error(f"{p} line {n}", exc, "write one JSON object per line") from None
        requests.append(parse_request(obj, f"{p} line {n}"))
        labels.append(f"line {n}")
    return requests, labels


def _parse_json(p: Path, text: str) -> tuple[list[EditRequest], list[str]]:
    """One JSON value: a request, or a list of them labelled by their place."""
    if not text.strip():
        return [], []
    try:
        data = loads_json(text, p)
    except json.JSONDecodeError as exc:
        hint = "for one object per line, name the file .jsonl" if exc.msg == "Extra data" else "check the JSON syntax"
        raise _json_error(f"{p} line {exc.lineno}", exc, hint) from None
    if isinstance(data, list):
        return ([parse_request(obj, f"{p} item {i}") for i, obj in enumerate(data, 1)],
                [f"item {i}" for i in range(1, len(data) + 1)])
    return [parse_request(data, str(p))], []


def _is_stream(p: Path) -> bool:
    """A pipe, a character device or a file descriptor (``<(cmd)``, ``/dev/stdin`` also when it is a
    redirected file), which has no suffix to go by."""

    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or str(p).startswith(("/dev/", "/proc/self/fd/"))


def _whole_json(text: str) -> bool:
    """Whether ``text`` is one JSON value (an object or a list), rather than JSON lines."""
    try:
        loads_json(text, "the edit requests")
    except json.JSONDecodeError:
        return False
    return True


def one_batch(requests: list[EditRequest], labels=None, notes: list | None = None, where: str = "the requests"):
    """``requests`` as one solve takes them: exact repeats merged (a note each in ``notes``), and a
    one-line error for two that give one prompt and subject different targets.

    >>> a = EditRequest("{} was born in", "Kalo Miren", "Tesvar")
    >>> notes = []
    >>> one_batch([a, a], notes=notes) == [a], notes
    (True, ['the requests: request 2 repeats request 1 exactly; edited once'])
    >>> one_batch([a, EditRequest("{} was born in", "Kalo Miren", "Kraile")])
    Traceback (most recent call last):
    ...
    ripple.errors.RippleError: the requests: request 1 and request 2 both edit 'Kalo Miren was born in', to 'Tesvar' and to 'Kraile'; one batch cannot hold both: keep one, or edit them one after another (--sequential)
    """
    labels = list(labels) if labels else [f"request {i}" for i in range(1, len(requests) + 1)]
    first: dict[str, int] = {}
    kept = []
    for i, req in enumerate(requests):
        key = req.rendered  # two templates that render one prompt are one prompt
        if key not in first:
            first[key] = i
            kept.append(req)
            continue
        j = first[key]
        if req == requests[j]:
            if notes is not None:
                notes.append(f"{where}: {labels[i]} repeats {labels[j]} exactly; edited once")
            continue
        if req.target_new != requests[j].target_new:
            raise RippleError(f"{where}: {labels[j]} and {labels[i]} both edit {req.rendered!r}, to "
                              f"{requests[j].target_new!r} and to {req.target_new!r}; one batch cannot hold both: "
                              "keep one, or edit them one after another (--sequential)")
        kept.append(req)
    return kept
