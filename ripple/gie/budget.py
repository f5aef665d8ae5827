"""Budgeted measuring: after an edit, evaluate only the share of the probe set most at risk.

The before pass (:func:`~ripple.gie.measure.prepare_resume`) also records the residual stream
entering the first edited block and the rankers' key cache; after the edit, a ranker orders the
items from those and the edit alone, and only the top ``budget`` share (plus the edited items) is
evaluated, incrementally. The others keep their before-edit values and are marked not evaluated,
so the figures are an estimate; :func:`expected_recall` gives the share of damage the benchmark
(benchmarks/gie/recall.py, reports/gie.md) found at that budget.

::

    before, resume = prepare_resume(model, tok, spec, items, layer=min(layers), key_layers=layers)
    with delta.applied(model):
        got = budgeted_measure(ctx, items, resume, delta, Budget(0.2), Focus(edited=(3,), layer=5, position="last"))
    got.state, got.evaluated, got.n_evaluated
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ripple.errors import RippleError
from ripple.gie.keys import KeyCache
from ripple.gie.measure import ItemState, Resume, measure_items
from ripple.gie.rankers import RANKERS, RankInput

# key_sqrt_margin: the largest |ΔW k| over the item's prompt positions, over the square root of its
# answer's margin. It needs no backward pass (the probe's own forward pass records its keys); chosen
# by benchmarks/gie/recall.py (reports/gie.md) as the forward-only ranker that finds the most damage
# at 20% of the cost on both the organism and SmolLM2.
DEFAULT_RANKER = "key_sqrt_margin"
RECALL_TABLE = Path(__file__).resolve().parents[1] / "data" / "gie_recall.json"


@dataclass
class Budgeted:
    """The after-edit state with only ``evaluated`` items measured (the others: their before values)."""

    state: ItemState
    evaluated: tuple[bool, ...]
    ranker: str
    budget: float
    seconds: dict = field(default_factory=dict)

    @property
    def n_evaluated(self) -> int:
        return sum(self.evaluated)


def check_budget(budget: float) -> float:
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or not 0 < budget <= 1:
        raise RippleError(f"budget {budget!r} is not a share of the probe set; pass a number in (0, 1], "
                          "e.g. --budget 0.2 to evaluate the 20% of items most at risk")
    return float(budget)


def gradient_cache(model, tok, spec, items, layers, ranker: str):
    """The key cache with the gradients ``ranker`` needs, built on the model as it is now (call it
    before the edit); None when the ranker needs none (the probe pass records the rest)."""

    grads = tuple(need for need in RANKERS.get(ranker).needs if need in ("margin", "logp"))
    return KeyCache.build(model, tok, spec, items, layers, grads=grads) if grads else None


def delta_blocks(delta, spec) -> set[int] | None:
    """The blocks whose parameters ``delta`` changes; None when it changes anything outside blocks."""
    blocks = [spec.block_of(name) for name in delta.deltas]
    return None if None in blocks else set(blocks)


def merge(before: ItemState, part: ItemState, rows: Sequence[int]) -> ItemState:
    """``before`` with the rows ``rows`` replaced by ``part``'s (same layers)."""
    idx = torch.tensor(list(rows), dtype=torch.long)
    greedy, correct = list(before.greedy), list(before.correct)
    for j, i in enumerate(rows):
        greedy[i], correct[i] = part.greedy[j], part.correct[j]
    logp = before.logp.clone()
    logp[idx] = part.logp
    reps = {L: before.reps[L].clone().index_copy_(0, idx, part.reps[L]) for L in before.layers}
    last = {L: before.last[L].clone().index_copy_(0, idx, part.last[L]) for L in before.layers} if before.last else {}
    return ItemState(ids=before.ids, reps=reps, greedy=tuple(greedy), logp=logp, correct=tuple(correct), last=last)


@dataclass(frozen=True)
class Budget:
    """Evaluate only ``share`` of the probe items after the edit, the ones ``ranker`` puts most at risk."""

    share: float
    ranker: str = DEFAULT_RANKER

    def __post_init__(self):
        check_budget(self.share)
        RANKERS.get(self.ranker)  # one-line error naming the known rankers

    @classmethod
    def of(cls, share: float | None, ranker: str = DEFAULT_RANKER) -> Budget | None:
        """None for no budget (measure every item), else the checked budget."""
        return None if share is None else cls(share, ranker)


@dataclass(frozen=True)
class Focus:
    """What the ranker reads the edit's risk from: the ``edited`` rows (always evaluated), drift at
    block ``layer`` and ``position`` (``subject_last`` or ``last``), the edit's ``requests``."""

    edited: tuple[int, ...]
    layer: int
    position: str
    requests: tuple = ()


def budgeted_measure(ctx, items, resume: Resume, delta, budget: Budget, focus: Focus, cache=None) -> Budgeted:
    """Rank the items by ``budget.ranker`` (from the unedited model's probe and ``delta``), evaluate
    the top ``budget.share`` of them and the ``focus.edited`` items on ``ctx``'s model as it is now
    (edited), in probe-set order, incrementally from ``resume``; at share 1 every item, exactly as
    :func:`~ripple.gie.measure.measure_items` would. The key cache is ``resume.keys``, or ``cache``
    (one built with gradients on the unedited model, for a ranker that needs them)."""

    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    ranker, edited, layer, position = budget.ranker, focus.edited, focus.layer, focus.position
    budget = budget.share
    rk = RANKERS.get(ranker)
    items = list(items)
    before = resume.before
    blocks = delta_blocks(delta, spec)
    if blocks is None or min(blocks) < resume.layer:
        raise RippleError(f"the edit changes weights before block {resume.layer} (or outside the blocks), where "
                          "the cached residual stream was read; prepare_resume at the edit's first layer")
    t0 = time.perf_counter()
    n_others = len(items) - len(set(edited))
    k = min(n_others, math.ceil(budget * n_others - 1e-9))
    if k >= n_others:
        chosen = list(range(len(items)))
    else:
        cache = cache if cache is not None else resume.keys
        if cache is None:
            raise RippleError(f"ranker {ranker!r} needs the key cache; prepare_resume with key_layers=the edit's "
                              "layers, or pass cache=")
        inp = RankInput(before, tuple(edited), layer, position, items, cache, delta, spec, model, tok,
                        list(focus.requests))
        chosen = sorted(set(rk.rank(inp)[:k]) | set(edited))
    t_rank = time.perf_counter() - t0
    t0 = time.perf_counter()
    part = measure_items(model, tok, spec, [items[i] for i in chosen], layers=before.layers, resume=resume)
    state = merge(before, part, chosen) if len(chosen) < len(items) else part
    chosen_set = set(chosen)
    return Budgeted(state, tuple(i in chosen_set for i in range(len(items))), ranker, budget,
                    {"rank": round(t_rank, 4), "evaluate": round(time.perf_counter() - t0, 4)})


def expected_recall(model: str, method: str, budget: float, ranker: str = DEFAULT_RANKER) -> dict | None:
    """The share of damaged items benchmarks/gie/recall.py found with ``ranker`` at ``budget`` (the
    nearest measured budget at or below it) for ``model`` and ``method``, with the run it comes
    from and its recall-against-budget curve for every ranker (``curves``); None if no run measured them."""
    if not RECALL_TABLE.is_file():
        return None
    table = json.loads(RECALL_TABLE.read_text())
    name = Path(str(model)).stem.replace(".", "_")
    run = table.get(f"{name}_{method}")
    if run is None or ranker not in run["recall_at_budget"]:
        return None
    curve = run["recall_at_budget"][ranker]
    measured = sorted(float(b) for b in curve)
    below = [b for b in measured if b <= budget + 1e-12]
    b = below[-1] if below else measured[0]
    curves = {r: sorted([float(x), y] for x, y in c.items()) for r, c in sorted(run["recall_at_budget"].items())}
    return {"run": f"{name}_{method}", "budget": b, "recall": curve[str(b)] if below else None, "ranker": ranker,
            "edits": run["edits"], "damaged": run["damaged"], "curves": curves}
