"""Statistics corpora: the text whose MLP keys give ROME/MEMIT/EMMET/AlphaEdit their second moment.

A corpus is named by a spec string (``--stats-corpus``):

=====================  ==========================================================================
spec                   text
=====================  ==========================================================================
``FILE``               a text file, one passage a line (the user's own text always wins)
``hf:NAME[:CFG[:SPLIT]]``  a ``datasets`` dataset's ``text`` column (needs a local copy offline)
``samples[:N]``        ``N`` passages sampled from the model itself (seeded; cached on disk)
``graph``              the knowledge graph's own sentences (every fact on every core template)
``english``            the 40 bundled English sentences
``world``              the organism's training text (a model with a ``world.json``)
=====================  ==========================================================================

Without a spec, a model with a world uses ``world``; any other model uses :data:`DEFAULT_REAL`,
the default chosen by ``benchmarks/real_models/stats_corpus.py`` (reports/real_models.md). Every report
names the corpus it used and its size (:class:`Corpus`).

>>> parse_spec("samples:64"), parse_spec("graph"), parse_spec("samples")
(('samples', 64), ('graph', None), ('samples', 128))
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ripple.data import english_sentences
from ripple.devices import input_device
from ripple.editing.from_world import world_corpus
from ripple.editing.stats import model_fingerprint
from ripple.errors import RippleError
from ripple.io import absent, cache_dir
from ripple.progress import bars_off
from ripple.tokens import fill

#: The statistics corpus of a model without a world, sized from the measured plateaus: single edits
#: stop improving by 1,000 key tokens on SmolLM2 and 4,000 on Gemma-3-270M (reports/scale.md), and
#: 64, 256 and 1,024 passages give the same SmolLM2 edits (reports/stats_corpus_smollm2.md); 128
#: passages of 64 tokens (about 8,000 tokens) are twice the larger plateau.
DEFAULT_REAL = "samples:128"
#: Passages sampled by ``samples`` without a count, and each passage's length in tokens.
DEFAULT_SAMPLES, SAMPLE_TOKENS = 128, 64
BUILT_IN = ("samples", "graph", "english", "world")


@dataclass(frozen=True)
class Corpus:
    """A statistics corpus and where it came from (``source``: the spec; ``passages``: its size)."""

    source: str
    lines: tuple[str, ...]

    @property
    def passages(self) -> int:
        return len(self.lines)

    def describe(self) -> dict:
        return {"source": self.source, "passages": self.passages}


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``(kind, count)`` of a built-in spec (``samples:N``, ``graph``, ``english``, ``world``); a
    one-line error for a bad count. Anything else is a file or ``hf:`` name (kind ``"file"``/``"hf"``)."""
    kind, _, count = spec.partition(":")
    if kind == "hf":
        return "hf", None
    if kind not in BUILT_IN:
        return "file", None
    if kind != "samples":
        if count:
            raise RippleError(f"--stats-corpus {spec!r}: {kind!r} takes no count; write {kind!r}")
        return kind, None
    if not count:
        return kind, DEFAULT_SAMPLES
    if not count.isdigit() or int(count) < 1:
        raise RippleError(f"--stats-corpus {spec!r}: the sample count must be a whole number of at least 1, "
                          "e.g. samples:256")
    return kind, int(count)


def sample_corpus_dir() -> Path:

    return cache_dir() / "corpora"


#: Sampling this many batches or more shows a bar on stderr (Gemma-3-270M's 1,024 passages, 32
#: batches, took half an hour on one CPU thread of a busy machine: its 262k-token vocabulary is
#: unembedded and sampled at every step).
BAR_BATCHES = 8


def model_samples(model, tok, n: int = DEFAULT_SAMPLES, seed: int = 0, tokens: int = SAMPLE_TOKENS,
                  batch_size: int = 32) -> list[str]:
    """``n`` passages of ``tokens`` tokens sampled from ``model`` (temperature 1, seeded), starting
    from its beginning-of-text token; cached on disk by the model's weights fingerprint, so the same
    model and seed give the same text without sampling again."""
    import torch  # lazy: heavy


    path = sample_corpus_dir() / f"{model_fingerprint(model, tok, -1)}-s{seed}-n{n}-t{tokens}.txt"
    if path.exists():
        return [line for line in path.read_text(encoding="utf-8").split("\n") if line]
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        raise RippleError("the tokenizer has no beginning- or end-of-text token to sample from; pass "
                          "--stats-corpus FILE")
    device = input_device(model)
    out: list[str] = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else start
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        starts = range(0, n, batch_size)
        if len(starts) >= BAR_BATCHES and not bars_off():  # minutes on a CPU: say what is going on
            from tqdm.auto import tqdm  # lazy: heavy

            starts = tqdm(starts, desc=f"sampling {n} passages for the statistics corpus (once per model)",
                          file=sys.stderr, leave=False, dynamic_ncols=True)
        for lo in starts:
            b = min(batch_size, n - lo)
            ids = torch.full((b, 1), start, dtype=torch.long, device=device)
            res = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0, top_p=1.0,
                                 temperature=1.0, max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=pad)
            out += [" ".join(tok.decode(row[1:], skip_special_tokens=True).split()) for row in res]
    out = [t for t in out if t] or ["."]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return out


def graph_sentences(world) -> list[str]:
    """Every fact of ``world`` on every core template of its relation, with its answer."""

    return [f"{fill(t, world.name(f.subject))} {world.name(f.object)}."
            for f in world.facts for t in world.relations[f.relation].templates]


def file_corpus(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise RippleError(f"statistics corpus {p} {absent(p)}; pass a text file with one passage a line, "
                          f"or one of {', '.join(BUILT_IN)}")
    lines = [x.strip() for x in p.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    if not lines:
        raise RippleError(f"statistics corpus {p} is empty; pass a text file with one passage a line")
    return lines


def load_corpus(spec: str | None, world, model=None, tok=None, seed: int = 0) -> Corpus:
    """The corpus ``spec`` names (see the module docstring); ``None``: the world's text for a model
    trained on a world, else :data:`DEFAULT_REAL`."""
    if spec is None:
        spec = "world" if world is not None and world.kind == "synthetic" else DEFAULT_REAL
    kind, count = parse_spec(spec)
    if kind == "hf":

        return Corpus(spec, tuple(dataset_corpus(spec[3:])))
    if kind == "file":
        return Corpus(f"file:{spec}", tuple(file_corpus(spec)))
    if kind == "world":
        if world is None or world.kind != "synthetic":
            raise RippleError("--stats-corpus world needs a model trained on a world (the organism); use "
                              f"{DEFAULT_REAL} or a text file")

        return Corpus("world", tuple(world_corpus(world)))
    if kind == "graph":
        if world is None:
            raise RippleError("--stats-corpus graph needs a knowledge graph; use samples or a text file")
        return Corpus("graph", tuple(graph_sentences(world)))
    if kind == "english":

        return Corpus("english", tuple(english_sentences()))
    if model is None:
        raise RippleError("--stats-corpus samples needs the model; load it first")
    return Corpus(f"samples:{count}", tuple(model_samples(model, tok, count, seed=seed)))


def dataset_corpus(spec: str, limit: int = 20000) -> list[str]:
    """Text lines of a ``datasets`` dataset (its ``text`` column), e.g. ``wikitext:wikitext-103-raw-v1:train``."""
    try:
        import datasets  # lazy: heavy (optional: only --stats-corpus hf:... needs it)
    except ImportError:
        raise RippleError("--stats-corpus hf:... needs the datasets package (pip install datasets); "
                          "or pass a text file") from None
    name, config, split = (spec.split(":") + [None, None])[:3]

    if bars_off():
        datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(name, config, split=split or "train")
    except Exception as e:  # offline, unknown name, missing config: all the same to the user
        raise RippleError(f"cannot load dataset {spec!r} ({type(e).__name__}); make it available locally "
                          "(HF_DATASETS_OFFLINE needs a cached copy) or pass a text file") from None
    if "text" not in ds.column_names:
        raise RippleError(f"dataset {spec!r} has no 'text' column (it has {', '.join(ds.column_names)})")
    return [t for t in ds["text"][:limit] if t and t.strip()]
