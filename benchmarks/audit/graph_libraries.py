"""Which JavaScript library draws the interactive ripple graph: page size, load and render time in headless Chromium.

The same page is built with each candidate: N probe items as nodes at fixed positions (colour =
drift, red outline = answer changed, shape = role), every item joined to its 3 nearest
neighbours, a tooltip on hover, zoom and pan. Each page inlines its library (one file, no network)
and is opened from disk in Debian's chromium through Playwright; measured per page:

* ``bytes``: the page's size (library + data);
* ``load ms``: navigation start to the load event (parsing the inlined library and data);
* ``drawn ms``: navigation start to the library's own "drawn" signal (ECharts ``finished``,
  Cytoscape's first ``render``, Plotly's ``newPlot`` promise, vis-network's ``afterDrawing``,
  sigma's ``afterRender``);
* ``heap MB``: the page's used JS heap after drawing;
* errors: console or page errors (a library that needs WebGL fails in a browser without it).

Median of ``--repeats`` fresh pages. The libraries come from npm (``npm pack`` of the pinned
versions below, into ``--cache``; their sha256 is recorded)::

    apt-get install -y chromium && pip install -e ".[browser]"
    python -m benchmarks audit/graph_libraries --nodes 1000 5000 --repeats 3

The ``ripple`` rows are ripple's own report page for the same graph (ripple.interactive).

writes reports/interactive/graph_libraries.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

from benchmarks.audit.browser_check import CHROMIUM_ARGS
from benchmarks.common import REPORTS, md_table

OUT = REPORTS / "interactive"

#: name -> (npm packages at pinned versions, the file of each package to inline)
LIBRARIES = {
    "echarts": ([("echarts", "6.1.0", "dist/echarts.min.js")]),
    "cytoscape": ([("cytoscape", "3.35.0", "dist/cytoscape.min.js")]),
    "vis-network": ([("vis-network", "10.0.2", "standalone/umd/vis-network.min.js")]),
    "sigma": ([("graphology", "0.26.0", "dist/graphology.umd.min.js"), ("sigma", "3.0.2", "dist/sigma.min.js")]),
    "plotly": ([("plotly.js-dist-min", "3.3.1", "plotly.min.js")]),
}

#: What each library gives the page without code of ours (from its documentation).
FREE = {
    "echarts": "zoom/pan (roam), tooltip, legend filter by category, continuous colour legend (visualMap), "
               "symbol shapes, per-node border, adjacency highlight; line and bar charts with tooltips",
    "cytoscape": "zoom/pan, shapes, per-node border, selectors to filter and style; no tooltip, no legend, "
                 "no charts",
    "vis-network": "zoom/pan, tooltip (title), shapes, per-node border; no legend, no charts",
    "sigma": "zoom/pan (WebGL), hover events; circles only without extra programs, no tooltip, legend or charts",
    "plotly": "zoom/pan, tooltip, legend filter by trace, colour bar, marker symbols; charts of every kind; "
              "no graph model (edges drawn as line segments)",
}

SHAPES = {"edited": "star", "expected": "diamond", "unintended": "triangle", "wrong_moved": "rect", "kept": "circle"}


def fetch(cache: Path) -> dict[str, dict]:
    """Each library's inlined JavaScript, its versions and sha256, fetched with ``npm pack`` once."""
    cache.mkdir(parents=True, exist_ok=True)
    libs = {}
    for name, packages in LIBRARIES.items():
        code, meta = [], []
        for package, version, member in packages:
            tgz = cache / f"{package}-{version}.tgz"
            if not tgz.is_file():
                subprocess.run(["npm", "pack", f"{package}@{version}", "--pack-destination", str(cache)],
                               check=True, capture_output=True)
            with tarfile.open(tgz) as tar:
                data = tar.extractfile(f"package/{member}").read()
            code.append(data.decode("utf-8"))
            meta.append({"package": package, "version": version, "file": member, "bytes": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()})
        libs[name] = {"js": "\n".join(code), "packages": meta}
    return libs


def viridis(t: float) -> str:
    import matplotlib  # lazy: heavy

    r, g, b, _ = matplotlib.colormaps["viridis"](t)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def synthetic_graph(n: int, seed: int = 0) -> dict:
    """``n`` nodes in clusters, each joined to its 3 nearest neighbours (the shape of a ripple graph)."""
    rng = random.Random(seed)
    centres = [(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(max(1, n // 40))]
    nodes = []
    for i in range(n):
        cx, cy = centres[i % len(centres)]
        x, y = cx + rng.gauss(0, 0.06), cy + rng.gauss(0, 0.06)
        drift = math.exp(rng.uniform(-7, 0))
        role = "edited" if i == 0 else rng.choices(list(SHAPES)[1:], weights=[3, 2, 2, 93])[0]
        nodes.append({"id": f"item{i}", "x": round(x * 500, 2), "y": round(y * 500, 2),
                      "color": viridis((math.log(drift) + 7) / 7), "changed": rng.random() < 0.05, "role": role,
                      "label": f"subject {i}: relation {i % 12}"})
    edges = set()
    by_cluster: dict[int, list[int]] = {}
    for i in range(n):
        by_cluster.setdefault(i % len(centres), []).append(i)
    for members in by_cluster.values():
        for i in members:
            near = sorted(members, key=lambda j: (nodes[i]["x"] - nodes[j]["x"]) ** 2 + (nodes[i]["y"] - nodes[j]["y"]) ** 2)
            for j in near[1:4]:
                edges.add((min(i, j), max(i, j)))
    return {"nodes": nodes, "edges": sorted(edges)}


DONE = "window.__drawn = window.__drawn || performance.now();"
#: When the page was drawn: the candidates' signal, or ripple's own record (ripple.drawn).
DRAWN = "(window.__drawn !== undefined ? window.__drawn : (window.ripple ? window.ripple.drawn.rg : undefined))"

PAGES = {
    "echarts": """
const chart = echarts.init(document.getElementById('g'), null, {renderer: 'canvas'});
chart.on('finished', () => { %(done)s });
const shapes = %(shapes)s;
const echartsShape = {star: 'path://M0,-1L0.22,-0.31L0.95,-0.31L0.36,0.12L0.59,0.81L0,0.38L-0.59,0.81L-0.36,0.12L-0.95,-0.31L-0.22,-0.31Z',
  diamond: 'diamond', triangle: 'triangle', rect: 'rect', circle: 'circle'};
chart.setOption({animation: false, tooltip: {formatter: p => p.dataType === 'node' ? p.data.label : ''},
  series: [{type: 'graph', layout: 'none', roam: true,
    data: DATA.nodes.map(n => ({name: n.id, x: n.x, y: n.y, label: n.label, symbolSize: n.role === 'edited' ? 16 : 7,
      symbol: echartsShape[shapes[n.role]],
      itemStyle: {color: n.color, borderColor: n.changed ? 'red' : n.color, borderWidth: n.changed ? 1.5 : 0}})),
    edges: DATA.edges.map(([s, t]) => ({source: s, target: t})), lineStyle: {color: '#999', opacity: 0.3}}]});
""",
    "cytoscape": """
const shapes = %(shapes)s;
const cyShape = {star: 'star', diamond: 'diamond', triangle: 'triangle', rect: 'rectangle', circle: 'ellipse'};
const cy = cytoscape({container: document.getElementById('g'), layout: {name: 'preset'},
  elements: DATA.nodes.map(n => ({group: 'nodes', data: {id: n.id, color: n.color, shape: cyShape[shapes[n.role]],
      bw: n.changed ? 1.5 : 0, label: n.label}, position: {x: n.x, y: n.y}}))
    .concat(DATA.edges.map(([s, t], i) => ({group: 'edges', data: {id: 'e' + i, source: DATA.nodes[s].id,
      target: DATA.nodes[t].id}}))),
  style: [{selector: 'node', style: {'background-color': 'data(color)', shape: 'data(shape)', width: 7, height: 7,
      'border-width': 'data(bw)', 'border-color': 'red'}},
    {selector: 'edge', style: {width: 0.5, 'line-color': '#999', opacity: 0.3}}]});
cy.one('render', () => { %(done)s });
const tip = document.getElementById('tip');
cy.on('mouseover', 'node', e => { tip.textContent = e.target.data('label'); });
""",
    "vis-network": """
const shapes = %(shapes)s;
const visShape = {star: 'star', diamond: 'diamond', triangle: 'triangle', rect: 'square', circle: 'dot'};
const nodes = DATA.nodes.map(n => ({id: n.id, x: n.x, y: n.y, title: n.label, shape: visShape[shapes[n.role]], size: 4,
  color: {background: n.color, border: n.changed ? 'red' : n.color}, borderWidth: n.changed ? 1.5 : 0}));
const edges = DATA.edges.map(([s, t]) => ({from: DATA.nodes[s].id, to: DATA.nodes[t].id}));
const net = new vis.Network(document.getElementById('g'), {nodes, edges},
  {physics: false, interaction: {hover: true}, edges: {color: {color: '#999', opacity: 0.3}, width: 0.5}});
net.once('afterDrawing', () => { %(done)s });
""",
    "sigma": """
const g = new graphology.Graph();
DATA.nodes.forEach(n => g.addNode(n.id, {x: n.x, y: -n.y, size: n.role === 'edited' ? 8 : 3, color: n.changed ? 'red' : n.color,
  label: n.label}));
DATA.edges.forEach(([s, t]) => g.addEdge(DATA.nodes[s].id, DATA.nodes[t].id, {color: '#ccc'}));
const r = new Sigma(g, document.getElementById('g'), {renderLabels: false});
r.on('afterRender', () => { %(done)s });
r.refresh();
const tip = document.getElementById('tip');
r.on('enterNode', e => { tip.textContent = g.getNodeAttribute(e.node, 'label'); });
""",
    "plotly": """
const shapes = %(shapes)s;
const plotlySymbol = {star: 'star', diamond: 'diamond', triangle: 'triangle-up', rect: 'square', circle: 'circle'};
const ex = [], ey = [];
DATA.edges.forEach(([s, t]) => { ex.push(DATA.nodes[s].x, DATA.nodes[t].x, null); ey.push(DATA.nodes[s].y, DATA.nodes[t].y, null); });
const traces = [{type: 'scattergl', mode: 'lines', x: ex, y: ey, hoverinfo: 'skip', line: {color: 'rgba(150,150,150,0.3)', width: 0.5}}];
for (const role of Object.keys(shapes)) {
  const ns = DATA.nodes.filter(n => n.role === role);
  traces.push({type: 'scattergl', mode: 'markers', name: role, x: ns.map(n => n.x), y: ns.map(n => n.y), text: ns.map(n => n.label),
    hovertemplate: '%%{text}<extra></extra>', marker: {symbol: plotlySymbol[shapes[role]], size: role === 'edited' ? 16 : 7,
    color: ns.map(n => n.color), line: {color: ns.map(n => n.changed ? 'red' : n.color), width: ns.map(n => n.changed ? 1.5 : 0)}}});
}
Plotly.newPlot('g', traces, {showlegend: true, xaxis: {visible: false}, yaxis: {visible: false}, margin: {t: 10}},
  {scrollZoom: true}).then(() => { %(done)s });
""",
}


def ripple_page(graph: dict) -> tuple[str, float]:
    """The same graph as ripple's own report draws it (ripple.interactive: ECharts with the
    controls, the tooltip, the side panel, igraph's layout in Python), and the seconds Python took
    to lay it out and write the page."""
    import time

    import networkx as nx

    from ripple.interactive import graph_payload, graph_section
    from ripple.interactive import page as ripple_html

    t0 = time.perf_counter()
    g = nx.Graph(edited_id="item0", layer=0, layers=[0], k=3, position="last")
    for i, n in enumerate(graph["nodes"]):
        g.add_node(n["id"], subject=n["label"].split(":")[0], relation=n["label"].split(": ")[1], answer="a",
                   prompt=f"prompt of {n['label']}", answer_before="a", answer_after="b" if n["changed"] else "a",
                   changed=n["changed"], correct_before=True, delta_logp=0.0, drift=math.exp(-7 * (1 - i / len(graph["nodes"]))),
                   drift_cos=[0.0], hops=1)
    for i, j in graph["edges"]:
        g.add_edge(graph["nodes"][i]["id"], graph["nodes"][j]["id"], kind="knn", similarity=0.5)
    roles = {n["id"]: {"edited": "edited", "expected": "expected", "unintended": "unintended",
                       "wrong_moved": "wrong answer moved"}.get(n["role"], "kept") for n in graph["nodes"]}
    text = ripple_html("ripple", [graph_section(graph_payload(g, roles))])  # it records ripple.drawn.rg
    return text, time.perf_counter() - t0


def page(name: str, js: str, graph: dict) -> str:
    body = PAGES[name] % {"done": DONE, "shapes": json.dumps(SHAPES)}
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + name + "</title></head><body>"
            "<div id='g' style='width:1200px;height:800px'></div><div id='tip'></div>"
            f"<script>{js}</script><script>const DATA = {json.dumps(graph, separators=(',', ':'))};</script>"
            f"<script>{body}</script></body></html>")


def measure(browser, path: Path, timeout_ms: int = 180_000) -> dict:
    p = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    p.on("console", lambda m: errors.append(m.text[:200]) if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(str(e)[:200]))
    try:
        p.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
        try:
            p.wait_for_function(f"{DRAWN} !== undefined", timeout=timeout_ms)
            drawn = p.evaluate(DRAWN)
        except Exception as e:  # noqa: BLE001 - a page that never draws is a result
            errors.append(f"never drawn: {str(e).splitlines()[0][:120]}")
            drawn = None
        load = p.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        heap = p.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
    finally:
        p.close()
    return {"load_ms": load, "drawn_ms": drawn, "heap_mb": heap / 2 ** 20 if heap else None, "errors": errors}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ripple" / "npm")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--note", default="", help="a sentence on the conditions (another load on the machine)")
    ap.add_argument("--pages", type=Path, default=Path("/tmp/ripple_graph_libraries"),
                    help="where the test pages are written")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from ripple.io import atomic_write_json, atomic_write_text

    libs = fetch(args.cache)
    args.pages.mkdir(parents=True, exist_ok=True)
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        version = browser.version
        try:
            for n in args.nodes:
                graph = synthetic_graph(n)
                for name in [*args.libraries, "ripple"]:
                    path = args.pages / f"{name}-{n}.html"
                    python_s = None
                    if name == "ripple":
                        text, python_s = ripple_page(graph)
                    else:
                        text = page(name, libs[name]["js"], graph)
                    path.write_text(text, encoding="utf-8")
                    runs = [measure(browser, path) for _ in range(args.repeats)]
                    med = lambda k: statistics.median(r[k] for r in runs) if all(r[k] is not None for r in runs) else None  # noqa: E731
                    row = {"library": name, "nodes": n, "edges": len(graph["edges"]), "bytes": path.stat().st_size,
                           "python_s": python_s,
                           "library_bytes": sum(p["bytes"] for p in libs[name]["packages"]) if name in libs else None,
                           "load_ms": med("load_ms"), "drawn_ms": med("drawn_ms"), "heap_mb": med("heap_mb"),
                           "errors": sorted({e for r in runs for e in r["errors"]})}
                    rows.append(row)
                    print(f"{name} {n}: {row['bytes'] / 1e6:.2f} MB, load {row['load_ms']} ms, drawn "
                          f"{row['drawn_ms']} ms, heap {row['heap_mb']}, errors {row['errors'][:1]}", flush=True)
        finally:
            browser.close()
    result = {"chromium": version, "chromium_args": CHROMIUM_ARGS, "repeats": args.repeats,
              "libraries": {k: v["packages"] for k, v in libs.items() if k in args.libraries}, "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "graph_libraries.json", result)
    table = md_table(["library", "nodes", "edges", "page MB", "python s", "load ms", "drawn ms", "heap MB", "errors"],
                     [[r["library"], r["nodes"], r["edges"], f"{r['bytes'] / 1e6:.2f}",
                       "-" if r["python_s"] is None else f"{r['python_s']:.1f}",
                       "-" if r["load_ms"] is None else f"{r['load_ms']:.0f}",
                       "-" if r["drawn_ms"] is None else f"{r['drawn_ms']:.0f}",
                       "-" if r["heap_mb"] is None else f"{r['heap_mb']:.1f}", "; ".join(r["errors"]) or "none"]
                      for r in rows])
    free = md_table(["library", "versions", "what it gives the page for free"],
                    [[k, ", ".join(f"{p['package']} {p['version']}" for p in libs[k]["packages"]), FREE[k]]
                     for k in args.libraries])
    at = {(r["library"], r["nodes"]): r for r in rows}
    big = max(args.nodes)
    ms = lambda name: at.get((name, big), {}).get("drawn_ms")  # noqa: E731
    choice = ("**Chosen: ECharts.** Of the five, sigma draws fastest (WebGL) but gives no tooltip, legend, shapes "
              "or charts, and needs WebGL; Plotly gives charts and tooltips but weighs "
              f"{at.get(('plotly', big), {}).get('bytes', 0) / 1e6:.1f} MB and has no graph model; Cytoscape is the "
              f"slowest at {big} nodes ({ms('cytoscape') or 0:.0f} ms) and draws no charts; vis-network draws no charts. "
              "ECharts draws the graph with a tooltip, shapes, borders, zoom and pan, a continuous colour legend, and "
              "the line and bar charts of the other reports (stress curves, GIE recall, SIR before/after) with the "
              "same library: one inlined file for every interactive piece. The `ripple` rows are ripple's own page "
              "(ripple.interactive: ECharts plus the controls, the side panel and the data of every item), `python s` "
              "the seconds ripple took to lay the graph out (igraph) and write the page.")
    text = "\n".join(["# Which library draws the interactive ripple graph", "",
                      f"Made by `python -m benchmarks audit/graph_libraries --nodes {' '.join(map(str, args.nodes))} "
                      f"--repeats {args.repeats}` (the method: its docstring), headless Chromium {version}, "
                      f"median of {args.repeats} fresh pages each." + (f" {args.note}" if args.note else ""), "",
                      *table, "", choice, "", *free, ""])
    atomic_write_text(OUT / "graph_libraries.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
