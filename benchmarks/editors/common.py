"""Shared pieces of the organism's editor benchmark (benchmarks/editors/organism.py): the set-up (:class:`Bench`), the sandboxed edit, and
the metrics each part pools."""

from __future__ import annotations

import argparse
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from ripple.editing.editor import EDITORS
from ripple.editing.from_world import specificity_queries

PARTS = ("single", "batch", "single_all", "batch_all", "sequential", "speed", "samples")
METHODS = EDITORS.names()
BATCHABLE = tuple(e.name for e in EDITORS if not e.one_request_per_solve)
RECT = 0.4
SAMPLE_SIZES = (500, 2000, 10000, 50000)
CF = ("efficacy", "efficacy_top1", "paraphrase", "paraphrase_top1", "neighborhood", "neighborhood_top1")
#: hyperparameters the report's header shows, where a method has them
HP_KEYS = ("fact_token", "lam", "eps", "null_threshold", "v_steps", "ft_steps", "ft_lr", "norm_constraint", "rect",
           "stats_samples")
T0 = time.perf_counter()


def log(*parts) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s]", *parts, flush=True)


def mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


# ---------------------------------------------------------------------------------------------- setup


@dataclass
class Bench:
    """The model, its world and one shared :class:`EditContext` per method (cached statistics)."""

    model: object
    tok: object
    spec: object
    world: object
    args: argparse.Namespace
    contexts: dict = field(default_factory=dict)
    hparams_used: dict = field(default_factory=dict)

    def method(self, label: str) -> str:
        return label.removesuffix("+rect")

    def hp(self, label: str, extra=()):
        from ripple.editing.hparams import resolve_hparams

        over = [f"rect={RECT}"] if label.endswith("+rect") else []
        return resolve_hparams(self.method(label), self.spec.model_type, self.spec.n_layers(self.model),
                               model_dir=self.model.name_or_path, overrides=over + list(extra))

    def ctx(self, label: str, fresh: bool = False):
        """The method's shared context; ``fresh``: a new one that computes C without the disk cache."""
        from ripple.editing.context import EditContext
        from ripple.editing.from_world import world_corpus

        method = self.method(label)
        if fresh or method not in self.contexts:
            ctx = EditContext(self.model, self.tok, self.spec, world_corpus(self.world), use_disk_cache=not fresh)
            if fresh:
                return ctx
            self.contexts[method] = ctx
        return self.contexts[method]

    def note(self, label: str, run) -> None:
        """Remember the hyperparameters an edit ran with (for the report header)."""
        d = run.deltas[0]
        self.hparams_used.setdefault(label, {"layers": d.info.get("layers"),
                                             **{k: d.hparams[k] for k in HP_KEYS if k in d.hparams}})

    def labels(self, only=None) -> list[str]:
        base = [m for m in self.args.methods if only is None or m in only]
        return base + ([f"{m}+rect" for m in base] if self.args.rect else [])


def edited_key(req) -> tuple[str, str]:
    """(subject id, relation) of an organism edit request."""
    from ripple.world.edits import WorldEdit

    return WorldEdit.require(req).fact


def distinct_edits(world, n: int, seed: int = 0, relations=None) -> tuple[list, int]:
    """``n`` edits of distinct facts, ``n`` capped at the world's distinct editable facts (the cap too);
    ``relations``: those edited (default the person relations, ``EDITABLE``)."""
    from ripple.editing.from_world import EDITABLE, sample_edits

    relations = EDITABLE if relations is None else tuple(relations)
    cap = len({(f.subject, f.relation) for f in world.facts if f.relation in relations})
    return sample_edits(world, min(n, cap), seed, relations=relations), cap


@contextmanager
def edited(b: Bench, label: str, reqs, hp, mode: str = "batch", on_step=None):
    """Apply the edits (forced past the guard); yields ``(run, seconds)``; then undoes them, weights
    and AlphaEdit's running key sums both."""
    from ripple.editing.session import edited as sandbox

    t0 = time.perf_counter()
    with sandbox(b.ctx(label), b.method(label), reqs, hp, mode=mode, force=True, on_step=on_step) as run:
        yield run, time.perf_counter() - t0
    b.note(label, run)


def worst_ratio(run) -> float:
    """The largest ‖Δ‖/‖W‖ of a one-delta run, against the weights it was computed on."""
    return max(run.deltas[0].info["norm_ratios"].values())


# -------------------------------------------------------------------------------------------- metrics


def races(model, tok, items) -> tuple[list[bool], list[bool]]:
    """For (prompt, expected, rival) triples: expected is the greedy answer; P(expected) > P(rival)."""
    from ripple.scoring import answer_logprobs

    a = answer_logprobs(model, tok, [(p, x) for p, x, _ in items])
    r = answer_logprobs(model, tok, [(p, y) for p, _, y in items])
    return [g for _, g in a], [x[0] > y[0] for x, y in zip(a, r)]


def pooled_scores(model, tok, reqs, cap: int | None = None, seed: int = 0) -> dict:
    """CounterFact's race and top-1 metrics pooled over every prompt of ``reqs`` (paraphrase and
    neighbourhood sampled down to ``cap`` with a fixed seed). Neighbourhood prompts that are
    themselves edited in ``reqs`` are left out: their old answer is no longer right."""
    edited_prompts = {r.rendered for r in reqs}
    kinds = {"efficacy": [(r.rendered, r.target_new, r.target_true) for r in reqs],
             "paraphrase": [(p, r.target_new, r.target_true) for r in reqs for p in r.paraphrase_prompts],
             "neighborhood": [(p, r.target_true, r.target_new) for r in reqs for p in r.neighborhood_prompts
                              if p not in edited_prompts]}
    out = {}
    for kind, items in kinds.items():
        if cap is not None and kind != "efficacy" and len(items) > cap:
            items = random.Random(seed).sample(items, cap)
        top1, race = races(model, tok, items)
        out |= {kind: mean(race), f"{kind}_top1": mean(top1)}
    return out


def specificity_set(world, reqs) -> list:
    """The edited subjects' other facts (first template each), minus facts edited in ``reqs`` too."""
    edited = {(world.name(s), rel) for s, rel in map(edited_key, reqs)}
    qs = {q.prompt: q for r in reqs for q in specificity_queries(world, r) if (q.subject, q.relation) not in edited}
    return list(qs.values())


def kept(model, tok, queries, known: list[bool]) -> list[bool]:
    """For each query known before the edit: is it still answered correctly?"""
    from ripple.scoring import query_correct

    return [a for a, k in zip(query_correct(model, tok, queries), known) if k]


def fluency_of(model, tok, req) -> float:
    from ripple.editing.metrics import fluency

    return fluency(model, tok, [req.subject, req.rendered], max_new_tokens=20)


def untouched_queries(world, reqs, n: int = 200, seed: int = 0) -> list:
    """``n`` fixed single-hop facts (first template) whose (subject, relation) no edit touches."""
    from ripple.world.queries import single_hop
    from ripple.world.schema import RELATIONS

    edited = set(map(edited_key, reqs))
    qs = [q for q in single_hop(world) if q.template == RELATIONS[q.relation].templates[0]
          and (q.meta["subject_id"], q.relation) not in edited]
    return random.Random(seed).sample(qs, min(n, len(qs)))
