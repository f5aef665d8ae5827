"""Key second moments over a corpus, data-parallel under ``torchrun`` (or ``accelerate launch``).

The statistic is the one :func:`ripple.editing.stats.second_moment` computes and caches:
``C = E[k kᵀ]`` over the first ``n_samples`` tokens of the corpus, passage by passage in corpus
order (each passage tokenized alone, as a model reads it). Here:

* the token plan (which passages, how many tokens of the last one) is made from the tokenizer
  alone, so every process agrees on it;
* the plan is sorted by length and cut into batches (passages of similar length: little
  padding), and each rank takes every ``world``-th batch, so a batch is the same on any number of
  processes; one forward pass per batch serves all the requested layers at once, stopping after
  the deepest one;
* it accumulates ``Σ k kᵀ`` and the token count in float64; an all-reduce (``torch.distributed``,
  gloo on CPU, nccl on GPUs) sums the ranks' partial sums; rank 0 writes ``C`` into the same cache
  file, under the same key, as ``second_moment`` (the editors then read it);
* every ``save_every`` batches each rank saves its partial sums (atomically) under
  ``$RIPPLE_CACHE/mom2_partial/``; a run that stopped goes on from them.

With one process it is the same computation without the all-reduce. The sums come in another
order than ``second_moment``'s one matrix product, so the results agree to float64 rounding.

::

    Cs = second_moments(model, tok, spec, layers=[3, 4, 5], corpus=passages, n_samples=100_000)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ripple.arch import act_name, resolve_site
from ripple.devices import input_device
from ripple.editing.stats import corpus_fingerprint, model_fingerprint
from ripple.errors import RippleError
from ripple.hooks import TraceDict
from ripple.io import atomic_torch_save, cache_dir
from ripple.scoring import pad_ids
from ripple.tokens import text_ids


def token_plan(tok, corpus, n_samples: int) -> list[tuple[int, int]]:
    """``(passage index, tokens taken)`` covering the first ``n_samples`` tokens in corpus order
    (empty passages skipped; each passage cut at the tokenizer's ``model_max_length``)."""
    plan, got = [], 0
    for i, text in enumerate(corpus):
        n = len(text_ids(tok, text)[: tok.model_max_length])
        if n == 0:
            continue
        take = min(n, n_samples - got)
        plan.append((i, take))
        got += take
        if got >= n_samples:
            break
    if not plan:
        raise RippleError("the statistics corpus is empty; pass a text file with general sentences")
    return plan


def cache_path(model, tok, layer: int, corpus, n_samples: int) -> Path:
    """Where :func:`ripple.editing.stats.second_moment` keeps this statistic."""

    return cache_dir() / "mom2" / (f"{model_fingerprint(model, tok, layer)}-L{layer}-"
                                   f"{corpus_fingerprint(list(corpus))}-n{n_samples}.pt")


def _dist():
    """``(rank, world size)`` of the running process group, else ``(0, 1)``."""

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1):
    gloo on CPU, nccl when CUDA is there (one process per GPU: each takes ``cuda:LOCAL_RANK``).
    False when there is none to join. More processes on a node than it has GPUs is a one-line
    error (nccl cannot put two ranks on one GPU); ``CUDA_VISIBLE_DEVICES=`` runs them on the CPU."""

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        # torchrun's processes on this node (at least this one's local rank + 1)
        local = max(int(os.environ.get("LOCAL_WORLD_SIZE", "0")), local_rank + 1)
        have = torch.cuda.device_count()
        if local > have:
            raise RippleError(f"torchrun started {local} processes on a node with {have} GPU(s); use "
                              f"--nproc_per_node {have} (one process per GPU), or CUDA_VISIBLE_DEVICES= to "
                              "run them on the CPU")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    return True


def rank_device() -> torch.device:
    """The device this process's tensors meet in an all-reduce: its GPU under nccl, else the CPU."""

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _atomic_save(obj, path: Path) -> None:

    atomic_torch_save(obj, path)


@dataclass(frozen=True)
class StatsRun:
    """How :func:`second_moments` runs: ``batch_size`` sequences a forward pass, partial sums saved
    every ``save_every`` batches (resumed by a rerun), the result written to the editors' cache
    when ``use_cache``; ``stop_after``: stop after that many batches of this run (for tests);
    ``log``: a function that takes the one-line summary (rank 0)."""

    batch_size: int = 64
    save_every: int = 20
    use_cache: bool = True
    stop_after: int | None = None
    log: Callable[[str], object] | None = None


@torch.no_grad()
def second_moments(model, tok, spec, layers, corpus, n_samples: int, settings: StatsRun | None = None,
                   **options) -> dict:
    """``{layer: C}`` (float64 ``[in, in]``) over the first ``n_samples`` corpus tokens, every
    process of the group computing its share (see the module docstring); ``settings`` (a
    :class:`StatsRun`) or its fields as keywords. Returns also ``"tokens"``, ``"seconds"``,
    ``"forward_tokens"`` (tokens the forward passes ran, padding included) under the key ``None``."""
    opts = dataclasses.replace(settings or StatsRun(), **options)
    layers = sorted(set(int(x) for x in layers))
    if not layers:
        raise RippleError("no layers for the statistics; pass --layers, e.g. --layers 5")
    sites = {layer: resolve_site(spec, act_name(layer, "mlp.key"))[0] for layer in layers}
    corpus = list(corpus)
    rank, world = _dist()
    enc, batches = _batches(tok, corpus, n_samples, opts.batch_size, rank, world)
    key = hashlib.sha256("|".join(cache_path(model, tok, layer, corpus, n_samples).name
                                  for layer in layers).encode()).hexdigest()[:16]
    partial = cache_dir() / "mom2_partial" / key / f"rank{rank}-of-{world}-b{opts.batch_size}-v2.pt"
    state = torch.load(partial, weights_only=True) if partial.exists() else None
    if state is None:
        state = {"done": 0, "count": 0, "forward_tokens": 0, "sums": {}}
    sums = state["sums"] = {layer: state["sums"].get(layer) for layer in layers}
    t0 = time.perf_counter()
    _accumulate(model, tok, sites, enc, batches, state, partial, opts)
    seconds = time.perf_counter() - t0
    if world > 1:
        total, forward, seconds = _reduce(sums, state, seconds)
    else:
        total, forward = state["count"], state["forward_tokens"]
    out = {layer: sums[layer] / total for layer in layers}
    if opts.use_cache and rank == 0:
        for layer in layers:
            _atomic_save(out[layer], cache_path(model, tok, layer, corpus, n_samples))
    if world > 1:
        dist.barrier()
    if partial.exists():
        partial.unlink()
    out[None] = {"tokens": total, "seconds": seconds, "forward_tokens": forward, "world": world}
    if opts.log is not None and rank == 0:
        group = f" (backend {dist.get_backend()})" if world > 1 else ""
        opts.log(f"{total} tokens at layers {', '.join(map(str, layers))} on {world} process(es){group} in "
                 f"{seconds:.1f} s "
                 f"({total / max(seconds, 1e-9):.0f} tokens/s; padding {1 - total / max(forward, 1):.1%})")
    return out


def _batches(tok, corpus: list[str], n_samples: int, batch_size: int, rank: int, world: int):
    """The token ids of each planned passage, and this rank's batches of (passage, tokens taken).

    The batches are made over the whole plan and dealt out to the ranks whole, so every batch is
    the same on any number of processes: float32 kernels need not give a sequence the same keys in
    another batch, and the sums then differ between world sizes by float64 rounding only."""
    plan = token_plan(tok, corpus, n_samples)
    enc = {i: text_ids(tok, corpus[i])[:take] for i, take in plan}
    order = sorted(plan, key=lambda p: (len(enc[p[0]]), p[0]))
    return enc, [order[j:j + batch_size] for j in range(0, len(order), batch_size)][rank::world]


def _accumulate(model, tok, sites: dict, enc: dict, batches: list, state: dict, partial: Path,
                opts: StatsRun) -> None:
    """Add every batch's keys' outer products into ``state["sums"]`` from ``state["done"]`` on,
    saving the partial state every ``opts.save_every`` batches (``opts.stop_after``: stop, saved,
    after that many)."""
    device, sums = input_device(model), state["sums"]
    run = 0
    for b in range(state["done"], len(batches)):
        if opts.stop_after is not None and run >= opts.stop_after:
            _atomic_save(state, partial)
            raise RippleError(f"stopped after {run} batches (stop_after); rerun to go on")
        ids, mask = pad_ids([enc[i] for i, _ in batches[b]], tok, device)
        with TraceDict(model, list(sites.values()), retain_input=True, retain_output=False, stop=True) as tr:
            model(input_ids=ids, attention_mask=mask)
        sel = mask.bool()
        for layer, site in sites.items():
            k = tr[site].input[sel].double()
            s = k.T @ k
            sums[layer] = s.cpu() if sums[layer] is None else sums[layer] + s.cpu()
        state["count"] += int(sel.sum())
        state["forward_tokens"] += ids.numel()
        state["done"] = b + 1
        run += 1
        if opts.save_every and state["done"] % opts.save_every == 0 and state["done"] < len(batches):
            _atomic_save(state, partial)


def _reduce(sums: dict, state: dict, seconds: float) -> tuple[int, int, float]:
    """Sum every rank's sums in place (a rank with no passages joins with zeros); the group's token
    counts and its slowest rank's seconds."""
    backend_device = rank_device()  # nccl reduces CUDA tensors only
    hidden = [t.shape[0] for t in sums.values() if t is not None]
    sizes = torch.tensor([hidden[0] if hidden else 0], dtype=torch.long, device=backend_device)
    dist.all_reduce(sizes, op=dist.ReduceOp.MAX)  # a rank with no passages still joins the reduce
    for layer in sums:
        if sums[layer] is None:
            sums[layer] = torch.zeros(int(sizes), int(sizes), dtype=torch.float64)
    for layer in sums:
        t = sums[layer].to(backend_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        sums[layer] = t.cpu()
    counts = torch.tensor([state["count"], state["forward_tokens"]], dtype=torch.float64, device=backend_device)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    secs = torch.tensor([seconds], dtype=torch.float64, device=backend_device)
    dist.all_reduce(secs, op=dist.ReduceOp.MAX)
    return int(counts[0].item()), int(counts[1].item()), float(secs.item())
