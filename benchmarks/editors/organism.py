"""The editors on the organism, part by part: quality of single, batch and sequential edits, speed, samples.

How good and how fast are the editors on the organism? Writes ``reports/editors.md`` (plus
``editors_<part>.json`` per part and PNG plots) in ``--out``.

    python -m benchmarks editors/organism --parts single batch sequential speed samples --model organism --out reports
    python -m benchmarks editors/organism --parts single --n-single 100 --methods rome memit --rect

Parts (each can run alone, in its own process; the markdown is rebuilt from every
``editors_<part>.json`` present in ``--out``):

* single: random edits, each applied alone to the unedited model: CounterFact metrics, relation
  specificity (the subject's other facts), fluency before/after, seconds per edit;
* batch: one batch per size (MEMIT, EMMET, AlphaEdit), capped at the world's distinct editable facts;
* sequential: edits one after another, checkpoints every ``--every`` edits (efficacy so far,
  paraphrase, neighbourhood, accuracy on untouched facts, ``‖ΔW‖/‖W‖``), and where the norm guard
  would have refused;
* speed: seconds per edit and their split, ROME against its forward+backward floor, MEMIT batches;
* samples: how many corpus tokens the second moment C needs (ROME, MEMIT).

Every edit is forced past the norm guard (``force=True``); the guard's verdict is recorded instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.common import set_threads
from benchmarks.editors.common import (
    BATCHABLE,
    CF,
    METHODS,
    PARTS,
    RECT,
    SAMPLE_SIZES,
    Bench,
    distinct_edits,
    edited,
    edited_key,
    fluency_of,
    kept,
    log,
    mean,
    pooled_scores,
    specificity_set,
    untouched_queries,
    worst_ratio,
)
from benchmarks.editors.report import write_markdown
from ripple.arch import mlp_out_param
from ripple.editing.from_world import specificity_queries

# ---------------------------------------------------------------------------------------------- parts


def part_single(b: Bench, relations=None) -> dict:
    from ripple.editing.from_world import EDITABLE, sample_edits
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.scoring import query_correct

    m, tok = b.model, b.tok
    relations = EDITABLE if relations is None else tuple(relations)
    reqs = sample_edits(b.world, b.args.n_single, seed=0, relations=relations)
    spec_q = [specificity_queries(b.world, r) for r in reqs]
    known = [query_correct(m, tok, qs) for qs in spec_q]
    flu_before = [fluency_of(m, tok, r) for r in reqs]
    rows, per_relation = {}, {}
    for label in b.labels():
        hp, per, kept_all, secs, refused = b.hp(label), [], [], [], 0
        for r, qs, kn in zip(reqs, spec_q, known):
            with edited(b, label, [r], hp) as (run, sec):
                per.append(request_metrics(m, tok, r) | {"fluency_after": fluency_of(m, tok, r)})
                kept_all += kept(m, tok, qs, kn)
            secs.append(sec)
            refused += worst_ratio(run) > hp.max_update_ratio
        groups = {}
        for r, row in zip(reqs, per):
            groups.setdefault(edited_key(r)[1], []).append(row)
        per_relation[label] = {rel: {k: v for k, v in aggregate(g).items() if k in ("efficacy", "paraphrase",
                                                                                  "neighborhood")} | {"n": len(g)}
                               for rel, g in sorted(groups.items())}
        rows[label] = {**aggregate(per), "relation_specificity": mean(kept_all), "fluency_before": mean(flu_before),
                       "seconds_per_edit": round(statistics.median(secs), 4), "guard_refusals": refused,
                       "n": len(reqs)}
        log("single", label, rows[label])
    by_relation = {}
    for r in reqs:
        rel = edited_key(r)[1]
        by_relation[rel] = by_relation.get(rel, 0) + 1
    return {"n_edits": len(reqs), "rows": rows, "relations": list(relations), "edits_per_relation": by_relation,
            "per_relation": per_relation if len(relations) > 1 else None}


def part_batch(b: Bench, relations=None) -> dict:
    from ripple.scoring import query_correct

    rows = []
    for size in b.args.batch_sizes:
        reqs, cap = distinct_edits(b.world, size, seed=0, relations=relations)
        queries = specificity_set(b.world, reqs)
        known = query_correct(b.model, b.tok, queries)
        for label in b.labels(BATCHABLE):
            hp = b.hp(label)
            with edited(b, label, reqs, hp) as (run, sec):
                scores = pooled_scores(b.model, b.tok, reqs)
                spec = mean(kept(b.model, b.tok, queries, known))
            worst = worst_ratio(run)
            rows.append({"method": label, "requested": size, "n": len(reqs), "cap": cap,
                         **scores, "relation_specificity": spec,
                         "seconds": round(sec, 3), "worst_norm_ratio": round(worst, 4),
                         "guard_refuses": worst > hp.max_update_ratio})
            log("batch", rows[-1])
    from ripple.editing.from_world import EDITABLE

    return {"rows": rows, "relations": list(EDITABLE if relations is None else relations)}


class StepWatch:
    """``on_step`` for a sequential run: the guard's verdict on each step's update and the
    checkpoints every ``every`` steps."""

    def __init__(self, b: Bench, label: str, hp, reqs, untouched, every: int):
        self.b, self.hp, self.reqs, self.untouched, self.every = b, hp, reqs, untouched, every
        names = [mlp_out_param(b.spec, layer) for layer in hp.layers_for(b.spec.n_layers(b.model))]
        params = dict(b.model.named_parameters())
        self.params = {n: params[n] for n in names}
        self.W0 = {n: p.detach().float().clone() for n, p in self.params.items()}
        self.prev = {n: w.clone() for n, w in self.W0.items()}
        self.label, self.guard_at, self.step_ratios, self.seconds = label, None, [], 0.0
        self.curve = [self.checkpoint(0)]

    @staticmethod
    def ratio(now: dict, ref: dict) -> float:
        return max(float((now[n] - ref[n]).norm() / ref[n].norm()) for n in ref)

    def checkpoint(self, i: int) -> dict:
        from ripple.scoring import accuracy

        now = {n: p.detach().float() for n, p in self.params.items()}
        m, tok = self.b.model, self.b.tok
        scores = pooled_scores(m, tok, self.reqs[:i], cap=200, seed=0) if i else dict.fromkeys(CF)
        return {"edits": i, **scores, "untouched_accuracy": round(accuracy(m, tok, self.untouched), 4),
                "update_ratio": round(self.ratio(now, self.W0), 5)}

    def __call__(self, i: int, model, delta=None) -> None:
        t0 = time.perf_counter()
        now = {n: p.detach().float().clone() for n, p in self.params.items()}
        self.step_ratios.append(self.ratio(now, self.prev))
        if self.guard_at is None and self.step_ratios[-1] > self.hp.max_update_ratio:
            self.guard_at = i
        self.prev = now
        if i % self.every == 0 or i == len(self.reqs):
            self.curve.append(self.checkpoint(i))
            log("sequential", self.label, self.curve[-1])
        self.seconds += time.perf_counter() - t0


def part_sequential(b: Bench) -> dict:
    reqs, cap = distinct_edits(b.world, b.args.n_seq, seed=0)
    untouched = untouched_queries(b.world, reqs)
    out = {"n_edits": len(reqs), "cap": cap, "every": b.args.every,
           "n_untouched": len(untouched), "methods": {}}
    for label in b.labels():
        hp = b.hp(label)
        watch = StepWatch(b, label, hp, reqs, untouched, b.args.every)
        with edited(b, label, reqs, hp, mode="sequential", on_step=watch) as (run, sec):
            pass
        out["methods"][label] = {"curve": watch.curve, "guard_refuses_at": watch.guard_at,
                                 "max_update_ratio": hp.max_update_ratio,
                                 "max_step_ratio": round(max(watch.step_ratios), 5),
                                 "seconds_per_edit": round((sec - watch.seconds) / len(reqs), 4)}
    return out


@contextmanager
def last_forward(model):
    """Records the input ids and attention mask of the model's latest forward pass."""
    seen = {}

    def hook(module, args, kwargs):
        seen.update(ids=kwargs.get("input_ids", args[0] if args else None), mask=kwargs.get("attention_mask"))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def fwd_bwd_seconds(b: Bench, layer: int, ids, mask, reps: int = 3) -> float:
    """Median wall time of one forward+backward of ``ids`` with a trainable vector added at the
    MLP output of ``layer`` (weights frozen): the cost of one step of ROME's value optimization."""
    from ripple.arch import act_name, resolve_site
    from ripple.hooks import Trace
    from ripple.modes import held

    site = resolve_site(b.spec, act_name(layer, "mlp.out"))[0]
    delta = torch.zeros(b.model.get_input_embeddings().weight.shape[1], requires_grad=True, device=ids.device)
    times = []
    with held(b.model, trainable=()):
        for _ in range(reps):
            t0 = time.perf_counter()
            with Trace(b.model, site, edit_output=lambda out, name: out + delta.to(out.dtype), retain_output=False):
                logits = b.model(input_ids=ids, attention_mask=mask).logits.float()
            (torch.log_softmax(logits, -1)[..., 0].mean() + delta.norm()).backward()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_single_edits(b: Bench, label: str, reqs) -> dict:
    """First edit (computes C and the context prefixes) and the median of the rest, with the
    editor's split; for the ``--floor-methods`` (ROME) also the forward+backward floor of its value
    optimization."""
    hp = b.hp(label)
    walls, split, floors, steps = [], {}, [], []
    for r in reqs:
        with last_forward(b.model) as seen, edited(b, label, [r], hp) as (run, sec):
            pass
        d = run.deltas[0]
        walls.append(sec)
        split.setdefault("editor", []).append(d.info["seconds"])
        for k, v in d.info.get("timing", {}).items():
            split.setdefault(k, []).append(v)
        if label in b.args.floor_methods:
            steps.append(d.info["v_steps"])
            floors.append(d.info["v_steps"] * fwd_bwd_seconds(b, d.info["layers"][0], seen["ids"], seen["mask"]))
    med = lambda xs: round(statistics.median(xs[1:]), 4)  # noqa: E731 (the first edit is reported apart)
    out = {"first_edit_seconds": round(walls[0], 4), "seconds_per_edit": med(walls),
           **{f"{k}_seconds": med(v) for k, v in split.items()}, "n": len(reqs) - 1}
    if floors:
        ratio = [s / f for s, f in zip(split["editor"], floors)]
        out |= {"v_steps": statistics.median(steps[1:]), "floor_seconds": med(floors), "floor_ratio": med(ratio)}
    return out


def part_speed(b: Bench) -> dict:
    from ripple.editing.from_world import sample_edits

    reqs = sample_edits(b.world, b.args.n_speed + 1, seed=2)
    rows = {}
    for label in b.labels():
        b.contexts[b.method(label)] = b.ctx(label, fresh=True)  # the first edit computes C, honestly timed
        rows[label] = time_single_edits(b, label, reqs)
        log("speed", label, rows[label])
    batches = []
    batch_method = b.args.speed_batch_method
    if batch_method in b.args.methods:
        for size in b.args.speed_batches:
            breqs, cap = distinct_edits(b.world, size, seed=3)
            with edited(b, batch_method, breqs, b.hp(batch_method)) as (run, sec):
                pass
            batches.append({"requested": size, "n": len(breqs), "cap": cap, "seconds": round(sec, 3),
                            **{f"{k}_seconds": round(v, 3) for k, v in run.deltas[0].info["timing"].items()}})
            log(f"speed {batch_method} batch", batches[-1])
    return {"rows": rows, "memit_batches": batches}


def corpus_tokens(b: Bench, corpus) -> int:
    from ripple.tokens import text_ids

    return sum(len(text_ids(b.tok, t)[: b.tok.model_max_length]) for t in corpus)


def part_samples(b: Bench) -> dict:
    from ripple.editing.from_world import sample_edits, world_corpus
    from ripple.editing.metrics import aggregate, request_metrics

    tokens = corpus_tokens(b, world_corpus(b.world))
    log(f"statistics corpus: {tokens} tokens")
    sizes = sorted({min(s, tokens) for s in SAMPLE_SIZES})
    reqs = sample_edits(b.world, b.args.n_samples_edits, seed=0)
    rows = []
    for label in b.labels(b.args.samples_methods):
        for size in sizes:
            hp = b.hp(label, [f"stats_samples={size}"])
            ctx = b.contexts[b.method(label)] = b.ctx(label, fresh=True)
            t0 = time.perf_counter()
            for layer in hp.layers_for(b.spec.n_layers(b.model)):
                ctx.C(layer, hp)
            c_sec = time.perf_counter() - t0
            per = []
            for r in reqs:
                with edited(b, label, [r], hp):
                    per.append(request_metrics(b.model, b.tok, r))
            rows.append({"method": label, "stats_samples": size, **aggregate(per), "C_seconds": round(c_sec, 3),
                         "n": len(reqs)})
            log("samples", rows[-1])
        b.hparams_used[label]["stats_samples"] = "varied"
    return {"corpus_tokens": tokens, "rows": rows}


def every_relation(b: Bench) -> tuple[str, ...]:
    """All of the world's relations (people, countries and cities), for the ``*_all`` parts."""
    return tuple(sorted(b.world.relations))


RUNNERS = {"single": part_single, "batch": part_batch, "sequential": part_sequential, "speed": part_speed,
           "samples": part_samples, "single_all": lambda b: part_single(b, every_relation(b)),
           "batch_all": lambda b: part_batch(b, every_relation(b))}


# ----------------------------------------------------------------------------------------------- main

def organism_info(model_dir: Path) -> dict:
    import subprocess

    from ripple.organism.paths import model_dir as bundled

    git = ["git", "-C", str(Path(__file__).parent)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    info = {"path": str(model_dir), "bundled": model_dir.resolve() == bundled().resolve(),
            "commit": (commit or "unknown") + (" (with uncommitted changes)" if dirty else "")}
    for name in ("train_config.json", "metrics.json"):
        if (model_dir / name).exists():
            info[name.removesuffix(".json")] = json.loads((model_dir / name).read_text())
    return info


PART_OPTIONS = {"single": ("n_single",), "batch": ("batch_sizes",), "single_all": ("n_single",),
                "batch_all": ("batch_sizes",), "sequential": ("n_seq", "every"),
                "speed": ("n_speed", "speed_batches", "speed_batch_method", "floor_methods"),
                "samples": ("n_samples_edits", "samples_methods")}


def part_command(args, part: str) -> str:
    """The command line that reruns ``part`` alone with the same settings."""
    opts = [f"--parts {part}"]
    for key in ("model", "out", *PART_OPTIONS[part], "methods", "threads", "device"):
        value = getattr(args, key)
        opts.append(f"--{key.replace('_', '-')} " + (" ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return "python -m benchmarks editors/organism " + " ".join(opts) + (" --rect" if args.rect else "")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--model", default="organism")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--n-single", type=int, default=100)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--n-seq", type=int, default=500)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--n-speed", type=int, default=10, help="timed single edits after the warm-up edit")
    ap.add_argument("--speed-batches", type=int, nargs="+", default=[10, 100, 1000], help="batch sizes timed")
    ap.add_argument("--speed-batch-method", default="memit", choices=BATCHABLE, help="the editor timed on batches")
    ap.add_argument("--floor-methods", nargs="*", default=["rome"], choices=METHODS,
                    help="single-layer value optimizers timed against their forward+backward floor")
    ap.add_argument("--samples-methods", nargs="+", default=["rome", "memit"], choices=METHODS,
                    help="editors whose quality is measured against the statistics sample size")
    ap.add_argument("--n-samples-edits", type=int, default=30)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--rect", action="store_true", help=f"also each method with rect={RECT} (labelled METHOD+rect)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    from ripple.io import atomic_write_json, prepare_out_dir
    from ripple.loading import load_model
    from ripple.organism.evaluate import load_world

    args = parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(0)
    out = prepare_out_dir(args.out)
    model, tok, spec = load_model(args.model, device=args.device)
    model_dir = Path(model.name_or_path)
    b = Bench(model, tok, spec, load_world(model_dir / "world.json"), args)
    for part in args.parts:
        log(f"part {part}")
        results = RUNNERS[part](b)
        atomic_write_json(out / f"editors_{part}.json", {
            "part": part, "command": part_command(args, part), "organism": organism_info(model_dir),
            "threads": args.threads, "device": args.device, "hparams": dict(b.hparams_used), "results": results})
        b.hparams_used.clear()
        write_markdown(out)


if __name__ == "__main__":
    main()
