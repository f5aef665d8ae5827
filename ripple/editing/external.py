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
  against the base's weights and says which in ``delta.info["source"]``);
* a PEFT adapter directory (``adapter_config.json``: LoRA and its variants): loaded with ``peft``
  onto a copy of the base, merged there (``merge_and_unload``), and differenced; the base itself is
  never wrapped or written.

A difference is taken in float32, as the weights are kept: ``base + (edited - base)`` gives the
edited weights back bit for bit (the delta need not equal the one the other tool computed; its sum
with the base does).

::

    delta = load_edited(model, "runs/edited-by-easyedit")
    delta.info["source"]          # {'path': ..., 'kind': 'checkpoint', 'changed': 1, 'norms': {...}}
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import safe_open

from ripple.devices import param_value
from ripple.editing.delta import EditDelta
from ripple.editing.hparams import LayeredHParams
from ripple.errors import RippleError
from ripple.io import absent

KINDS = ("auto", "weights", "diff")
#: The method name of an edit made elsewhere, in reports and in ``EditDelta.method``.
EXTERNAL = "external"


@dataclass(frozen=True)
class ExternalHParams(LayeredHParams):
    """Where an edit made elsewhere acts, for the measurements (and SIR's keys) that need it:
    ``layers``, the blocks its tensors change (empty: none), and ``fact_token`` with the context
    prefixes, the model's own editors' (``last`` for the organism, ``subject_last`` for real models).
    Nothing is solved with them: the edit is given."""

    layers: tuple[int, ...] | None = ()
    C_reg: float = 1e-6  # the key statistics' ridge, as the model's ROME reads them (SIR's re-solve)


def external_hparams(delta: EditDelta, spec, like) -> ExternalHParams:
    """The :class:`ExternalHParams` of ``delta``: its blocks, and the reading positions of ``like``
    (the model's default ROME hyperparameters)."""
    shared = {f.name: getattr(like, f.name) for f in fields(ExternalHParams) if hasattr(like, f.name)}
    return ExternalHParams(**{**shared, "layers": delta_layers(delta, spec), "layer_fracs": ()})


def load_edited(model, path, kind: str = "auto") -> EditDelta:
    """The edit at ``path`` (a checkpoint directory, ripple's delta file, or a tensor file) as an
    :class:`EditDelta` against ``model`` (the unedited base, left as it is)."""
    path = Path(path)
    if kind not in KINDS:
        raise RippleError(f"unknown kind {kind!r} for an edited file; use one of {', '.join(KINDS)}")
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return _from_adapter(model, path)
        return _from_checkpoint(model, path)
    if not path.is_file():
        raise RippleError(f"edited model {path} {absent(path)}; pass a checkpoint directory or a tensor file")
    if path.suffix == ".safetensors" and _is_ripple_delta(path):
        delta = EditDelta.load(path)
        _check_names(model, delta.deltas, path)
        _check_finite(delta.deltas, path)
        delta.info = {**(delta.info or {}), "source": source_of(delta, path, f"ripple delta ({delta.method})")}
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
    files = [f for f in sorted(path.glob("*.safetensors")) if not _is_ripple_delta(f)]  # ripple edit --out keeps one beside
    if not files:
        raise RippleError(f"{path} holds no .safetensors weights; save the edited model with "
                          "save_pretrained(..., safe_serialization=True)")
    tensors = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            tensors.update({name: f.get_tensor(name) for name in f.keys()})
    _check_names(model, tensors, path)
    return _difference(model, tensors, path, "checkpoint")


def _from_adapter(model, path: Path) -> EditDelta:
    """A PEFT adapter merged into a copy of the base, as the difference it makes to the base."""
    from peft import PeftModel  # lazy: heavy

    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RippleError(f"{path}/adapter_config.json cannot be read ({exc}); pass a PEFT adapter directory "
                          "as save_pretrained writes it") from None
    made_for = config.get("base_model_name_or_path") or "an unnamed base"
    adapter = config.get("peft_type", "adapter")
    work = copy.deepcopy(model)  # the base is never wrapped: peft injects its layers into the copy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' deprecation notes on the copy: not the user's
            merged = PeftModel.from_pretrained(work, str(path), is_trainable=False).merge_and_unload()
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise RippleError(f"the {adapter} adapter {path} does not fit this base (made for {made_for}: {first}); "
                          "pass an adapter trained on this base model") from None
    params = dict(model.named_parameters())
    tensors = {n: t.detach() for n, t in merged.named_parameters() if n in params}
    missing = [n for n in params if n not in tensors]
    if missing:
        raise RippleError(f"the {adapter} adapter {path} changed the model's structure (e.g. {missing[0]!r} is gone); "
                          "only adapters that merge into the base's weights can be audited")
    delta = _difference(model, tensors, path, f"peft {adapter.lower()} adapter")
    delta.info["source"]["adapter"] = {"peft_type": adapter, "base_model_name_or_path": config.get(
        "base_model_name_or_path"), "r": config.get("r"), "target_modules": config.get("target_modules")}
    del work, merged
    return delta


def delta_layers(delta: EditDelta, spec) -> tuple[int, ...]:
    """The blocks ``delta`` changes (in order; empty when it changes none)."""
    return tuple(sorted({b for name in delta.deltas if (b := spec.block_of(name)) is not None}))


def _is_ripple_delta(path: Path) -> bool:
    """Whether ``path`` is ripple's own delta file (its metadata names the method); an unreadable
    file is not (reading it later says what is wrong)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return "ripple_method" in (f.metadata() or {})
    except Exception:  # noqa: BLE001 (a damaged file: _read_tensors reports it in one line)
        return False


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
    delta = EditDelta(method=EXTERNAL, deltas=deltas)
    delta.info = {"source": source_of(delta, path, kind)}
    return delta


def source_of(delta: EditDelta, path, kind: str) -> dict:
    """What a report says of an edit's origin: ``path``, ``kind``, the tensors ``changed`` and their norms."""
    norms = {n: round(float(d.float().norm()), 6) for n, d in delta.deltas.items()}
    return {"path": None if path is None else str(path), "kind": kind, "changed": len(norms), "norms": norms}


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


def check_budget(delta: EditDelta, spec, n_layers: int, ranker: str | None, n_requests: int) -> None:
    """A one-line error where a budgeted measurement (``--budget``) cannot rank an external edit's
    damage: its rankers read what the edit writes into MLP output projections, and ``similarity``
    ranks by closeness to the edited fact, which a request names."""
    from ripple.arch import mlp_out_param  # lazy: start-up

    mlp = {mlp_out_param(spec, layer) for layer in range(n_layers)}
    other = [n for n in delta.deltas if n not in mlp]
    if other:
        raise RippleError(f"--budget ranks probe items by what an edit writes into MLP output projections; this edit "
                          f"also changes {other[0]!r} ({len(other)} tensor(s) in all): audit it without --budget")
    if ranker == "similarity" and n_requests == 0:
        raise RippleError("--ranker similarity ranks items by closeness to the edited fact, which no request names "
                          "here: pass --edit FILE, or another ranker")
