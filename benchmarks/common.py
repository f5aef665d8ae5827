"""What the benchmarks share: where they write, torch's thread count, wall-clock timing, Markdown
tables, files of rows a stopped run goes on from, and the facts a real model knows.

Nothing here imports torch or ripple at import time (``python -m benchmarks`` lists the
benchmarks without loading either).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"


def set_threads(threads: int | None = None) -> int:
    """Set torch's thread count to ``threads``, or to ``$RIPPLE_THREADS`` (default 1) when it is
    ``None``; returns the count set."""
    import torch

    n = int(os.environ.get("RIPPLE_THREADS", "1")) if threads is None else threads
    torch.set_num_threads(n)
    return n


def write_rows(path, data) -> None:
    """A benchmark's file of rows, written atomically as compact JSON: indented, such files run to
    megabytes each (the device tool carries at most 64 MiB of the repository to a GPU machine)."""
    from ripple.io import atomic_write_text  # lazy: start-up (listing the benchmarks loads no ripple)

    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")


def median_seconds(fn, repeats: int = 3, warmup: bool = False) -> float:
    """The median wall time of ``repeats`` calls of ``fn`` (after one untimed call with ``warmup``)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------ Markdown tables


def fmt(x) -> str:
    """A table cell: ``-`` for None, three significant digits for a float.

    >>> fmt(None), fmt(0.123456), fmt(12)
    ('-', '0.123', '12')
    """
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def md_row(cells, fmt=str) -> str:
    """One table row: ``| a | b |``, each cell written by ``fmt`` (an empty cell: ``| |``).

    >>> md_row(["x", 1, None])
    '| x | 1 | None |'
    >>> md_row(["", "seconds"])
    '| | seconds |'
    """
    return "|" + "|".join(f" {t} " if t else " " for t in map(fmt, cells)) + "|"


def md_table(cols, rows=(), fmt=str) -> list[str]:
    """A table's lines: the header ``cols`` (as they are), the ``|---|`` rule, then one line per row
    (its cells written by ``fmt``).

    >>> md_table(["a", "b"], [[1, 2.5]])
    ['| a | b |', '|---|---|', '| 1 | 2.5 |']
    """
    return [md_row(cols), "|" + "---|" * len(cols), *(md_row(r, fmt) for r in rows)]


# ------------------------------------------------------------------------- files a rerun goes on from


def load_json(path: Path, default=None):
    """The JSON saved at ``path``, or ``default`` when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else default


def resumable(path: Path, config: dict, **fresh) -> dict:
    """The object saved at ``path`` if it was written under the same settings (its ``"config"``
    equals ``config``), else a new one: ``{"config": config, **fresh}`` (``fresh`` default:
    ``rows=[]``). A run appends to it and saves it after every row, so that a rerun with the same
    settings goes on where the last one stopped and one with other settings starts afresh."""
    old = load_json(path, {})
    if old.get("config") == config:
        return old
    return {"config": config, **copy.deepcopy(fresh or {"rows": []})}


def matching(rows: list[dict], fields: dict, lenient: bool = False) -> list[dict]:
    """The saved ``rows`` made with these ``fields`` (each row's value of each field equal);
    ``lenient``: a row without one of the fields counts as made with it (rows saved before the
    field was recorded)."""
    missing = object()
    return [r for r in rows
            if all(r.get(k, v if lenient else missing) == v for k, v in fields.items())]


# ------------------------------------------------------------------------------------------ real models


def known_facts(setup) -> list[tuple[str, str]]:
    """The ``(subject, relation)`` facts of the graph the unedited model answers right on the probe template."""
    from ripple.scoring import query_correct
    from ripple.world.queries import fact_query

    world = setup.world
    keys = sorted({(f.subject, f.relation) for f in world.facts})
    hits = query_correct(setup.model, setup.tok, [fact_query(world, s, r, world.relations[r].templates[0])
                                                  for s, r in keys])
    return [k for k, h in zip(keys, hits) if h]


def source_versions(rows: list[dict]) -> str:
    """Which versions of ripple's code made the rows (``code``: ripple.io.source_fingerprint)."""
    counts = Counter(r.get("code") or "unrecorded" for r in rows)
    if len(counts) == 1 and "unrecorded" not in counts:
        return f"Source version: {next(iter(counts))}."
    return ("Source versions: " + ", ".join(f"{k} ({n} rows)" for k, n in counts.items())
            + ("; 'unrecorded': rows made before the benchmark recorded its code, possibly by several versions" if
               "unrecorded" in counts else "") + ".")
