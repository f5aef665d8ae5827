"""Where the bundled organism lives inside the installed package (:mod:`ripple.data` computes it,
so that model loading, below this package, finds it too).

>>> model_dir().name
'data'
"""

from pathlib import Path

import ripple.data


def model_dir() -> Path:
    """The transformers directory of the bundled organism (config.json, model.safetensors, tokenizer.json)."""
    return ripple.data.organism_dir()


def world_path() -> Path:
    """The world JSON the organism was trained on (entities, aliases, facts, templates)."""
    return ripple.data.organism_world()
