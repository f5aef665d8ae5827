"""One edit's GIE end to end: the pipeline (:mod:`ripple.gie.pipeline`: measure, edit, measure,
restore bit-exactly), then the graph.

::

    graph, profile = gie_for_edit(ctx, "rome", hp, items, request, GraphOptions(layers=(5, 10)))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import networkx as nx

from ripple.answers import judge
from ripple.editing.answer_cache import cached_ask
from ripple.editing.context import EditContext
from ripple.editing.delta import EditDelta
from ripple.editing.questions import chat_questions
from ripple.editing.requests import EditRequest
from ripple.errors import RippleError
from ripple.generation import ask, continuations, has_chat, item_asks
from ripple.gie.budget import DEFAULT_RANKER
from ripple.gie.graph import build_graph, epicentre, graph_layer, ripple_profile
from ripple.gie.pipeline import Budget, Edit, ItemProbe, drift_position, sandbox
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


@dataclass(frozen=True)
class GraphOptions:
    """How :func:`gie_for_edit` measures and draws: the probed ``layers`` (None: every block), ``k``
    nearest neighbours per node, drift read at ``layer`` (None: the last layer the edit writes) and
    ``position`` (None: the edit's fact token; ``subject_last`` or ``last``); ``budget``: after the
    edit evaluate only that share of the items, the ones ``ranker`` puts most at risk
    (:mod:`ripple.gie.budget`); ``force`` skips the editor's norm guard; ``generate``: every node
    also carries whether its generated answer is right before and after (``gen_before``,
    ``gen_after``: each item's own answers count, where the audit also counts the world's other names
    for them); ``chat``: the graph also holds the edit's chat question answered before and after."""

    layers: tuple[int, ...] | None = None
    k: int = 5
    layer: int | None = None
    position: str | None = None
    budget: float | None = None
    ranker: str = DEFAULT_RANKER
    force: bool = False
    generate: bool = True
    chat: bool | None = None  # None: when the tokenizer has a chat template


def gie_for_edit(ctx: EditContext, method: str, hp, items: Sequence[ProbeItem], request: EditRequest | None,
                 opts: GraphOptions | None = None, edited_id: str | None = None, expected: Iterable[str] = (),
                 delta: EditDelta | None = None) -> tuple[nx.Graph, dict]:
    """Measure ``items``, apply ``request`` with ``method`` (or apply ``delta``, an edit computed
    already or made elsewhere), measure again and undo the edit exactly (also on error); returns the
    GIE graph and its ripple profile (``expected``: ids that should change; ``edited_id``: the
    edited item when several match; no ``request``: the graph centres on the changed item that
    drifted most, :func:`~ripple.gie.graph.epicentre`). With a budget every node carries
    ``evaluated``, and the graph ``budget``."""
    opts = opts or GraphOptions()
    items = list(items)
    edit_layers = hp.layers_for(ctx.spec.n_layers(ctx.model))
    position = drift_position(hp) if opts.position is None else opts.position
    target = find_edited_item(items, request, edited_id) if request is not None else None
    requests = (request,) if request is not None else ()
    probe = ItemProbe(ctx, items, opts.layers, edit_layers, Budget.of(opts.budget, opts.ranker), cached=len(items))
    before = probe.before()
    answers = GraphAnswers(ctx, items, request, opts)
    with sandbox(ctx, Edit(method, requests, hp, force=opts.force, delta=delta)) as run:
        rows = [next(i for i, item in enumerate(items) if item.id == target)] if target is not None else []
        after = probe.after(run.total, rows, position, list(requests))
        answers.after()
    if target is None:
        layer = opts.layer if opts.layer is not None else graph_layer(before, edit_layers)
        target = epicentre(items, before, after.state, layer, position)
    graph = build_graph(items, before, after.state, target, k=opts.k, layer=opts.layer, edit_layers=edit_layers,
                        position=position)
    graph.graph["method"] = method
    if request is None:
        graph.graph["centre"] = "inferred: no request names the edited fact; the changed item that drifted most"
    after.mark(graph, items)
    answers.mark(graph, items, {target, *expected})
    return graph, ripple_profile(graph, expected)


class GraphAnswers:
    """The generated answers a graph carries: each probe item's (right or not, before and after;
    the unedited model's cached on disk) and the edit's chat question's reply."""

    def __init__(self, ctx: EditContext, items, request: EditRequest | None, opts: GraphOptions):
        self.ctx, self.opts = ctx, opts
        self.asks = item_asks(items) if opts.generate else []
        self.before = cached_ask(ctx.model, ctx.tok, self.asks) if self.asks else []
        self.question = None
        if (has_chat(ctx.tok) if opts.chat is None else opts.chat) and request is not None:
            got = chat_questions(request)
            self.question = got.efficacy[0] if got.efficacy else None
        self.chat = {"before": self._reply()} if self.question is not None else None

    def _reply(self) -> dict:
        text = continuations(self.ctx.model, self.ctx.tok, [self.question.prompt], chat=True)[0]
        return {"text": text, "new_named": bool(judge(text, self.question.answers, self.question.rivals, reply=True))}

    def after(self) -> None:
        self.now = [a.correct for a in ask(self.ctx.model, self.ctx.tok, self.asks)] if self.asks else []
        if self.chat is not None:
            self.chat["after"] = self._reply()

    def mark(self, graph: nx.Graph, items, allowed: set) -> None:
        if self.asks:
            for item, b, a in zip(items, self.before, self.now):
                graph.nodes[item.id]["gen_before"], graph.nodes[item.id]["gen_after"] = b, a
            graph.graph["generated_right_before"] = sum(self.before)
            graph.graph["generated_right_after"] = sum(self.now)
            graph.graph["generated_lost_unintended"] = sum(1 for item, b, a in zip(items, self.before, self.now)
                                                           if b and not a and item.id not in allowed)
        if self.chat is not None:
            graph.graph["chat_question"] = self.question.prompt
            for side in ("before", "after"):
                graph.graph[f"chat_{side}"] = self.chat[side]["text"]
                graph.graph[f"chat_new_named_{side}"] = self.chat[side]["new_named"]
