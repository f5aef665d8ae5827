"""Wall-clock timing shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time


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
