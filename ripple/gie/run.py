"""One edit's GIE end to end: measure, edit, measure, restore bit-exactly, build the graph.

::

    graph, profile = gie_for_edit(ctx, "rome", hp, items, request, layers=[5, 10])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import networkx as nx

from ripple.editing.context import EditContext
from ripple.editing.requests import EditRequest
from ripple.editing.session import edited
from ripple.errors import RippleError
from ripple.gie.budget import DEFAULT_RANKER, budgeted_measure, check_budget, gradient_cache
from ripple.gie.graph import build_graph, ripple_profile
from ripple.gie.measure import measure_items, prepare_resume
from ripple.gie.rankers import RANKERS
from ripple.probes.sets import ProbeItem


def find_edited_item(items: Sequence[ProbeItem], request: EditRequest, edited_id: str | None = None) -> str:
    """The item the request rewrites: same subject and prompt; failing that, ``edited_id`` if it
    names an item with the request's subject."""
    exact = [item.id for item in items if item.subject == request.subject and item.prompt == request.prompt]
    if exact:
        return edited_id if edited_id in exact else exact[0]
    if edited_id is not None:
        match = [item for item in items if item.id == edited_id]
        if not match:
            raise RippleError(f"edited_id {edited_id!r} is not in the probe set; pass the id of one of its items")
        if match[0].subject != request.subject:
            raise RippleError(f"item {edited_id!r} has subject {match[0].subject!r}, not the request's "
                              f"{request.subject!r}; pass the id of an item about the edited subject")
        return edited_id
    raise RippleError(f"no probe item has subject {request.subject!r} and prompt {request.prompt!r}; "
                      "add the edited fact to the probe set or pass edited_id")


def drift_position(hp) -> str:
    """Where the edit acts, so where drift is read: ``last`` for ``fact_token=last``, else ``subject_last``."""
    return "last" if getattr(hp, "fact_token", "subject_last") == "last" else "subject_last"


def gie_for_edit(ctx: EditContext, method: str, hp, items: Sequence[ProbeItem], request: EditRequest,
                 layers: Sequence[int] | None = None, k: int = 5, edited_id: str | None = None,
                 expected: Iterable[str] = (), layer: int | None = None, position: str | None = None,
                 force: bool = False, budget: float | None = None, ranker: str = DEFAULT_RANKER
                 ) -> tuple[nx.Graph, dict]:
    """Measure ``items``, apply ``request`` with ``method``, measure again and undo the edit exactly
    (also on error); returns the GIE graph and its ripple profile (``expected``: ids that should change).
    By default drift is read at the last layer the edit writes (``layer`` overrides) and at the
    edit's fact token (``position`` overrides: ``subject_last`` or ``last``). ``budget``: after the
    edit, evaluate only that share of the items, the ones most at risk (:mod:`ripple.gie.budget`);
    every node then carries ``evaluated``, and the graph ``budget``; ``ranker`` orders them."""
    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    items = list(items)
    edit_layers = hp.layers_for(spec.n_layers(model))
    position = drift_position(hp) if position is None else position
    target = find_edited_item(items, request, edited_id)
    evaluated, info = None, None
    if budget is None:
        before = measure_items(model, tok, spec, items, layers)
    else:
        check_budget(budget)
        RANKERS.get(ranker)
        before, resume = prepare_resume(model, tok, spec, items, min(edit_layers), layers, key_layers=edit_layers)
        cache = gradient_cache(model, tok, spec, items, edit_layers, ranker)
    with edited(ctx, method, [request], hp, force=force) as run:
        if budget is None:
            after = measure_items(model, tok, spec, items, layers)
        else:
            got = budgeted_measure(model, tok, spec, items, resume, run.total, [items.index(
                next(i for i in items if i.id == target))], max(edit_layers), position, budget,
                ranker=ranker, requests=[request], cache=cache)
            after, evaluated = got.state, got.evaluated
            info = {"budget": budget, "ranker": got.ranker, "n_evaluated": got.n_evaluated, "seconds": got.seconds}
    graph = build_graph(items, before, after, target, k=k, layer=layer, edit_layers=edit_layers, position=position)
    graph.graph["method"] = method
    mark_evaluated(graph, items, [True] * len(items) if evaluated is None else evaluated, info)
    return graph, ripple_profile(graph, expected)


def mark_evaluated(graph: nx.Graph, items: Sequence[ProbeItem], evaluated: Sequence[bool], info: dict | None) -> None:
    """Give every node ``evaluated`` (an item left out has its before-edit answer, so ``changed``
    False, and no drift), and the graph the budget's ``info``."""
    for item, ok in zip(items, evaluated):
        graph.nodes[item.id]["evaluated"] = bool(ok)
    if info is not None:
        graph.graph.update({f"budget_{key}" if key != "budget" else key: value for key, value in info.items()
                            if key != "seconds"})
