"""Screenshots of the interactive audit report and of ``ripple view``, with the report's size and draw time.

Takes an audit run with a mitigation (``ripple audit ... --mitigate sir --out RUN``: RUN holds the
mitigated audit, RUN/plain the plain one), writes ``ripple view RUN/plain RUN`` to RUN-view.html,
and in headless Chromium:

* ``audit_graph.png``: RUN/plain/report.html's ripple graph with its first damaged item selected
  (the side panel shows it);
* ``view.png``: the top of the comparison page (both verdicts, the metrics, the items whose status
  differs);
* ``<name>.json`` and ``<name>.md``: each page's size, its load and draw times (median of 3 fresh
  pages), the number of nodes drawn against graph.json's, and the commands.

::

    ripple audit --model smollm2 --method rome --prompt "The capital of {} is" --subject France \\
        --target Rome --mitigate sir --out runs/fr-sir
    python -m benchmarks audit/interactive_shots runs/fr-sir --name smollm2 --out reports/interactive
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.audit.browser_check import opened
from benchmarks.common import md_table


def timings(chromium: str, path: Path, repeats: int = 3) -> dict:
    rows = []
    for _ in range(repeats):
        with opened(chromium, path) as (page, errors):
            page.wait_for_function("window.ripple && Object.keys(ripple.drawn).length > 0", timeout=120_000)
            rows.append({"load_ms": page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"),
                         "drawn_ms": page.evaluate("Math.min(...Object.values(ripple.drawn))"),
                         "errors": list(errors)})
    return {"load_ms": statistics.median(r["load_ms"] for r in rows),
            "drawn_ms": statistics.median(r["drawn_ms"] for r in rows),
            "errors": sorted({e for r in rows for e in r["errors"]})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="an audit directory written with --mitigate (it holds plain/)")
    ap.add_argument("--name", required=True, help="the model's name in the file names (smollm2)")
    ap.add_argument("--out", type=Path, default=Path("reports/interactive"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args(argv)
    from ripple.io import atomic_write_json, atomic_write_text
    from ripple.viewing import view

    plain = args.run / "plain"
    args.out.mkdir(parents=True, exist_ok=True)
    compare = view([plain, args.run], args.run.with_name(args.run.name + "-view.html"))  # beside the run, not in reports/
    n_nodes = len(json.loads((plain / "graph.json").read_text())["nodes"])
    with opened(args.chromium, plain / "report.html", 1400, 1000) as (page, errors):
        drawn = page.evaluate("ripple.graphs.rg.visibleIds().length")
        first = page.locator("#rg-damaged button").first
        if first.count():
            first.click()
            page.wait_for_timeout(400)
        page.locator("#rg").screenshot(path=str(args.out / f"{args.name}_audit_graph.png"))
        graph_errors = list(errors)
    with opened(args.chromium, compare, 1400, 1000) as (page, errors):
        page.screenshot(path=str(args.out / f"{args.name}_view.png"))
        view_errors = list(errors)
    pages = {"report.html (plain edit)": plain / "report.html", "report.html (mitigated)": args.run / "report.html",
             "ripple view of both": compare}
    result = {"run": str(args.run), "nodes": n_nodes, "nodes_drawn": drawn, "errors": graph_errors + view_errors,
              "pages": {k: {"bytes": p.stat().st_size, **timings(args.chromium, p)} for k, p in pages.items()}}
    atomic_write_json(args.out / f"{args.name}.json", result)
    table = md_table(["page", "MB", "load ms", "graph drawn ms", "errors"],
                     [[k, f"{v['bytes'] / 1e6:.2f}", f"{v['load_ms']:.0f}", f"{v['drawn_ms']:.0f}",
                       "; ".join(v["errors"]) or "none"] for k, v in result["pages"].items()])
    text = "\n".join([f"# The interactive report on {args.name}", "",
                      f"Made by `python -m benchmarks audit/interactive_shots {args.run} --name {args.name}` (its "
                      f"docstring has the audit command); headless Chromium, median of 3 fresh pages. "
                      f"{drawn} of the {n_nodes} probe items of graph.json drawn.", "", *table, "",
                      f"![the audit's ripple graph]({args.name}_audit_graph.png)", "",
                      f"![ripple view: the plain edit against the mitigated one]({args.name}_view.png)", ""])
    atomic_write_text(args.out / f"{args.name}.md", text)
    print(text)
    return 0 if drawn == n_nodes and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
