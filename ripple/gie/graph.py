"""The GIE graph of one edit and its ripple profile.

Nodes are probe items carrying what the edit did to them (drift of the hidden state per probed
layer, change of log P(answer), whether the greedy answer changed); edges join each item to its
``k`` nearest neighbours in hidden space before the edit (cosine) and to its known links.

::

    g = build_graph(items, before, after, edited_id="a|r|b", k=5)
    ripple_profile(g, expected={"a|r2|c"})["by_hop"]["1"]["share_changed"]
    # -> 0.4
    save_graph(g, "out/gie")            # graph.json (node-link) and graph.graphml
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Iterable, Sequence

import networkx as nx
import torch

from ripple.errors import RippleError
from ripple.gie.measure import ItemState
from ripple.io import atomic_write_bytes, atomic_write_text, prepare_out_dir
from ripple.probes.cache import row_distances
from ripple.probes.sets import LINK_TYPES, ProbeItem

HOP_BUCKETS = ("0", "1", "2", "3", "4+", "unreachable")
SIM_BUCKETS = ("0", "1-5", "6-20", "21-100", "101+")  # "0": the edited item itself


def _check_states(items: Sequence[ProbeItem], before: ItemState, after: ItemState) -> None:
    ids = tuple(item.id for item in items)
    if before.ids != ids or after.ids != ids:
        raise RippleError("the before/after states were measured on other items (ids differ); "
                          "measure both with measure_items on the same probe set")
    if before.layers != after.layers:
        raise RippleError(f"before and after probe different layers ({before.layers} vs {after.layers}); "
                          "measure both with the same layers")


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of ``x`` (float64; a zero row has similarity 0)."""
    x = x.double()
    unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return unit @ unit.T


def knn_pairs(x: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """``(i, j)``: ``j`` is one of the ``k`` nearest rows to row ``i`` by cosine (not ``i`` itself)."""
    from sklearn.neighbors import NearestNeighbors  # lazy: heavy

    n = x.shape[0]
    if k < 1 or n < 2:
        return []
    m = min(k + 1, n)
    nn = NearestNeighbors(n_neighbors=m, metric="cosine", algorithm="brute").fit(x.double().numpy())
    _, idx = nn.kneighbors(x.double().numpy())
    return [(i, int(j)) for i, row in enumerate(idx) for j in [j for j in row if j != i][:min(k, n - 1)]]


def _rank_bucket(rank: int) -> str:
    for hi, name in ((0, "0"), (5, "1-5"), (20, "6-20"), (100, "21-100")):
        if rank <= hi:
            return name
    return "101+"


def _hop_bucket(hops: int | None) -> str:
    return "unreachable" if hops is None else ("4+" if hops >= 4 else str(hops))


def graph_layer(before: ItemState, edit_layers: Sequence[int] | None = None) -> int:
    """Where :func:`build_graph` reads similarity and drift by default: the last edited layer, else
    the middle probed one."""
    return max(edit_layers) if edit_layers else before.layers[len(before.layers) // 2]


def epicentre(items: Sequence[ProbeItem], before: ItemState, after: ItemState, layer: int,
              position: str = "subject_last") -> str:
    """The item an edit of unknown intent centres on (no request says which fact it rewrites): of the
    items whose answer changed, the one that drifted most at ``layer``; when none changed, the one
    that drifted most. Ties: the first in item order."""
    drift = row_distances(before.rep(layer, position), after.rep(layer, position))["cosine_distance"]
    changed = [i for i, (a, b) in enumerate(zip(before.greedy, after.greedy)) if a != b]
    pool = changed or range(len(items))
    best = max(pool, key=lambda i: (float(drift[i]), -i))
    return items[best].id


def build_graph(items: Sequence[ProbeItem], before: ItemState, after: ItemState, edited_id: str, k: int = 5,
                layer: int | None = None, edit_layers: Sequence[int] | None = None,
                position: str = "subject_last") -> nx.Graph:
    """The GIE graph of one edit; ``layer`` (default: the last of ``edit_layers``, the layers the
    edit wrote, else the middle probed layer) is where similarity, kNN and ``drift`` are read.
    Drift is read at token ``position`` (``subject_last`` or ``last``: match the edit's fact token);
    similarity and kNN at ``subject_last``. Graph attributes: ``edited_id``, ``layer``, ``layers``,
    ``k``, ``position``.

    Node (item id): ``subject``, ``relation``, ``answer``, ``prompt`` (the rendered probe),
    ``answer_before``/``answer_after`` (greedy first token), ``changed``, ``correct_before``/``correct_after``, ``logp_before``/``logp_after``,
    ``delta_logp``, ``drift_cos``/``drift_l2`` (per probed layer, also as ``drift_cos_L{i}`` and
    ``drift_l2_L{i}``; all at ``position``), ``drift`` (cosine distance at ``layer``), ``sim_to_edited``
    and ``sim_rank`` (0 = the edited item; ties by item order), ``is_edited``, ``hops`` (None: unreachable).
    Edge: ``kind`` (a link type, else ``knn``), ``kinds`` (every reason), ``knn``, ``similarity``
    (cosine before the edit at ``layer``). ``k=0`` leaves only the links.
    """
    items = list(items)
    _check_states(items, before, after)
    ids = [item.id for item in items]
    if edited_id not in ids:
        raise RippleError(f"edited item {edited_id!r} is not in the probe set; pass the id of one of its items")
    layers = before.layers
    if layer is None:
        layer = graph_layer(before, edit_layers)
    x = before.rep(layer)
    e = ids.index(edited_id)
    sim = cosine_matrix(x)[e]
    order = sorted(range(len(ids)), key=lambda i: (i != e, -sim[i].item(), i))
    rank = {i: r for r, i in enumerate(order)}
    drift = {L: row_distances(before.rep(L, position), after.rep(L, position)) for L in layers}
    g = nx.Graph(edited_id=edited_id, layer=layer, layers=list(layers), k=k, position=position)
    for i, item in enumerate(items):
        attrs = dict(subject=item.subject, relation=item.relation, answer=item.answer, prompt=item.rendered,
                     answer_before=before.greedy[i], answer_after=after.greedy[i],
                     changed=before.greedy[i] != after.greedy[i],
                     correct_before=before.correct[i], correct_after=after.correct[i],
                     logp_before=float(before.logp[i]), logp_after=float(after.logp[i]),
                     delta_logp=float(after.logp[i] - before.logp[i]),
                     drift_cos=[float(drift[L]["cosine_distance"][i]) for L in layers],
                     drift_l2=[float(drift[L]["relative_l2"][i]) for L in layers],
                     drift=float(drift[layer]["cosine_distance"][i]),
                     sim_to_edited=float(sim[i]), sim_rank=rank[i], is_edited=i == e)
        for L in layers:
            attrs[f"drift_cos_L{L}"] = float(drift[L]["cosine_distance"][i])
            attrs[f"drift_l2_L{L}"] = float(drift[L]["relative_l2"][i])
        g.add_node(item.id, **attrs)
    full = cosine_matrix(x)
    for i, j in knn_pairs(x, k):
        _add_edge(g, ids[i], ids[j], "knn", float(full[i, j]))
    where = {item_id: i for i, item_id in enumerate(ids)}
    for i, item in enumerate(items):
        for link in item.links:
            if link.to not in where:
                raise RippleError(f"item {item.id!r} links to {link.to!r}, which is not in the probe set; "
                                  "check it with check_probe_set")
            _add_edge(g, item.id, link.to, link.type, float(full[i, where[link.to]]))
    hops = nx.single_source_shortest_path_length(g, edited_id)
    for node in g.nodes:
        g.nodes[node]["hops"] = hops.get(node)
    return g


def _add_edge(g: nx.Graph, u: str, v: str, kind: str, similarity: float) -> None:
    """One undirected edge per pair; ``kinds`` collects every reason, ``kind`` names the main one
    (a link type before ``knn``)."""
    if u == v:
        return
    kinds = set(g.edges[u, v]["kinds"]) if g.has_edge(u, v) else set()
    kinds.add(kind)
    ordered = [t for t in LINK_TYPES if t in kinds] + sorted(kinds - set(LINK_TYPES) - {"knn"})
    ordered += ["knn"] if "knn" in kinds else []
    g.add_edge(u, v, kind=ordered[0], kinds=ordered, knn="knn" in kinds, similarity=similarity)


def _bucket_stats(nodes: list[dict]) -> dict:
    """Counts over the bucket; shares and means over its evaluated items (a budgeted run leaves
    some unevaluated: they count as unchanged, and their drift is unknown)."""
    n = len(nodes)
    seen = [d for d in nodes if d.get("evaluated", True)]
    changed = sum(d["changed"] for d in nodes)
    mean = lambda key: sum(d[key] for d in seen) / len(seen) if seen else None  # noqa: E731
    out = {"n": n, "n_changed": changed, "share_changed": changed / len(seen) if seen else None,
           "drift_mean": mean("drift"), "delta_logp_mean": mean("delta_logp")}
    return out if len(seen) == n else {**out, "n_evaluated": len(seen)}


def ripple_profile(g: nx.Graph, expected: Iterable[str] = ()) -> dict:
    """Drift and share of changed answers by hop distance, by similarity rank and by the kind of
    edge joining an item to the edited one; ``expected`` ids are supposed to change (ground
    truth) and do not count as unintended."""
    expected = set(expected)
    edited = g.graph["edited_id"]
    nodes = {n: g.nodes[n] for n in sorted(g.nodes)}
    by_hop = {b: [d for d in nodes.values() if _hop_bucket(d["hops"]) == b] for b in HOP_BUCKETS}
    by_sim = {b: [d for d in nodes.values() if _rank_bucket(d["sim_rank"]) == b] for b in SIM_BUCKETS}
    kinds = sorted({t for nb in g.adj[edited] for t in g.edges[edited, nb]["kinds"]})
    by_kind = {t: [nodes[nb] for nb in sorted(g.adj[edited]) if t in g.edges[edited, nb]["kinds"]] for t in kinds}
    changed = [n for n, d in nodes.items() if d["changed"]]
    unintended = [n for n in changed if n != edited and n not in expected]
    hops = [nodes[n]["hops"] for n in changed if nodes[n]["hops"] is not None]
    return {"edited_id": edited, "layer": g.graph["layer"], "position": g.graph.get("position", "subject_last"),
            "k": g.graph["k"],
            "by_hop": {b: _bucket_stats(v) for b, v in by_hop.items()},
            "by_sim_rank": {b: _bucket_stats(v) for b, v in by_sim.items()},
            "by_link_type": {t: _bucket_stats(v) for t, v in by_kind.items()},
            "summary": {"n_items": len(nodes), "n_changed_total": len(changed),
                        "n_changed_unintended": len(unintended), "unintended": unintended,
                        "edited_changed": nodes[edited]["changed"],
                        "max_hop_changed": max(hops) if hops else None,
                        "n_changed_unreachable": sum(nodes[n]["hops"] is None for n in changed),
                        "n_evaluated": sum(d.get("evaluated", True) for d in nodes.values())},
            **({"budget": {k: g.graph[k] for k in ("budget", "budget_ranker", "budget_n_evaluated") if k in g.graph}}
               if "budget" in g.graph else {})}


# --- files --------------------------------------------------------------------------------------

def _finite(value):
    """JSON-safe: non-finite floats become None, lists recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _sorted_copy(g: nx.Graph, convert, drop_none: bool) -> nx.Graph:
    """``g`` with nodes, edges and attribute keys in sorted order and every value passed through
    ``convert`` (with ``drop_none``, an attribute that converts to None is left out)."""
    conv = lambda attrs: {k: c for k in sorted(attrs)  # noqa: E731
                          if (c := convert(attrs[k])) is not None or not drop_none}
    out = nx.Graph(**conv(g.graph))
    out.add_nodes_from((n, conv(g.nodes[n])) for n in sorted(g.nodes))
    edges = sorted(((min(u, v), max(u, v)), d) for u, v, d in g.edges(data=True))
    out.add_edges_from((u, v, conv(d)) for (u, v), d in edges)
    return out


def _graphml_value(value):
    value = _finite(value)
    if isinstance(value, list):
        return ",".join("" if v is None else str(v) for v in value)
    return value


def graph_json(g: nx.Graph) -> str:
    """Node-link JSON (``edges`` key), sorted, so the same graph always gives the same text."""
    data = nx.node_link_data(_sorted_copy(g, _finite, drop_none=False), edges="edges")
    return json.dumps(data, sort_keys=True, indent=1, allow_nan=False) + "\n"


def save_graph(g: nx.Graph, out_dir) -> dict[str, str]:
    """Write ``graph.json`` (read back with ``nx.node_link_graph(data, edges="edges")``) and
    ``graph.graphml`` (lists joined with commas; None and non-finite values left out), atomically."""

    out = prepare_out_dir(out_dir)
    paths = {"json": str(out / "graph.json"), "graphml": str(out / "graph.graphml")}
    atomic_write_text(paths["json"], graph_json(g))
    buf = io.BytesIO()
    nx.write_graphml(_sorted_copy(g, _graphml_value, drop_none=True), buf)
    atomic_write_bytes(paths["graphml"], buf.getvalue())
    return paths


def check_k(k: int, items) -> None:
    """``--k`` must leave neighbours to link: at most the probe set's size less one; a warning when
    the graph files would be large."""
    if k > max(0, len(items) - 1):
        raise RippleError(f"--k {k} is more neighbours than the {len(items)}-item probe set has; pass at most "
                          f"{max(0, len(items) - 1)}")
    edges = k * len(items)
    if edges > 200_000:
        print(f"ripple: warning: --k {k} over {len(items)} probe items makes about {edges:,} graph edges "
              "(large graph files); a smaller --k is usually enough", file=sys.stderr)
