"""``ripple edit``: apply edits and write the edited model, the delta and the metrics.

    ripple edit --model organism --method memit --edits edits.jsonl --out runs/edit [--sequential]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from ripple.editing.editor import editor_help


def add_parser(sub) -> None:
    p = sub.add_parser("edit", help=f"apply knowledge edits ({editor_help()})")
    add_edit_options(p)
    p.add_argument("--edits", required=True, help="JSON or JSONL of edit requests (CounterFact or EasyEdit fields)")
    p.add_argument("--out", required=True, help="directory for the edited model, delta.safetensors, metrics.json")
    p.add_argument("--sequential", action="store_true", help="edit one request after another (default: one batch)")
    p.add_argument("--chunk", type=int, default=1, help="requests per step in sequential mode")
    p.add_argument("--rect", type=float, default=None, help="RECT: keep this top share of the update (e.g. 0.4)")
    p.set_defaults(func=run)


def add_model_options(p) -> None:
    """The model and what editing it reads: hyperparameter file and overrides, statistics corpus."""
    p.add_argument("--model", default="organism", help="'organism', a local transformers directory, or a hub id")
    p.add_argument("--hparams", default=None, help="JSON file of hyperparameters")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="hyperparameter overrides")
    p.add_argument("--stats-corpus", default=None, help="text file (one passage a line) or hf:NAME[:CONFIG[:SPLIT]] "
                   "for key statistics; the organism uses its world's text")


def add_edit_options(p) -> None:
    """The options every command that makes one edit shares: the model options, the editor, the guard."""
    add_model_options(p)
    p.add_argument("--method", required=True, help=f"the editor: {editor_help()}")
    p.add_argument("--force", action="store_true", help="apply an update even past the norm guard")


def setup_from_args(args, requests, extra_overrides=()):
    """The library's :func:`~ripple.editing.setup.load_setup` from the shared options; warnings
    about the requests go to stderr."""
    from ripple.editing.setup import load_setup

    setup = load_setup(args.model, args.method, requests, hparams_file=args.hparams,
                       overrides=[*args.set, *extra_overrides], stats_corpus_file=args.stats_corpus)
    for warning in setup.warnings:
        print(f"ripple: warning: {warning}", file=sys.stderr)
    return setup


def run(args) -> int:
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.editing.requests import load_requests
    from ripple.editing.session import edited
    from ripple.io import atomic_write_json, prepare_out_dir
    from ripple.loading import save_model

    rect = [f"rect={args.rect}"] if args.rect is not None else []
    setup = setup_from_args(args, load_requests(args.edits), rect)
    model, tok, hp, requests, ctx = setup.model, setup.tok, setup.hp, setup.requests, setup.ctx
    out = prepare_out_dir(args.out)
    mode = "sequential" if args.sequential else "batch"
    before = [request_metrics(model, tok, r) for r in requests]
    t0 = time.perf_counter()
    with edited(ctx, args.method, requests, hp, mode=mode, chunk=args.chunk, force=args.force) as result:
        seconds = time.perf_counter() - t0
        after = [request_metrics(model, tok, r) for r in requests]
        with tempfile.TemporaryDirectory(dir=out, prefix=".model-") as tmp:
            save_model(model, tok, tmp)
            for f in Path(tmp).iterdir():
                shutil.move(str(f), out / f.name)
    metrics = {"method": result.total.method, "mode": mode, "n_requests": len(requests), "seconds": round(seconds, 3),
               "before": aggregate(before), "after": aggregate(after),
               "per_request": [{"case_id": r.case_id, "subject": r.subject, **m} for r, m in zip(requests, after)],
               "hparams": result.total.hparams}
    metrics["norm_ratios"] = result.total.norm_ratios(model)  # relative to the unedited weights
    result.total.save(out / "delta.safetensors")
    atomic_write_json(out / "metrics.json", metrics)
    a = metrics["after"]
    print(f"{metrics['method']} ({metrics['mode']}, {len(requests)} edits, {seconds:.1f}s): efficacy "
          f"{a.get('efficacy')}, paraphrase {a.get('paraphrase')}, neighbourhood {a.get('neighborhood')}; "
          f"wrote {out}")
    return 0
