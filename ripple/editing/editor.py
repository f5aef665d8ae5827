"""The :class:`Editor` record and the editor registry, :data:`EDITORS`.

An editor is declared once, in its own file under :mod:`ripple.editing.editors`, and everything
else (the session, the audit, stress, the CLI's help, the benchmarks) reads the registry.

>>> get_editor("rome").one_request_per_solve
True
>>> sorted(EDITORS.names())
['alphaedit', 'emmet', 'ft', 'memit', 'rledit', 'rome']
>>> get_editor("romee")
Traceback (most recent call last):
...
ripple.errors.RippleError: unknown editing method 'romee'; choose one of alphaedit, emmet, ft, memit, rledit, rome (RECT is an option on any of them: rect=0.4)

Adding an editor is one file that builds an :class:`EditDelta` and registers itself::

    @dataclass(frozen=True)
    class ScaleHParams(RomeHParams):       # layers, fact token, guard, rect: inherited
        factor: float = 0.01

    def compute(ctx, requests, hp):
        t0 = time.perf_counter()
        (layer,) = hp.layers_for(ctx.n_layers())
        name = mlp_out_param(ctx.spec, layer)
        W = ctx.model.get_parameter(name).detach().float().cpu()
        return make_delta(ctx, "scale", requests, hp, {name: hp.factor * W}, {"layers": [layer]}, t0)

    EDITORS.register(Editor("scale", ScaleHParams, compute, one_request_per_solve=True))

(tests/test_editor_registry.py runs such an editor through ``ripple edit`` and ``ripple audit``.)
"""

from __future__ import annotations

import importlib.util
import pkgutil
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ripple.editing.variant import Variant
from ripple.errors import RippleError
from ripple.registry import Registry

if TYPE_CHECKING:  # torch stays out of the CLI's start-up (argument errors, --help, organism show)
    from ripple.editing.delta import EditDelta


@dataclass(frozen=True)
class Editor:
    """One editing method.

    * ``compute(ctx, requests, hp) -> EditDelta`` computes the edit and never changes the model;
    * ``hparams``: its frozen hyperparameter dataclass (defaults are the dataclass's);
    * ``arch_defaults``: ``{model_type: {field: value}}`` from the papers' settings;
    * ``layers_from``: another editor whose per-architecture (and shipped) layer choice this one
      shares (EMMET takes ROME's layer, AlphaEdit MEMIT's);
    * ``one_request_per_solve``: several requests go in one after another, never as one batch;
    * ``reads_key_stats``: its solve reads the key second moments ``ctx.C`` at its edit layers
      (computed once and cached; ``ripple audit --workers`` computes them before the workers start);
    * ``after_apply(ctx, requests, hp, delta)``: runs once the delta is applied in a run (AlphaEdit
      adds the edit's keys to its running statistics, ``ctx.editor_state(name)``).
    """

    name: str
    hparams: type
    compute: Callable[..., EditDelta]
    one_request_per_solve: bool = False
    reads_key_stats: bool = False
    arch_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layers_from: str | None = None
    after_apply: Callable[..., None] | None = None
    summary: str = ""


#: Every editor, by name (the built-in ones register when :mod:`ripple.editing.editors` is imported).
EDITORS_PACKAGE = "ripple.editing.editors"
EDITORS: Registry[Editor] = Registry(
    "editor", builtins=EDITORS_PACKAGE,
    unknown="unknown editing method {name!r}; choose one of {available} (RECT is an option on any of them: "
            "rect=0.4)")


def get_editor(name: str) -> Editor:
    """The editor called ``name``; a one-line error listing the available ones otherwise."""
    return EDITORS.get(name)


def editor_help() -> str:
    """The editors' names for a CLI help text (RECT is an option on each), without importing them:
    the built-in editors' files (each is named as its editor) and any editor registered already."""
    spec = importlib.util.find_spec(EDITORS_PACKAGE)
    builtin = {m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)} | {"rledit"}  # a plugin
    return ", ".join(sorted(builtin | set(EDITORS.registered()))) + " (RECT on any: --rect 0.4 or rect=0.4)"


def _rect(ctx, deltas: dict, keep: float) -> dict:
    """RECT's mask on each update, by its change relative to the model's weight."""
    from ripple.devices import param_value  # lazy: start-up (the CLI reads the editor registry before torch loads)
    from ripple.editing.solvers import (
        rect_mask,  # lazy: start-up (the CLI reads the editor registry before torch loads)
    )

    return {n: rect_mask(d, param_value(ctx.model, n).float().cpu(), keep) for n, d in deltas.items()}


def with_rect(ctx, delta: EditDelta, keep: float) -> EditDelta:
    """``delta`` as its editor would have returned it with ``rect=keep``: RECT is a mask on the
    computed update, so it need not be solved again (its seconds: the edit's and the mask's)."""
    from ripple.editing.delta import EditDelta  # lazy: start-up (the CLI reads the editor registry before torch loads)

    variant = Variant.parse(delta.method)
    if variant.rect is not None:
        raise RippleError(f"the {delta.method} edit is already masked by RECT; pass the plain edit")
    t0 = time.perf_counter()
    deltas = _rect(ctx, delta.deltas, keep)
    info = dict(delta.info, seconds=round(delta.info.get("seconds", 0.0) + time.perf_counter() - t0, 4))
    return EditDelta(method=variant.with_rect(keep).name, deltas=deltas, requests=list(delta.requests),
                     hparams=dict(delta.hparams, rect=keep), info=info)


def make_delta(ctx, method: str, requests, hp, deltas: dict, info: dict, t0: float) -> EditDelta:
    """The :class:`EditDelta` an editor returns: RECT applied when ``hp.rect`` is set (the method is
    then named ``method+rect``), the requests and hyperparameters recorded, the seconds taken."""
    from ripple.editing.delta import EditDelta  # lazy: start-up (the CLI reads the editor registry before torch loads)

    if hp.rect is not None:
        deltas = _rect(ctx, deltas, hp.rect)
    info["seconds"] = round(time.perf_counter() - t0, 4)
    return EditDelta(method=Variant(method, rect=hp.rect).name, deltas=deltas,
                     requests=[r.to_dict() for r in requests], hparams=asdict(hp), info=info)
