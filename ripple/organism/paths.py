"""Where the bundled organism lives inside the installed package.

>>> model_dir().name
'data'
"""

from pathlib import Path


def model_dir() -> Path:
    """The transformers directory of the bundled organism (config.json, model.safetensors, tokenizer.json)."""
    return Path(__file__).parent / "data"


def world_path() -> Path:
    """The world JSON the organism was trained on (entities, aliases, facts, templates)."""
    return model_dir() / "world.json"
