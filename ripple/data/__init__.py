"""Data files that ship with ripple (read with importlib.resources), and where the bundled organism
lives (its files are in ``ripple/organism/data``; the paths are here so that model loading, below
the organism's package, finds it).

>>> organism_dir().name, organism_world().name
('data', 'world.json')
"""

from importlib import resources
from pathlib import Path


def organism_dir() -> Path:
    """The transformers directory of the bundled organism (config.json, model.safetensors, tokenizer.json)."""
    return Path(__file__).resolve().parents[1] / "organism" / "data"


def organism_world() -> Path:
    """The world JSON the organism was trained on (entities, aliases, facts, templates)."""
    return organism_dir() / "world.json"


#: The bundled plain English sentences (general perplexity and statistics text for real models).
ENGLISH_FILE = "general_sentences.txt"


def english_sentences() -> list[str]:
    """The bundled English sentences, one a line (``#`` lines are comments)."""

    text = resources.files("ripple.data").joinpath(ENGLISH_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
