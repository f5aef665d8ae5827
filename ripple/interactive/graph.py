"""The interactive ripple graph: every probe item a node, placed once in Python (igraph's
Fruchterman-Reingold layout, seeded: the same graph gives the same page, byte for byte), drawn and
explored in the browser (ripple/interactive/ripple.js).

Node colour: drift at the graph's layer on a log scale between a low percentile of the positive
drifts and the largest drift of an item other than the edited one (:func:`drift_range`); red
outline: the greedy answer changed; shape: the item's role (:data:`ROLES`). Hover or click shows the
item; the controls filter by role, hop distance and subject or relation; the damaged items are
listed beside the graph, each selecting its node.

>>> item_role("a", {"changed": True, "correct_before": True}, edited={"b"}, expected=set())
'unintended'
>>> tuple(round(x, 5) for x in drift_range([0.0, 0.001, 0.01, 0.1, 0.5], edited=0.5))
(0.00235, 0.1)
"""

from __future__ import annotations

import base64
import html
import math
import random
import statistics

import networkx as nx

from ripple.errors import RippleError
from ripple.interactive.pages import json_block

#: Roles in the order the controls list them: (name, ECharts symbol, glyph shown in the key).
ROLES = (("edited", "star", "★"), ("expected", "diamond", "◆"), ("unintended", "triangle", "▲"),
         ("answer swap", "arrow", "➤"), ("wrong answer moved", "rect", "■"), ("kept", "circle", "●"))
#: Roles listed beside the graph as damage.
DAMAGE = ("unintended", "answer swap")
STAR = ("path://M0,-10L2.2,-3.1L9.5,-3.1L3.6,1.2L5.9,8.1L0,3.8L-5.9,8.1L-3.6,1.2L-9.5,-3.1L-2.2,-3.1Z")
#: A layout of this many nodes or fewer uses igraph's exact repulsion; above it, its grid.
EXACT_LAYOUT = 1000


def item_role(node: str, d: dict, edited: set[str], expected: set[str], swaps: set[str] = frozenset(),
              unintended: set[str] | None = None) -> str:
    """One probe item's role: edited, expected (ground truth says it should change), answer swap, unintended
    (a right answer lost: ``unintended`` when the audit classified it, else changed, right before and not
    expected), wrong answer moved (changed, wrong before), kept."""
    if node in edited:
        return "edited"
    if node in expected:
        return "expected"
    if node in swaps:
        return "answer swap"
    lost = node in unintended if unintended is not None else d.get("changed") and d.get("correct_before")
    if lost:
        return "unintended"
    return "wrong answer moved" if d.get("changed") else "kept"


def drift_range(values: list[float], edited: float | None = None) -> tuple[float, float]:
    """The colour scale's ends: the 5th percentile of the positive drifts and the largest drift
    below the edited item's (that one is clipped to the top colour); ``(lo, lo * 10)`` at least."""
    values = [v for v in values if v is not None and math.isfinite(v)]  # a NaN drift has no colour
    pos = sorted(v for v in values if v > 0)
    if len(pos) < 2:
        top = max(values + [1e-12])
        return (top / 10, top)
    lo = statistics.quantiles(pos, n=20, method="inclusive")[0]  # the 5th percentile, as numpy's linear one
    below = [v for v in pos if edited is None or v < edited] or pos
    return lo, max(below[-1], lo * 10)


def layout(g: nx.Graph) -> dict[str, tuple[float, float]]:
    """Node positions: igraph's Fruchterman-Reingold over the graph in sorted node order, from a
    private random generator seeded 0 (the caller's ``random`` state is left alone; igraph's
    generator is set back to its default, the ``random`` module, afterwards). The same graph gives
    the same positions for a given igraph version."""
    import igraph as ig  # lazy: heavy

    nodes = sorted(g.nodes)
    if len(nodes) == 1:
        return {nodes[0]: (0.0, 0.0)}
    index = {n: i for i, n in enumerate(nodes)}
    edges = sorted({(min(index[u], index[v]), max(index[u], index[v])) for u, v in g.edges})
    h = ig.Graph(n=len(nodes), edges=edges)
    ig.set_random_number_generator(random.Random(0))
    try:
        coords = h.layout_fruchterman_reingold(niter=500, grid="nogrid" if len(nodes) <= EXACT_LAYOUT else "grid")
    finally:
        ig.set_random_number_generator(random)
    return {n: (float(x), float(y)) for n, (x, y) in zip(nodes, coords.coords)}


def _r(x, digits: int = 4):
    """A float to ``digits`` significant digits (None and non-finite values: None)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(f"{x:.{digits}g}") if isinstance(x, float) else x


def graph_payload(g: nx.Graph, roles: dict[str, str], prompts: dict[str, str] | None = None,
                  title: str = "ripple graph") -> dict:
    """What the page draws: nodes (id, subject, relation, prompt, true answer, answers before and
    after, Δ log p, drift at the graph's layer and at every probed layer, hops, role, whether it was
    evaluated, position) and edges (node indices and kind), with the colour scale and the roles."""
    nodes = sorted(g.nodes)
    if not nodes:
        raise RippleError("the ripple graph has no items to draw; pass a probe set with at least one item")
    pos = layout(g)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
    edited = [n for n in nodes if roles.get(n) == "edited"]
    drifts = [g.nodes[n].get("drift") for n in nodes if g.nodes[n].get("evaluated", True)]
    edited_drift = [d for n in edited if (d := g.nodes[n].get("drift")) is not None and math.isfinite(d)]
    lo, hi = drift_range(drifts, max(edited_drift, default=None))
    budget = "budget" in g.graph
    out_nodes = []
    for n in nodes:
        d = g.nodes[n]
        item = {"id": n, "subject": d.get("subject"), "relation": d.get("relation"),
                "prompt": (prompts or {}).get(n, d.get("prompt")), "answer": d.get("answer"), "before": d.get("answer_before"),
                "after": d.get("answer_after"), "changed": bool(d.get("changed")), "dlogp": _r(d.get("delta_logp")),
                "drift": _r(d.get("drift")), "drifts": [_r(v) for v in d.get("drift_cos", [])], "hops": d.get("hops"),
                "role": roles.get(n, "kept"), "x": round(1000 * (pos[n][0] - min(xs)) / span, 1),
                "y": round(1000 * (pos[n][1] - min(ys)) / span, 1)}
        if budget:
            item["evaluated"] = bool(d.get("evaluated", True))
        out_nodes.append(item)
    index = {n: i for i, n in enumerate(nodes)}
    edges = sorted([min(index[u], index[v]), max(index[u], index[v]), e.get("kind", "knn"), _r(e.get("similarity"), 3)]
                   for u, v, e in g.edges(data=True))
    present = [r for r, _, _ in ROLES if any(x["role"] == r for x in out_nodes)]
    return {"title": title, "nodes": out_nodes, "edges": edges,
            "meta": {"layer": g.graph.get("layer"), "layers": list(g.graph.get("layers", [])),
                     "position": g.graph.get("position"), "k": g.graph.get("k"), "edited": edited,
                     "log_drift": [math.log10(lo), math.log10(hi)],
                     "roles": [{"name": r, "symbol": STAR if s == "star" else s, "glyph": gl} for r, s, gl in ROLES
                               if r in present],
                     "damage": list(DAMAGE), "budget": budget}}


def graph_section(payload: dict, element_id: str = "rg", fallback_png: bytes | None = None,
                  heading: str | None = "Ripple graph") -> str:
    """The graph's HTML: heading, controls, canvas, the side panel (selected item, damaged items),
    the PNG for readers without scripts, the data, and the call that draws it."""
    eid = html.escape(element_id)
    n, e = len(payload["nodes"]), len(payload["edges"])
    parts = [f'<section class="rg" id="{eid}">']
    if heading:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
    parts.append(f'<p class="rg-status" id="{eid}-status">{n} items, {e} edges (interactive: needs scripts)</p>'
                 f'<div class="rg-controls" id="{eid}-controls"></div>'
                 f'<div class="rg-main"><div class="rg-canvas" id="{eid}-canvas"></div>'
                 f'<aside class="rg-side"><div class="rg-detail" id="{eid}-detail"></div>'
                 f'<h3>Damaged items</h3><ol id="{eid}-damaged"></ol></aside></div>')
    if fallback_png:
        src = "data:image/png;base64," + base64.b64encode(fallback_png).decode("ascii")
        parts.append(f'<noscript><img src="{src}" alt="ripple graph (static)"></noscript>')
    parts.append(json_block(f"{element_id}-data", payload))
    parts.append(f'<script>ripple.graph("{eid}");</script></section>')
    return "\n".join(parts)
