"""Figures of one edit's GIE graph and profile (matplotlib Agg, written atomically).

::

    plot_ripple_graph(g, "out/graph.png"); plot_drift_by_hop(profile, "out/hops.png")
    plot_drift_vs_similarity(g, "out/similarity.png")
"""

from __future__ import annotations

import networkx as nx

from ripple.interactive.graph import drift_range
from ripple.io import atomic_savefig

MAX_FULL = 120  # above this many nodes only the edited item's neighbourhood is drawn
TOP_DRIFT = 50


def _figure(size=(6, 4)):
    import matplotlib  # lazy: heavy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: heavy

    fig, ax = plt.subplots(figsize=size)
    return plt, fig, ax


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=100)
    finally:
        plt.close(fig)


def drawn_nodes(g: nx.Graph) -> list[str]:
    """All nodes of a small graph; of a big one, the edited item's 2-hop neighbourhood and the
    ``TOP_DRIFT`` nodes of largest drift."""
    if g.number_of_nodes() <= MAX_FULL:
        return sorted(g.nodes)
    near = nx.single_source_shortest_path_length(g, g.graph["edited_id"], cutoff=2)
    top = sorted(g.nodes, key=lambda n: (-g.nodes[n]["drift"], n))[:TOP_DRIFT]
    return sorted(set(near) | set(top))


#: Items labelled by name on the ripple graph: the edited one and this many of the most affected others.
LABELLED = 8


def drift_norm(values: list[float], edited: float | None = None):
    """A colour scale that shows the small drifts too: logarithmic between a low percentile of the
    positive drifts and the largest drift of an item other than the edited one (the edited item,
    usually far above the rest, is clipped to the top colour instead of setting the scale;
    :func:`ripple.interactive.graph.drift_range`, which the interactive graph uses too)."""
    from matplotlib.colors import LogNorm, Normalize  # lazy: heavy

    if sum(v > 0 for v in values) < 2:
        return Normalize(vmin=0.0, vmax=max(values + [1e-12]))
    lo, hi = drift_range(values, edited)
    return LogNorm(vmin=lo, vmax=hi, clip=True)


def node_label(g: nx.Graph, n: str) -> str:
    d = g.nodes[n]
    before, after = d.get("answer_before"), d.get("answer_after")
    text = f"{d.get('subject', n)}: {d.get('relation', '')}"
    return f"{text}\n{before} -> {after}" if d.get("changed") else text


def most_affected_nodes(g: nx.Graph, nodes: list[str], edited: str, k: int = LABELLED) -> list[str]:
    """The ``k`` items of ``nodes`` other than ``edited`` with the largest drift, changed answers first."""
    rest = [n for n in nodes if n != edited]
    return sorted(rest, key=lambda n: (not g.nodes[n]["changed"], -g.nodes[n]["drift"], n))[:k]


def label_margins(ax, pos: dict, nodes: list[str], text) -> None:
    """Label ``nodes`` in two columns beside the graph (left of it for nodes left of the centre,
    right for the others), in the order of their height, each joined to its node by a thin line:
    labels of a dense cluster never overlap."""
    import numpy as np  # lazy: heavy

    xy = np.array(list(pos.values()))
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    pad = 0.08 * (x1 - x0 + 1e-9)
    by_x = sorted(nodes, key=lambda n: (pos[n][0], n))  # the left half of them left, the rest right
    halves = {-1: set(by_x[: len(by_x) // 2]), 1: set(by_x[len(by_x) // 2:])}
    for side in (-1, 1):
        mine = sorted(halves[side], key=lambda n: (-pos[n][1], n))
        ys = np.linspace(y1, y0, len(mine) + 2)[1:-1] if len(mine) > 1 else [pos[n][1] for n in mine]
        for n, y in zip(mine, ys):
            ax.annotate(text(n), pos[n], xytext=((x1 + pad) if side > 0 else (x0 - pad), y), textcoords="data",
                        ha="left" if side > 0 else "right", va="center", fontsize=6.5, zorder=4,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7", "alpha": 0.9},
                        arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.6})
    ax.set_xlim(x0 - 0.45 * (x1 - x0), x1 + 0.45 * (x1 - x0))


def plot_ripple_graph(g: nx.Graph, path) -> None:
    """Spring layout (seed 0), colour = drift at the graph's layer on a log scale that shows small
    drifts (:func:`drift_norm`), red outline = answer changed, star = the edited item; the edited
    item and the most affected others are labelled by subject and relation."""
    plt, fig, ax = _figure((10, 6.5))
    nodes = drawn_nodes(g)
    # a fresh graph in sorted node and edge order: a subgraph view iterates its node set in hash
    # order, which changes from process to process and with it the spring layout
    sub = nx.Graph()
    sub.add_nodes_from((n, g.nodes[n]) for n in nodes)
    sub.add_edges_from(sorted((min(u, v), max(u, v), d) for u, v, d in g.subgraph(nodes).edges(data=True)))
    pos = nx.spring_layout(sub, seed=0, k=2.5 / max(1, len(nodes)) ** 0.5, iterations=100)
    drift = [sub.nodes[n]["drift"] for n in nodes]
    edited = g.graph["edited_id"]
    norm = drift_norm(drift, g.nodes[edited]["drift"] if edited in g.nodes else None)
    edge_colors = ["0.6" if sub.edges[e]["kind"] == "knn" else "tab:blue" for e in sub.edges]
    nx.draw_networkx_edges(sub, pos, ax=ax, edge_color=edge_colors, alpha=0.4)
    art = nx.draw_networkx_nodes(sub, pos, nodelist=nodes, node_color=[max(d, norm.vmin) for d in drift],
                                 cmap="viridis", ax=ax, node_size=80,
                                 edgecolors=["red" if sub.nodes[n]["changed"] else "none" for n in nodes],
                                 linewidths=1.5)
    art.set_norm(norm)
    ax.scatter(*pos[edited], marker="*", s=400, c="none", edgecolors="black", linewidths=1.5, zorder=3,
               label=f"edited: {edited}")
    label_margins(ax, pos, [edited, *most_affected_nodes(sub, nodes, edited)], lambda n: node_label(sub, n))
    scale = "log scale" if norm.__class__.__name__ == "LogNorm" else "linear"
    fig.colorbar(art, ax=ax, label=f"drift (cosine distance, layer {g.graph['layer']}; {scale}, edited item clipped)")
    ax.set_title(f"ripple graph: {len(nodes)} of {g.number_of_nodes()} items (red outline: answer changed; "
                 f"labelled: the {LABELLED} most affected)", fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_axis_off()
    _save(plt, fig, path)


def plot_drift_by_hop(profile: dict, path) -> None:
    """Mean drift (bars) and share of changed answers (line) per hop bucket."""
    plt, fig, ax = _figure()
    buckets = list(profile["by_hop"])
    stats = [profile["by_hop"][b] for b in buckets]
    ax.bar(buckets, [s["drift_mean"] or 0.0 for s in stats], color="tab:blue", alpha=0.7)
    ax.set_xlabel("hops from the edited item")
    ax.set_ylabel(f"mean drift (cosine distance, layer {profile['layer']})")
    twin = ax.twinx()
    twin.plot(buckets, [s["share_changed"] if s["share_changed"] is not None else float("nan") for s in stats],
              "o-", color="tab:red")
    twin.set_ylabel("share of answers changed", color="tab:red")
    twin.set_ylim(0, 1.05)
    for x, s in zip(buckets, stats):
        ax.annotate(f"n={s['n']}", (x, 0), ha="center", va="bottom", fontsize=7)
    _save(plt, fig, path)


def plot_drift_vs_similarity(g: nx.Graph, path) -> None:
    """Similarity to the edited item before the edit against drift; changed answers in red."""
    plt, fig, ax = _figure()
    nodes = sorted(n for n in g.nodes if not g.nodes[n]["is_edited"])
    for changed, color in ((False, "tab:blue"), (True, "tab:red")):
        pick = [n for n in nodes if g.nodes[n]["changed"] == changed]
        ax.scatter([g.nodes[n]["sim_to_edited"] for n in pick], [g.nodes[n]["drift"] for n in pick], s=12,
                   c=color, label="answer changed" if changed else "answer kept")
    ax.set_xlabel("cosine similarity to the edited item (before the edit)")
    ax.set_ylabel(f"drift (cosine distance, layer {g.graph['layer']})")
    ax.legend(fontsize=7)
    _save(plt, fig, path)
