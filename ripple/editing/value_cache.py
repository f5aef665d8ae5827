"""Target values kept on disk, so that editors optimizing the same target reuse it.

MEMIT and AlphaEdit optimize the same vector (the block output at the last edited layer) with the
same hyperparameters; on the same model they get the same value, and the optimization is most of
an edit's cost on a real model (about 30 s a request on SmolLM2 on one CPU thread). A benchmark
that runs both editors over the same edits of the unedited model, single or in a batch, computes
each value once with :class:`ValueCache`. It is opt-in (``EditContext.value_cache``); an audit of
one edit gains nothing from it.

The key is everything the optimization reads (and its :data:`VALUE_VERSION`): the model's weights fingerprint (the one the key
statistics' cache uses, :func:`ripple.editing.stats.model_fingerprint`), the site, the request's
prompt, subject and new target, the target hyperparameters (:data:`VALUE_FIELDS`) and the context
prefixes. An edited model has another fingerprint, so a sequence of edits never reuses a value of
the model as it was. Entries are safetensors files with their JSON metadata, written atomically.

Processes running at once share the folder without computing a value twice: a value is computed
under a lock on its key (``filelock``), and a request whose value another process is computing
now is put off until the rest of the list is done, then read when that lock is released (or
computed, if that process died). Two processes given the same list in the same order so split
its values between them.

::

    ctx.value_cache = ValueCache(Path("values"))
    opts = target_values(ctx, requests, "blocks.8.out", hp, ctx.contexts(hp))  # then read from disk
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import save

from ripple.editing import compute as value_solver
from ripple.editing.stats import model_fingerprint
from ripple.io import atomic_write_bytes

# what optimize_delta computes, in versions: 2 weighs each subject form alike (compute.subject_forms)
VALUE_VERSION = 2
# the hyperparameters optimize_delta reads (the prefixes themselves enter the key as text)
VALUE_FIELDS = ("fact_token", "v_steps", "v_lr", "v_weight_decay", "kl_factor", "clamp_norm_factor",
                "kl_prompts", "early_stop_loss")


class ValueCache:
    """A folder of optimized target values; ``hits`` and ``misses`` count this process's lookups."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def key(self, model_fp: str, site: str, request, hp, contexts) -> str:
        what = {"version": VALUE_VERSION, "model": model_fp, "site": site, "prompt": request.prompt, "subject": request.subject,
                "target_new": request.target_new, "contexts": list(contexts),
                "hp": {f: getattr(hp, f) for f in VALUE_FIELDS}}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:32]

    def read(self, key: str) -> dict | None:
        """The entry under ``key``, or ``None`` (``target_values`` counts hits and misses)."""
        path = self.folder / f"{key}.safetensors"
        if not path.is_file():
            return None
        with safe_open(path, framework="pt") as f:
            meta = json.loads(f.metadata()["json"])
            delta = f.get_tensor("delta")
        return {**meta, "delta": delta, "cached": True}

    def lock(self, key: str) -> FileLock:
        """The lock a process holds while it computes the value under ``key``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(self.folder / f"{key}.lock")

    def put(self, key: str, opt: dict, seconds: float) -> None:
        meta = {k: v for k, v in opt.items() if k not in ("delta", "cached")}
        meta["seconds"] = round(seconds, 4)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.folder / f"{key}.safetensors",
                           save({"delta": opt["delta"].contiguous()}, metadata={"json": json.dumps(meta)}))


def target_values(ctx, requests, site: str, hp, contexts) -> list[dict]:
    """:func:`ripple.editing.compute.optimize_delta` for each request at ``site``, through
    ``ctx.value_cache`` when it is set (see the module docstring: a value another process is
    computing is waited for, after the others). Each result has ``seconds`` (what computing it
    took, then or now) and ``cached``."""

    def compute(r) -> dict:
        t0 = time.perf_counter()
        opt = value_solver.optimize_delta(ctx.model, ctx.tok, ctx.spec, r, site, hp, contexts)
        return {**opt, "seconds": time.perf_counter() - t0, "cached": False}

    cache = ctx.value_cache
    if cache is None:
        return [compute(r) for r in requests]
    model_fp = model_fingerprint(ctx.model, ctx.tok, -1)
    keys = [cache.key(model_fp, site, r, hp, contexts) for r in requests]
    out: list[dict | None] = [cache.read(k) for k in keys]

    def fill(i: int) -> None:  # under the key's lock: read it if it came meanwhile, else compute it
        out[i] = cache.read(keys[i])
        if out[i] is None:
            out[i] = compute(requests[i])
            cache.put(keys[i], out[i], out[i]["seconds"])

    later = []
    for i in [i for i, o in enumerate(out) if o is None]:
        lock = cache.lock(keys[i])
        try:
            lock.acquire(blocking=False)
        except Timeout:  # another process is computing it now
            later.append(i)
            continue
        try:
            fill(i)
        finally:
            lock.release()
    for i in later:
        with cache.lock(keys[i]):
            fill(i)
    for o in out:
        if o["cached"]:
            cache.hits += 1
        else:
            cache.misses += 1
    return out
