"""Mitigations: methods that revise an applied edit to undo its unintended impact (SIR, issue 13).

A :class:`Mitigation` is declared once, in its own file in this package, and registered in
:data:`MITIGATIONS`; none is built in yet.

>>> MITIGATIONS.names()
()
>>> MITIGATIONS.get("sir")
Traceback (most recent call last):
...
ripple.errors.RippleError: unknown mitigation 'sir'; available: none yet
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ripple.registry import Registry


@dataclass(frozen=True)
class Mitigation:
    """``compute(ctx, run, hp) -> EditDelta``: a correction to apply on top of the edit ``run``
    (an :class:`~ripple.editing.session.EditRun`); like an editor, it never changes the model."""

    name: str
    hparams: type
    compute: Callable
    summary: str = ""


MITIGATIONS: Registry[Mitigation] = Registry("mitigation")
