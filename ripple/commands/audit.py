"""``ripple audit``: is a proposed edit safe to ship? Apply it in a sandbox, measure, give a verdict.

    ripple audit --model organism --method rome --prompt "{} was born in" --subject "Brazouth Kaibour" \\
        --target Qirund --out runs/audit
    ripple audit --model organism --method memit --edit edits.jsonl --policy policy.toml --out runs/batch
    ripple audit --model smollm2 --method rome --edit edits.jsonl --workers 4 --out runs/batch4
    ripple audit --model smollm2 --edited runs/easyedit-ckpt --edit edits.jsonl --out runs/external

Writes report.html (self-contained), report.md and report.json into ``--out``. Exit code: 0 pass,
1 fail (and warn when the policy sets ``warn_exit_code = 1``), 2 bad input.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from ripple.commands.options import add_request_options, check_tasks, requests_from_args
from ripple.errors import RippleError


def add_parser(sub) -> None:
    from ripple.commands.options import (
        add_budget_option,
        add_chat_option,
        add_edit_options,
        add_mitigation_options,
        count,
        natural,
        seed,
        share,
        text,
    )  # lazy: start-up

    p = sub.add_parser("audit", help="audit a proposed edit: sandboxed edit, measurements, pass/warn/fail verdict")
    add_edit_options(p, edited=True)
    add_request_options(p, "JSON/JSONL file of edit requests (several: each audited alone and all together; with "
                           "--edited: what the edit was meant to do, audited together)")
    p.add_argument("--out", required=True, type=text,
                   help="directory for report.html, report.md, report.json and figures")
    p.add_argument("--policy", default=None, help="TOML file of verdict thresholds (default: the built-in policy)")
    p.add_argument("--probes", default=None, help="probe set JSONL for the ripple graph (default: the world's facts)")
    p.add_argument("--k", type=natural, default=5, help="kNN edges per probe item in the ripple graph (0: links "
                   "only)")
    p.add_argument("--rect", type=share, default=None, help="RECT: keep this top share of the update, in (0, 1] "
                   "(e.g. 0.4)")
    p.add_argument("--seed", type=seed, default=None, help="editing seed (hyperparameter seed; default 0)")
    p.add_argument("--tasks", nargs="*", default=None, help="lm-eval tasks before and after (organism: the "
                   "organism's offline suite; english: the offline English suite for real models; others need "
                   "their data cached locally)")
    p.add_argument("--limit", type=count, default=None, help="lm-eval: at most this many documents per task")
    add_mitigation_options(p, flag="--mitigate", default=None)
    add_budget_option(p)
    add_chat_option(p)
    p.add_argument("--workers", type=count, default=1, help="--edit with several edits: run the audits (each edit "
                   "alone, all together) in this many processes, each loading its own copy of the model (with "
                   "--device cuda and several GPUs, one GPU each); the reports are the serial run's")
    p.add_argument("--json", action="store_true", help="print report.json to stdout (nothing else on stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


#: What ``ripple audit`` writes into ``--out`` (``fnmatch`` patterns; see :func:`ripple.outputs.check_out`).
WRITES = ("report.html", "report.md", "report.json", "graph.json", "ripple_graph.png", "drift_by_hop.png",
          "plain_ripple_graph.png", "plain", "together",
          "edit-[0-9]*")


def check_args(args) -> None:
    """Bad input that needs no model: fail before loading anything."""
    from ripple.commands.options import check_edited, inputs_of  # lazy: start-up
    from ripple.editing.editor import get_editor  # lazy: start-up
    from ripple.outputs import check_out  # lazy: start-up

    if check_edited(args):
        if args.mitigate is not None:
            raise RippleError("--mitigate revises an edit ripple audits; for an --edited edit run ripple mitigate "
                              "--edited PATH --edit FILE")
        if args.workers > 1:
            raise RippleError("--workers splits a batch into audits; an --edited edit is one audit: drop --workers")
    else:
        get_editor(args.method)
    if args.probes is not None and not Path(args.probes).is_file():
        from ripple.io import absent  # lazy: start-up

        raise RippleError(f"probe file {args.probes} {absent(args.probes)}; pass a probe set JSONL with --probes")
    args.tasks = check_tasks(args.tasks)
    check_out(args.out, inputs_of(args, ("edit file", args.edit), ("policy file", args.policy),
                                  ("probe set", args.probes), ("edited model", args.edited)), writes=WRITES)


def run(args) -> int:
    from ripple.api import AuditOptions, Lab  # lazy: start-up
    from ripple.auditing.policy import DEFAULT_POLICY, load_policy  # lazy: start-up
    from ripple.commands.options import (  # lazy: start-up
        chat_note,
        load_edited_for,
        precheck_hparams,
        ranker_arg,
        setup_from_args,
    )

    check_args(args)
    if args.mitigate is not None:
        from ripple.mitigation import mitigation_hparams  # lazy: start-up

        mitigation_hparams(args.mitigate, args.mitigation_set)  # a bad --mitigation-set fails before the model loads
    elif args.mitigation_set:
        raise RippleError("--mitigation-set needs --mitigate NAME (e.g. --mitigate sir)")
    policy = load_policy(args.policy) if args.policy else DEFAULT_POLICY
    edited = args.edited is not None
    given = args.edit is not None or any(x is not None for x in (args.prompt, args.subject, args.target))
    requests = requests_from_args(args) if given or not edited else []
    extra = [f"rect={args.rect}"] if args.rect is not None else []
    extra += [f"seed={args.seed}"] if args.seed is not None else []
    if not edited:
        precheck_hparams(args, args.method, extra)
    setup = setup_from_args(args, requests, extra)
    workers = 1 if len(setup.requests) == 1 or edited else args.workers
    build = functools.partial(worker_context, args, requests, extra) if workers > 1 else None
    opts = AuditOptions(k=args.k, tasks=tuple(args.tasks or ()), limit=args.limit, mitigate=args.mitigate,
                        mitigation_set=tuple(args.mitigation_set or ()), budget=args.budget, force=args.force,
                        quiet=args.quiet, chat=args.chat, **ranker_arg(args))
    lab = Lab(setup, str(args.model))
    delta = load_edited_for(lab, args) if edited else None
    report = lab.write_audit(args.out, policy, args.probes, opts, workers, build, delta=delta)
    if args.workers > 1 and workers == 1 and not edited:  # held with the other notes until the audit succeeds
        print("ripple: warning: --workers: one edit is one audit; running it in this process", file=sys.stderr)
    chat_note(setup.tok, args.chat)
    verdict = report["verdict"]
    for f in verdict["findings"]:  # a rule that could not be measured, or rests on too few items, is said
        if f.get("note") and f["status"] in ("warn", "fail"):
            print(f"ripple: warning: {f['metric']}: {f['note']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        failing = [f"{f['metric']}={_short(f['value'])}" for f in verdict["findings"] if f["status"] in ("warn", "fail")]
        why = f" ({', '.join(failing)})" if failing else ""
        mit = report.get("mitigation")
        if mit:
            why += (f"; mitigated with {args.mitigate} ({mit['stopped']}): damaged items {len(mit['damaged']['plain'])}"
                    f" -> {len(mit['damaged']['mitigated'])}, plain edit {mit['plain']['verdict'].upper()}")
        print(f"ripple audit: {verdict['status'].upper()}{why}; report: {Path(args.out) / 'report.html'}")
        if report.get("estimate"):
            print(report["estimate"]["note"])
    if not args.quiet and args.json:
        print(f"ripple audit: {verdict['status'].upper()}; report: {Path(args.out) / 'report.html'}", file=sys.stderr)
    return verdict["exit_code"]


def worker_context(args, requests, extra, index: int):
    """A ``--workers`` process's own model, probe items, sentences and lm-eval bridge, loaded as
    :func:`run` loads them (worker ``index``: its GPU, :func:`ripple.auditing.parallel.worker_device`)."""
    import argparse  # lazy: start-up

    import torch  # lazy: start-up

    from ripple.auditing.measure import AuditInputs  # lazy: start-up
    from ripple.auditing.parallel import worker_device  # lazy: start-up
    from ripple.commands.options import setup_from_args  # lazy: start-up
    from ripple.evaluate.perplexity import general_sentences_for  # lazy: start-up
    from ripple.probes.sets import probe_items  # lazy: start-up

    n_gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    args = argparse.Namespace(**{**vars(args), "device": worker_device(args.device, index, n_gpus)})
    setup = setup_from_args(args, requests, extra)
    items = probe_items(args.probes, setup.world)
    bridge = None
    if args.tasks:
        from ripple.evaluate.lm_eval_bridge import LmEvalBridge  # lazy: start-up

        bridge = LmEvalBridge(setup.model, setup.tok, args.tasks, world=setup.world, limit=args.limit)
    return AuditInputs(setup, items, general_sentences_for(setup.world), bridge)


def _short(value) -> str:
    return "not measured" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
