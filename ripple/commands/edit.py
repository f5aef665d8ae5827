"""``ripple edit``: apply edits and write the edited model, the delta and the metrics.

    ripple edit --model organism --method memit --edits edits.jsonl --out runs/edit [--sequential]

``--out`` receives the edited model (a transformers directory), ``delta.safetensors`` and
``metrics.json`` as one unit (:mod:`ripple.outputs`): the model there is always the base model plus
the delta saved beside it.
"""

from __future__ import annotations

import sys
import time

from ripple.commands.options import count, device_map, max_memory, share, text
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


MODEL_HELP = ("'organism', 'smollm2', 'gemma3-270m', a .gguf file, a local transformers directory, or a hub id")
DTYPES = ("float32", "bfloat16", "float16")


def add_model_argument(p) -> None:
    """``--model``, ``--dtype`` and where the model goes (``--device``, or ``--device-map`` with
    ``--max-memory`` and ``--offload-folder``)."""
    p.add_argument("--model", default="organism", type=text, help=MODEL_HELP)
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="the weights' dtype (the edit's solve runs "
                   "in float64, the delta is kept in float32 and applied in this dtype)")
    p.add_argument("--device", default="cpu", type=text, help="the device for the whole model: cpu, cuda, "
                   "cuda:1 (default cpu; --device-map spreads it instead)")
    p.add_argument("--device-map", default=None, type=device_map, help="spread the model over devices with "
                   "accelerate: auto, balanced, sequential, or a JSON file of {module: device} (devices: 0, 1, "
                   "cpu, disk)")
    p.add_argument("--max-memory", default=None, type=max_memory, metavar="DEV=SIZE,...",
                   help="with --device-map: the memory each device may hold, e.g. 0=20GiB,1=20GiB,cpu=64GiB")
    p.add_argument("--offload-folder", default=None, help="with --device-map: where weights offloaded to disk "
                   "go (default: a temporary directory)")


def model_kwargs(args) -> dict:
    """:func:`ripple.loading.load_model`'s keyword arguments from :func:`add_model_argument`'s options
    (the device checked first: one line, before anything loads)."""
    from ripple.devices import check_device

    check_device(args.device)
    return {"dtype": args.dtype, "device": args.device, "device_map": args.device_map,
            "max_memory": args.max_memory, "offload_folder": args.offload_folder}


def add_model_options(p) -> None:
    """The model and what editing it reads: hyperparameter file and overrides, statistics corpus."""
    add_model_argument(p)
    p.add_argument("--hparams", default=None, help="JSON file of hyperparameters (flat, or laid out per method "
                   "as a model's ripple_hparams.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="hyperparameter overrides")
    p.add_argument("--stats-corpus", default=None, help="the text for key statistics: a text file (one passage a line), "
                   "hf:NAME[:CONFIG[:SPLIT]], samples:N (N passages sampled from the model, cached), graph (the "
                   "knowledge graph's sentences) or english; default: the organism's world text, for other models "
                   "the measured default (samples:256)")
    p.add_argument("--hypernet", default=None, type=text, help="--method rledit: the directory of a hypernetwork "
                   "'ripple rledit train' wrote (default: the organism's shipped one, or the one trained and cached "
                   "for this model)")


def add_edit_options(p) -> None:
    """The options every command that makes one edit shares: the model options, the editor, the guard."""
    add_model_options(p)
    p.add_argument("--method", required=True, help=f"the editor: {editor_help()}")
    p.add_argument("--force", action="store_true", help="apply an update even past the norm guard")


def inputs_of(args, *extra) -> list[tuple[str, object]]:
    """The files a command reads, for :func:`ripple.outputs.check_out` (``extra``: ``(label, path)``)."""
    from ripple.editing.corpora import parse_spec
    from ripple.loading import model_path

    corpus = args.stats_corpus if args.stats_corpus and parse_spec(args.stats_corpus)[0] == "file" else None
    return [("model directory", model_path(args.model)), ("hyperparameter file", args.hparams),
            ("statistics corpus", corpus), ("RLEdit hypernetwork", getattr(args, "hypernet", None)), *extra]


def hypernet_overrides(args, method: str, strict: bool = True) -> list[str]:
    """``hypernet=DIR`` for rledit when ``--hypernet`` is given; for another editor nothing, or with
    ``strict`` a one-line error."""
    given = getattr(args, "hypernet", None)
    if not given or (method != "rledit" and not strict):
        return []
    if method != "rledit":
        from ripple.errors import RippleError

        raise RippleError(f"--hypernet is for --method rledit, not {method}; drop it or pass --method rledit")
    return [f"hypernet={given}"]


def precheck_hparams(args, method: str, extra_overrides=(), strict: bool = True) -> None:
    """Resolve ``method``'s hyperparameters from the options before the model is loaded (its
    ``config.json`` gives the architecture), so that a bad value fails at once; layer indices are
    checked against the model's depth after loading."""
    import json

    from ripple.editing.hparams import resolve_hparams
    from ripple.loading import model_path

    path = model_path(args.model)
    model_type = None
    if path is not None and (path / "config.json").is_file():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except (ValueError, OSError, AttributeError, RecursionError):
            return  # the loader says what is wrong with it
    resolve_hparams(method, str(model_type), None, model_dir=path, json_file=args.hparams,
                    overrides=[*args.set, *extra_overrides, *hypernet_overrides(args, method, strict)])


def setup_from_args(args, requests, extra_overrides=()):
    """The library's :func:`~ripple.editing.setup.load_setup` from the shared options; warnings
    about the requests go to stderr."""
    from ripple.editing.setup import load_setup

    setup = load_setup(args.model, args.method, requests, hparams_file=args.hparams,
                       overrides=[*args.set, *extra_overrides, *hypernet_overrides(args, args.method)],
                       stats_corpus_file=args.stats_corpus, **model_kwargs(args))
    for warning in setup.warnings:
        print(f"ripple: warning: {warning}", file=sys.stderr)
    return setup


#: What ``ripple edit`` writes into ``--out`` (``fnmatch`` patterns; see :func:`ripple.outputs.check_out`).
WRITES = ("delta.safetensors", "metrics.json", *MODEL_FILES)


def run(args) -> int:
    from ripple.editing.editor import get_editor
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.editing.requests import load_requests
    from ripple.editing.session import edit_groups, edited
    from ripple.io import atomic_write_json
    from ripple.loading import save_model
    from ripple.outputs import check_out, output_unit
    from ripple.progress import each

    get_editor(args.method)
    check_out(args.out, inputs_of(args, ("edit file", args.edits)), writes=WRITES)
    mode = "sequential" if args.sequential else "batch"
    notes: list[str] = []
    requests = load_requests(args.edits, batch=mode == "batch", notes=notes, chunk=args.chunk)
    for note in notes:
        print(f"ripple: note: {note}", file=sys.stderr)
    edit_groups(args.method, requests, mode, args.chunk)  # a batch the editor cannot take: before loading
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
    a = metrics["after"]
    print(f"{metrics['method']} ({metrics['mode']}, {len(requests)} edits, {seconds:.1f}s): efficacy "
          f"{a.get('efficacy')}, paraphrase {a.get('paraphrase')}, neighbourhood {a.get('neighborhood')}; "
          f"wrote {args.out}")
    return 0
