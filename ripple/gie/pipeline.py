"""The one before/after pipeline that the audit, the graph and SIR share: measure the probe items
on the unedited model, apply the edit in the sandbox, measure them again (fully, or within a
budget: only the share most at risk, incrementally), restore the weights bit-exactly.

::

    probe = ItemProbe(ctx, items, edit_layers=(5,), budget=Budget(0.2))
    before = probe.before()                                   # the unedited model
    with sandbox(ctx, Edit("rome", [request], hp)) as run:    # restored however the block ends
        after = probe.after(run.total, edited=[3], position="last", requests=[request])
    after.state, after.evaluated, after.info                  # info: the budget's figures (None: full)

The probe's before pass keeps what the budgeted after pass needs (the residual stream entering the
first edited block, the damage rankers' key cache), so budgeted measuring, incremental
re-evaluation and the gradient cache are set up here and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import networkx as nx

from ripple.editing.context import EditContext
from ripple.editing.delta import EditDelta
from ripple.editing.session import EditRun, applied_run, edited
from ripple.errors import RippleError
from ripple.gie.budget import Budget, Focus, budgeted_measure, gradient_cache
from ripple.gie.measure import ItemState, Resume, measure_items, prepare_resume
from ripple.gie.state_cache import cached_states, concat_states
from ripple.probes.sets import ProbeItem


@dataclass(frozen=True)
class Edit:
    """What the sandbox applies: ``method`` computed on the model for ``requests`` (``mode``:
    batch or sequential), or ``delta``, an edit computed already (a mitigated one)."""

    method: str | None = None
    requests: tuple = ()
    hp: object = None
    mode: str = "batch"
    delta: EditDelta | None = None
    force: bool = False

    def describe(self) -> str:
        return f"applying the {self.delta.method} edit" if self.delta is not None else \
            f"editing ({self.method}, {self.mode})"


@contextlib.contextmanager
def sandbox(ctx: EditContext, edit: Edit) -> Iterator[EditRun]:
    """Apply ``edit``, yield its :class:`~ripple.editing.session.EditRun`, restore the weights and
    the editors' state bit-exactly however the block ends."""
    if edit.delta is not None:
        with applied_run(ctx, edit.delta) as run:
            yield run
    else:
        mode = "sequential" if edit.mode == "sequential" else "batch"
        with edited(ctx, edit.method, list(edit.requests), edit.hp, mode=mode, force=edit.force) as run:
            yield run


@dataclass(frozen=True)
class Measured:
    """The probe items after an edit: ``state`` (an item left out by the budget keeps its
    before-edit values), which items were ``evaluated``, and the budget's figures (None: all were)."""

    state: ItemState
    evaluated: tuple[bool, ...]
    info: dict | None = None

    def mark(self, graph: nx.Graph, items: Sequence[ProbeItem]) -> None:
        """Give every node of ``graph`` ``evaluated``, and the graph the budget's figures."""
        mark_evaluated(graph, items, self.evaluated, self.info)


class ItemProbe:
    """The probe items' side of a before/after comparison on ``ctx``'s model: :meth:`before` on
    the unedited model, then :meth:`after` (as many times as wanted) on edited ones."""

    def __init__(self, ctx: EditContext, items: Sequence[ProbeItem], layers: Sequence[int] | None = None,
                 edit_layers: Sequence[int] = (), budget: Budget | None = None, cached: int = 0):
        if budget is not None and not edit_layers:
            raise RippleError("a budgeted measurement needs the edit's layers; pass edit_layers")
        self.ctx, self.items, self.layers = ctx, list(items), layers
        self.edit_layers, self.budget = tuple(edit_layers), budget
        #: the leading items (a probe set, the same for every edit) whose unedited state is read from
        #: the disk cache (:mod:`ripple.gie.state_cache`); the rest (the edit's own facts) are measured
        #: apart, before and after alike, so that both sides batch every row the same way
        self.cached = min(cached, len(self.items)) if budget is None else 0
        self.state: ItemState | None = None
        self._resume: Resume | None = None
        self._cache = None

    def _groups(self) -> list[list[ProbeItem]]:
        return [g for g in (self.items[:self.cached], self.items[self.cached:]) if g] if self.cached else [self.items]

    def before(self) -> ItemState:
        """Measure every item on the model as it is now (unedited); with a budget, keep what the
        incremental after pass and the ranker need."""
        model, tok, spec = self.ctx.model, self.ctx.tok, self.ctx.spec
        if self.budget is None:
            groups = self._groups()
            self.state = concat_states([cached_states(model, tok, spec, g, self.layers) if self.cached and i == 0
                                        else measure_items(model, tok, spec, g, self.layers)
                                        for i, g in enumerate(groups)])
        else:
            self.state, self._resume = prepare_resume(model, tok, spec, self.items, min(self.edit_layers),
                                                      self.layers, key_layers=self.edit_layers)
            self._cache = gradient_cache(model, tok, spec, self.items, self.edit_layers, self.budget.ranker)
        return self.state

    def after(self, delta: EditDelta, edited: Sequence[int] = (), position: str = "subject_last",
              requests: Sequence = ()) -> Measured:
        """Measure the items on the model as it is now (``delta`` applied); with a budget only the
        share most at risk and the ``edited`` rows, read at ``position`` of the last edited layer."""
        model, tok, spec = self.ctx.model, self.ctx.tok, self.ctx.spec
        if self.budget is None:
            state = concat_states([measure_items(model, tok, spec, g, self.layers) for g in self._groups()])
            return Measured(state, (True,) * len(self.items))
        if self._resume is None:
            raise RippleError("measure the unedited model first: call before() ahead of after()")
        focus = Focus(tuple(edited), max(self.edit_layers), position, tuple(requests))
        got = budgeted_measure(self.ctx, self.items, self._resume, delta, self.budget, focus, cache=self._cache)
        info = {"budget": self.budget.share, "ranker": got.ranker, "n_evaluated": got.n_evaluated,
                "seconds": got.seconds}
        return Measured(got.state, got.evaluated, info)


def drift_position(hp) -> str:
    """Where the edit acts, so where drift is read: ``last`` for ``fact_token=last``, else ``subject_last``."""
    return "last" if getattr(hp, "fact_token", "subject_last") == "last" else "subject_last"


def mark_evaluated(graph: nx.Graph, items: Sequence[ProbeItem], evaluated: Sequence[bool], info: dict | None) -> None:
    """Give every node ``evaluated`` (an item left out has its before-edit answer, so ``changed``
    False, and no drift), and the graph the budget's ``info``."""
    for item, ok in zip(items, evaluated):
        graph.nodes[item.id]["evaluated"] = bool(ok)
    if info is not None:
        graph.graph.update({f"budget_{key}" if key != "budget" else key: value for key, value in info.items()
                            if key != "seconds"})
