"""``graph.html``: one edit's ripple graph as a page people explore (ripple/interactive), with its
ripple profile and the static figures; one self-contained file that opens offline.

The roles come from the graph alone (no audit classified it): edited, expected (the world's ground
truth says it must change), unintended (a right answer lost), wrong answer moved, kept.
"""

from __future__ import annotations

import base64
import html

import networkx as nx

from ripple.interactive import graph_payload, graph_section, item_role, page


def graph_roles(g: nx.Graph, expected) -> dict[str, str]:
    edited = {n for n, d in g.nodes(data=True) if d.get("is_edited")} | {g.graph["edited_id"]}
    return {n: item_role(n, d, edited, set(expected)) for n, d in g.nodes(data=True)}


def graph_html(g: nx.Graph, profile: dict, expected, images: dict[str, bytes], title: str | None = None) -> str:
    """The page: a summary line, the interactive graph (its PNG the fallback), the profile by hop and
    the other figures."""
    s = profile["summary"]
    title = title or f"ripple graph of {g.graph['edited_id']}"
    lines = [f"{s['n_items']} probe items, {s['n_changed_total']} answers changed, {s['n_changed_unintended']} "
             f"unintended; drift read at layer {profile['layer']} ({profile.get('position', 'subject_last')}), "
             f"{profile['k']} nearest neighbours per item"]
    mean = lambda x: "-" if x is None else f"{x:.3g}"  # noqa: E731
    rows = "".join(f"<tr><td>{html.escape(str(b))}</td><td>{v['n']}</td><td>{v['n_changed']}</td>"
                   f"<td>{mean(v['drift_mean'])}</td></tr>" for b, v in profile["by_hop"].items())
    parts = [f"<h1>{html.escape(title)}</h1>", "".join(f"<p>{html.escape(x)}</p>" for x in lines),
             graph_section(graph_payload(g, graph_roles(g, expected), title=title), "rg",
                           fallback_png=images.get("ripple_graph.png")),
             "<h2>Drift by hop</h2><table><thead><tr><th>hops</th><th>items</th><th>answers changed</th>"
             f"<th>mean drift</th></tr></thead><tbody>{rows}</tbody></table>"]
    for name, data in images.items():
        if name != "ripple_graph.png":
            src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            parts.append(f'<figure><img src="{src}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}'
                         "</figcaption></figure>")
    css = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328} table{border-collapse:collapse}"
           "th,td{border:1px solid #d0d7de;padding:.2em .5em} img{max-width:600px}")
    return page(title, parts, css)
