"""The audit report as Markdown and as one self-contained HTML page (figures embedded as data URIs).

>>> md = report_markdown({"verdict": {"status": "pass", "exit_code": 0, "findings": []},
...                       "model": "organism", "method": "rome", "edits": [], "mode": "single"})
>>> md.splitlines()[0]
'# ripple audit: PASS'
"""

from __future__ import annotations

import base64
import html

from ripple.interactive import bar_chart, graph_section, line_chart, page_head
from ripple.tokens import fill

STATUS_COLOUR = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "skip": "#6e7781"}
FIGURE_TITLES = {"ripple_graph.png": "Ripple graph (GIE): colour is drift, red outline an answer that changed",
                 "plain_ripple_graph.png": "Ripple graph of the plain edit, before the mitigation",
                 "drift_by_hop.png": "Drift and changed answers by hop distance from the edited fact"}


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _edit_line(e: dict) -> str:
    prompt = fill(e["prompt"], e["subject"])
    old = f" (was {e['target_true']})" if e.get("target_true") else ""
    return f"{prompt} -> {e['target_new']}{old}"


def source_lines(report: dict) -> list[str]:
    """What an audited edit made elsewhere is (path, kind, tensors changed), and a line when no
    request says what it was meant to do."""
    src = report.get("source")
    if not src:
        return []
    top = sorted(src["norms"].items(), key=lambda kv: -kv[1])[:3]
    norms = ", ".join(f"{n} {v:.3g}" for n, v in top) + (", ..." if len(src["norms"]) > 3 else "")
    lines = [f"edit made elsewhere: {src['path']} ({src['kind']}), {src['changed']} tensor(s) changed"
             + (f" (||dW||: {norms})" if norms else "")]
    if not report.get("edits"):
        lines.append("no edit request given: efficacy, paraphrase, neighbourhood and relation specificity cannot be "
                     "measured (pass --edit FILE); the rest needs no request")
    return lines


MODE_TITLES = {"race": "race", "top1": "top-1", "gen": "generated", "chat": "chat"}


def _answer_sections(answers: dict | None) -> list[tuple[str, list[str], list[list]]]:
    """The metrics under each answer mode and the generated texts, before and after."""
    if not answers:
        return []
    modes = answers["modes"]
    parts = ["race and top-1 teacher-forced", "generated: the greedy completion begins with the answer"]
    parts += [f"chat: the reply's first sentence names it; {answers['scope']}"] if "chat" in modes else []
    parts += [answers["note"]] if answers.get("note") else []
    title = f"Answers by mode ({'; '.join(parts)})"
    rows = [[metric] + [fmt(values.get(m)) for m in modes] for metric, values in answers["by_mode"].items()]
    out = [(title, ["metric"] + [MODE_TITLES[m] for m in modes], rows)]
    if answers["texts"]:
        out.append(("Generated answers (greedy, before -> after)", ["prompt", "asked as", "before", "after"],
                    [[t["prompt"], "chat" if t["chat"] else "completion", t["before"].strip(), t["after"].strip()]
                     for t in answers["texts"]]))
    return out


def _sections(report: dict) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of every table, shared by both renderings."""
    out = []
    findings = report["verdict"]["findings"]
    out.append(("Verdict by rule", ["metric", "value", "status", "threshold", "items", "reference", "note", "rule"],
                [[f["metric"], fmt(f["value"]), f["status"], fmt(f["threshold"]), fmt(f.get("n")),
                  f.get("source") or "-", f.get("note") or "-", f["rule_description"]] for f in findings]))
    if report.get("batch"):
        out.append(("Audits", ["audit", "verdict", "efficacy", "paraphrase", "neighbourhood", "unintended",
                               "perplexity ratio", "report"],
                    [[b["name"], b["status"], fmt(b["efficacy"]), fmt(b["paraphrase"]), fmt(b["neighborhood"]),
                      fmt(b["unintended_changes"]), fmt(b["perplexity_ratio"]), b["report"]]
                     for b in report["batch"]]))
        return out
    mit = report.get("mitigation")
    if mit:
        out += _mitigation_sections(report, mit)
    per_edit = report.get("per_edit", [])
    if per_edit:
        out.append(("Edit metrics (before -> after)", ["edit", "efficacy", "paraphrase", "neighbourhood"],
                    [[p["prompt"] + " -> " + p["target_new"]]
                     + [f"{fmt(p['before'].get(k))} -> {fmt(p['after'].get(k))}"
                        for k in ("efficacy", "paraphrase", "neighborhood")] for p in per_edit]))
    out += _answer_sections(report.get("answers"))
    ripple = report.get("ripple")
    if ripple:
        gen = any("n_gen" in c for c in ripple["categories"].values())
        out.append(("Ripple effects (world ground truth; counted queries only)",
                    ["category", "correct", "n", "accuracy"] + (["generated: correct", "n", "accuracy"] if gen else []),
                    [[cat, c["correct"], c["n"], fmt(c["accuracy"])]
                     + ([fmt(c.get("correct_gen")), fmt(c.get("n_gen")), fmt(c.get("accuracy_gen"))] if gen else [])
                     for cat, c in ripple["categories"].items()]))
    gie = report.get("gie")
    if gie:
        out.append((f"Drift by hop (layer {gie['layer']}, {gie['position']} token, {gie['n_probes']} probes)",
                    ["hops", "items", "answers changed", "mean drift", "mean delta log p"],
                    [[hop, b["n"], b["n_changed"], fmt(b["drift_mean"]), fmt(b["delta_logp_mean"])]
                     for hop, b in gie["by_hop"].items() if b["n"]]))
    rows = report.get("most_affected", [])
    if rows:
        out.append(("Most affected probe items", ["item", "prompt", "true", "before", "after", "role",
                                                  "delta log p", "drift", "hops"],
                    [[r["id"], r["prompt"], r["answer"], r["before"], r["after"], r["role"], fmt(r["delta_logp"]),
                      fmt(r["drift"]), fmt(r["hops"])] for r in rows]))
    ppl = report.get("perplexity")
    if ppl:
        out.append((f"General perplexity ({ppl['n_sentences']} {ppl['source']} sentences)",
                    ["before", "after", "ratio"], [[fmt(ppl["before"]), fmt(ppl["after"]), fmt(ppl["ratio"])]]))
    corpus = report.get("stats_corpus")
    if corpus:
        out.append(("Key statistics corpus", ["source", "passages"], [[corpus["source"], corpus["passages"]]]))
    lm = report.get("lm_eval")
    if lm:
        rows = [[task, metric, fmt(value), fmt(lm["after"].get(task, {}).get(metric))]
                for task, metrics in lm["before"].items() for metric, value in metrics.items()]
        out.append(("lm-eval tasks (in-memory model, before and after)", ["task", "metric", "before", "after"], rows))
    norms = report.get("update_norms")
    if norms:
        out.append(("Weight update ||dW|| / ||W||", ["weight", "ratio"], [[k, fmt(v)] for k, v in norms.items()]))
    return out


def _mitigation_sections(report: dict, mit: dict) -> list[tuple[str, list[str], list[list]]]:
    """The plain and the mitigated edit side by side, the loop's rounds, and the damaged items."""
    plain, now = mit["plain"]["metrics"], report["metrics"]
    keys = [k for k in now if k in plain]
    rows = [["verdict", mit["plain"]["verdict"], report["verdict"]["status"]]]
    rows += [[k, fmt(plain[k]), fmt(now[k])] for k in keys]
    out = [(f"Mitigation: the plain edit ({mit['plain']['report']}) and the mitigated one ({mit['mitigated']}; "
            f"stopped: {mit['stopped']}, round {mit['chosen_round']} kept)", ["metric", "plain edit", "mitigated"], rows)]
    out.append(("Mitigation rounds (0: the plain edit)", ["round", "constrained items", "target re-optimized for",
                                                          "neurons re-solved (per layer)", "damaged", "efficacy",
                                                          "paraphrase", "neighbourhood", "norm growth", "rejected"],
                [[r["round"], fmt(r["constrained"]), ", ".join(f"{i} (key cosine {fmt(c)})" for i, c in (r.get("reoptimized_for") or {}).items()) or "-",
                  ", ".join(f"L{k}: {v}" for k, v in (r.get("neurons") or {}).items()) or "-", fmt(r["damaged"]),
                  fmt(r["efficacy"]), fmt(r["paraphrase"]), fmt(r["neighborhood"]), fmt(r["norm_growth"]),
                  r["rejected"] or "-"] for r in mit["rounds"]]))
    if mit["items"]:
        out.append(("Damaged items, before and after the mitigation", ["item", "prompt", "right answer",
                                                                       "unedited", "plain edit", "mitigated"],
                    [[r["id"], r["prompt"], r["answer"], r["before"], r["plain"]
                      + ("" if r["plain_correct"] else " (wrong)"), r["mitigated"]
                      + ("" if r["mitigated_correct"] else " (wrong)")] for r in mit["items"]]))
    return out


def _md_cell(x) -> str:
    if isinstance(x, str) and x.endswith("/report.html"):
        return f"[{x[:-5]}.md]({x[:-5]}.md)"
    return str(x).replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict, figures: list[str] = ()) -> str:
    v = report["verdict"]
    lines = [f"# ripple audit: {v['status'].upper()}", "",
             f"- model: `{report['model']}`, method: `{report['method']}`, mode: {report['mode']}",
             f"- exit code: {v['exit_code']}"]
    lines += [f"- edit: {_edit_line(e)}" for e in report["edits"]]
    lines += [f"- {line}" for line in source_lines(report)]
    if report.get("estimate"):
        lines.append(f"- **{report['estimate']['note']}**")
    lines.append("")
    for name in figures:
        lines += [f"![{FIGURE_TITLES.get(name, name)}]({name})", ""]
    for title, header, rows in _sections(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1f2328;padding:0 1em}
h1{margin-bottom:.2em} .badge{display:inline-block;padding:.15em .6em;border-radius:.4em;color:#fff;font-weight:600}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em} th,td{border:1px solid #d0d7de;padding:.3em .6em;
text-align:left;vertical-align:top} th{background:#f6f8fa} td.pass{color:#1a7f37;font-weight:600}
td.warn{color:#9a6700;font-weight:600} td.fail{color:#cf222e;font-weight:600} td.skip{color:#6e7781}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top} figcaption{font-size:.85em;color:#57606a;max-width:600px}
img{max-width:600px;border:1px solid #d0d7de} ul.meta{color:#57606a}
"""


def _mitigation_chart(report: dict) -> str:
    """The plain and the mitigated edit's metrics as bars that hover to their values."""
    plain, now = report["mitigation"]["plain"]["metrics"], report["metrics"]
    keys = [k for k in MITIGATION_BARS if isinstance(plain.get(k), (int, float)) or isinstance(now.get(k), (int, float))]
    return bar_chart("mitigation-bars", "the plain edit against the mitigated one", keys,
                     [{"name": "plain edit", "values": [plain.get(k) for k in keys]},
                      {"name": f"mitigated ({report['mitigation']['mitigated']})", "values": [now.get(k) for k in keys]}],
                     caption="Each core metric after the plain edit and after the mitigation (hover for the values).")


def _recall_chart(estimate: dict) -> str:
    """A budgeted audit's context: the share of damaged items each ranker found against the share of
    probe items evaluated, as the benchmark measured it, with this audit's budget marked."""
    exp = estimate["expected_recall"]
    series = [{"name": r, "points": pts} for r, pts in exp["curves"].items()]
    return line_chart("gie-recall", f"GIE recall against cost ({exp['run']}: {exp['damaged']} damaged items in "
                      f"{exp['edits']} edits)", "share of probe items evaluated (budget)", "share of damaged items found",
                      series, marks=[{"x": estimate["budget"], "label": f"this audit ({estimate['ranker']})"}], x_log=True,
                      caption="Measured by python -m benchmarks gie/recall (reports/gie.md); hover for each ranker's recall.")


#: The metrics the mitigation chart shows (those in [0, 1]: shares and accuracies).
MITIGATION_BARS = ("efficacy", "paraphrase", "neighborhood", "relation_specificity", "ripple_overall",
                   "efficacy_gen", "paraphrase_gen")


def _html_cell(c, tag: str) -> str:
    text = html.escape(str(c))
    if tag == "td" and isinstance(c, str) and c.endswith("/report.html"):
        return f'<td><a href="{text}">{text}</a></td>'
    cls = f' class="{c}"' if tag == "td" and c in STATUS_COLOUR else ""
    return f"<{tag}{cls}>{text}</{tag}>"


def _html_table(header: list[str], rows: list[list]) -> str:
    cells = lambda row, tag: "".join(_html_cell(c, tag) for c in row)  # noqa: E731
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f"<table><thead><tr>{cells(header, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def report_html(report: dict, images: dict[str, bytes], graph: dict | None = None) -> str:
    """The whole report in one HTML file; ``images`` (file name -> PNG bytes) are embedded; with
    ``graph`` (:func:`ripple.interactive.graph_payload`) the ripple graph is interactive (ECharts,
    inlined) and its PNG is the fallback for readers without scripts."""
    v = report["verdict"]
    colour = STATUS_COLOUR[v["status"]]
    meta = [f"model <code>{html.escape(str(report['model']))}</code>, method <code>"
            f"{html.escape(report['method'])}</code>, mode {html.escape(report['mode'])}, exit code {v['exit_code']}"]
    meta += [html.escape(_edit_line(e)) for e in report["edits"]]
    meta += [html.escape(line) for line in source_lines(report)]
    if report.get("estimate"):
        meta.append(f"<strong>{html.escape(report['estimate']['note'])}</strong>")
    recall = ((report.get("estimate") or {}).get("expected_recall") or {}).get("curves")
    interactive = graph is not None or "mitigation" in report or bool(recall)
    head = (page_head(f"ripple audit: {v['status']}", CSS) if interactive else
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>ripple audit: {v['status']}</title><style>{CSS}</style></head><body>")
    parts = [head, f'<h1>ripple audit <span class="badge" style="background:{colour}">{v["status"].upper()}</span></h1>',
             '<ul class="meta">' + "".join(f"<li>{m}</li>" for m in meta) + "</ul>"]
    if graph is not None:
        parts.append(graph_section(graph, "rg", fallback_png=images.get("ripple_graph.png")))
    if "mitigation" in report:
        parts.append(_mitigation_chart(report))
    if recall:
        parts.append(_recall_chart(report["estimate"]))
    for name, data in images.items():
        if graph is not None and name == "ripple_graph.png":
            continue
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        title = html.escape(FIGURE_TITLES.get(name, name))
        parts.append(f'<figure><img src="{src}" alt="{title}"><figcaption>{title}</figcaption></figure>')
    for title, header, rows in _sections(report):
        parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(header, rows)}")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
