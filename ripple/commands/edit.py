"""``ripple edit``: apply edits and write the edited model, the delta and the metrics.

    ripple edit --model organism --method memit --edits edits.jsonl --out runs/edit [--sequential]

``--out`` receives the edited model (a transformers directory), ``delta.safetensors`` and
``metrics.json`` as one unit (:mod:`ripple.outputs`): the model there is always the base model plus
the delta saved beside it.
"""

from __future__ import annotations

import sys
import time

from ripple.commands.options import add_edit_options, count, inputs_of, precheck_hparams, setup_from_args, share, text
from ripple.editing.editor import editor_help
from ripple.outputs import MODEL_FILES


def add_parser(sub) -> None:
    p = sub.add_parser("edit", help=f"apply knowledge edits ({editor_help()})")
    add_edit_options(p)
    p.add_argument("--edits", required=True, type=text,
                   help="JSON or JSONL of edit requests (CounterFact or EasyEdit fields)")
    p.add_argument("--out", required=True, type=text,
                   help="directory for the edited model, delta.safetensors, metrics.json")
    p.add_argument("--sequential", action="store_true", help="edit one request after another (default: one batch)")
    p.add_argument("--chunk", type=count, default=1, help="requests per step in sequential mode (at least 1)")
    p.add_argument("--rect", type=share, default=None, help="RECT: keep this top share of the update, in (0, 1] "
                   "(e.g. 0.4)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


#: What ``ripple edit`` writes into ``--out`` (``fnmatch`` patterns; see :func:`ripple.outputs.check_out`).
WRITES = ("delta.safetensors", "metrics.json", *MODEL_FILES)


def run(args) -> int:
    from ripple.editing.editor import get_editor  # lazy: start-up
    from ripple.editing.metrics import aggregate, request_metrics  # lazy: start-up
    from ripple.editing.request_files import load_requests  # lazy: start-up
    from ripple.editing.session import edit_groups, edited  # lazy: start-up
    from ripple.io import atomic_write_json  # lazy: start-up
    from ripple.loading import save_model  # lazy: start-up
    from ripple.outputs import check_out, output_unit  # lazy: start-up
    from ripple.progress import each  # lazy: start-up

    get_editor(args.method)
    check_out(args.out, inputs_of(args, ("edit file", args.edits)), writes=WRITES)
    mode = "sequential" if args.sequential else "batch"
    notes: list[str] = []
    requests = load_requests(args.edits, batch=mode == "batch", notes=notes, chunk=args.chunk)
    for note in notes:
        print(f"ripple: note: {note}", file=sys.stderr)
    groups = edit_groups(args.method, requests, mode, args.chunk)  # a batch the editor cannot take: before loading
    rect = [f"rect={args.rect}"] if args.rect is not None else []
    precheck_hparams(args, args.method, rect)
    setup = setup_from_args(args, requests, rect)
    model, tok, hp, requests, ctx = setup.model, setup.tok, setup.hp, setup.requests, setup.ctx
    before = [request_metrics(model, tok, r) for r in each(requests, "measuring the unedited model")]
    with output_unit(args.out) as stage:
        t0 = time.perf_counter()
        with edited(ctx, args.method, requests, hp, mode=mode, chunk=args.chunk, force=args.force) as result:
            seconds = time.perf_counter() - t0
            after = [request_metrics(model, tok, r) for r in each(requests, "measuring the edited model")]
            save_model(model, tok, stage, base=args.model, edit={"method": args.method, "mode": mode,
                                                                 "requests": len(requests)})
        metrics = {"method": result.total.method, "mode": mode, "n_requests": len(requests),
                   "seconds": round(seconds, 3), "before": aggregate(before), "after": aggregate(after),
                   "per_request": [{"case_id": r.case_id, "subject": r.subject, **m} for r, m in zip(requests, after)],
                   "hparams": result.total.hparams,
                   "stats_corpus": setup.corpus.describe() if setup.corpus is not None else None,
                   "norm_ratios": result.total.norm_ratios(model)}  # relative to the unedited weights
        result.total.save(stage / "delta.safetensors")
        atomic_write_json(stage / "metrics.json", metrics)
    trained = (result.deltas[0].info or {}).get("trained_batch_edits") if result.deltas else None
    if trained and len(groups[0]) < trained:
        print(f"ripple: note: this RLEdit hypernetwork was trained on calls of {trained} edits and was given "
              f"{len(groups[0])} a call; one at a time it keeps fewer untouched facts (on the organism 41% "
              f"against 61% in calls of 20 after 60 edits: reports/rledit_sequential.md); pass --chunk {trained}",
              file=sys.stderr)
    a = metrics["after"]
    print(f"{metrics['method']} ({metrics['mode']}, {len(requests)} edits, {seconds:.1f}s): efficacy "
          f"{a.get('efficacy')}, paraphrase {a.get('paraphrase')}, neighbourhood {a.get('neighborhood')}; "
          f"wrote {args.out}")
    return 0
