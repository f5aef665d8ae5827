"""Where RLEdit hypernetworks live: the one shipped with the organism, and those ``ripple rledit
train`` caches per model (``$RIPPLE_CACHE/rledit/<model_type>-<embedding digest>``)."""

from __future__ import annotations

import json
from pathlib import Path

from ripple import data as ripple_data
from ripple.errors import RippleError
from ripple.io import cache_dir
from ripple.rledit.hypernet import META, model_identity


def shipped_dir() -> Path:
    """The organism's hypernetwork, inside the package."""

    return ripple_data.organism_dir() / "rledit"


def cache_dir_for(identity: dict) -> Path:

    return cache_dir() / "rledit" / f"{identity['model_type']}-{identity['embedding_sha256']}"


def _trained_for(directory: Path, identity: dict) -> bool:
    try:
        return json.loads((directory / META).read_text()).get("model") == identity
    except (OSError, ValueError):
        return False


def find_hypernet(model, spec, given) -> Path:
    """``given`` if set; else the shipped or cached hypernetwork trained for this model; else a
    one-line error naming the command that trains one."""
    if given:
        return Path(given).expanduser()
    identity = model_identity(model, spec)
    for directory in (shipped_dir(), cache_dir_for(identity)):
        if _trained_for(directory, identity):
            return directory
    raise RippleError(f"no RLEdit hypernetwork for this {identity['model_type']} model; train one with "
                      "'ripple rledit train --model M' (it is cached for later runs) or pass --hypernet DIR")
