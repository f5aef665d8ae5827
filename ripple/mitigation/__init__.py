"""Mitigations: methods that revise an applied edit to undo its unintended impact (SIR, issue 13).

A :class:`Mitigation` is declared once, in its own file in this package, and registered in
:data:`MITIGATIONS` (the built-in ones are imported on the first look-up):

* :mod:`.sir`: SIR, selective impact revision (one revision step);
* :mod:`.run`: the GIE -> mitigation loop every mitigation shares (:func:`~ripple.mitigation.run.mitigate`).

>>> MITIGATIONS.names()
('sir',)
>>> MITIGATIONS.get("sirr")
Traceback (most recent call last):
...
ripple.errors.RippleError: unknown mitigation 'sirr'; available: sir
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ripple.registry import Registry


@dataclass(frozen=True)
class Mitigation:
    """``compute(ctx, method, requests, edit_hp, plain, damaged, hp, world, cache=None) -> (EditDelta, info)``:
    one revision of the plain edit ``plain`` (an :class:`~ripple.editing.delta.EditDelta` made by
    editor ``method`` with ``edit_hp``) given the damaged probe items (``cache``: a dict the loop
    keeps across its rounds); like an editor, it leaves the model as it found it. ``hparams``: its
    hyperparameter dataclass."""

    name: str
    hparams: type
    compute: Callable
    summary: str = ""


MITIGATIONS: Registry[Mitigation] = Registry("mitigation", builtins="ripple.mitigation.sir")


def mitigation_hparams(name: str, overrides=()):
    """Mitigation ``name``'s hyperparameters with ``NAME=VALUE`` overrides applied (one-line errors)."""
    from ripple.editing.hparams import apply_overrides  # lazy: start-up (the CLI lists MITIGATIONS before torch loads)

    return apply_overrides(MITIGATIONS.get(name).hparams(), list(overrides), name)
