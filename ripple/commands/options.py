"""Typed, ranged command-line values: a bad one is a one-line argparse error naming the option.

>>> count("3"), share("0.4"), positive("2.5")
(3, 0.4, 2.5)
>>> count("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a whole number of at least 1, got '0'
>>> share("1.5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a share in (0, 1], got '1.5'
"""

from __future__ import annotations

import argparse
import math

from ripple.editing.limits import AT_LEAST_0, AT_LEAST_1, POSITIVE, SHARE, Limit


def _number(value: str, kind=float):
    try:
        x = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'}, "
                                         f"got {value!r}") from None
    if kind is float and not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value!r}")
    return x


def ranged(limit: Limit):
    """An argparse ``type`` for numbers within ``limit`` (whole numbers when ``limit.integer``)."""

    def parse(value: str):
        x = _number(value, int if limit.integer else float)
        problem = limit.problem(x)
        if problem:
            raise argparse.ArgumentTypeError(f"must be {problem}, got {value!r}")
        return x

    return parse


count = ranged(AT_LEAST_1)  # steps, requests, samples, windows, documents
natural = ranged(AT_LEAST_0)  # a seed, a neighbour count
positive = ranged(POSITIVE)  # a noise scale
share = ranged(SHARE)  # RECT's kept share
open_share = ranged(Limit(0, 1, lo_open=True, hi_open=True, text="between 0 and 1 (a share, both ends excluded)"))
ratio_above_one = ranged(Limit(1, lo_open=True, text="above 1 (a rise)"))


def text(value: str) -> str:
    """A non-empty string."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value
