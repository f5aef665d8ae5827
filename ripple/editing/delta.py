"""Edits as values: an :class:`EditDelta` holds additive weight changes, applies and undoes them.

::

    delta = EditDelta("rome", {"transformer.h.17.mlp.c_proj.weight": d}, requests=[req.to_dict()])
    delta.check_norms(model, max_ratio=0.5)          # the collapse guard; force=True skips it
    with delta.applied(model):                      # edited inside, bit-exact original after
        evaluate(model)
    delta.save("edit.safetensors"); EditDelta.load("edit.safetensors").deltas.keys()

Deltas are keyed by parameter name as ``model.named_parameters()`` gives it, in that parameter's
stored orientation (gpt2's Conv1D weights are [in, out]: see :func:`ripple.arch.out_in_to_storage`),
and are kept as float32 on the CPU. A tied alias (gpt2's ``lm_head.weight``) names the same tensor
as its source. Restoring copies the snapshotted originals back, so it is exact to the bit.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ripple.devices import add_into, assign, is_dispatched, param_value
from ripple.errors import RippleError


def _params(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Every parameter by name, tied aliases included (``lm_head.weight`` as well as ``wte.weight``)."""
    return dict(model.named_parameters(remove_duplicate=False))


def _lookup(model: torch.nn.Module, names) -> dict[str, torch.nn.Parameter]:
    """The parameters named ``names``; a one-line error for an unknown name or two names of one tensor."""
    params = _params(model)
    found: dict[str, torch.nn.Parameter] = {}
    owner: dict[int, str] = {}  # id(parameter) -> the name it was asked for under
    for name in names:
        if name not in params:
            close = difflib.get_close_matches(name, list(params), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else \
                "list valid names with [n for n, _ in model.named_parameters()]"
            raise RippleError(f"no parameter named {name!r} in {type(model).__name__}; {hint}")
        twin = owner.setdefault(id(params[name]), name)
        if twin != name:
            raise RippleError(f"{twin!r} and {name!r} are the same tied parameter; merge their deltas under one name")
        found[name] = params[name]
    return found


class WeightSnapshot:
    """Copies of some parameters' values, to put back bit-exactly with :meth:`restore`.

    ``with WeightSnapshot.take(model, names): ...`` restores on leaving the block.
    """

    def __init__(self, originals: dict[str, torch.Tensor], model: torch.nn.Module | None = None):
        self.originals = originals
        self._model = weakref.ref(model) if model is not None else None

    @classmethod
    def take(cls, model: torch.nn.Module, names, device=None) -> WeightSnapshot:
        """Snapshot the named parameters (on their own device, or on ``device``; a model spread over
        devices by accelerate keeps its snapshots on the CPU)."""

        if device is None and is_dispatched(model):
            device = "cpu"
        with torch.no_grad():
            originals = {}
            for n in _lookup(model, names):
                value = param_value(model, n)
                originals[n] = value.to(device or value.device, copy=True)
        return cls(originals, model)

    @property
    def names(self) -> list[str]:
        return list(self.originals)

    def restore(self, model: torch.nn.Module | None = None) -> None:
        """Copy the originals back into ``model`` (default: the model the snapshot was taken of)."""
        model = model if model is not None else (self._model() if self._model is not None else None)
        if model is None:
            raise RippleError("this snapshot has no model to restore; pass it: snapshot.restore(model)")
        params = _lookup(model, self.originals)
        for name, orig in self.originals.items():
            if params[name].shape != orig.shape:
                raise RippleError(f"parameter {name!r} now has shape {tuple(params[name].shape)}, "
                                  f"the snapshot {tuple(orig.shape)}; restore into the model it was taken of")

        with torch.no_grad():
            for name, orig in self.originals.items():
                assign(model, name, orig)

    def __enter__(self) -> WeightSnapshot:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def __repr__(self) -> str:
        return f"WeightSnapshot({self.names})"


def snapshot_all(model: torch.nn.Module, device="cpu") -> WeightSnapshot:
    """A backup of every parameter of ``model`` (on the CPU by default, to spare accelerator memory)."""
    return WeightSnapshot.take(model, [n for n, _ in model.named_parameters()], device=device)


def _json_meta(key: str, value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise RippleError(f"edit delta {key} cannot be saved as JSON ({exc}); keep it to plain values") from None


def _merge_meta(a: dict, b: dict) -> dict:
    return dict(a) if a == b else {"combined": [a, b]}


@dataclass(eq=False)
class EditDelta:
    """Additive changes ``W += deltas[name]`` to named parameters, with how they were made."""

    method: str
    deltas: dict[str, torch.Tensor]
    requests: list[dict] = field(default_factory=list)
    hparams: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, d in self.deltas.items():
            if not isinstance(d, torch.Tensor):
                raise RippleError(f"delta for {name!r} is a {type(d).__name__}, not a tensor")
        self.deltas = {n: d.detach().to("cpu", torch.float32).contiguous() for n, d in self.deltas.items()}

    def __repr__(self) -> str:
        shapes = {n: tuple(d.shape) for n, d in self.deltas.items()}
        return f"EditDelta(method={self.method!r}, deltas={shapes}, requests={len(self.requests)})"

    def _targets(self, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """The touched parameters, after checking every name, shape and value before any write."""
        params = _lookup(model, self.deltas)
        for name, d in self.deltas.items():
            if params[name].shape != d.shape:
                raise RippleError(f"delta for {name!r} has shape {tuple(d.shape)} but the parameter has shape "
                                  f"{tuple(params[name].shape)}; store deltas in the parameter's own layout "
                                  "(see ripple.arch.out_in_to_storage)")
            if not torch.isfinite(d).all():
                raise RippleError(f"delta for {name!r} holds NaN or infinite values; the edit diverged: "
                                  "check its hyperparameters")
        return params

    def apply(self, model: torch.nn.Module) -> WeightSnapshot:
        """Add the deltas to ``model`` in place; returns the snapshot of the original values.

        Every name and shape is checked before any weight changes, and a failure midway
        restores the snapshot before re-raising, so ``model`` is never left half-edited.
        """
        params = self._targets(model)
        snapshot = WeightSnapshot.take(model, params)
        try:
            with torch.no_grad():
                for name, d in self.deltas.items():
                    add_into(model, name, d)
        except BaseException:
            snapshot.restore(model)
            raise
        return snapshot

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Apply for the duration of a ``with`` block, restoring the originals however it ends."""
        snapshot = self.apply(model)
        try:
            yield model
        finally:
            snapshot.restore(model)

    def norm_ratios(self, model: torch.nn.Module) -> dict[str, float]:
        """``‖Δ‖_F / ‖W‖_F`` per parameter, against the model's current (unedited) weights."""

        self._targets(model)
        ratios = {}
        for name, d in self.deltas.items():
            dn = float(torch.linalg.vector_norm(d))
            wn = float(torch.linalg.vector_norm(param_value(model, name).float()))
            ratios[name] = dn / wn if wn > 0 else (0.0 if dn == 0 else float("inf"))
        return ratios

    def check_norms(self, model: torch.nn.Module, max_ratio: float, force: bool = False) -> dict[str, float]:
        """Refuse a delta whose norm ratio exceeds ``max_ratio`` (a collapsed edit) unless ``force``."""
        ratios = self.norm_ratios(model)
        worst = max(ratios, key=ratios.get, default=None)
        if not force and worst is not None and ratios[worst] > max_ratio:
            raise RippleError(f"the {self.method} delta for {worst!r} has norm ratio {ratios[worst]:.3g} "
                              f"(|delta|/|W|), over the limit {max_ratio:g}: the edit likely collapsed the model; "
                              "check its hyperparameters, or pass --force to apply it anyway")
        return ratios

    def combined(self, other: EditDelta) -> EditDelta:
        """The sum of two deltas (``self`` then ``other``, as in sequential editing)."""
        deltas = dict(self.deltas)
        for name, d in other.deltas.items():
            if name in deltas and deltas[name].shape != d.shape:
                raise RippleError(f"cannot combine deltas for {name!r}: shapes {tuple(deltas[name].shape)} "
                                  f"and {tuple(d.shape)} differ")
            deltas[name] = deltas[name] + d if name in deltas else d.clone()
        method = self.method if self.method == other.method else f"{self.method}+{other.method}"
        return EditDelta(method, deltas, [*self.requests, *other.requests],
                         _merge_meta(self.hparams, other.hparams), _merge_meta(self.info, other.info))

    def save(self, path) -> None:
        """Write a safetensors file with the method, requests, hparams and info as metadata, atomically."""

        path = Path(path)
        if not path.parent.is_dir():
            raise RippleError(f"cannot save edit delta to {path}: directory {path.parent} does not exist")
        meta = {"ripple_method": self.method, **{k: _json_meta(k, getattr(self, k))
                                                 for k in ("requests", "hparams", "info")}}
        seen: set[int] = set()
        tensors = {}
        for name, d in self.deltas.items():  # safetensors refuses tensors sharing memory
            tensors[name] = d.clone() if d.data_ptr() in seen else d
            seen.add(d.data_ptr())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path) -> EditDelta:
        """Read a file written by :meth:`save`."""

        path = Path(path)
        if not path.is_file():
            raise RippleError(f"edit delta file {path} does not exist; pass a file written by EditDelta.save")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                deltas = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for a bad header
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RippleError(f"{path} is not a ripple edit delta (not a safetensors file: {first}); "
                              "pass a file written by EditDelta.save") from None
        if "ripple_method" not in meta:
            raise RippleError(f"{path} is a safetensors file but not a ripple edit delta (no ripple_method "
                              "metadata); pass a file written by EditDelta.save")
        try:
            extra = {k: json.loads(meta.get(k, default)) for k, default in
                     (("requests", "[]"), ("hparams", "{}"), ("info", "{}"))}
        except json.JSONDecodeError as exc:
            raise RippleError(f"{path} has corrupt ripple metadata ({exc.msg}); save the delta again") from None
        return cls(meta["ripple_method"], deltas, **extra)
