"""Audit reports in headless chromium: each renders, every image loads, no console error; a screenshot each.

Open audit reports in a real headless browser (Debian's chromium, driven by Playwright) and check
that each renders, that every image loads, and that the console stays free of errors; save a
full-page screenshot of each.

    apt-get install -y chromium && pip install -e ".[browser]"
    python -m benchmarks audit/browser_check reports/audit/benign/report.html reports/audit/failing/report.html \\
        --shots reports/audit --json reports/audit/browser_check.json

Exit code 0 when every report passed, 1 otherwise. The screenshot of ``X/report.html`` goes to
``--shots/<name of X>.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

IMAGES_JS = """() => Array.from(document.images).map(img => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    inline: img.src.startsWith('data:')}))"""


TOOLTIP_JS = """() => Array.from(document.querySelectorAll('div')).filter(d => d.style && d.style.zIndex &&
    getComputedStyle(d).display !== 'none' && getComputedStyle(d).opacity !== '0' && d.innerText.includes('prompt'))
    .map(d => d.innerText).join('\\n')"""


@contextlib.contextmanager
def opened(chromium: str, path: Path, width: int = 1300, height: int = 900):
    """A page of headless chromium at ``path`` (loaded), and the list its console errors, page
    errors and requests leaving the file go to (as they come)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else errors.append(r.url))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            yield page, errors
        finally:
            browser.close()


def hover_chart(page, chart_id: str, x, y) -> str:
    """Move the mouse onto the point ``(x, y)`` of an interactive chart (ripple.charts) and return
    the text of its tooltip."""
    import json

    page.locator(f"#{chart_id}").scroll_into_view_if_needed()
    box = page.locator(f"#{chart_id}").bounding_box()
    px = page.evaluate(f"ripple.charts[{json.dumps(chart_id)}].convertToPixel({{seriesIndex: 0}}, {json.dumps([x, y])})")
    page.mouse.move(0, 0)
    page.mouse.move(box["x"] + px[0], box["y"] + px[1])
    tip = ""
    for _ in range(20):  # as in check_graph: wait for the tooltip, up to 3 s
        page.wait_for_timeout(150)
        tip = page.evaluate(f"Array.from(document.querySelectorAll('#{chart_id} div')).map(d => d.innerText).join('|')")
        if tip.strip("|").strip():
            break
    return tip


def check_graph(page, graph_json: Path, element_id: str = "rg") -> dict:
    """The interactive ripple graph on an open page against the ``graph.json`` written beside it:
    every node drawn; hovering the nodes with the most changed answers (and the edited one) shows a
    tooltip with the item's prompt and its answers before and after; unticking a role hides
    exactly the items of that role; the hop filter keeps the items within the hops chosen."""
    import json

    data = json.loads(graph_json.read_text())
    nodes = {n["id"]: n for n in data["nodes"]}
    page.locator(f"#{element_id}-canvas").scroll_into_view_if_needed()
    api = f"ripple.graphs[{json.dumps(element_id)}]"
    out = {"nodes": len(nodes), "drawn": page.evaluate(f"{api}.visibleIds().length"), "hover": [], "filters": {}}
    # hover items no other node overlaps on screen (12 px apart), those whose answer changed first
    xy_of = page.evaluate(f"Object.fromEntries({api}.visibleIds().map(i => [i, {api}.pixelOf(i)]))")
    free = [n for n, (x, y) in xy_of.items()
            if all((x - u) ** 2 + (y - v) ** 2 >= 144 for m, (u, v) in xy_of.items() if m != n)]
    picks = sorted(free, key=lambda n: (not nodes[n].get("changed"), n))[:3]
    for node in picks:
        xy = xy_of[node]
        page.mouse.move(0, 0)
        page.mouse.move(*xy)
        d = nodes[node]
        want = [d.get("prompt") or "", f"{d['answer_before']} → {d['answer_after']}"]
        tip = ""
        for _ in range(20):  # the tooltip follows the mouse within a frame or two; a loaded machine is slower
            page.wait_for_timeout(150)
            tip = page.evaluate(TOOLTIP_JS)
            if tip:
                break
        out["hover"].append({"id": node, "ok": all(w in tip for w in want), "tooltip": tip[:300]})
    roles = {}
    for n in nodes.values():
        roles[n["role"]] = roles.get(n["role"], 0) + 1
    for role, count in sorted(roles.items()):
        page.evaluate(f"{api}.setRole({json.dumps(role)}, false)")
        shown = set(page.evaluate(f"{api}.visibleIds()"))
        page.evaluate(f"{api}.setRole({json.dumps(role)}, true)")
        out["filters"][role] = shown == {i for i, n in nodes.items() if n["role"] != role}
    page.fill(f"#{element_id}-hops", "1")
    shown = set(page.evaluate(f"{api}.visibleIds()"))
    out["filters"]["hops<=1"] = shown == {i for i, n in nodes.items() if n["hops"] is None or n["hops"] <= 1}
    page.fill(f"#{element_id}-hops", str(max((n["hops"] or 0) for n in nodes.values())))
    out["ok"] = (out["drawn"] == out["nodes"] and bool(out["hover"]) and all(h["ok"] for h in out["hover"])
                 and all(out["filters"].values()))  # no node to hover is a failure, not a pass
    return out


def check_report(browser, path: Path, shot: Path | None) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console_errors, page_errors, failed = [], [], []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url[:80]))
    external = []
    page.on("request", lambda r: external.append(r.url[:80]) if not r.url.startswith(("data:", "file:")) else None)
    page.goto(path.resolve().as_uri(), wait_until="load")
    images = page.evaluate(IMAGES_JS)
    title = page.title()
    text = page.inner_text("body")
    graph = None
    if (path.parent / "graph.json").is_file():  # a report with a graph must draw it
        graph = (check_graph(page, path.parent / "graph.json") if page.evaluate("!!(window.ripple && ripple.graphs.rg)")
                 else {"ok": False, "error": "graph.json is there but the page drew no graph"})
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    page.close()
    broken = [i for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    ok = bool(title) and "ripple audit" in text and not broken and not console_errors and not page_errors \
        and not failed and not external and all(i["inline"] for i in images) and (graph is None or graph["ok"])
    return {"report": str(path), "ok": ok, "title": title, "images": len(images), "broken_images": broken,
            "graph": graph,
            "console_errors": console_errors, "page_errors": page_errors, "failed_requests": failed,
            "external_requests": external, "screenshot": str(shot) if shot else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="report.html files")
    ap.add_argument("--shots", type=Path, default=None, help="directory for the screenshots")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("audit/browser_check: needs playwright (pip install -e '.[browser]') and chromium "
              "(apt-get install chromium)", file=sys.stderr)
        return 2
    if not Path(args.chromium).is_file():
        print(f"audit/browser_check: no browser at {args.chromium}; apt-get install chromium", file=sys.stderr)
        return 2
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            for path in args.reports:
                shot = args.shots / f"{path.parent.name}.png" if args.shots else None
                results.append(check_report(browser, path, shot))
        finally:
            browser.close()
    for r in results:
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['report']}: {r['images']} images, "
              f"{len(r['broken_images'])} broken, {len(r['console_errors'])} console errors, "
              f"{len(r['page_errors'])} page errors, {len(r['external_requests'])} external requests")
    if args.json:
        from ripple.io import atomic_write_json

        atomic_write_json(args.json, {"chromium": browser.version if hasattr(browser, "version") else None,
                                      "results": results})
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
