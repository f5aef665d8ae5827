"""``ripple stress``: capability over N sequential edits, one curve per method.

    ripple stress --model organism --method memit --edits 1000 --every 100 --tasks organism \\
        --compare rome alphaedit memit+rect --out runs/stress

Writes stress.json (curves, collapse points; no timings, so reruns match), timing.json,
stress.png (capability against the number of edits), stress.html (the same curves, hovering to their
values; one file that opens offline) and stress.md into ``--out``. Every
checkpoint saves each method's state in ``OUT/.ripple/resume``; after a crash or a kill,
``--resume`` with the same settings goes on from there (ripple.stress.resume).
"""

from __future__ import annotations

import sys

from ripple.errors import RippleError


def add_parser(sub) -> None:
    from ripple.commands.options import (  # lazy: start-up
        add_chat_option,
        add_model_options,
        count,
        open_share,
        ratio_above_one,
        seed,
        text,
    )
    from ripple.editing.editor import editor_help  # lazy: start-up

    p = sub.add_parser("stress", help="capability loss over N sequential edits (collapse points per method)")
    add_model_options(p)
    p.add_argument("--method", required=True, help=f"the editor: {editor_help()}; +rect adds RECT (memit+rect)")
    p.add_argument("--compare", nargs="*", default=[], metavar="METHOD", help="more methods on the same edits")
    p.add_argument("--edits", type=count, required=True, help="number of sequential edits (at least 1)")
    p.add_argument("--every", type=count, required=True, help="measure every K edits (at least 1)")
    p.add_argument("--chunk", type=count, default=1, help="edits per step: a batch editor solves each chunk of K "
                   "at once, an editor of one fact per solve (rome, ft) goes through it one by one (default 1)")
    p.add_argument("--edit-file", default=None, help="JSON/JSONL edit requests to use (default: sampled from "
                   "the world, going round its facts again past 640)")
    p.add_argument("--tasks", nargs="*", default=None, help="lm-eval tasks at each checkpoint (organism: the "
                   "organism's offline suite; english: the offline English suite for real models)")
    p.add_argument("--limit", type=count, default=None, help="lm-eval: at most this many documents per task")
    p.add_argument("--collapse-ratio", type=ratio_above_one, default=3.0,
                   help="perplexity ratio that raises the alarm (above 1)")
    p.add_argument("--task-floor", type=open_share, default=0.5, help="capability collapse: task score below this "
                   "share of the unedited model's (between 0 and 1)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the sampled edits")
    p.add_argument("--counterfact", action="store_true", help="at each checkpoint also score efficacy, paraphrase "
                   "and neighbourhood over the latest edit of every fact edited so far (slower)")
    add_chat_option(p)
    p.add_argument("--out", required=True, type=text,
                   help="directory for stress.json, stress.html (interactive), stress.png, stress.md, timing.json")
    p.add_argument("--resume", action="store_true", help="go on from the last checkpoint of a run into the same "
                   "--out that stopped (every checkpoint saves its state in OUT/.ripple/resume); same settings only")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def check_args(args) -> list[str]:
    from ripple.commands.options import check_tasks, inputs_of  # lazy: start-up
    from ripple.outputs import check_out  # lazy: start-up
    from ripple.stress.run import parse_method  # lazy: start-up

    names = [args.method, *args.compare]
    for name in names:
        parse_method(name)
    if len(set(names)) != len(names):
        raise RippleError(f"a method is named twice in --method/--compare ({', '.join(names)}); name each once")
    if args.hypernet and not any(parse_method(n).base == "rledit" for n in names):
        raise RippleError("--hypernet is for rledit, which is not among --method/--compare; drop it or add rledit")
    if args.every % args.chunk:
        raise RippleError(f"--every {args.every} is not a multiple of --chunk {args.chunk}; checkpoints fall between "
                          "steps, so pass an --every that the chunk divides")
    args.tasks = check_tasks(args.tasks)
    check_out(args.out, inputs_of(args, ("edit file", args.edit_file)),
              writes=("stress.json", "stress.md", "stress.png", "stress.html", "timing.json"))
    check_saved(args, names)
    return names


def check_saved(args, names) -> None:
    """A partial run in ``--out`` is never thrown away: without ``--resume``, or with other methods,
    a one-line error before anything loads (its settings are checked once the run's key is known)."""
    from ripple.stress.resume import ResumeStore  # lazy: start-up

    store = ResumeStore(args.out, {}, "")
    if store.exists() and not args.resume:
        raise RippleError(f"{store.folder} holds a partial run of {', '.join(store.saved_keys())}; pass --resume to "
                          "go on from it, or another --out (move that folder away to start over)")
    if store.exists():
        store.check(names)


def run(args) -> int:
    from ripple.commands.options import hypernet_overrides, model_kwargs, precheck_hparams  # lazy: start-up
    from ripple.editing.setup import load_setup  # lazy: start-up
    from ripple.io import atomic_write_json, atomic_write_text  # lazy: start-up
    from ripple.outputs import output_unit  # lazy: start-up
    from ripple.stress.report import plot_stress, stress_html, stress_table  # lazy: start-up
    from ripple.stress.run import StressOptions, parse_method, run_stress, stress_stream  # lazy: start-up

    names = check_args(args)
    for name in names:  # hyperparameters of every method, before the model is loaded
        variant = parse_method(name)
        precheck_hparams(args, variant.base, [f"rect={variant.rect}"] if variant.rect else [], strict=False)
    setup = load_setup(args.model, hparams_file=args.hparams, context=False, **model_kwargs(args))
    stream, world = stress_stream(setup, args.edits, args.edit_file, args.seed)
    if args.chunk > 1:  # a chunk is one solve of a batch editor: no two of its edits may contradict
        from ripple.editing.request_files import check_chunks  # lazy: start-up

        check_chunks(stream, args.chunk, [f"edit {i}" for i in range(1, len(stream) + 1)], where="the edit stream")
    setup.make_context(args.stats_corpus)
    from ripple.commands.options import chat_note  # lazy: start-up
    from ripple.evaluate.generated import modes_for  # lazy: start-up

    chat = modes_for(setup.tok, args.chat).chat
    chat_note(setup.tok, args.chat)
    config = {"model": str(args.model), "edits": len(stream), "every": args.every, "seed": args.seed, "chat": chat,
              "chunk": args.chunk, "counterfact": args.counterfact, "tasks": args.tasks, "limit": args.limit,
              "collapse_ratio": args.collapse_ratio, "task_floor": args.task_floor,
              "source": args.edit_file or "world stream", "set": args.set}
    store = resume_store(args, config, stream, setup, names)

    def progress(name, row):
        if not args.quiet:
            print(f"stress {name}: {row['edits']} edits, success {row['edit_success']}, untouched "
                  f"{row.get('untouched_accuracy')}, perplexity x{row['perplexity_ratio']:.3g}", file=sys.stderr)

    try:
        opts = StressOptions(every=args.every, chunk=args.chunk, tasks=tuple(args.tasks or ()), limit=args.limit,
                             collapse_ratio=args.collapse_ratio, task_floor=args.task_floor,
                             overrides=tuple(args.set or ()), counterfact=args.counterfact, chat=chat,
                             method_overrides={"rledit": hypernet_overrides(args, "rledit")})
        result = run_stress(setup, names, stream, opts, world=world, on_checkpoint=progress, store=store,
                            resume=args.resume)
    except RippleError:
        raise
    except (Exception, KeyboardInterrupt):  # a crash or a stop: say how to go on
        if store.exists():
            print(f"stress stopped; its last checkpoint is saved in {store.folder}: rerun the same command with "
                  "--resume to go on from there", file=sys.stderr)
        raise
    curves = result.curves
    with output_unit(args.out) as stage:
        atomic_write_json(stage / "timing.json", result.timing)
        plot_stress(curves, stage / "stress.png", args.collapse_ratio)
        atomic_write_text(stage / "stress.html", stress_html(curves, args.collapse_ratio,
                                                             (stage / "stress.png").read_bytes()))
        atomic_write_text(stage / "stress.md", stress_table(curves))
        atomic_write_json(stage / "stress.json", {"config": config, "curves": curves})
    store.clear()
    for name, c in curves.items():
        col, cap = c["collapse"], c["capability_collapse"]
        print(f"{name}: " + (f"perplexity alarm at {col['edits']} edits (x{col['perplexity_ratio']:.3g})"
                             if col else f"no perplexity alarm in {len(stream)} edits")
              + (f"; capability collapse at {cap['edits']} edits (task score {cap['task_score']:.3g})"
                 if cap else ""))
    print(f"wrote {args.out}")
    return 0


def resume_store(args, config: dict, stream, setup, names):
    """Where this run saves its checkpoints (``OUT/.ripple/resume``), keyed by everything the curves
    depend on. A partial run there is never thrown away: without ``--resume``, or with other
    methods or settings, it is a one-line error."""
    import hashlib  # lazy: start-up
    import json  # lazy: start-up

    from ripple.io import source_fingerprint  # lazy: start-up
    from ripple.stress.resume import ResumeStore  # lazy: start-up

    digest = hashlib.sha256(json.dumps([r.to_dict() for r in stream], sort_keys=True).encode()).hexdigest()[:16]
    key = {**config, "stats_corpus": setup.corpus.describe() if setup.corpus is not None else None, "stream": digest}
    if args.dtype != "float32":  # the weights' dtype shapes every number too (float32: states saved before it)
        key["dtype"] = args.dtype
    store = ResumeStore(args.out, key, source_fingerprint())
    if store.exists():
        store.check(names)  # and their settings, now that the key is known
    elif args.resume:
        print(f"ripple: note: nothing to resume in {args.out} (no partial run in {store.folder}); starting from "
              "the first edit", file=sys.stderr)
    return store
