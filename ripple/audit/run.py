"""Run an audit end to end and write its report: one edit, or a batch (each alone, then all together).

The output directory receives ``report.json``, ``report.md``, ``report.html`` and the figures; a
batch adds ``edit-01/ ... edit-NN/`` and ``together/`` (each a full report) under a summary report.
Everything is written as one unit (:mod:`ripple.outputs`): staged, and switched in only when the
whole audit succeeded, so an interrupted or failed run leaves the previous report as it was.

::

    setup = load_setup("organism", "rome", [request])
    report = run_audit(setup, setup.requests, items, sentences, DEFAULT_POLICY, out="runs/audit",
                       model_name="organism")
    report["verdict"]["exit_code"]     # 0
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ripple.audit.measure import AuditResult, audit_edits
from ripple.audit.policy import STATUSES, Policy, judge
from ripple.audit.render import report_html, report_markdown
from ripple.io import atomic_write_json, atomic_write_text
from ripple.outputs import output_unit

REPORT_FILES = ("report.json", "report.md", "report.html")
FORMAT_VERSION = 1


def json_safe(obj):
    """``obj`` with non-finite floats as the strings "nan" / "inf" / "-inf" (valid JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def audit_report(result: AuditResult, policy: Policy, model_name: str, method: str, requests, hparams: dict) -> dict:
    """The JSON report of one audit (no timings: the same inputs and seed give the same report)."""
    verdict = judge(result.metrics, policy)
    d = result.details
    return json_safe({
        "ripple_audit": FORMAT_VERSION, "model": model_name, "method": method, "mode": d["mode"],
        "edits": [r.to_dict() for r in requests], "verdict": verdict.to_dict(), "metrics": result.metrics,
        "per_edit": d["per_edit"], "edit_metrics": d["edit_metrics"], "ripple": d["ripple"], "gie": d["gie"],
        "most_affected": d["most_affected"], "perplexity": d["perplexity"], "update_norms": d["update_norms"],
        "stats_corpus": d.get("stats_corpus"),
        "lm_eval": d["lm_eval"], "hparams": hparams,
        "policy": {"warn_exit_code": policy.warn_exit_code, "missing": policy.missing,
                   "rules": [{"metric": r.metric, "op": r.op, "warn": r.warn, "fail": r.fail} for r in policy.rules]},
    })


def write_report(directory: Path, report: dict, result: AuditResult | None) -> None:
    """Figures (for a single audit), then report.md, report.html and report.json."""
    from ripple.gie.plots import plot_drift_by_hop, plot_ripple_graph

    directory.mkdir(parents=True, exist_ok=True)
    figures = []
    if result is not None and result.graphs:
        plot_ripple_graph(result.graphs[0], directory / "ripple_graph.png")
        plot_drift_by_hop(result.profiles[0], directory / "drift_by_hop.png")
        figures = ["ripple_graph.png", "drift_by_hop.png"]
    atomic_write_text(directory / "report.md", report_markdown(report, figures))
    images = {name: (directory / name).read_bytes() for name in figures}
    atomic_write_text(directory / "report.html", report_html(report, images))
    atomic_write_json(directory / "report.json", report)


def _row(name: str, report: dict) -> dict:
    m = report["metrics"]
    return {"name": name, "status": report["verdict"]["status"], "exit_code": report["verdict"]["exit_code"],
            "efficacy": m.get("efficacy"), "paraphrase": m.get("paraphrase"), "neighborhood": m.get("neighborhood"),
            "unintended_changes": m.get("unintended_changes"), "perplexity_ratio": m.get("perplexity_ratio"),
            "report": f"{name}/report.html"}


def batch_summary(rows: list[dict], model_name: str, method: str, requests, policy: Policy) -> dict:
    """The summary report of a batch: the worst verdict, and one row per audit."""
    worst = max(rows, key=lambda r: (STATUSES.index(r["status"]), r["exit_code"]))
    findings = [{"metric": r["name"], "value": None, "status": r["status"], "threshold": None,
                 "rule_description": f"verdict of the {r['name']} audit ({r['report']})"} for r in rows]
    return json_safe({
        "ripple_audit": FORMAT_VERSION, "model": model_name, "method": method, "mode": "batch audit",
        "edits": [r.to_dict() for r in requests],
        "verdict": {"status": worst["status"], "exit_code": max(r["exit_code"] for r in rows), "findings": findings},
        "batch": rows, "policy": {"warn_exit_code": policy.warn_exit_code, "missing": policy.missing},
    })


def run_audit(setup, requests, items, sentences, policy: Policy, out, model_name: str, k: int = 5,
              force: bool = False, quiet: bool = True, bridge=None) -> dict:
    """Audit ``requests`` with ``setup``'s editor and hyperparameters (one request: a single audit;
    several: each alone and all together) and write the report(s) to ``out``; returns the
    top-level report."""
    requests = list(requests)
    method, hparams = setup.method, dataclasses.asdict(setup.hp)
    with output_unit(out) as tmp:
        if len(requests) == 1:
            result = audit_edits(setup, requests, items, sentences, k=k, force=force, quiet=quiet, bridge=bridge)
            report = audit_report(result, policy, model_name, method, requests, hparams)
            write_report(tmp, report, result)
            return report
        rows = []
        width = max(2, len(str(len(requests))))
        jobs = [(f"edit-{i + 1:0{width}d}", [r]) for i, r in enumerate(requests)] + [("together", requests)]
        for n, (name, reqs) in enumerate(jobs, 1):
            result = audit_edits(setup, reqs, items, sentences, k=k, force=force, quiet=quiet,
                                 desc=f"audit {n}/{len(jobs)} ({name})", bridge=bridge)
            report = audit_report(result, policy, model_name, method, reqs, hparams)
            write_report(tmp / name, report, result)
            rows.append(_row(name, report))
        summary = batch_summary(rows, model_name, method, requests, policy)
        write_report(tmp, summary, None)
        return summary
