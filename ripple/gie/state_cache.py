"""The unedited model's probe states, cached on disk (:func:`cached_states`).

Every audit, graph and mitigation of a model measures the same probe set on the same unedited
weights before its edit: on SmolLM2 that pass over 830 items is about a fifth of a later audit's
time (reports/first_audit.md). The state is kept once per model weights, probe items, layers
and measuring code (``$RIPPLE_CACHE/probe_states``) and read back exactly: a cached state is the
tensors the pass wrote, so an audit that reads it reports what one that measured would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ripple import hooks, scoring, tokens
from ripple.devices import input_device
from ripple.editing.stats import model_fingerprint
from ripple.gie import measure as measure_module
from ripple.gie.measure import ItemState, measure_items
from ripple.io import atomic_write_bytes, cache_dir
from ripple.probes import record
from ripple.probes.sets import ProbeItem

_FORMAT = "ripple-probe-state-1"


def state_path(model, tok, items: Sequence[ProbeItem], layers: Sequence[int] | None) -> Path:
    """Where the unedited state of ``items`` on ``model`` is kept: named by the weights' fingerprint,
    the items, the layers, the precision and device, and the source of the code that measures."""
    code = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (measure_module, scoring, tokens, record, hooks))
    key = json.dumps([model_fingerprint(model, tok, -1), str(model.dtype), str(input_device(model)),
                      None if layers is None else list(layers), [list(map(str, dataclasses.astuple(i))) for i in items],
                      hashlib.sha256(code.encode()).hexdigest()])
    return cache_dir() / "probe_states" / f"state-{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"


def _write(path: Path, state: ItemState) -> None:
    from safetensors.torch import save  # lazy: heavy

    tensors = {site: state.acts[site].contiguous() for site in state.acts}
    tensors["__logp"] = state.logp.contiguous()
    tensors["__correct"] = torch.tensor(state.correct, dtype=torch.bool)
    meta = {"format": _FORMAT, "ids": json.dumps(list(state.ids)), "greedy": json.dumps(list(state.greedy)),
            "layers": json.dumps(list(state.layers)), "last": json.dumps("last" in state.positions)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _read(path: Path, items: Sequence[ProbeItem]) -> ItemState | None:
    from safetensors import SafetensorError, safe_open  # lazy: heavy

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                return None
            ids, layers = json.loads(meta["ids"]), json.loads(meta["layers"])
            if ids != [item.id for item in items]:
                return None
            reps = {L: f.get_tensor(f"{measure_module._site(L, 'subject_last')}") for L in layers}
            last = {L: f.get_tensor(f"{measure_module._site(L, 'last')}") for L in layers} if json.loads(meta["last"]) else None
            return ItemState(ids, reps, json.loads(meta["greedy"]), f.get_tensor("__logp"),
                             f.get_tensor("__correct").tolist(), last=last)
    except (OSError, ValueError, KeyError, SafetensorError):
        return None  # damaged or another format: measured again


def cached_states(model, tok, spec, items: Sequence[ProbeItem], layers: Sequence[int] | None = None) -> ItemState:
    """:func:`~ripple.gie.measure.measure_items` of the model as it is now, read from the cache when
    this model, these items and layers were measured before by the same code; else measured and
    kept (a read-only cache: measured every time)."""
    path = state_path(model, tok, items, layers)
    if path.is_file():
        got = _read(path, items)
        if got is not None:
            return got
    state = measure_items(model, tok, spec, items, layers)
    try:
        _write(path, state)
    except OSError:
        pass  # a read-only cache: measure again next time
    return state


def concat_states(states: Sequence[ItemState]) -> ItemState:
    """One state of the rows of ``states`` in order (each measured over the same layers)."""
    if len(states) == 1:
        return states[0]
    layers = states[0].layers
    with_last = all("last" in s.positions for s in states)
    return ItemState([i for s in states for i in s.ids], {L: torch.cat([s.reps[L] for s in states]) for L in layers},
                     [g for s in states for g in s.greedy], torch.cat([s.logp for s in states]),
                     [c for s in states for c in s.correct],
                     last={L: torch.cat([s.last[L] for s in states]) for L in layers} if with_last else None)
