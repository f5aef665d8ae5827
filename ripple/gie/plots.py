"""Figures of one edit's GIE graph and profile (matplotlib Agg, written atomically).

::

    plot_ripple_graph(g, "out/graph.png"); plot_drift_by_hop(profile, "out/hops.png")
    plot_drift_vs_similarity(g, "out/similarity.png")
"""

from __future__ import annotations

import networkx as nx

from ripple.io import atomic_savefig

MAX_FULL = 120  # above this many nodes only the edited item's neighbourhood is drawn
TOP_DRIFT = 50


def _figure(size=(6, 4)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def plot_ripple_graph(g: nx.Graph, path) -> None:
    """Spring layout (seed 0), colour = drift at the graph's layer, red outline = answer changed,
    star = the edited item."""
    plt, fig, ax = _figure((7, 6))
    nodes = drawn_nodes(g)
    # a fresh graph in sorted node and edge order: a subgraph view iterates its node set in hash
    # order, which changes from process to process and with it the spring layout
    sub = nx.Graph()
    sub.add_nodes_from((n, g.nodes[n]) for n in nodes)
    sub.add_edges_from(sorted((min(u, v), max(u, v), d) for u, v, d in g.subgraph(nodes).edges(data=True)))
    pos = nx.spring_layout(sub, seed=0)
    drift = [sub.nodes[n]["drift"] for n in nodes]
    edge_colors = ["0.6" if sub.edges[e]["kind"] == "knn" else "tab:blue" for e in sub.edges]
    nx.draw_networkx_edges(sub, pos, ax=ax, edge_color=edge_colors, alpha=0.5)
    art = nx.draw_networkx_nodes(sub, pos, nodelist=nodes, node_color=drift, cmap="viridis", ax=ax,
                                 node_size=80, edgecolors=["red" if sub.nodes[n]["changed"] else "none"
                                                           for n in nodes], linewidths=1.5)
    edited = g.graph["edited_id"]
    ax.scatter(*pos[edited], marker="*", s=400, c="none", edgecolors="black", linewidths=1.5, zorder=3,
               label=f"edited: {edited}")
    fig.colorbar(art, ax=ax, label=f"drift (cosine distance, layer {g.graph['layer']})")
    ax.set_title(f"ripple graph: {len(nodes)} of {g.number_of_nodes()} items (red outline: answer changed)",
                 fontsize=9)
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
