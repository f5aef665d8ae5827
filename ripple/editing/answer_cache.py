"""The unedited model's generated answers, cached on disk (:func:`cached_ask`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ripple import answers, generation, scoring, tokens
from ripple.devices import input_device
from ripple.editing.stats import model_fingerprint
from ripple.generation import Ask, ask
from ripple.io import atomic_write_json, cache_dir


def cached_ask(model, tok, asks: list[Ask]) -> list[bool]:
    """Whether each Ask's generated answer is right, kept on disk per model, prompts and rule
    (``$RIPPLE_CACHE/generated``): the unedited model's answers, the same for every audit or graph
    of that model."""
    rule = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (answers, generation, scoring, tokens))
    where = [str(model.dtype), str(input_device(model))]  # another precision or device may break a near tie otherwise
    key = hashlib.sha256(json.dumps([model_fingerprint(model, tok, -1), rule, where,
                                     [list(map(str, dataclasses.astuple(a))) for a in asks]]).encode()).hexdigest()[:24]
    path = cache_dir() / "generated" / f"answers-{key}.json"
    try:
        got = json.loads(path.read_text())
        if isinstance(got, list) and len(got) == len(asks):
            return [bool(x) for x in got]
    except (OSError, ValueError):
        pass
    got = [x.correct for x in ask(model, tok, asks)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, got)
    except OSError:
        pass  # a read-only cache: generate again next time
    return got
