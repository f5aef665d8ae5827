"""``ripple graph``: the GIE ripple graph of one edit, its profile and figures.

    ripple graph --model organism --method rome --edit edit.json --out runs/graph [--probes probes.jsonl]
    ripple graph --model smollm2 --edited runs/lora-adapter [--edit edit.json] --out runs/graph-lora

Writes graph.html (the interactive ripple graph: one page that opens offline), graph.json,
graph.graphml, ripple_graph.png, drift_by_hop.png, drift_vs_similarity.png and summary.json (the
profile, the edit, the method, the hyperparameters, seconds) into ``--out``; the model on disk is
never changed (the edit is undone in memory after measuring).
"""

from __future__ import annotations

import time
from pathlib import Path

from ripple.commands.options import add_budget_option, ranker_arg
from ripple.errors import RippleError


def add_parser(sub) -> None:
    from ripple.commands.options import add_chat_option, add_edit_options, natural, text  # lazy: start-up

    p = sub.add_parser("graph", help="the ripple graph of one edit: what else it moves (GIE)")
    add_edit_options(p, edited=True)
    p.add_argument("--edit", default=None, help="JSON object or one-line JSONL holding one edit request (required "
                   "with --method; with --edited: what the edit meant, optional: without it the graph centres on the "
                   "changed item that drifted most)")
    p.add_argument("--out", required=True, type=text,
                   help="directory for graph.json/.graphml, three PNGs and summary.json")
    p.add_argument("--probes", default=None, help="probe set (JSONL); default: every fact of the model's world.json")
    p.add_argument("--k", type=natural, default=5, help="kNN edges per item (0: links only)")
    add_budget_option(p)
    add_chat_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def one_request(path):
    """The single edit request in ``path``; a one-line error for none or several."""
    from ripple.editing.request_files import load_requests  # lazy: start-up

    requests = load_requests(path)
    if len(requests) != 1:
        raise RippleError(f"edit file {path} holds {len(requests)} requests; ripple graph takes exactly one "
                          "(put one JSON object in the file)")
    return requests[0]


def run(args) -> int:
    from dataclasses import asdict  # lazy: start-up

    from ripple.api import Lab  # lazy: start-up
    from ripple.commands.options import (
        check_edited,
        inputs_of,
        load_edited_for,
        precheck_hparams,
        setup_from_args,
    )  # lazy: start-up
    from ripple.editing.editor import get_editor  # lazy: start-up
    from ripple.gie import GraphOptions  # lazy: start-up
    from ripple.io import atomic_write_json  # lazy: start-up
    from ripple.outputs import check_out, output_unit  # lazy: start-up
    from ripple.results import GRAPH_FILES  # lazy: start-up

    edited = check_edited(args)
    if not edited:
        get_editor(args.method)
        if args.edit is None:
            raise RippleError("no edit given: pass --edit FILE holding the one edit request to graph")
    if args.probes is not None and not Path(args.probes).is_file():
        from ripple.io import absent  # lazy: start-up

        raise RippleError(f"probe file {args.probes} {absent(args.probes)}; pass a probe set JSONL with --probes")
    check_out(args.out, inputs_of(args, ("edit file", args.edit), ("probe set", args.probes),
                                  ("edited model", args.edited)), writes=(*GRAPH_FILES, "summary.json"))
    request = one_request(args.edit) if args.edit is not None else None
    if not edited:
        precheck_hparams(args, args.method)
    setup = setup_from_args(args, [request] if request is not None else [])
    lab = Lab(setup, str(args.model))
    delta = load_edited_for(lab, args) if edited else None
    t0 = time.perf_counter()
    from ripple.commands.options import chat_note  # lazy: start-up
    from ripple.evaluate.generated import modes_for  # lazy: start-up

    opts = GraphOptions(k=args.k, force=args.force, budget=args.budget, chat=modes_for(setup.tok, args.chat).chat,
                        **ranker_arg(args))
    report = lab.graph_for(setup.requests[0] if request is not None else None, opts, args.probes, delta=delta)
    profile = report.profile
    method = setup.method
    estimate = budget_note(args.budget, args.model, method, profile)
    with output_unit(args.out) as stage:
        report.write(stage)
        seconds = time.perf_counter() - t0
        summary = {"method": method, "model": str(args.model),
                   "edit": report.request.to_dict() if report.request is not None else None,
                   "edited_id": profile["edited_id"], "expected": report.expected, "n_probes": report.n_probes,
                   "seconds": round(seconds, 3), "hparams": asdict(setup.hp), "profile": profile,
                   **({"source": delta.info.get("source"), "centre": report.graph.graph.get("centre")} if edited else {}),
                   **({"estimate": estimate} if estimate else {})}
        atomic_write_json(stage / "summary.json", summary)
    chat_note(setup.tok, args.chat)
    s = profile["summary"]
    print(f"{method} on {profile['edited_id']} ({report.n_probes} probes, layer {profile['layer']} "
          f"@{profile['position']}, {seconds:.1f}s): {s['n_changed_total']} answers changed, "
          f"{s['n_changed_unintended']} unintended, edited item changed: {s['edited_changed']}"
          + (f"; generated answers lost outside the edit: {report.graph.graph['generated_lost_unintended']}"
             if "generated_lost_unintended" in report.graph.graph else "") + f"; wrote {args.out}")
    if estimate:
        print(estimate["note"])
    return 0


def budget_note(budget, model, method: str, profile: dict) -> dict | None:
    """What a budgeted run's figures mean: how many items were evaluated, and the share of damage
    the benchmark found at that budget (reports/gie.md)."""
    if budget is None:
        return None
    from ripple.gie.budget import expected_recall  # lazy: start-up

    s = profile["summary"]
    ranker = profile.get("budget", {}).get("budget_ranker")
    exp = expected_recall(str(model), method, budget, ranker)
    head = (f"estimate: {s['n_evaluated']} of {s['n_items']} probe items evaluated (budget {budget:g}, ranked by "
            f"{ranker}); the others keep their before-edit answers")
    if exp is None:
        tail = "no benchmark run covers this model and method (python -m benchmarks gie/recall measures the recall)"
    elif exp["recall"] is None:
        tail = f"the benchmark measured no budget this small (smallest: {exp['budget']:g}; run {exp['run']})"
    else:
        tail = (f"at budget {exp['budget']:g} the benchmark found {100 * exp['recall']:.0f}% of the damaged items "
                f"({exp['damaged']} damaged in {exp['edits']} edits, run {exp['run']}, reports/gie.md)")
    return {"budget": budget, "n_evaluated": s["n_evaluated"], "n_items": s["n_items"], "ranker": ranker,
            "expected_recall": exp, "note": f"{head}; {tail}"}
