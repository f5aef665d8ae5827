"""Batch audits across worker processes (``ripple audit --edit FILE --workers N``).

A batch audit is independent audits (each edit alone, then all together), each starting from the
unedited weights; ``N`` worker processes run them at once, each with its own copy of the model
loaded by ``build`` (a picklable callable returning the worker's own
:class:`~ripple.auditing.measure.AuditInputs`), and each writes
its audit's directory itself. The reports are the serial run's, byte for byte: every audit
starts from the same weights (the serial run restores them exactly), the key statistics are
computed once by the parent before the workers start (the serial run computes them on the
unedited model too), and every worker runs torch with the parent's thread count (a different
count may round a sum differently).

Workers are started with ``spawn`` (a forked torch process may hang in its thread pool). With
``--device cuda`` and several GPUs, worker ``i`` takes GPU ``i`` modulo their number
(:func:`worker_device`). Memory: one model per worker, and the parent's.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import multiprocessing
import sys
from pathlib import Path

from ripple.editing.editor import get_editor
from ripple.errors import RippleError


def worker_device(device: str, index: int, n_gpus: int) -> str:
    """The device of worker ``index``: a bare ``cuda`` spreads the workers over ``n_gpus`` GPUs
    (worker i on GPU i mod n); anything else (``cpu``, ``cuda:1``) is kept as given."""
    if device == "cuda" and n_gpus > 1:
        return f"cuda:{index % n_gpus}"
    return device


def warm_statistics(setup, mitigation=None) -> None:
    """Compute (or load) the key statistics the editor (or SIR, with ``mitigation``) reads, before
    the workers start: each then loads them from the disk cache instead of all computing them at
    once."""

    if get_editor(setup.method).reads_key_stats or mitigation is not None:
        setup.ctx.read_key_stats(setup.hp)  # on disk, for the workers; the prefixes each makes itself


_WORKER: dict = {}


def _init(build, threads: int, counter) -> None:

    import torch  # lazy: heavy

    torch.set_num_threads(threads)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the parent has already shown the load's warnings
            _WORKER["context"] = build(index)
    except Exception as e:  # raised with the worker's first job, so that the parent shows it
        _WORKER["error"] = e


def _run_job(run_one, name: str, requests, directory: str, with_mitigation: bool, desc: str) -> tuple[str, dict]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return name, run_one(_WORKER["context"], requests, Path(directory), with_mitigation, desc)


def run_jobs(jobs, run_one, build, workers: int, out: Path, quiet: bool = True) -> dict[str, dict]:
    """Run ``jobs`` (``(name, requests, with_mitigation, desc)``) on ``workers`` processes, each
    with the :class:`~ripple.auditing.measure.AuditInputs` ``build(index)`` loads:
    ``run_one(inputs, requests, directory, with_mitigation, desc)`` writes the audit into
    ``out/name`` and returns its report; returns {name: report}. The largest jobs start first. A
    job's error stops the rest and is raised here."""

    import torch  # lazy: heavy

    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("i", 0)
    order = sorted(jobs, key=lambda j: -len(j[1]))
    reports: dict[str, dict] = {}
    bar = None
    if not quiet:
        from tqdm.auto import tqdm  # lazy: heavy

        bar = tqdm(total=len(jobs), desc=f"audits on {workers} workers", file=sys.stderr, leave=False,
                   dynamic_ncols=True)
    pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                                  initargs=(build, torch.get_num_threads(), counter))
    try:
        futures = [pool.submit(_run_job, run_one, name, reqs, str(out / name), mit, desc)
                   for name, reqs, mit, desc in order]
        for fut in cf.as_completed(futures):
            try:
                name, report = fut.result()
            except cf.process.BrokenProcessPool:
                raise RippleError("an audit worker process died (out of memory?); rerun with fewer --workers") \
                    from None
            reports[name] = report
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{name}: {report['verdict']['status']}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return reports
