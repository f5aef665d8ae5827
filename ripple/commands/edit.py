"""``ripple edit``: apply edits and write the edited model, the delta and the metrics.

    ripple edit --model organism --method memit --edits edits.jsonl --out runs/edit [--sequential]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ripple.errors import RippleError


def add_parser(sub) -> None:
    p = sub.add_parser("edit", help="apply knowledge edits (rome, memit, emmet, alphaedit, ft; rect as an option)")
    add_edit_options(p)
    p.add_argument("--edits", required=True, help="JSON or JSONL of edit requests (CounterFact or EasyEdit fields)")
    p.add_argument("--out", required=True, help="directory for the edited model, delta.safetensors, metrics.json")
    p.add_argument("--sequential", action="store_true", help="edit one request after another (default: one batch)")
    p.add_argument("--chunk", type=int, default=1, help="requests per step in sequential mode")
    p.add_argument("--rect", type=float, default=None, help="RECT: keep this top share of the update (e.g. 0.4)")
    p.set_defaults(func=run)


def add_edit_options(p) -> None:
    """The options every command that edits shares: model, method, hyperparameters, statistics, guard."""
    p.add_argument("--model", default="organism", help="'organism', a local transformers directory, or a hub id")
    p.add_argument("--method", required=True, help="rome, memit, emmet, alphaedit or ft")
    p.add_argument("--hparams", default=None, help="JSON file of hyperparameters")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="hyperparameter overrides")
    p.add_argument("--stats-corpus", default=None, help="text file (one passage a line) or hf:NAME[:CONFIG[:SPLIT]] "
                   "for key statistics; the organism uses its world's text")
    p.add_argument("--force", action="store_true", help="apply an update even past the norm guard")


def world_of(model_path: str):
    """The world a model was trained on (its ``world.json``; the organism has one), else None."""
    world_file = Path(model_path) / "world.json"
    if not world_file.is_file():
        return None
    from ripple.organism.evaluate import load_world

    return load_world(world_file)


def stats_corpus(corpus_file: str | None, world) -> list[str]:
    """The statistics corpus: a user file, a ``hf:NAME[:CONFIG[:SPLIT]]`` dataset, else the
    world's text (the organism's)."""
    if corpus_file and corpus_file.startswith("hf:"):
        return dataset_corpus(corpus_file[3:])
    if corpus_file:
        p = Path(corpus_file)
        if not p.is_file():
            raise RippleError(f"statistics corpus {p} does not exist; pass a text file with one passage a line")
        lines = [x.strip() for x in p.read_text().splitlines() if x.strip()]
        if not lines:
            raise RippleError(f"statistics corpus {p} is empty; pass a text file with one passage a line")
        return lines
    if world is not None:
        from ripple.organism.edits import world_corpus

        return world_corpus(world)
    raise RippleError("this model has no world.json; pass --stats-corpus FILE with general text for the "
                      "MLP key statistics")


@dataclass
class EditSetup:
    """What every editing command needs: the model, its hyperparameters, the checked requests
    (completed from the world when the model has one), the world, and the editing context."""

    model: object
    tok: object
    spec: object
    hp: object
    requests: list
    world: object
    ctx: object


def setup_edit(args, requests, extra_overrides=()) -> EditSetup:
    """Load ``args.model``, resolve ``args.method``'s hyperparameters, validate and complete the
    requests, and build the context with the statistics corpus (one-line errors throughout)."""
    from ripple.editing.hparams import resolve_hparams
    from ripple.editing.methods import EditContext
    from ripple.editing.requests import validate_for_model
    from ripple.loading import load_model

    model, tok, spec = load_model(args.model)
    hp = resolve_hparams(args.method, spec.model_type, spec.n_layers(model), model_dir=model.name_or_path,
                         json_file=args.hparams, overrides=[*args.set, *extra_overrides])
    for warning in validate_for_model(requests, tok, model):
        print(f"ripple: warning: {warning}", file=sys.stderr)
    world = world_of(model.name_or_path)
    if world is not None:
        from ripple.organism.edits import complete_from_world

        requests = [complete_from_world(world, r) for r in requests]
    ctx = EditContext(model, tok, spec, stats_corpus(args.stats_corpus, world))
    return EditSetup(model, tok, spec, hp, requests, world, ctx)


def dataset_corpus(spec: str, limit: int = 20000) -> list[str]:
    """Text lines of a ``datasets`` dataset (its ``text`` column), e.g. ``wikitext:wikitext-103-raw-v1:train``."""
    try:
        import datasets
    except ImportError:
        raise RippleError("--stats-corpus hf:... needs the datasets package (pip install datasets); "
                          "or pass a text file") from None
    name, config, split = (spec.split(":") + [None, None])[:3]
    try:
        ds = datasets.load_dataset(name, config, split=split or "train")
    except Exception as e:  # offline, unknown name, missing config: all the same to the user
        raise RippleError(f"cannot load dataset {spec!r} ({type(e).__name__}); make it available locally "
                          "(HF_DATASETS_OFFLINE needs a cached copy) or pass a text file") from None
    if "text" not in ds.column_names:
        raise RippleError(f"dataset {spec!r} has no 'text' column (it has {', '.join(ds.column_names)})")
    return [t for t in ds["text"][:limit] if t and t.strip()]


def run(args) -> int:
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.editing.requests import load_requests
    from ripple.editing.session import run_edits
    from ripple.io import atomic_write_json, prepare_out_dir
    from ripple.loading import save_model

    rect = [f"rect={args.rect}"] if args.rect is not None else []
    setup = setup_edit(args, load_requests(args.edits), rect)
    model, tok, hp, requests, ctx = setup.model, setup.tok, setup.hp, setup.requests, setup.ctx
    out = prepare_out_dir(args.out)
    before = [request_metrics(model, tok, r) for r in requests]
    t0 = time.perf_counter()
    result = run_edits(ctx, args.method, requests, hp, mode="sequential" if args.sequential else "batch",
                       chunk=args.chunk, force=args.force)
    seconds = time.perf_counter() - t0
    after = [request_metrics(model, tok, r) for r in requests]
    metrics = {"method": result.total.method, "mode": "sequential" if args.sequential else "batch",
               "n_requests": len(requests), "seconds": round(seconds, 3), "before": aggregate(before),
               "after": aggregate(after), "per_request": [{"case_id": r.case_id, "subject": r.subject, **m}
                                                          for r, m in zip(requests, after)],
               "hparams": result.total.hparams}
    with tempfile.TemporaryDirectory(dir=out, prefix=".model-") as tmp:
        save_model(model, tok, tmp)
        for f in Path(tmp).iterdir():
            shutil.move(str(f), out / f.name)
    result.restore(ctx)
    metrics["norm_ratios"] = result.total.norm_ratios(model)  # relative to the unedited weights
    result.total.save(out / "delta.safetensors")
    atomic_write_json(out / "metrics.json", metrics)
    a = metrics["after"]
    print(f"{metrics['method']} ({metrics['mode']}, {len(requests)} edits, {seconds:.1f}s): efficacy "
          f"{a.get('efficacy')}, paraphrase {a.get('paraphrase')}, neighbourhood {a.get('neighborhood')}; "
          f"wrote {out}")
    return 0
