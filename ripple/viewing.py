"""``ripple view``: one self-contained page that compares runs ripple wrote (audits, graphs,
mitigations, stress runs): their verdicts and figures side by side with the differences
highlighted, each run's ripple graph one click away, and, for runs of the same edit (a plain edit
and its SIR revision, one editor against another, one edit on two models with the same probe set),
the probe items whose status differs.

::

    ripple view runs/rome runs/memit --out compare.html
    ripple.view(["runs/plain", "runs/sir"], "compare.html")

A run is recognised by the files ripple writes: ``report.json`` (an audit), ``summary.json`` and
``graph.json`` (``ripple graph``), ``mitigation.json`` (``ripple mitigate``), ``stress.json``
(``ripple stress``). Runs of different kinds are refused (one line), and so is an ``--out`` that is
a file ``ripple view`` did not write. Timings are left out: the same runs give the same bytes.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from networkx import node_link_graph

from ripple.auditing.render import fmt
from ripple.errors import RippleError
from ripple.interactive import bar_chart, graph_payload, graph_section, item_role, line_chart, page
from ripple.io import atomic_write_text
from ripple.stress.report import PANELS, _value, chart_points

#: The generator mark of a page ``ripple view`` wrote: the only file it overwrites.
GENERATOR = '<meta name="generator" content="ripple view">'
KIND_NAMES = {"audit": "an audit", "batch": "a batch audit", "graph": "a ripple graph", "mitigation": "a mitigation",
              "stress": "a stress run"}
STATUS_COLOUR = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "skip": "#6e7781"}
CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em} th,td{border:1px solid #d0d7de;padding:.25em .6em;
text-align:left;vertical-align:top} th{background:#f6f8fa} td.diff{background:#fff8c5;font-weight:600}
td.pass{color:#1a7f37;font-weight:600} td.warn{color:#9a6700;font-weight:600} td.fail{color:#cf222e;font-weight:600}
td.skip{color:#6e7781} details{margin:.5em 0} summary{cursor:pointer;font-weight:600} .note{color:#57606a}"""


@dataclass
class Run:
    """One directory ripple wrote: its ``name`` on the page, its ``kind``, the main JSON and the
    ripple graph (node-link, None when the run has none)."""

    path: Path
    name: str
    kind: str
    data: dict
    graph: dict | None


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RippleError(f"{path} is not readable JSON ({e.__class__.__name__}); pass a directory ripple wrote, "
                          "or rerun the command that wrote it") from None


def read_run(path, name: str | None = None) -> Run:
    """The run in directory ``path`` (see the module docstring for how its kind is told)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        what = "does not exist" if not p.exists() else "is a file"
        raise RippleError(f"{path} {what}; pass directories written by ripple audit, graph, mitigate or stress")
    graph = _load(p / "graph.json") if (p / "graph.json").is_file() else None
    name = name or p.name or str(p)
    if (p / "report.json").is_file():
        data = _load(p / "report.json")
        if "ripple_audit" in data:
            return Run(p, name, "batch" if "batch" in data else "audit", data, graph)
    if (p / "summary.json").is_file() and graph is not None:
        summary = _load(p / "summary.json")
        edited, expected = {summary.get("edited_id")}, set(summary.get("expected") or [])
        for n in graph.get("nodes", []):  # a graph run's roles: from the graph and the world's ground truth
            n.setdefault("role", item_role(n["id"], n, edited, expected))
        return Run(p, name, "graph", summary, graph)
    if (p / "mitigation.json").is_file():
        return Run(p, name, "mitigation", _load(p / "mitigation.json"), None)
    if (p / "stress.json").is_file():
        data = _load(p / "stress.json")
        if "curves" in data:
            return Run(p, name, "stress", data, None)
    raise RippleError(f"{path} is not a ripple run (no report.json, summary.json with graph.json, mitigation.json or "
                      "stress.json in it); pass directories written by ripple audit, graph, mitigate or stress")


def read_runs(paths) -> list[Run]:
    """Every run, checked to be of one kind; names are the directories' names, made unique."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise RippleError("no runs given; pass one or more directories written by ripple")
    names = [p.name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):  # the same directory twice: the second is "NAME #2"
        seen[n] = seen.get(n, 0) + 1
        names[i] = n if seen[n] == 1 else f"{n} #{seen[n]}"
    runs = [read_run(p, n) for p, n in zip(paths, names)]
    kinds = sorted({r.kind for r in runs})
    if len(kinds) > 1:
        first = {k: next(r for r in runs if r.kind == k) for k in kinds}
        said = ", ".join(f"{first[k].path} is {KIND_NAMES[k]}" for k in kinds)
        raise RippleError(f"runs of different kinds cannot be compared ({said}); pass runs of one kind")
    return runs


# --- tables -------------------------------------------------------------------------------------


def _fmt(x) -> str:
    return fmt(x, 4)


def _table(header: list[str], rows: list[list], diff_from: int | None = 1, status_rows: set[int] = frozenset(),
           same_rows: set[int] = frozenset()) -> str:
    """An HTML table; with ``diff_from``, a cell from that column on that differs from the row's cell
    there is marked ``diff`` (except in ``same_rows``, where runs differ by nature); rows in
    ``status_rows`` colour their verdicts."""
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            cls = []
            if diff_from is not None and j > diff_from and i not in same_rows and _fmt(c) != _fmt(row[diff_from]):
                cls.append("diff")
            if i in status_rows and c in STATUS_COLOUR:
                cls.append(c)
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{html.escape(_fmt(c))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</tbody></table>"


def _edits_of(run: Run):
    if run.kind in ("audit", "batch"):
        return [{k: e.get(k) for k in ("prompt", "subject", "target_new")} for e in run.data.get("edits", [])]
    if run.kind == "graph":
        e = run.data.get("edit") or {}
        return [{k: e.get(k) for k in ("prompt", "subject", "target_new")}] if e else None
    if run.kind == "mitigation":
        return [{k: e.get(k) for k in ("prompt", "subject", "target_new")} for e in run.data.get("requests", [])]
    return None


def _edit_text(edits) -> str:
    if not edits:
        return "-"
    return "; ".join(f"{(e.get('prompt') or '').replace('{}', str(e.get('subject')))} -> {e.get('target_new')}"
                     for e in edits)


def _runs_table(runs: list[Run]) -> str:
    names = [r.name for r in runs]
    rows = [["directory", *[str(r.path) for r in runs]], ["kind", *[KIND_NAMES[r.kind] for r in runs]],
            ["edit", *[_edit_text(_edits_of(r)) for r in runs]]]
    if runs[0].kind in ("audit", "batch"):
        rows += [["model", *[r.data.get("model") for r in runs]], ["method", *[r.data.get("method") for r in runs]],
                 ["mode", *[r.data.get("mode") for r in runs]],
                 ["estimate (budget)", *[(r.data.get("estimate") or {}).get("note", "no: every probe item evaluated")
                                         for r in runs]],
                 ["verdict", *[r.data["verdict"]["status"] for r in runs]],
                 ["exit code", *[r.data["verdict"]["exit_code"] for r in runs]]]
        return _table(["", *names], rows, status_rows={len(rows) - 2}, same_rows={0})
    if runs[0].kind == "graph":
        rows += [["model", *[r.data.get("model") for r in runs]], ["method", *[r.data.get("method") for r in runs]]]
    if runs[0].kind == "mitigation":
        rows += [["method", *[r.data.get("method") for r in runs]], ["mitigated", *[r.data.get("mitigated") for r in runs]],
                 ["stopped", *[r.data.get("stopped") for r in runs]]]
    return _table(["", *names], rows, same_rows={0})


def _audit_sections(runs: list[Run]) -> list[str]:
    names = [r.name for r in runs]
    metrics = sorted({k for r in runs for k, v in (r.data.get("metrics") or {}).items() if not isinstance(v, (dict, list))})
    out = ["<h2>Metrics</h2><p class=note>Cells that differ from the first run's are highlighted.</p>",
           _table(["metric", *names], [[m, *[(r.data.get("metrics") or {}).get(m) for r in runs]] for m in metrics])]
    rules = sorted({f["metric"] for r in runs for f in r.data["verdict"]["findings"]})
    status = [{f["metric"]: f["status"] for f in r.data["verdict"]["findings"]} for r in runs]
    out.append("<h2>Verdict by rule</h2>" + _table(["rule", *names], [[m, *[s.get(m) for s in status]] for m in rules],
                                                  status_rows=set(range(len(rules)))))
    return out


def _batch_sections(runs: list[Run]) -> list[str]:
    out = []
    for r in runs:
        rows = [[b["name"], b["status"], b.get("efficacy"), b.get("paraphrase"), b.get("neighborhood"),
                 b.get("unintended_changes"), b.get("perplexity_ratio")] for b in r.data["batch"]]
        out.append(f"<h2>{html.escape(r.name)}: the audits of the batch</h2>"
                   + _table(["audit", "verdict", "efficacy", "paraphrase", "neighbourhood", "unintended", "perplexity ratio"],
                            rows, diff_from=None, status_rows=set(range(len(rows)))))
    return out


def _graph_run_sections(runs: list[Run]) -> list[str]:
    names = [r.name for r in runs]
    keys = ("n_items", "n_changed_total", "n_changed_unintended", "max_hop_changed", "n_changed_unreachable",
            "n_evaluated")
    rows = [[k, *[r.data["profile"]["summary"].get(k) for r in runs]] for k in keys]
    rows += [["edited item", *[r.data.get("edited_id") for r in runs]], ["layer", *[r.data["profile"]["layer"] for r in runs]]]
    return ["<h2>Ripple profile</h2>", _table(["", *names], rows)]


def _mitigation_sections(runs: list[Run]) -> list[str]:
    names = [r.name for r in runs]
    keys = ("efficacy", "paraphrase", "neighborhood", "damaged")
    rows = [[f"{k} ({stage})", *[r.data["metrics"][stage].get(k) for r in runs]] for k in keys
            for stage in ("plain", "revised")]
    bars = bar_chart("view-mitigation", "plain edit against the revised one", [f"{k}" for k in keys[:3]],
                     [{"name": f"{r.name}: {stage}", "values": [r.data["metrics"][stage].get(k) for k in keys[:3]]}
                      for r in runs for stage in ("plain", "revised")])
    return ["<h2>Before and after the revision</h2>", _table(["", *names], rows), bars]


def _stress_sections(runs: list[Run]) -> list[str]:
    out = ["<h2>Curves</h2><p class=note>One line per run and method; hover for the values at a checkpoint.</p>"]
    for key, title, log in PANELS:
        series = [{"name": f"{r.name}: {m}", "points": chart_points(curve["checkpoints"], key, log)}
                  for r in runs for m, curve in r.data["curves"].items()]
        if any(s["points"] for s in series):
            out.append(line_chart(f"view-{key}", title, "sequential edits", title, series, y_log=log))
    names = [f"{r.name}: {m}" for r in runs for m in r.data["curves"]]
    lasts = [curve["checkpoints"][-1] for r in runs for curve in r.data["curves"].values()]
    collapse = [(curve.get("collapse") or {}).get("edits") for r in runs for curve in r.data["curves"].values()]
    rows = [["edits", *[c["edits"] for c in lasts]], ["perplexity alarm at", *collapse]]
    rows += [[title, *[_value(c, key) for c in lasts]] for key, title, _ in PANELS]
    out.append("<h2>At the last checkpoint</h2>" + _table(["", *names], rows))
    return out


def _nodes(run: Run) -> dict[str, dict]:
    return {n["id"]: n for n in run.graph["nodes"]} if run.graph else {}


def _status(n: dict) -> str:
    if n.get("evaluated") is False:  # a budgeted run did not measure it after the edit
        return "not evaluated (budget)"
    return f"{n.get('role') or ('changed' if n.get('changed') else 'kept')}: {n.get('answer_after')}"


def _same_item(items: list[dict]) -> bool:
    """Whether nodes of one id in several runs are the same probe item (prompt and true answer)."""
    return len({(n.get("prompt"), n.get("answer")) for n in items}) == 1


def _item_differences(runs: list[Run]) -> list[str]:
    """The probe items whose role or answer after the edit differs between runs of the same edit."""
    with_graph = [r for r in runs if r.graph is not None]
    if len(with_graph) < 2:
        return []
    edits = [json.dumps(_edits_of(r), sort_keys=True) for r in with_graph]
    if len(set(edits)) > 1:
        return ["<h2>Probe items</h2><p class=note>The runs edit different facts, so their probe items are not "
                "compared item by item (their graphs are below).</p>"]
    nodes = [_nodes(r) for r in with_graph]
    shared = sorted(set.intersection(*(set(n) for n in nodes)))
    common = [i for i in shared if _same_item([n[i] for n in nodes])]
    clash = len(shared) - len(common)
    if not common:
        return ["<h2>Probe items</h2><p class=note>The runs share no probe item (same id, prompt and true answer)"
                + (f"; {clash} ids name different items in different runs" if clash else "") + ".</p>"]
    differ = [i for i in common if len({_status(n[i]) for n in nodes}) > 1]
    head = (f"<h2>Probe items whose status differs ({len(differ)} of {len(common)})</h2><p class=note>Role in the audit "
            "(edited, expected, unintended, answer swap, wrong answer moved, kept) and the answer after the edit."
            + (f" Not compared: {clash} ids that name different items (prompt or true answer) in different runs."
               if clash else "")
            + (f" Items only some runs hold: {sum(len(n) for n in nodes) - len(nodes) * len(shared)}."
               if any(len(n) != len(shared) for n in nodes) else "") + "</p>")
    rows = [[i, nodes[0][i].get("prompt") or "", nodes[0][i].get("answer"), nodes[0][i].get("answer_before"),
             *[_status(n[i]) for n in nodes]] for i in differ]
    return [head, _table(["item", "prompt", "true answer", "before", *[r.name for r in with_graph]], rows, diff_from=4)
            if rows else "<p>none: every shared item has the same status in every run.</p>"]


def _graph_sections(runs: list[Run]) -> list[str]:
    """Each run's interactive ripple graph in a ``<details>``: the first open, the others drawn
    the first time they are opened (a hidden chart has no size)."""
    out = ["<h2>Ripple graphs</h2>"] if any(r.graph for r in runs) else []
    first = next((i for i, r in enumerate(runs) if r.graph is not None), None)
    for i, r in enumerate(runs):
        if r.graph is None:
            continue
        g = node_link_graph(r.graph, edges="edges")
        roles = {n: d.get("role") or item_role(n, d, {g.graph.get("edited_id")}, set()) for n, d in g.nodes(data=True)}
        section = graph_section(graph_payload(g, roles, title=f"{r.name}: {g.number_of_nodes()} probe items"),
                                f"rg{i + 1}", heading=None)
        if i != first:  # drawn on first opening
            section = section.replace(f'<script>ripple.graph("rg{i + 1}");</script>', "")
        toggle = "" if i == first else (f' ontoggle="if (this.open &amp;&amp; !ripple.graphs.rg{i + 1}) '
                                        f'ripple.graph(&quot;rg{i + 1}&quot;)"')
        out.append(f"<details{' open' if i == first else ''}{toggle}><summary>{html.escape(r.name)}</summary>"
                   f"{section}</details>")
    return out


def compare_page(runs: list[Run]) -> str:
    """The comparison page of runs of one kind (:func:`read_runs`)."""
    kind = runs[0].kind
    parts = [f"<h1>ripple view: {len(runs)} {KIND_NAMES[kind].split(' ', 1)[1]}{'s' if len(runs) > 1 else ''}</h1>",
             _runs_table(runs)]
    parts += {"audit": _audit_sections, "batch": _batch_sections, "graph": _graph_run_sections,
              "mitigation": _mitigation_sections, "stress": _stress_sections}[kind](runs)
    parts += _item_differences(runs)
    parts += _graph_sections(runs)
    text = page(f"ripple view: {', '.join(r.name for r in runs)}", parts, CSS)
    return text.replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\">" + GENERATOR, 1)


def check_out_file(out) -> Path:
    """``--out`` of ``ripple view``: a new file, or one ``ripple view`` wrote (it is replaced)."""
    if out is None or not str(out).strip():
        raise RippleError("--out is empty; pass the path of the page to write (e.g. compare.html)")
    p = Path(out).expanduser()
    if p.is_dir():
        raise RippleError(f"--out {out} is a directory; pass the path of a file (e.g. {Path(out) / 'compare.html'})")
    if p.exists():
        try:
            head = p.read_bytes()[:4096].decode("utf-8", "replace")
        except OSError:
            head = ""
        if GENERATOR not in head:
            raise RippleError(f"--out {out} exists and ripple view did not write it; pass a new file name")
    if not p.absolute().parent.is_dir():
        raise RippleError(f"the folder of --out {out} does not exist; create it or pass another path")
    return p


def view(runs, out) -> Path:
    """Write the comparison page of ``runs`` (directories ripple wrote) to the file ``out``, atomically."""
    target = check_out_file(out)
    atomic_write_text(target, compare_page(read_runs(runs)))  # a run's own files are refused by check_out_file
    return target
