"""The interactive report pieces (ripple.interactive): the graph's data and layout, the page's
safety (no text can close a script block; item text shows as text), determinism across processes,
the shipped ECharts copy, and a synthetic graph in headless Chromium."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import networkx as nx
import pytest

from ripple.errors import RippleError
from ripple.interactive import graph_payload, graph_section, item_role, line_chart, page
from ripple.interactive import pages as page_module

HOSTILE = '</script><script>window.pwned = 1</script><b>bold</b> & "quotes"'


def synthetic(n: int = 60, seed: int = 0) -> nx.Graph:
    rng = random.Random(seed)
    g = nx.Graph(edited_id="i0", layer=3, layers=[1, 3], k=2, position="last")
    for i in range(n):
        changed = i in (0, 5, 9, 17)
        g.add_node(f"i{i}", subject=f"S{i % 7}", relation=("capital", "language")[i % 2], answer="A",
                   prompt=HOSTILE if i == 5 else f"The thing {i} is", answer_before="A",
                   answer_after="B" if changed else "A", changed=changed, correct_before=i != 9,
                   delta_logp=rng.gauss(0, 1), drift=rng.random() ** 3, drift_cos=[rng.random(), rng.random()],
                   hops=None if i == 40 else i % 4, is_edited=i == 0)
    for i in range(n):
        for j in rng.sample(range(n), 2):
            if i != j:
                g.add_edge(f"i{i}", f"i{j}", kind="knn", kinds=["knn"], knn=True, similarity=rng.random())
    return g


def roles(g):
    return {v: item_role(v, g.nodes[v], {"i0"}, {"i17"}) for v in g.nodes}


def test_roles_follow_the_audit_classification():
    d = {"changed": True, "correct_before": True}
    assert item_role("e", d, {"e"}, set()) == "edited"
    assert item_role("x", d, set(), {"x"}) == "expected"
    assert item_role("x", d, set(), set(), swaps={"x"}) == "answer swap"
    assert item_role("x", d, set(), set()) == "unintended"
    assert item_role("x", d, set(), set(), unintended=set()) == "wrong answer moved"  # the audit's sets win
    assert item_role("x", {"changed": True, "correct_before": False}, set(), set()) == "wrong answer moved"
    assert item_role("x", {"changed": False, "correct_before": True}, set(), set()) == "kept"


def test_payload_has_every_node_and_edge_with_what_the_page_shows():
    g = synthetic()
    p = graph_payload(g, roles(g))
    assert [n["id"] for n in p["nodes"]] == sorted(g.nodes)
    assert len(p["edges"]) == g.number_of_edges()
    by = {n["id"]: n for n in p["nodes"]}
    assert by["i0"]["role"] == "edited" and by["i17"]["role"] == "expected" and by["i5"]["role"] == "unintended"
    assert by["i9"]["role"] == "wrong answer moved" and by["i40"]["hops"] is None
    assert by["i5"]["prompt"] == HOSTILE and by["i5"]["after"] == "B" and len(by["i5"]["drifts"]) == 2
    assert all(0 <= n["x"] <= 1000 and 0 <= n["y"] <= 1000 for n in p["nodes"])
    assert len({(n["x"], n["y"]) for n in p["nodes"]}) == len(p["nodes"])  # the layout spreads them
    lo, hi = p["meta"]["log_drift"]
    assert lo < hi
    assert [r["name"] for r in p["meta"]["roles"]] == ["edited", "expected", "unintended", "wrong answer moved", "kept"]
    assert "evaluated" not in by["i1"]  # no budget, nothing to say


def test_no_text_in_the_data_can_close_its_script_block():
    g = synthetic()
    html = graph_section(graph_payload(g, roles(g)))
    assert html.count("</script>") == 2  # the data block's and the call's
    data = re.search(r'<script type="application/json" id="rg-data">(.*?)</script>', html, re.S).group(1)
    assert json.loads(data)["nodes"][[n for n in sorted(g.nodes)].index("i5")]["prompt"] == HOSTILE


def test_the_layout_ignores_and_keeps_the_callers_random_state():
    g = synthetic()
    random.seed(123)
    state = random.getstate()
    a = graph_payload(g, roles(g))
    assert random.getstate() == state
    random.seed(999)
    assert graph_payload(g, roles(g)) == a


SAME_BYTES = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from test_interactive import synthetic, roles
from ripple.interactive import graph_payload, graph_section
g = synthetic(300)
print(hashlib.sha256(graph_section(graph_payload(g, roles(g))).encode()).hexdigest())
"""


def test_the_same_graph_gives_the_same_bytes_in_every_process(tmp_path):
    from pathlib import Path

    code = SAME_BYTES.format(tests=str(Path(__file__).parent))
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout.strip()
               for seed in ("1", "2")}
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_a_damaged_echarts_copy_is_refused(tmp_path, monkeypatch):
    src = page_module._vendor_dir()
    for name in ("vendor.json", "echarts.min.js"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    (tmp_path / "echarts.min.js").write_bytes((src / "echarts.min.js").read_bytes() + b"\n;window.x=1")
    monkeypatch.setattr(page_module, "_vendor_dir", lambda: tmp_path)
    page_module.echarts_js.cache_clear()
    try:
        with pytest.raises(RippleError, match="sha256; reinstall ripple"):
            page_module.echarts_js()
    finally:
        monkeypatch.undo()
        page_module.echarts_js.cache_clear()
    assert "Apache" in page_module.echarts_js()[:600]


def test_a_synthetic_graph_page_in_headless_chromium(tmp_path):
    """Drawn without errors or requests; the tooltip shows item text as text; the search and the
    damaged list work; a chart hovers to its values."""
    from test_audit import browser_or_skip

    from benchmarks.audit.browser_check import hover_chart, opened

    g = synthetic()
    chart = line_chart("c1", "efficacy over edits", "edits", "efficacy",
                       [{"name": "rome", "points": [[0, 1.0], [10, 0.9], [20, 0.5]]}])
    path = tmp_path / "page.html"
    path.write_text(page("test", [graph_section(graph_payload(g, roles(g))), chart]), encoding="utf-8")
    with opened(browser_or_skip(), path, height=1000) as (pg, errors):
        api = "ripple.graphs.rg"
        assert pg.evaluate(f"{api}.visibleIds().length") == g.number_of_nodes()
        assert pg.evaluate("window.pwned === undefined")
        pg.fill("#rg-search", "S3")
        assert set(pg.evaluate(f"{api}.visibleIds()")) == {n for n, d in g.nodes(data=True) if d["subject"] == "S3"}
        pg.fill("#rg-search", "i17")  # an id finds its item
        assert pg.evaluate(f"{api}.visibleIds()") == ["i17"]
        pg.fill("#rg-search", "")
        pg.fill("#rg-hops", "0")
        assert pg.evaluate(f"{api}.visibleIds()") == sorted(n for n, d in g.nodes(data=True) if d["hops"] in (0, None))
        pg.fill("#rg-hops", "")  # an empty box: every hop again
        assert pg.evaluate(f"{api}.visibleIds().length") == g.number_of_nodes()
        pg.click("#rg-damaged button[data-id='i5']")  # the damaged list selects its item
        detail = pg.inner_text("#rg-detail")
        assert HOSTILE in detail and "A → B" in detail and "unintended" in detail
        pg.uncheck("#rg-role-unintended")
        assert "i5" not in pg.evaluate(f"{api}.visibleIds()")
        pg.click("#rg-damaged button[data-id='i5']")  # selecting a hidden item brings it back
        assert "i5" in pg.evaluate(f"{api}.visibleIds()") and pg.is_checked("#rg-role-unintended")
        tip = hover_chart(pg, "c1", 10, 0.9)
        assert "rome" in tip and "0.9" in tip, tip
        assert not errors, errors  # no console or page error, no request leaving the file


def _graph_run(folder, g, request: dict, expected=()):
    """A directory as ripple graph writes it: graph.json and summary.json (the fields ripple view reads)."""
    from ripple.gie.graph import graph_json, ripple_profile

    folder.mkdir()
    (folder / "graph.json").write_text(graph_json(g))
    (folder / "summary.json").write_text(json.dumps({
        "method": "rome", "model": "organism", "edit": request, "edited_id": g.graph["edited_id"],
        "expected": list(expected), "n_probes": g.number_of_nodes(), "profile": ripple_profile(g, expected)}))
    return folder


def test_view_of_graph_runs_compares_items_only_for_the_same_edit(tmp_path):
    from ripple.viewing import view

    g = synthetic()
    for n in g.nodes:
        g.nodes[n].update(sim_rank=0, is_edited=n == "i0")
    h = g.copy()
    h.nodes["i9"].update(answer_after="C", changed=True)  # a second edit moved one more item
    h.nodes["i3"].update(answer_after="B", changed=True, correct_before=True)
    edit = {"prompt": "The thing {} is", "subject": "S0", "target_new": "B"}
    a, b = _graph_run(tmp_path / "a", g, edit), _graph_run(tmp_path / "b", h, edit)
    c = _graph_run(tmp_path / "c", h, {**edit, "target_new": "C"})
    page = view([a, b], tmp_path / "ab.html").read_text()
    assert "Probe items whose status differs (2 of 60)" in page
    assert "<td>i3</td>" in page and "unintended: B" in page and "<td>i9</td>" in page
    assert "ripple.graph(&quot;rg2&quot;)" in page and 'ripple.graph("rg1")' in page
    other = view([a, c], tmp_path / "ac.html").read_text()
    assert "edit different facts" in other and "status differs" not in other


def test_missing_and_non_finite_values_draw_as_gaps():
    from ripple.stress.report import chart_points

    g = synthetic()
    g.nodes["i3"]["drift"] = float("nan")  # graph.json writes a NaN drift as null
    g.nodes["i4"]["drift"] = None
    p = graph_payload(g, roles(g))
    assert all(v is not None for v in p["meta"]["log_drift"])
    block = graph_section(p)
    assert "NaN" not in block and json.loads(re.search(r'id="rg-data">(.*?)</script>', block, re.S).group(1))
    rows = [{"edits": 0, "perplexity_ratio": 1.0}, {"edits": 3, "perplexity_ratio": float("nan")},
            {"edits": 6, "perplexity_ratio": float("inf")}, {"edits": 9, "perplexity_ratio": 2.0}]
    assert chart_points(rows, "perplexity_ratio", log=True) == [[0, 1.0], [9, 2.0]]
    assert '"points":[[0,null]]' in line_chart("c", "t", "x", "y", [{"name": "a", "points": [[0, float("nan")]]}])
    with pytest.raises(RippleError, match="no items to draw"):
        graph_payload(nx.Graph(edited_id="x", layer=0), {})


def test_view_names_a_directory_given_twice_and_does_not_compare_ids_that_name_other_items(tmp_path):
    from ripple.viewing import read_runs, view

    g = synthetic()
    for n in g.nodes:
        g.nodes[n].update(sim_rank=0)
    edit = {"prompt": "The thing {} is", "subject": "S0", "target_new": "B"}
    a = _graph_run(tmp_path / "a", g, edit)
    assert [r.name for r in read_runs(str(a))] == ["a"]  # one path as a string is one run
    assert [r.name for r in read_runs([a, a])] == [str(a), f"{a} #2"]
    h = g.copy()
    h.nodes["i2"]["prompt"] = "Another probe set's i2"
    h.nodes["i3"].update(answer_after="B", changed=True)
    b = _graph_run(tmp_path / "b", h, edit)
    page = view([a, b], tmp_path / "v.html").read_text()
    assert "Probe items whose status differs (1 of 59)" in page and "Not compared: 1 ids" in page
