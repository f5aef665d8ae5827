"""Typed, ranged command-line values: a bad one is a one-line argparse error naming the option.

>>> count("3"), share("0.4"), positive("2.5")
(3, 0.4, 2.5)
>>> count("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a whole number of at least 1 (and at most 1000000), got '0'
>>> share("1.5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a share in (0, 1], got '1.5'
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from ripple.devices import DEVICE_MAPS
from ripple.editing.limits import SHARE, Limit


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


#: The largest count an option takes: past it a run would not end in any session (or a stream of
#: requests would not fit in memory), so it is a typo.
MAX_COUNT = 1_000_000
count = ranged(Limit(1, MAX_COUNT, integer=True, text=f"a whole number of at least 1 (and at most {MAX_COUNT})"))
natural = ranged(Limit(0, MAX_COUNT, integer=True, text=f"a whole number of at least 0 (and at most {MAX_COUNT})"))
#: Seeds go to torch, numpy and random: numpy takes 0 to 2**32 - 1.
seed = ranged(Limit(0, 2**32 - 1, integer=True, text="a whole number of at least 0 (and at most 4294967295)"))
positive = ranged(Limit(0, 1e6, lo_open=True, text="a finite number above 0 (and at most 1e6)"))  # a noise scale
share = ranged(SHARE)  # RECT's kept share
open_share = ranged(Limit(0, 1, lo_open=True, hi_open=True, text="between 0 and 1 (a share, both ends excluded)"))
ratio_above_one = ranged(Limit(1, lo_open=True, text="above 1 (a rise)"))


def text(value: str) -> str:
    """A non-empty string."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


_SIZE = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)


def device_map(value: str):
    """``--device-map``: a strategy accelerate knows, or a JSON file of ``{module: device}``."""
    if value in DEVICE_MAPS:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(DEVICE_MAPS)} or a JSON file of "
                                         f"{{module: device}}, got {value!r}")
    try:
        mapping = json.loads(path.read_text())
    except RecursionError:
        raise argparse.ArgumentTypeError(f"{value} is nested too deeply to read; flatten it") from None
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{value} is not a readable JSON file ({exc})") from None
    if not isinstance(mapping, dict) or not mapping or not all(
            isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool) for k, v in mapping.items()):
        raise argparse.ArgumentTypeError(f"{value} must hold a JSON object of module name -> device "
                                         '(e.g. {"transformer.h.0": 0, "transformer.h.1": "cpu"})')
    return mapping


def max_memory(value: str) -> dict:
    """``--max-memory 0=20GiB,cpu=64GiB``: device (a GPU index, cpu, mps or disk) -> size."""
    out: dict = {}
    for part in value.split(","):
        dev, sep, size = part.strip().partition("=")
        dev, size = dev.strip(), size.strip()
        if not sep or not _SIZE.match(size) or not (dev.isdigit() or dev in ("cpu", "mps", "disk")):
            raise argparse.ArgumentTypeError(f"must be DEVICE=SIZE pairs, e.g. 0=20GiB,cpu=64GiB (devices: GPU "
                                             f"indices, cpu, mps, disk), got {part.strip()!r}")
        out[int(dev) if dev.isdigit() else dev] = size.replace(" ", "")
    return out

