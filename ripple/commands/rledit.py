"""``ripple rledit train``: train RLEdit's hypernetwork for a model.

    ripple rledit train --model organism --out runs/hypernet
    ripple rledit train --model smollm2                     # cached; later rledit edits find it
    ripple rledit train --model DIR --edits train.jsonl --set n_sequences=40 --out runs/hn

Writes ``hypernet.safetensors`` and ``hypernet.json`` (the model it was trained for, the
hyperparameters, the loss of every sequence and the seconds) into ``--out`` as one unit, or
without ``--out`` into ripple's cache for this model (``$RIPPLE_CACHE/rledit/...``), where
``--method rledit`` finds it when no ``--hypernet`` is given.
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    from ripple.commands.options import add_model_argument, text  # lazy: start-up

    p = sub.add_parser("rledit", help="RLEdit's hypernetwork: train it for a model (ripple rledit train)")
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    t = actions.add_parser("train", help="train the hypernetwork over sequences of edits")
    add_model_argument(t)
    t.add_argument("--out", default=None, type=text, help="directory for hypernet.safetensors and hypernet.json "
                   "(default: ripple's cache for this model, where rledit edits look)")
    t.add_argument("--edits", default=None, type=text, help="JSON/JSONL edit requests to train on (default: the "
                   "training half of the world's facts)")
    t.add_argument("--hparams", default=None, help="JSON file of rledit hyperparameters")
    t.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="hyperparameter overrides (e.g. n_sequences=40 rank=256 seed=1)")
    t.add_argument("--stats-corpus", default=None, help="text for unrelated prompts when the model has no world "
                   "(as for ripple edit)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.set_defaults(func=run_train)


def run_train(args) -> int:
    from ripple.commands.options import inputs_of, model_kwargs, precheck_hparams  # lazy: start-up
    from ripple.editing.request_files import load_requests  # lazy: start-up
    from ripple.editing.setup import load_setup  # lazy: start-up
    from ripple.outputs import check_out, output_unit  # lazy: start-up
    from ripple.rledit.hypernet import model_identity  # lazy: start-up
    from ripple.rledit.store import cache_dir_for  # lazy: start-up
    from ripple.rledit.train import train  # lazy: start-up

    if args.out is not None:
        check_out(args.out, inputs_of(args, ("edit file", args.edits)),
                  writes=("hypernet.json", "hypernet.safetensors"))
    precheck_hparams(args, "rledit")
    requests = load_requests(args.edits) if args.edits else None
    setup = load_setup(args.model, "rledit", requests or (), hparams_file=args.hparams, overrides=args.set,
                       stats_corpus_file=args.stats_corpus, **model_kwargs(args))
    if setup.world is None and not requests:
        from ripple.errors import RippleError  # lazy: start-up

        raise RippleError("this model has no world to draw training edits from; pass --edits FILE")
    log = (lambda *a, **k: None) if args.quiet else (lambda msg, **k: print(msg, file=sys.stderr, flush=True))
    hn = train(setup.ctx, setup.world, setup.hp, requests=setup.requests or None, log=log)
    out = args.out if args.out is not None else cache_dir_for(model_identity(setup.model, setup.spec))
    with output_unit(out) as stage:
        hn.save(stage)
    t = hn.meta["training"]
    print(f"trained in {t['seconds']:.0f} s ({len(t['sequences'])} sequences, last edit loss "
          f"{t['sequences'][-1]['edit']:.4g}); wrote {out}")
    return 0
