"""Everything an editing job needs, loaded once: :func:`load_setup`.

::

    setup = load_setup("organism", "rome", [EditRequest("{} was born in", "Lodro Toudein", "Kraile")])
    setup.model, setup.hp, setup.requests    # the model, ROME's hyperparameters, the completed request
    setup.hparams_for("memit")               # another editor's, on the same model
    with edited(setup.ctx, "rome", setup.requests, setup.hp) as run:
        ...

The requests are checked against the tokenizer (one-line errors), and on a model with a world
(the organism's ``world.json``) completed from it: ``target_true``, paraphrases, neighbourhood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ripple.devices import input_device
from ripple.editing.compute import opening_subject_note
from ripple.editing.context import EditContext
from ripple.editing.corpora import load_corpus
from ripple.editing.editor import get_editor
from ripple.editing.from_world import complete_from_world, in_graph, relation_of_prompt
from ripple.editing.hparams import resolve_hparams
from ripple.editing.requests import check_length, validate_for_model
from ripple.errors import RippleError
from ripple.loading import load_model
from ripple.progress import each
from ripple.tokens import answer_ids, text_ids, unknown_words
from ripple.world.generate import load_world
from ripple.world.real import real_world

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ripple.arch import ArchSpec
    from ripple.editing.corpora import Corpus
    from ripple.editing.hparams import TargetHParams
    from ripple.editing.requests import EditRequest
    from ripple.world.generate import World


def world_of(model_path: str):
    """The world a model was trained on (its ``world.json``; the organism has one), else the
    real-world knowledge graph (:func:`ripple.world.real.real_world`)."""
    world_file = Path(model_path) / "world.json"
    if not world_file.is_file():

        return real_world()

    return load_world(world_file)


@dataclass
class EditSetup:
    """The model, its world (or None), the editing context and, for one editor, its
    hyperparameters and the checked, completed requests."""

    model: PreTrainedModel
    tok: PreTrainedTokenizerBase
    spec: ArchSpec
    world: World | None
    ctx: EditContext | None = None
    method: str | None = None
    hp: TargetHParams | None = None  # the editor's own dataclass (every one is built on TargetHParams)
    requests: list[EditRequest] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the request check found (not errors)
    hparams_file: str | None = None
    corpus: Corpus | None = None  # the statistics corpus, once make_context ran

    def hparams_for(self, method: str, overrides=()):
        """``method``'s hyperparameters on this model (its shipped file, then ``hparams_file``, then
        ``overrides``)."""
        return resolve_hparams(method, self.spec.model_type, self.spec.n_layers(self.model),
                               model_dir=self.model.name_or_path, json_file=self.hparams_file,
                               overrides=list(overrides))

    def complete(self, requests) -> list:
        """``requests`` checked against the tokenizer and completed from the world (when there is one);
        warnings (an edit the model already makes) go to ``self.warnings``."""
        if self.world is not None and self.world.kind == "real":
            requests = self.with_current_answers(requests)
        self.warnings += validate_for_model(requests, self.tok, self.model, progress=True)
        if self.world is None:
            return list(requests)

        done = [complete_from_world(self.world, r) for r in each(requests, "completing requests from the world")]
        if self.world.kind != "real":
            return done
        from ripple.editing.open_world import complete_open  # lazy: cycle

        return [r if in_graph(self.world, r) and r.paraphrase_prompts and r.neighborhood_prompts
                else complete_open(self.model, self.tok, r) for r in each(done, "building open-world probes")]

    def with_current_answers(self, requests) -> list:
        """Requests without ``target_true`` whose target the real-world graph already holds (a fix of
        a wrong answer) get the model's current answer as ``target_true``: the old answer to race."""
        world, out = self.world, []
        for r in requests:
            try:
                subject = world.id_of(r.subject)
                new = world.id_of(r.target_new)
            except KeyError:
                out.append(r)
                continue
            rel = relation_of_prompt(world, r.prompt, world.entities[subject].type)
            if r.target_true is None and rel is not None and new in world.objects(subject, rel.name):
                names = [e.name for e in world.of_type(rel.object_type)]
                said = said_answer(greedy_text(self.model, self.tok, r.rendered), names)
                if said and said != r.target_new:
                    r = replace(r, target_true=said,
                                sources=(*r.sources, ("target_true", "model belief (its answer before the edit)")))
            out.append(r)
        return out

    @property
    def context_length(self) -> int | None:
        """The model's context in tokens (None when its config does not say)."""
        return self.spec.context_length(self.model)

    def check_probes(self, items) -> None:
        """A one-line error for a probe item longer than the model's context, and for a probe set
        with items the model cannot read (words its tokenizer maps to the unknown token: e.g. the
        real-world graph on the organism's whole-word vocabulary), which would be scored as noise."""

        unreadable = [(item, words) for item in items
                      if (words := unknown_words(self.tok, item.rendered) + unknown_words(self.tok, " " + item.answer))]
        if unreadable:
            first, words = unreadable[0]
            raise RippleError(f"the probe set has {len(unreadable)} of {len(items)} items the model cannot read "
                              f"(e.g. {first.id}: {first.rendered!r} -> {first.answer!r}; {words[0]!r} tokenizes to "
                              "the unknown token); pass a probe set in the model's vocabulary with --probes")
        for item in items:
            check_length(self.tok, [item.rendered], self.context_length, f"probe item {item.id}:",
                         room=len(answer_ids(self.tok, item.answer)))

    def make_context(self, stats_corpus_file: str | None = None) -> EditContext:
        """Build ``self.ctx`` with the statistics corpus named by ``stats_corpus_file`` (a file,
        ``hf:NAME``, ``samples:N``, ``graph``, ``english``; see :mod:`ripple.editing.corpora`),
        by default the world's text for a model trained on one, else the measured default."""
        self.corpus = load_corpus(stats_corpus_file, self.world, self.model, self.tok)
        self.ctx = EditContext(self.model, self.tok, self.spec, list(self.corpus.lines))
        return self.ctx


def load_setup(model: str = "organism", method: str | None = None, requests=(), hparams_file: str | None = None,
               overrides=(), stats_corpus_file: str | None = None, context: bool = True,
               dtype: str | None = None, **placement) -> EditSetup:
    """Load ``model`` ('organism', a local directory or a hub id), resolve ``method``'s
    hyperparameters (when given), check and complete ``requests``, and build the context with the
    statistics corpus (``context=False``: later, with :meth:`EditSetup.make_context`); ``dtype``:
    the weights' dtype (float32 by default; the solve runs in float64, the delta is kept in float32
    and applied in this dtype); ``placement``: :func:`~ripple.loading.load_model`'s ``device``,
    ``device_map``, ``max_memory`` and ``offload_folder``; one-line
    :class:`~ripple.errors.RippleError` for every bad input."""

    model_, tok, spec = load_model(model, dtype=dtype, **placement)
    setup = EditSetup(model_, tok, spec, world_of(model_.name_or_path), hparams_file=hparams_file)
    if method is not None:
        setup.method, setup.hp = method, setup.hparams_for(method, overrides)
    setup.requests = setup.complete(requests) if requests else []
    if setup.hp is not None:
        if get_editor(method).reads_key_stats:  # the editors that write a subject's key
            notes = (opening_subject_note(tok, r, setup.hp.fact_token) for r in setup.requests)
            setup.warnings += [n for n in notes if n]
    if context:
        setup.make_context(stats_corpus_file)
    return setup


@torch.no_grad()
def greedy_text(model, tok, prompt: str, max_new_tokens: int = 6) -> str:
    """The model's greedy continuation of ``prompt`` (a few tokens, decoded)."""

    device = input_device(model)
    ids = torch.tensor([text_ids(tok, prompt)], device=device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
                         pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def said_answer(text: str, names) -> str:
    """The answer a continuation gives: the longest of ``names`` it starts with (as whole words),
    else its first word.

    >>> said_answer(" Istanbul, the largest city", ["Istanbul", "Ankara"])
    'Istanbul'
    >>> said_answer(" New York City is", ["New York", "York"])
    'New York'
    >>> said_answer(" the city of", ["Ankara"])
    'the'
    """
    text = text.strip()
    hits = [n for n in names if text.startswith(n) and not text[len(n):len(n) + 1].isalnum()]
    if hits:
        return max(hits, key=len)
    word = re.match(r"[\w'-]+", text)
    return word.group(0) if word else text[:1]
