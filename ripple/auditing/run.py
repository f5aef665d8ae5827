"""Run an audit end to end and write its report: one edit, or a batch (each alone, then all together).

The output directory receives ``report.json``, ``report.md``, ``report.html`` and the figures; a
batch adds ``edit-01/ ... edit-NN/`` and ``together/`` (each a full report) under a summary report.
Everything is written as one unit (:mod:`ripple.outputs`): staged, and switched in only when the
whole audit succeeded, so an interrupted or failed run leaves the previous report as it was.

::

    setup = load_setup("organism", "rome", [request])
    report = run_audit(AuditInputs(setup, items, sentences), setup.requests,
                       AuditConfig(DEFAULT_POLICY, model_name="organism"), out="runs/audit")
    report["verdict"]["exit_code"]     # 0
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from ripple.auditing.measure import AuditInputs, AuditResult, MeasureOptions, audit_edits
from ripple.auditing.parallel import run_jobs, warm_statistics
from ripple.auditing.policy import STATUSES, Basis, Policy, judge
from ripple.auditing.render import report_html, report_markdown
from ripple.editing.editor import get_editor
from ripple.editing.variant import Variant
from ripple.gie.budget import expected_recall
from ripple.gie.graph import graph_json
from ripple.gie.pipeline import Edit
from ripple.gie.plots import plot_drift_by_hop, plot_ripple_graph
from ripple.interactive import graph_payload, item_role
from ripple.io import atomic_write_json, atomic_write_text
from ripple.mitigation.run import item_table
from ripple.mitigation.run import mitigate as run_mitigation
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
    basis = {metric: Basis(**b) for metric, b in result.details.get("basis", {}).items()}
    verdict = judge(result.metrics, policy, basis)
    d = result.details
    return json_safe({
        "ripple_audit": FORMAT_VERSION, "model": model_name, "method": method, "mode": d["mode"],
        "edits": [r.to_dict() for r in requests], "verdict": verdict.to_dict(), "metrics": result.metrics,
        "per_edit": d["per_edit"], "edit_metrics": d["edit_metrics"], "ripple": d["ripple"], "gie": d["gie"],
        "most_affected": d["most_affected"], "perplexity": d["perplexity"], "update_norms": d["update_norms"],
        "stats_corpus": d.get("stats_corpus"), **({"source": d["source"]} if d.get("source") else {}),
        "lm_eval": d["lm_eval"], "answers": d.get("answers"), "hparams": hparams,
        **({"estimate": budget_estimate(d["budget"], model_name, method)} if d.get("budget") else {}),
        "policy": {"warn_exit_code": policy.warn_exit_code, "missing": policy.missing,
                   "rules": [{"metric": r.metric, "op": r.op, "warn": r.warn, "fail": r.fail} for r in policy.rules]},
    })


def budget_estimate(budget: dict, model_name: str, method: str) -> dict:
    """A budgeted audit's caveat: how many probe items were evaluated, and the share of damaged
    items the benchmark found at that budget (reports/gie.md)."""

    exp = expected_recall(model_name, Variant.parse(method).base, budget["budget"], budget["ranker"])
    note = (f"estimate: {budget['n_evaluated']} of {budget['n_items']} probe items evaluated after the edit (budget "
            f"{budget['budget']:g}, ranked by {budget['ranker']}); the others are counted as unchanged")
    if exp is None:
        note += "; no benchmark run covers this model and method (python -m benchmarks gie/recall measures the recall)"
    elif exp["recall"] is None:
        note += f"; the benchmark measured no budget this small (smallest: {exp['budget']:g})"
    else:
        note += (f"; at budget {exp['budget']:g} the benchmark found {100 * exp['recall']:.0f}% of the damaged items "
                 f"({exp['damaged']} damaged in {exp['edits']} edits, run {exp['run']}, reports/gie.md)")
    return {**budget, "expected_recall": exp, "note": note}


def write_report(directory: Path, report: dict, result: AuditResult | None, extra: dict | None = None) -> None:
    """Figures (for a single audit), then report.md, report.html and report.json; ``extra``: more
    figures to show (name -> PNG file), copied in after the ripple graph."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = []
    if result is not None and result.graphs:
        plot_ripple_graph(result.graphs[0], directory / "ripple_graph.png")
        plot_drift_by_hop(result.profiles[0], directory / "drift_by_hop.png")
        figures = ["ripple_graph.png", "drift_by_hop.png"]
    for name, src in (extra or {}).items():
        if Path(src).is_file():
            shutil.copyfile(src, directory / name)
            figures.insert(1, name)
    atomic_write_text(directory / "report.md", report_markdown(report, figures))
    images = {name: (directory / name).read_bytes() for name in figures}
    graph = None
    if result is not None and result.graphs:
        g = roled_graph(result.graphs[0], report["gie"])
        atomic_write_text(directory / "graph.json", graph_json(g))
        graph = graph_payload(g, {n: g.nodes[n]["role"] for n in g.nodes},
                              title=f"ripple graph: {g.number_of_nodes()} probe items, layer {g.graph['layer']}")
    atomic_write_text(directory / "report.html", report_html(report, images, graph))
    atomic_write_json(directory / "report.json", report)


def roled_graph(g, gie: dict):
    """A copy of the audit's GIE graph whose nodes carry their ``role`` in the audit (edited,
    expected, answer swap, unintended, wrong answer moved, kept: :func:`ripple.interactive.item_role`)."""
    g = g.copy()
    edited, expected, swaps = set(gie["edited_ids"]), set(gie["expected"]), set(gie["answer_swaps"])
    unintended = set(gie["unintended"])
    for n, d in g.nodes(data=True):
        d["role"] = item_role(n, d, edited, expected, swaps, unintended)
    return g


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


def mitigation_summary(mit, plan, plain_report: dict) -> dict:
    """The report's ``mitigation`` section: how the loop went (no timings), the plain edit's verdict
    and metrics, and every item damaged by the plain or the mitigated edit with its answers."""

    damaged = sorted(set(mit.damaged["plain"]) | set(mit.damaged["revised"]))
    rounds = [{k: r.get(k) for k in ("round", "constrained", "efficacy", "paraphrase", "neighborhood",
                                     "norm_growth", "rejected")}
              | {"damaged": len(r["damaged"]) if "damaged" in r else None,
                 "reoptimized_for": {i: r["step"]["key_cos"].get(i) for i in r.get("step", {}).get("kl_items", [])},
                 "neurons": {layer: f"{v['neurons']}/{v['of']}" for layer, v in r.get("step", {}).get("layers", {}).items()}}
              for r in mit.rounds]
    return {"name": Variant.parse(mit.revised.method).mitigation if mit.chosen else None, "mitigated": mit.revised.method,
            "stopped": mit.stopped, "chosen_round": mit.chosen, "rounds": rounds,
            "plain": {"verdict": plain_report["verdict"]["status"], "exit_code": plain_report["verdict"]["exit_code"],
                      "metrics": plain_report["metrics"], "report": "plain/report.html"},
            "damaged": {"plain": mit.damaged["plain"], "mitigated": mit.damaged["revised"]},
            "items": item_table(plan.items, damaged, {"before": mit.states["before"], "plain": mit.states["plain"],
                                                      "mitigated": mit.states["revised"]})}


@dataclass(frozen=True)
class AuditConfig:
    """How every audit of a run is judged and measured: the ``policy``, the model's name in the
    report, the measuring options, and ``mitigation`` (``(name, hparams)``: audit the mitigated
    edit beside the plain one; the verdict is then the mitigated edit's, what would ship)."""

    policy: Policy
    model_name: str
    measure: MeasureOptions = MeasureOptions()
    mitigation: tuple | None = None
    delta: object = None  # an edit made elsewhere (EditDelta): audited as given, all requests together


def _audit_one(inputs: AuditInputs, requests, cfg: AuditConfig, directory: Path, mitigate: bool = True,
               desc: str = "audit") -> dict:
    """One audit written to ``directory``; with a mitigation (and ``mitigate``): the plain edit's
    audit goes to ``directory/plain`` and the report in ``directory`` is the mitigated edit's, with
    the two side by side."""
    setup = inputs.setup
    method, hparams = setup.method, dataclasses.asdict(setup.hp)
    opts = dataclasses.replace(cfg.measure, desc=desc)
    result = audit_edits(inputs, requests, opts, delta=cfg.delta)
    report = audit_report(result, cfg.policy, cfg.model_name, method, requests, hparams)
    if cfg.mitigation is None or not mitigate:
        write_report(directory, report, result)
        return report

    name, hp_m = cfg.mitigation
    mit = run_mitigation(setup.ctx, Edit(method, tuple(requests), setup.hp, delta=result.delta, force=opts.force),
                         inputs.items, setup.world, name, hp_m, plan=result.plan, before=result.states_before)
    mitigated = audit_edits(inputs, requests, dataclasses.replace(opts, desc=f"{desc} ({name})"), delta=mit.revised)
    out = audit_report(mitigated, cfg.policy, cfg.model_name, mit.revised.method, requests, hparams)
    out["mitigation"] = json_safe(mitigation_summary(mit, result.plan, report))
    write_report(directory / "plain", report, result)
    write_report(directory, out, mitigated, extra={"plain_ripple_graph.png": directory / "plain" / "ripple_graph.png"})
    return out


def _batch_job(cfg: AuditConfig, inputs: AuditInputs, requests, directory: Path, mitigate: bool, desc: str) -> dict:
    """One audit of a batch in a worker process (module level, so that it pickles)."""
    return _audit_one(inputs, requests, cfg, directory, mitigate, desc)


def run_audit(inputs: AuditInputs, requests, cfg: AuditConfig, out, workers: int = 1, build=None) -> dict:
    """Audit ``requests`` with the setup's editor and hyperparameters (one request: a single audit;
    several: each alone and all together) and write the report(s) to ``out``; returns the
    top-level report. ``workers`` > 1: the audits of a batch run in that many processes
    (:mod:`ripple.auditing.parallel`), each with the inputs ``build(index)`` loads; the reports are
    the serial run's."""
    requests = list(requests)
    method = inputs.setup.method
    if workers > 1 and build is None:
        raise ValueError("run_audit: workers > 1 needs build, the function that loads a worker's inputs")
    with output_unit(out) as tmp:
        if len(requests) == 1 or cfg.delta is not None:  # an edit made elsewhere is one delta: one audit
            return _audit_one(inputs, requests, cfg, tmp)
        width = max(2, len(str(len(requests))))
        named = [(f"edit-{i + 1:0{width}d}", [r]) for i, r in enumerate(requests)] + [("together", requests)]
        # a sequential editor's together job is one solve per request: audited plain, not revised
        sequential = get_editor(method).one_request_per_solve
        jobs = [(name, reqs, not (sequential and len(reqs) > 1), f"audit {n}/{len(named)} ({name})")
                for n, (name, reqs) in enumerate(named, 1)]
        if workers > 1:

            warm_statistics(inputs.setup, cfg.mitigation)
            job_cfg = dataclasses.replace(cfg, measure=dataclasses.replace(cfg.measure, quiet=True))
            reports = run_jobs(jobs, functools.partial(_batch_job, job_cfg), build, min(workers, len(jobs)), tmp, quiet=cfg.measure.quiet)
        else:
            reports = {name: _audit_one(inputs, reqs, cfg, tmp / name, mit, desc) for name, reqs, mit, desc in jobs}
        rows = [_row(name, reports[name]) for name, *_ in jobs]
        summary = batch_summary(rows, cfg.model_name, method, requests, cfg.policy)
        write_report(tmp, summary, None)
        return summary
