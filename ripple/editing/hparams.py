"""Typed hyperparameters: the fields every editor shares, and resolution from defaults to overrides.

Each editor declares its own dataclass (in its file under :mod:`ripple.editing.editors`), built on
:class:`TargetHParams` (how the target value is optimized) and :class:`LayeredHParams` (which
layers it writes). Resolution order (later wins): the dataclass defaults, the editor's
``arch_defaults`` for the model's ``model_type`` (an editor with ``layers_from`` first takes that
editor's layer choice), a ``ripple_hparams.json`` file inside the model directory (how the
organism ships the settings its causal tracing chose), a user JSON file, then ``key=value``
overrides. Layers are given relative to depth (``layer_fracs``, 0 = first block, 1 = last) unless
``layers`` names them outright.

>>> hp = resolve_hparams("rome", "gpt2", n_layers=48)
>>> hp.layers_for(48)
(17,)
>>> resolve_hparams("memit", "gptj", n_layers=28, overrides=["lam=20000"]).lam
20000.0
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ripple.arch import fraction_to_layer
from ripple.errors import RippleError

LAYER_KEYS = ("layer_fracs", "layers")


@dataclass(frozen=True)
class TargetHParams:
    """How the target value (ROME's v*, MEMIT's z) is optimized."""

    fact_token: str = "subject_last"  # subject_last | subject_first | last
    v_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    kl_factor: float = 0.0625
    clamp_norm_factor: float = 4.0
    kl_prompts: tuple[str, ...] = ("{} is a",)
    context_prefixes: int = 10  # generated prefixes (ROME averages keys and loss over ~20)
    prefix_tokens: int = 5
    early_stop_loss: float = 0.05
    seed: int = 0
    stats_samples: int = 20000
    max_update_ratio: float = 2.0  # the collapse guard: refuse ‖ΔW‖/‖W‖ above this unless forced
    rect: float | None = None  # keep only this top share of the update by relative change (RECT: 0.4)


@dataclass(frozen=True)
class LayeredHParams(TargetHParams):
    """Which blocks' MLP output projections an editor writes."""

    layer_fracs: tuple[float, ...] = (0.35,)
    layers: tuple[int, ...] | None = None

    def layers_for(self, n_layers: int) -> tuple[int, ...]:
        if self.layers is not None:
            return tuple(self.layers)
        return tuple(sorted({fraction_to_layer(n_layers, f) for f in self.layer_fracs}))


def _cast(f, value: str):
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if "tuple" in t:
        items = [x for x in value.strip("()[] ").split(",") if x.strip()]
        conv = int if "int" in t and "float" not in t else (float if "float" in t else str)
        return tuple(conv(x) for x in items)
    if value.lower() == "none" and "None" in t:
        return None
    if t.startswith("int"):
        return int(value)
    if t.startswith("float"):
        return float(value)
    return value


def _apply(hp, values: dict, where: str):
    known = {f.name: f for f in fields(hp)}
    for k in values:
        if k not in known:
            raise RippleError(f"unknown hyperparameter {k!r} for {type(hp).__name__} in {where}; "
                              f"known: {', '.join(sorted(known))}")
    conv = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return replace(hp, **conv)


def _layers_only(values) -> dict:
    return {k: v for k, v in (values or {}).items() if k in LAYER_KEYS}


def resolve_hparams(method: str, model_type: str, n_layers: int | None = None, model_dir: str | Path | None = None,
                    json_file: str | Path | None = None, overrides: list[str] = ()):
    """The hyperparameters for editor ``method`` on a ``model_type`` (see the module docstring)."""
    from ripple.editing.editor import get_editor

    editor = get_editor(method)
    hp = editor.hparams()
    base = get_editor(editor.layers_from) if editor.layers_from else None
    if base is not None:
        hp = _apply(hp, _layers_only(base.arch_defaults.get(model_type)), f"{model_type} defaults")
    hp = _apply(hp, dict(editor.arch_defaults.get(model_type, {})), f"{model_type} defaults")
    if model_dir is not None and (Path(model_dir) / "ripple_hparams.json").exists():
        shipped_path = Path(model_dir) / "ripple_hparams.json"
        try:
            shipped = json.loads(shipped_path.read_text())
        except json.JSONDecodeError as e:
            raise RippleError(f"{shipped_path} is not valid JSON (line {e.lineno}); fix or remove it") from None
        shipped = {k: v for k, v in shipped.items() if not k.startswith("_")}  # "_source" etc.: notes
        inherited = _layers_only(shipped.get(base.name)) if base is not None else {}
        hp = _apply(hp, {**shipped.get("all", {}), **inherited, **shipped.get(method, {})}, "ripple_hparams.json")
    if json_file is not None:
        p = Path(json_file)
        if not p.is_file():
            raise RippleError(f"hyperparameter file {p} does not exist")
        try:
            hp = _apply(hp, json.loads(p.read_text()), str(p))
        except json.JSONDecodeError as e:
            raise RippleError(f"hyperparameter file {p} is not valid JSON (line {e.lineno}); fix it") from None
    for pair in overrides:
        if "=" not in pair:
            raise RippleError(f"bad hyperparameter override {pair!r}; write NAME=VALUE, e.g. v_steps=30")
        k, v = pair.split("=", 1)
        known = {f.name: f for f in fields(hp)}
        if k not in known:
            raise RippleError(f"unknown hyperparameter {k!r} for {method}; known: {', '.join(sorted(known))}")
        try:
            hp = replace(hp, **{k: _cast(known[k], v)})
        except ValueError:
            raise RippleError(f"bad value {v!r} for hyperparameter {k!r}; write a number, or a list "
                              f"as 3,4,5") from None
    if hp.fact_token not in ("subject_last", "subject_first", "last"):
        raise RippleError(f"unknown fact_token {hp.fact_token!r}; use subject_last, subject_first or last")
    if n_layers is not None:
        bad = [i for i in hp.layers_for(n_layers) if not 0 <= i < n_layers]
        if bad:
            raise RippleError(f"layer {bad[0]} is out of range for a {n_layers}-layer model; use 0..{n_layers - 1}")
    return hp
