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
from typing import ClassVar

from ripple.arch import fraction_to_layer
from ripple.editing.editor import EDITORS, get_editor
from ripple.editing.limits import AT_LEAST_0, AT_LEAST_1, NON_NEGATIVE, POSITIVE, SHARE, UNIT, Limit, check_field
from ripple.errors import RippleError
from ripple.io import absent, loads_json

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

    LIMITS: ClassVar[dict[str, Limit]] = {
        "v_steps": AT_LEAST_1, "v_lr": POSITIVE, "v_weight_decay": NON_NEGATIVE, "kl_factor": NON_NEGATIVE,
        "clamp_norm_factor": POSITIVE, "context_prefixes": AT_LEAST_0, "prefix_tokens": AT_LEAST_1,
        "early_stop_loss": NON_NEGATIVE, "seed": AT_LEAST_0, "stats_samples": AT_LEAST_1,
        "max_update_ratio": POSITIVE, "rect": SHARE}


@dataclass(frozen=True)
class LayeredHParams(TargetHParams):
    """Which blocks' MLP output projections an editor writes."""

    layer_fracs: tuple[float, ...] = (0.35,)
    layers: tuple[int, ...] | None = None

    LIMITS: ClassVar[dict[str, Limit]] = {"layer_fracs": UNIT}  # layers: checked against the model's depth

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
    for k, v in values.items():
        if k not in known:
            raise RippleError(f"unknown hyperparameter {k!r} for {type(hp).__name__} in {where}; "
                              f"known: {', '.join(sorted(known))}")
        check_field(type(hp), k, v, where)
    conv = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return replace(hp, **conv)


def _for_method(data: dict, method: str, base) -> dict:
    """A settings object laid out per method (``{"all": ..., "rome": ..., "_note": ...}``, as a model
    directory's ``ripple_hparams.json``) narrowed to ``method``: ``all``, then the layer choice of
    the editor it takes layers from, then its own section."""
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_source" etc.: notes
    inherited = _layers_only(data.get(base.name)) if base is not None else {}
    return {**data.get("all", {}), **inherited, **data.get(method, {})}


def _is_per_method(data: dict) -> bool:

    keys = [k for k in data if not k.startswith("_")]
    return bool(keys) and all(k == "all" or k in EDITORS for k in keys) and all(
        isinstance(data[k], dict) for k in keys)


def _read_json(path: Path, what: str) -> dict:
    """The JSON object in ``path``; one-line errors for a folder, non-text, bad JSON, a non-object."""
    if path.is_dir():
        raise RippleError(f"{what} {path} is a directory; pass a JSON file")
    if not path.is_file():
        raise RippleError(f"{what} {path} {absent(path)}")
    try:
        data = loads_json(path.read_bytes().decode("utf-8"), path)
    except UnicodeDecodeError as e:
        raise RippleError(f"{what} {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at {e.start}); "
                          "pass a JSON file") from None
    except json.JSONDecodeError as e:
        raise RippleError(f"{what} {path} is not valid JSON (line {e.lineno}); fix it") from None
    except PermissionError:
        raise RippleError(f"{what} {path} cannot be read (permission denied)") from None
    if not isinstance(data, dict):
        raise RippleError(f"{what} {path} must hold a JSON object of NAME: VALUE, got a {type(data).__name__}")
    return data


def _layers_only(values) -> dict:
    return {k: v for k, v in (values or {}).items() if k in LAYER_KEYS}


def apply_overrides(hp, overrides, what: str):
    """``hp`` with ``NAME=VALUE`` overrides applied, each cast to its field's type and checked
    (``what`` names the method in the errors)."""
    for pair in overrides:
        if "=" not in pair:
            raise RippleError(f"bad hyperparameter override {pair!r}; write NAME=VALUE, e.g. v_steps=30")
        k, v = pair.split("=", 1)
        known = {f.name: f for f in fields(hp)}
        if k not in known:
            raise RippleError(f"unknown hyperparameter {k!r} for {what}; known: {', '.join(sorted(known))}")
        try:
            value = _cast(known[k], v)
        except ValueError:
            raise RippleError(f"bad value {v!r} for hyperparameter {k!r}; write a number, or a list "
                              f"as 3,4,5") from None
        check_field(type(hp), k, value, f"--set {pair}")
        hp = replace(hp, **{k: value})
    return hp


def resolve_hparams(method: str, model_type: str, n_layers: int | None = None, model_dir: str | Path | None = None,
                    json_file: str | Path | None = None, overrides: list[str] = ()):
    """The hyperparameters for editor ``method`` on a ``model_type`` (see the module docstring)."""

    editor = get_editor(method)
    hp = editor.hparams()
    base = get_editor(editor.layers_from) if editor.layers_from else None
    if base is not None:
        hp = _apply(hp, _layers_only(base.arch_defaults.get(model_type)), f"{model_type} defaults")
    hp = _apply(hp, dict(editor.arch_defaults.get(model_type, {})), f"{model_type} defaults")
    if model_dir is not None and (Path(model_dir) / "ripple_hparams.json").exists():
        shipped_path = Path(model_dir) / "ripple_hparams.json"
        shipped = _read_json(shipped_path, "the model's hyperparameter file")
        hp = _apply(hp, _for_method(shipped, method, base), str(shipped_path))
    if json_file is not None:
        p = Path(json_file)
        data = _read_json(p, "hyperparameter file")
        hp = _apply(hp, _for_method(data, method, base) if _is_per_method(data) else data, str(p))
    hp = apply_overrides(hp, overrides, method)
    if hp.fact_token not in ("subject_last", "subject_first", "last"):
        raise RippleError(f"unknown fact_token {hp.fact_token!r}; use subject_last, subject_first or last")
    bad = [p for p in hp.kl_prompts if "{}" not in p]
    if bad:
        raise RippleError(f"kl_prompts {bad[0]!r} has no {{}} for the subject; write e.g. \"{{}} is a\"")
    if n_layers is not None:
        bad = [i for i in hp.layers_for(n_layers) if not 0 <= i < n_layers]
        if bad:
            raise RippleError(f"layer {bad[0]} is out of range for a {n_layers}-layer model; use 0..{n_layers - 1}")
    return hp
