"""Declared types and ranges of hyperparameters, checked wherever a value comes from.

A hyperparameter dataclass declares ``LIMITS: ClassVar[dict[str, Limit]]`` for its own fields;
:func:`check_field` checks a value against the field's annotated type (``int``, ``float``,
``str``, ``tuple[...]``, ``... | None``) and the limit found along the class's bases.

>>> AT_LEAST_1.problem(0)
'a whole number of at least 1'
>>> SHARE.problem(0.4) is None, SHARE.problem(1.5)
(True, 'a share in (0, 1]')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ripple.errors import RippleError


@dataclass(frozen=True)
class Limit:
    """``lo <= value <= hi`` (``lo_open``/``hi_open``: strict), ``integer``: whole numbers only."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    text: str = ""

    def problem(self, value) -> str | None:
        """What the value must be, when it is not (None when it is fine)."""
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return self.text
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return self.text
        return None


AT_LEAST_1 = Limit(1, integer=True, text="a whole number of at least 1")
AT_LEAST_0 = Limit(0, integer=True, text="a whole number of at least 0")
POSITIVE = Limit(0, lo_open=True, text="a finite number above 0")
NON_NEGATIVE = Limit(0, text="a finite number of at least 0")
SHARE = Limit(0, 1, lo_open=True, text="a share in (0, 1]")
UNIT = Limit(0, 1, text="a number in [0, 1]")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _type_problem(annotation: str, value):
    """What the value must be for its annotated type, or None."""
    optional = "None" in annotation
    if value is None:
        return None if optional else "given (not null)"
    base = annotation.replace("| None", "").strip()
    if base.startswith("tuple"):
        item = "int" if "int" in base else "float" if "float" in base else "str"
        want = {"int": "a list of whole numbers", "float": "a list of numbers", "str": "a list of strings"}[item]
        if not isinstance(value, (list, tuple)) or (item != "str" and not value):
            return want
        return next((want for v in value if _type_problem(item, v)), None)
    if base == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if base == "float":
        return None if _is_number(value) and math.isfinite(value) else "a finite number"
    if base == "str":
        return None if isinstance(value, str) else "a string"
    return None


def limits_of(cls) -> dict[str, Limit]:
    out: dict[str, Limit] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get("LIMITS", {}))
    return out


#: No hyperparameter of any editor is sensibly larger than this (a step count, a sample count, a
#: weight): past it a value is a typo that would run for ever or exhaust memory.
CEILING = 1e9


def check_field(hp_cls, name: str, value, where: str) -> None:
    """A one-line error when ``value`` does not fit field ``name`` of ``hp_cls`` (``where``: its source).

    >>> from ripple.editing.hparams import TargetHParams
    >>> check_field(TargetHParams, "v_steps", 10**12, "--set v_steps=1000000000000")
    Traceback (most recent call last):
    ...
    ripple.errors.RippleError: hyperparameter v_steps must be at most 1e+09 in size, got 1000000000000 (--set v_steps=1000000000000)
    """
    annotation = {f.name: str(f.type) for f in fields(hp_cls)}[name]
    problem = _type_problem(annotation, value)
    limit = limits_of(hp_cls).get(name)
    if problem is None and limit is not None and value is not None:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            problem = limit.problem(v)
            if problem:
                break
    if problem is None and value is not None and not isinstance(value, str):
        if any(_is_number(v) and abs(v) > CEILING for v in (value if isinstance(value, (list, tuple)) else [value])):
            problem = f"at most {CEILING:g} in size"
    if problem:
        raise RippleError(f"hyperparameter {name} must be {problem}, got {value!r} ({where})")
