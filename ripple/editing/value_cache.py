"""Target values kept on disk, so that editors optimizing the same target reuse it.

MEMIT and AlphaEdit optimize the same vector (the block output at the last edited layer) with the
same hyperparameters; on the same model they get the same value, and the optimization is most of
an edit's cost on a real model (about 30 s a request on SmolLM2 on one CPU thread). A benchmark
that runs both editors over the same edits of the unedited model, single or in a batch, computes
each value once with :class:`ValueCache`. It is opt-in (``EditContext.value_cache``); an audit of
one edit gains nothing from it.

The key is everything the optimization reads: the model's weights fingerprint (the one the key
statistics' cache uses, :func:`ripple.editing.stats.model_fingerprint`), the site, the request's
prompt, subject and new target, the target hyperparameters (:data:`VALUE_FIELDS`) and the context
prefixes. An edited model has another fingerprint, so a sequence of edits never reuses a value of
the model as it was. Entries are safetensors files with their JSON metadata, written atomically.

::

    ctx.value_cache = ValueCache(Path("values"))
    opts = target_values(ctx, requests, "blocks.8.out", hp, ctx.contexts(hp))  # then read from disk
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save

from ripple.io import atomic_write_bytes

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
        what = {"model": model_fp, "site": site, "prompt": request.prompt, "subject": request.subject,
                "target_new": request.target_new, "contexts": list(contexts),
                "hp": {f: getattr(hp, f) for f in VALUE_FIELDS}}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:32]

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.safetensors"
        if not path.is_file():
            self.misses += 1
            return None
        with safe_open(path, framework="pt") as f:
            meta = json.loads(f.metadata()["json"])
            delta = f.get_tensor("delta")
        self.hits += 1
        return {**meta, "delta": delta, "cached": True}

    def put(self, key: str, opt: dict, seconds: float) -> None:
        meta = {k: v for k, v in opt.items() if k != "delta"}
        meta["seconds"] = round(seconds, 4)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.folder / f"{key}.safetensors",
                           save({"delta": opt["delta"].contiguous()}, metadata={"json": json.dumps(meta)}))


def target_values(ctx, requests, site: str, hp, contexts) -> list[dict]:
    """:func:`ripple.editing.compute.optimize_delta` for each request at ``site``, through
    ``ctx.value_cache`` when it is set. Each result has ``seconds`` (what computing it took, then
    or now) and ``cached``."""
    from ripple.editing.compute import optimize_delta
    from ripple.editing.stats import model_fingerprint

    cache = ctx.value_cache
    model_fp = model_fingerprint(ctx.model, ctx.tok, -1) if cache is not None else None
    out = []
    for r in requests:
        key = cache and cache.key(model_fp, site, r, hp, contexts)
        hit = cache and cache.get(key)
        if hit is None:
            t0 = time.perf_counter()
            opt = optimize_delta(ctx.model, ctx.tok, ctx.spec, r, site, hp, contexts)
            hit = {**opt, "seconds": time.perf_counter() - t0, "cached": False}
            if cache is not None:
                cache.put(key, opt, hit["seconds"])
        out.append(hit)
    return out
