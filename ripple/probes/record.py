"""Record hidden states of probe items: one batched forward per batch, hooks on every wanted site.

::

    cache = record(model, tok, spec, items, sites=("out", "mlp.key"), layers=[2, 3])
    cache.sites
    # -> ('blocks.2.out@subject_last', 'blocks.2.out@last', 'blocks.2.mlp.key@subject_last', ...)

Sites are block-relative kinds of :mod:`ripple.arch` (``out``, ``mlp.key``, ``mlp.out``,
``attn.out``); positions are ``subject_first``, ``subject_last`` (the subject's last token in the
rendered prompt) and ``last`` (the prompt's last token). Batches are right-padded, so positions
are absolute and real tokens never see the padding. :func:`plain_hidden_states` is the same
forward with ``output_hidden_states=True`` and no hooks: a baseline and an oracle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ripple.arch import act_name, get_spec, resolve_site
from ripple.devices import input_device
from ripple.errors import RippleError
from ripple.hooks import SiteTrace
from ripple.io import prepare_out_dir
from ripple.modes import held
from ripple.probes.cache import ActivationCache
from ripple.probes.sets import ProbeItem
from ripple.scoring import pad_ids
from ripple.tokens import subject_token_span, text_ids

POSITIONS = ("subject_first", "subject_last", "last")
SITE_KINDS = ("out", "mlp.key", "mlp.out", "attn.out")


def encode_items(tok, items: Sequence[ProbeItem]) -> tuple[list[list[int]], dict[str, list[int]]]:
    """Token ids of each rendered prompt (no special tokens) and the index of every position."""
    ids, where = [], {p: [] for p in POSITIONS}
    for item in items:
        ids.append(text_ids(tok, item.rendered))
        start, end = subject_token_span(tok, item.prompt, item.subject)
        where["subject_first"].append(start)
        where["subject_last"].append(end - 1)
        where["last"].append(len(ids[-1]) - 1)
    return ids, where


def _batches(model, tok, items, positions, batch_size) -> Iterator[tuple[list[str], torch.Tensor, torch.Tensor, dict]]:
    """``(item ids, token ids, mask, {position: index tensor})`` per batch, on the model's device.

    The arguments are checked at once, before the first batch is asked for.
    """
    unknown = [p for p in positions if p not in POSITIONS]
    if unknown:
        raise RippleError(f"unknown position {unknown[0]!r}; positions are {', '.join(POSITIONS)}")
    if not items:
        raise RippleError("no probe items to record; pass a non-empty probe set")
    if batch_size < 1:
        raise RippleError(f"batch_size must be at least 1, not {batch_size}")
    device = input_device(model)

    def batch(lo: int):
        chunk = items[lo : lo + batch_size]
        enc, where = encode_items(tok, chunk)
        ids, mask = pad_ids(enc, tok, device)
        return [item.id for item in chunk], ids, mask, {p: torch.tensor(where[p], device=device) for p in positions}

    return map(batch, range(0, len(items), batch_size))


def gather(acts: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Row ``i`` of ``acts [batch, seq, ...]`` at position ``index[i]``, as float32 on the CPU."""
    return acts[torch.arange(acts.shape[0], device=acts.device), index].float().cpu()


def _site_names(spec, sites, layers) -> list[str]:
    unknown = [s for s in sites if s not in SITE_KINDS]
    if unknown:
        raise RippleError(f"unknown site kind {unknown[0]!r}; record one of {', '.join(SITE_KINDS)} "
                          "(block-relative, e.g. sites=('out', 'mlp.key'))")
    layers = range(spec.depth) if layers is None else layers
    names = [act_name(i, s) for i in layers for s in sites]
    for name in names:
        resolve_site(spec, name)  # one-line error for a layer out of range
    return names


def record(model, tok, spec, items: Sequence[ProbeItem], sites: Sequence[str] = ("out",),
           layers: Sequence[int] | None = None, positions: Sequence[str] = ("subject_last", "last"),
           batch_size: int = 64, stream_to: Path | str | None = None) -> ActivationCache:
    """Activations ``blocks.{layer}.{site}@{position}`` of every item, rows in item order.

    With ``stream_to`` (an empty or new directory) each batch is also written there as
    ``chunk_00000.safetensors``, ``chunk_00001.safetensors``, ... and the returned cache is read
    back from those files. Weights, training mode and RNG state of the model are left as they were.
    """
    spec = get_spec(model) if spec is None else spec
    names = _site_names(spec, sites, layers)
    batches = _batches(model, tok, items, positions, batch_size)
    out_dir = _stream_dir(stream_to)
    chunks, paths = [], []
    with held(model, no_grad=True):
        for n, (item_ids, ids, mask, where) in enumerate(batches):
            with SiteTrace(model, spec, names, stop=True) as st:
                model(input_ids=ids, attention_mask=mask, use_cache=False)
            chunk = ActivationCache({act_name(None, name, p): gather(st[name], where[p]) for name in names
                                     for p in positions}, item_ids)
            if out_dir is None:
                chunks.append(chunk)
            else:
                paths.append(out_dir / f"chunk_{n:05d}.safetensors")
                chunk.save(paths[-1])
    if out_dir is not None:
        chunks = [ActivationCache.load(p) for p in paths]
    return ActivationCache.concat(chunks)


def _stream_dir(stream_to) -> Path | None:
    if stream_to is None:
        return None
    out = prepare_out_dir(stream_to)
    if any(out.glob("chunk_*.safetensors")):
        raise RippleError(f"{out} already holds chunk_*.safetensors files; stream to an empty directory")
    return out


def plain_hidden_states(model, tok, items: Sequence[ProbeItem], batch_size: int = 64,
                        positions: Sequence[str] = ("subject_last", "last")) -> ActivationCache:
    """HF's ``output_hidden_states`` at the same positions, no hooks.

    Sites are ``blocks.{i}.out@{position}`` for every block but the last, and ``final_norm@{position}``
    (HF's last hidden state is the final norm applied to the last block's output).
    """
    names = [act_name(i, "out") for i in range(get_spec(model).depth - 1)] + ["final_norm"]
    chunks = []
    with held(model, no_grad=True):
        for item_ids, ids, mask, where in _batches(model, tok, items, positions, batch_size):
            out = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)
            chunks.append(ActivationCache({act_name(None, name, p): gather(h, where[p])
                                           for name, h in zip(names, out.hidden_states[1:]) for p in positions},
                                          item_ids))
    return ActivationCache.concat(chunks)
