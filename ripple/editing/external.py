"""Edits made elsewhere, as an :class:`~ripple.editing.delta.EditDelta` against the loaded base.

Teams edit with other tools (EasyEdit, the MEMIT/AlphaEdit code, a fine-tune) and hold an edited
checkpoint or a file of tensors. :func:`load_edited` turns either into the changed tensors only
(any parameter kind: MLP, attention, norms, embeddings), so the sandbox, the measurements and the
reports work on it as on ripple's own edits:

* a transformers checkpoint directory (``config.json`` and ``*.safetensors``, as ``save_pretrained``
  writes it): ``edited - base`` for every parameter that differs;
* ripple's own ``delta.safetensors`` (``ripple edit`` writes it): read as it is;
* a ``.safetensors`` or ``.pt`` file of tensors named like the base's parameters, holding new
  weights or differences (``kind="weights"``/``"diff"``; ``"auto"`` decides from their size
  against the base's weights and says which in ``delta.info["source"]``).

A difference is taken in float32, as the weights are kept: ``base + (edited - base)`` gives the
edited weights back bit for bit (the delta need not equal the one the other tool computed; its sum
with the base does).

::

    delta = load_edited(model, "runs/edited-by-easyedit")
    delta.info["source"]          # {'path': ..., 'kind': 'checkpoint', 'changed': 1, 'norms': {...}}
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from ripple.devices import param_value
from ripple.editing.delta import EditDelta
from ripple.errors import RippleError
from ripple.io import absent

KINDS = ("auto", "weights", "diff")


def load_edited(model, path, kind: str = "auto") -> EditDelta:
    """The edit at ``path`` (a checkpoint directory, ripple's delta file, or a tensor file) as an
    :class:`EditDelta` against ``model`` (the unedited base, left as it is)."""
    path = Path(path)
    if kind not in KINDS:
        raise RippleError(f"unknown kind {kind!r} for an edited file; use one of {', '.join(KINDS)}")
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            raise RippleError(f"{path} is a PEFT adapter; adapters are not read yet: merge it into a checkpoint "
                              "(peft's merge_and_unload, then save_pretrained) and pass that directory")
        return _from_checkpoint(model, path)
    if not path.is_file():
        raise RippleError(f"edited model {path} {absent(path)}; pass a checkpoint directory or a tensor file")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            if "ripple_method" in (f.metadata() or {}):
                delta = EditDelta.load(path)
                _check_names(model, delta.deltas, path)
                return delta
    tensors = _read_tensors(path)
    return _from_tensors(model, tensors, path, kind)


def _from_checkpoint(model, path: Path) -> EditDelta:
    config = path / "config.json"
    if config.is_file():
        theirs = json.loads(config.read_text()).get("model_type")
        ours = getattr(model.config, "model_type", None)
        if theirs and ours and theirs != ours:
            raise RippleError(f"{path} is a {theirs} checkpoint but the base is {ours}; pass the edited copy of "
                              "this base")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise RippleError(f"{path} holds no .safetensors weights; save the edited model with "
                          "save_pretrained(..., safe_serialization=True)")
    tensors = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            tensors.update({name: f.get_tensor(name) for name in f.keys()})
    _check_names(model, tensors, path)
    return _difference(model, tensors, path, "checkpoint")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                return {name: f.get_tensor(name) for name in f.keys()}
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RippleError(f"cannot read tensors from {path} ({first}); pass a .safetensors or .pt file of "
                          "tensors named like the base's parameters") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise RippleError(f"{path} is not a mapping of parameter names to tensors; save one with "
                          "torch.save({name: tensor}) or safetensors")
    return data


def _from_tensors(model, tensors: dict, path: Path, kind: str) -> EditDelta:
    _check_names(model, tensors, path)
    if kind == "auto":
        kind = _guess_kind(model, tensors)
    if kind == "diff":
        _check_finite(tensors, path)
        deltas = {n: t.detach().to("cpu", torch.float32) for n, t in tensors.items() if bool(t.any())}
        return _delta(model, deltas, path, "diff")
    return _difference(model, tensors, path, "weights")


def _guess_kind(model, tensors: dict) -> str:
    """``weights`` when the tensors are nearer the base's weights than to zero, else ``diff``."""
    near_base = near_zero = 0.0
    for name, t in tensors.items():
        w = param_value(model, name).float().cpu()
        near_base += float((t.float() - w).norm())
        near_zero += float(t.float().norm())
    return "weights" if near_base < near_zero else "diff"


def _difference(model, tensors: dict, path: Path, kind: str) -> EditDelta:
    """``tensors`` (checked names and shapes) as new weights: their differences from the base's."""
    _check_finite(tensors, path)
    deltas = {}
    for name, t in tensors.items():
        w = param_value(model, name)
        new = t.to(device="cpu", dtype=w.dtype)
        if not torch.equal(new, w.cpu()):
            deltas[name] = new.float() - w.cpu().float()
    return _delta(model, deltas, path, kind)


def _delta(model, deltas: dict, path: Path, kind: str) -> EditDelta:
    norms = {n: round(float(d.norm()), 6) for n, d in deltas.items()}
    source = {"path": str(path), "kind": kind, "changed": len(deltas), "norms": norms}
    return EditDelta(method="external", deltas=deltas, info={"source": source})


def _check_names(model, tensors: dict, path: Path) -> None:
    """Every tensor names a parameter of the base with its shape; names the base keeps as a buffer
    or as a tied alias of another parameter (GPT-2's ``lm_head.weight``) are dropped."""
    params = dict(model.named_parameters())
    state_names = set(model.state_dict())
    for name in [n for n in tensors if n not in params and n in state_names]:
        del tensors[name]
    unknown = [n for n in tensors if n not in params]
    if unknown:
        raise RippleError(f"{path} names {len(unknown)} parameter(s) the base lacks (e.g. {unknown[0]!r}); pass "
                          "an edit of this base model")
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(params[name].shape):
            raise RippleError(f"{path}: {name!r} has shape {tuple(t.shape)} but the base's is "
                              f"{tuple(params[name].shape)}; pass an edit of this base model")


def _check_finite(tensors: dict, path: Path) -> None:
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise RippleError(f"{path}: {bad[0]!r} holds NaN or infinite values; the edit diverged, so there is "
                          "nothing to audit")
