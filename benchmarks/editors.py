"""How good and how fast are the editors on the organism? Writes ``reports/editors.md`` (plus
``editors_<part>.json`` per part and PNG plots) in ``--out``.

    python benchmarks/editors.py --parts single batch sequential speed samples --model organism --out reports
    python benchmarks/editors.py --parts single --n-single 100 --methods rome memit --rect

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
import random
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ripple.organism.edits import specificity_queries

PARTS = ("single", "batch", "sequential", "speed", "samples")
METHODS = ("rome", "memit", "emmet", "alphaedit", "ft")
BATCHABLE = ("memit", "emmet", "alphaedit")
RECT = 0.4
SAMPLE_SIZES = (500, 2000, 10000, 50000)
CF = ("efficacy", "efficacy_top1", "paraphrase", "paraphrase_top1", "neighborhood", "neighborhood_top1")
HP_KEYS = {"target": ("fact_token", "lam", "eps", "null_threshold", "v_steps", "rect", "stats_samples"),
           "ft": ("ft_steps", "ft_lr", "norm_constraint", "rect")}
T0 = time.perf_counter()


def log(*parts) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s]", *parts, flush=True)


def mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


# ---------------------------------------------------------------------------------------------- setup


@dataclass
class Bench:
    """The model, its world and one shared :class:`EditContext` per method (cached statistics)."""

    model: object
    tok: object
    spec: object
    world: object
    args: argparse.Namespace
    contexts: dict = field(default_factory=dict)
    hparams_used: dict = field(default_factory=dict)

    def method(self, label: str) -> str:
        return label.removesuffix("+rect")

    def hp(self, label: str, extra=()):
        from ripple.editing.hparams import resolve_hparams

        over = [f"rect={RECT}"] if label.endswith("+rect") else []
        return resolve_hparams(self.method(label), self.spec.model_type, self.spec.n_layers(self.model),
                               model_dir=self.model.name_or_path, overrides=over + list(extra))

    def ctx(self, label: str, fresh: bool = False):
        """The method's shared context; ``fresh``: a new one that computes C without the disk cache."""
        from ripple.editing.methods import EditContext
        from ripple.organism.edits import world_corpus

        method = self.method(label)
        if fresh or method not in self.contexts:
            ctx = EditContext(self.model, self.tok, self.spec, world_corpus(self.world), use_disk_cache=not fresh)
            if fresh:
                return ctx
            self.contexts[method] = ctx
        return self.contexts[method]

    def note(self, label: str, run) -> None:
        """Remember the hyperparameters an edit ran with (for the report header)."""
        d, keys = run.deltas[0], HP_KEYS.get(self.method(label), HP_KEYS["target"])
        self.hparams_used.setdefault(label, {"layers": d.info.get("layers"),
                                             **{k: d.hparams[k] for k in keys if k in d.hparams}})

    def labels(self, only=METHODS) -> list[str]:
        base = [m for m in self.args.methods if m in only]
        return base + ([f"{m}+rect" for m in base] if self.args.rect else [])


def edited_key(req) -> tuple[str, str]:
    """(subject id, relation) of an organism edit request."""
    subject, relation, _ = req.case_id.split("|")
    return subject, relation


def distinct_edits(world, n: int, seed: int = 0) -> tuple[list, int]:
    """``n`` edits of distinct facts, ``n`` capped at the world's distinct editable facts (the cap too)."""
    from ripple.organism.edits import EDITABLE, sample_edits

    cap = len({(f.subject, f.relation) for f in world.facts if f.relation in EDITABLE})
    return sample_edits(world, min(n, cap), seed), cap


@contextmanager
def edited(b: Bench, label: str, reqs, hp, mode: str = "batch", on_step=None):
    """Apply the edits (forced past the guard); yields ``(run, seconds)``; then undoes them, weights
    and AlphaEdit's running key sums both."""
    from ripple.editing.session import run_edits

    ctx = b.ctx(label)
    t0 = time.perf_counter()
    run = run_edits(ctx, b.method(label), reqs, hp, mode=mode, force=True, on_step=on_step)
    try:
        yield run, time.perf_counter() - t0
    finally:
        run.restore(ctx)
    b.note(label, run)


def worst_ratio(run) -> float:
    """The largest ‖Δ‖/‖W‖ of a one-delta run, against the weights it was computed on."""
    return max(run.deltas[0].info["norm_ratios"].values())


# -------------------------------------------------------------------------------------------- metrics


def races(model, tok, items) -> tuple[list[bool], list[bool]]:
    """For (prompt, expected, rival) triples: expected is the greedy answer; P(expected) > P(rival)."""
    from ripple.scoring import answer_logprobs

    a = answer_logprobs(model, tok, [(p, x) for p, x, _ in items])
    r = answer_logprobs(model, tok, [(p, y) for p, _, y in items])
    return [g for _, g in a], [x[0] > y[0] for x, y in zip(a, r)]


def pooled_scores(model, tok, reqs, cap: int | None = None, seed: int = 0) -> dict:
    """CounterFact's race and top-1 metrics pooled over every prompt of ``reqs`` (paraphrase and
    neighbourhood sampled down to ``cap`` with a fixed seed). Neighbourhood prompts that are
    themselves edited in ``reqs`` are left out: their old answer is no longer right."""
    edited_prompts = {r.rendered for r in reqs}
    kinds = {"efficacy": [(r.rendered, r.target_new, r.target_true) for r in reqs],
             "paraphrase": [(p, r.target_new, r.target_true) for r in reqs for p in r.paraphrase_prompts],
             "neighborhood": [(p, r.target_true, r.target_new) for r in reqs for p in r.neighborhood_prompts
                              if p not in edited_prompts]}
    out = {}
    for kind, items in kinds.items():
        if cap is not None and kind != "efficacy" and len(items) > cap:
            items = random.Random(seed).sample(items, cap)
        top1, race = races(model, tok, items)
        out |= {kind: mean(race), f"{kind}_top1": mean(top1)}
    return out


def specificity_set(world, reqs) -> list:
    """The edited subjects' other facts (first template each), minus facts edited in ``reqs`` too."""
    edited = {(world.name(s), rel) for s, rel in map(edited_key, reqs)}
    qs = {q.prompt: q for r in reqs for q in specificity_queries(world, r) if (q.subject, q.relation) not in edited}
    return list(qs.values())


def kept(model, tok, queries, known: list[bool]) -> list[bool]:
    """For each query known before the edit: is it still answered correctly?"""
    from ripple.scoring import query_correct

    return [a for a, k in zip(query_correct(model, tok, queries), known) if k]


def fluency_of(model, tok, req) -> float:
    from ripple.editing.metrics import fluency

    return fluency(model, tok, [req.subject, req.rendered], max_new_tokens=20)


def untouched_queries(world, reqs, n: int = 200, seed: int = 0) -> list:
    """``n`` fixed single-hop facts (first template) whose (subject, relation) no edit touches."""
    from ripple.world.queries import single_hop
    from ripple.world.schema import RELATIONS

    edited = set(map(edited_key, reqs))
    qs = [q for q in single_hop(world) if q.template == RELATIONS[q.relation].templates[0]
          and (q.meta["subject_id"], q.relation) not in edited]
    return random.Random(seed).sample(qs, min(n, len(qs)))


# ---------------------------------------------------------------------------------------------- parts


def part_single(b: Bench) -> dict:
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.organism.edits import sample_edits
    from ripple.scoring import query_correct

    m, tok = b.model, b.tok
    reqs = sample_edits(b.world, b.args.n_single, seed=0)
    spec_q = [specificity_queries(b.world, r) for r in reqs]
    known = [query_correct(m, tok, qs) for qs in spec_q]
    flu_before = [fluency_of(m, tok, r) for r in reqs]
    rows = {}
    for label in b.labels():
        hp, per, kept_all, secs, refused = b.hp(label), [], [], [], 0
        for r, qs, kn in zip(reqs, spec_q, known):
            with edited(b, label, [r], hp) as (run, sec):
                per.append(request_metrics(m, tok, r) | {"fluency_after": fluency_of(m, tok, r)})
                kept_all += kept(m, tok, qs, kn)
            secs.append(sec)
            refused += worst_ratio(run) > hp.max_update_ratio
        rows[label] = {**aggregate(per), "relation_specificity": mean(kept_all), "fluency_before": mean(flu_before),
                       "seconds_per_edit": round(statistics.median(secs), 4), "guard_refusals": refused,
                       "n": len(reqs)}
        log("single", label, rows[label])
    return {"n_edits": len(reqs), "rows": rows}


def part_batch(b: Bench) -> dict:
    from ripple.scoring import query_correct

    rows = []
    for size in b.args.batch_sizes:
        reqs, cap = distinct_edits(b.world, size, seed=0)
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
    return {"rows": rows}


class StepWatch:
    """``on_step`` for a sequential run: the guard's verdict on each step's update and the
    checkpoints every ``every`` steps."""

    def __init__(self, b: Bench, label: str, hp, reqs, untouched, every: int):
        self.b, self.hp, self.reqs, self.untouched, self.every = b, hp, reqs, untouched, every
        names = [b.spec.block(layer, b.spec.mlp_out) + ".weight" for layer in hp.layers_for(b.spec.n_layers(b.model))]
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

    def __call__(self, i: int, model) -> None:
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
    from ripple.arch import resolve_site
    from ripple.editing.compute import frozen
    from ripple.trace import Trace

    site = resolve_site(b.spec, f"blocks.{layer}.mlp.out")[0]
    delta = torch.zeros(b.model.get_input_embeddings().weight.shape[1], requires_grad=True, device=ids.device)
    times = []
    with frozen(b.model):
        for _ in range(reps):
            t0 = time.perf_counter()
            with Trace(b.model, site, edit_output=lambda out, name: out + delta.to(out.dtype), retain_output=False):
                logits = b.model(input_ids=ids, attention_mask=mask).logits.float()
            (torch.log_softmax(logits, -1)[..., 0].mean() + delta.norm()).backward()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_single_edits(b: Bench, label: str, reqs) -> dict:
    """First edit (computes C and the context prefixes) and the median of the rest, with the
    editor's split; for ROME also its forward+backward floor."""
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
        if label == "rome":
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
    from ripple.organism.edits import sample_edits

    reqs = sample_edits(b.world, b.args.n_speed + 1, seed=2)
    rows = {}
    for label in b.labels():
        b.contexts[b.method(label)] = b.ctx(label, fresh=True)  # the first edit computes C, honestly timed
        rows[label] = time_single_edits(b, label, reqs)
        log("speed", label, rows[label])
    batches = []
    if "memit" in b.args.methods:
        for size in b.args.speed_batches:
            breqs, cap = distinct_edits(b.world, size, seed=3)
            with edited(b, "memit", breqs, b.hp("memit")) as (run, sec):
                pass
            batches.append({"requested": size, "n": len(breqs), "cap": cap, "seconds": round(sec, 3),
                            **{f"{k}_seconds": round(v, 3) for k, v in run.deltas[0].info["timing"].items()}})
            log("speed memit batch", batches[-1])
    return {"rows": rows, "memit_batches": batches}


def corpus_tokens(b: Bench, corpus) -> int:
    return sum(len(b.tok(t, add_special_tokens=False)["input_ids"][: b.tok.model_max_length]) for t in corpus)


def part_samples(b: Bench) -> dict:
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.organism.edits import sample_edits, world_corpus

    tokens = corpus_tokens(b, world_corpus(b.world))
    log(f"statistics corpus: {tokens} tokens")
    sizes = sorted({min(s, tokens) for s in SAMPLE_SIZES})
    reqs = sample_edits(b.world, b.args.n_samples_edits, seed=0)
    rows = []
    for label in b.labels(("rome", "memit")):
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


RUNNERS = {"single": part_single, "batch": part_batch, "sequential": part_sequential, "speed": part_speed,
           "samples": part_samples}


# ------------------------------------------------------------------------------------------- markdown


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if 0 < abs(v) < 0.01 else (f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}")
    return str(v)


def table(cols: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + \
        ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows] + [""]


def line_panels(path: Path, panels: list[tuple[str, dict]], xlabel: str, logx: bool = False) -> None:
    """One PNG with a panel per (title, {label: (xs, ys)}), one line per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ripple.io import atomic_savefig

    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.2), dpi=110, squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        for label, (xs, ys) in lines.items():
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=label)
        ax.set(title=title, xlabel=xlabel, ylim=(-0.03, 1.03), xscale="log" if logx else "linear")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def md_single(d: dict, out: Path) -> list[str]:
    r = d["results"]
    cols = [*CF, "relation_specificity", "fluency_before", "fluency_after", "seconds_per_edit", "guard_refusals"]
    return [f"{r['n_edits']} random person-fact edits (`sample_edits(world, n, seed=0)`), each applied alone to the "
            "unedited model and undone. Efficacy, paraphrase and neighbourhood: CounterFact's probability races "
            "(`_top1`: the greedy answer), averaged per edit; relation specificity: share of the subject's other "
            "facts (ground truth, first template of each relation) answered correctly before the edit that still "
            "are after it; fluency: n-gram entropy of 20 greedy tokens after the subject and after the edit prompt; "
            "seconds: median per edit (the first edit of a method may include computing C); guard refusals: edits "
            "whose update the norm guard would have refused.", "",
            *table(["method", *cols], [[k, *(v.get(c) for c in cols)] for k, v in r["rows"].items()])]


def md_batch(d: dict, out: Path) -> list[str]:
    rows = d["results"]["rows"]
    cols = ["requested", "n", *CF, "relation_specificity", "seconds", "worst_norm_ratio", "guard_refuses"]
    capped = sorted({(r["requested"], r["n"], r["cap"]) for r in rows if r["n"] < r["requested"]})
    lines = ["One batch per size, metrics pooled over every prompt of the batch (neighbourhood prompts about "
             "facts edited in the same batch left out); relation specificity over the edited subjects' "
             "facts not edited in the batch.", ""]
    lines += [f"**Capped:** the world has {cap} distinct editable (subject, relation) facts, so the batch of "
              f"{req} is {n} edits.\n" for req, n, cap in capped]
    return lines + table(["method", *cols], [[r["method"], *(r.get(c) for c in cols)] for r in rows])


SEQ_METRICS = (("efficacy", "efficacy so far (race)"), ("efficacy_top1", "efficacy so far (top-1)"),
               ("paraphrase", "paraphrase so far (race, ≤200 prompts)"),
               ("neighborhood", "neighbourhood (race, ≤200 prompts)"),
               ("untouched_accuracy", "accuracy on untouched facts"), ("update_ratio", "‖ΔW‖/‖W‖ of the total update"))


def md_sequential(d: dict, out: Path) -> list[str]:
    r = d["results"]
    ms = r["methods"]
    png = "editors_sequential.png"
    line_panels(out / png, [(title, {k: ([p["edits"] for p in v["curve"]], [p[key] for p in v["curve"]])
                                     for k, v in ms.items()}) for key, title in
                            (SEQ_METRICS[0], SEQ_METRICS[3], SEQ_METRICS[4])], "edits applied")
    lines = [f"{r['n_edits']} edits applied one after another (distinct (subject, relation); the world has "
             f"{r['cap']}), measured every {r['every']} edits over all edits so far; untouched facts: "
             f"{r['n_untouched']} fixed single-hop facts no edit changes. Every step was forced past the norm "
             "guard; by default (no force) the guard refuses a step whose update has ‖Δ‖/‖W‖ over "
             "max_update_ratio, and the whole sequential run is rolled back.", "", f"![sequential editing]({png})", "",
             *table(["method", "guard would refuse at edit", "max step ratio", "max_update_ratio", "seconds/edit"],
                    [[k, v["guard_refuses_at"] or "never", v["max_step_ratio"], v["max_update_ratio"],
                      v["seconds_per_edit"]] for k, v in ms.items()])]
    edits = [p["edits"] for p in next(iter(ms.values()))["curve"]] if ms else []
    for key, title in SEQ_METRICS:
        lines += [f"**{title}**", "", *table(["edits", *ms], [[e, *(v["curve"][i][key] for v in ms.values())]
                                                               for i, e in enumerate(edits)])]
    return lines


def md_speed(d: dict, out: Path) -> list[str]:
    r = d["results"]
    rows = r["rows"]
    cols = ["first_edit_seconds", "seconds_per_edit", "editor_seconds", "keys_seconds", "values_seconds",
            "solve_seconds"]
    lines = ["Seconds per single edit: the first edit (fresh context, no disk cache: it computes C and the "
             "context prefixes) apart, then the median over the next edits; `editor` is the editor's own time, "
             "split into keys, values (target optimization) and solve (FT: no split).", "",
             *table(["method", *cols, "n"], [[k, *(v.get(c) for c in cols), v["n"]] for k, v in rows.items()])]
    if "rome" in rows:
        ro = rows["rome"]
        lines += [f"ROME's floor: one forward+backward of the batch its value optimization builds (contexts × "
                  f"prompt+target, plus the KL prompts), with the added vector hooked in and weights frozen, times "
                  f"the steps it took (median {ro['v_steps']}): {ro['floor_seconds']:.4f} s; ROME's editor time / "
                  f"floor = **{ro['floor_ratio']:.2f}x** (target ≤ 1.5x).", ""]
    if r["memit_batches"]:
        bc = ["requested", "n", "seconds", "values_seconds", "keys_seconds", "solve_seconds"]
        lines += ["MEMIT, one batch (capped at the distinct editable facts):", "",
                  *table(bc, [[x.get(c) for c in bc] for x in r["memit_batches"]])]
    return lines


def md_samples(d: dict, out: Path) -> list[str]:
    r = d["results"]
    png = "editors_samples.png"
    by = {}
    for row in r["rows"]:
        by.setdefault(row["method"], []).append(row)
    line_panels(out / png, [(title, {k: ([x["stats_samples"] for x in v], [x[key] for x in v]) for k, v in by.items()})
                            for key, title in (("efficacy", "efficacy (race)"), ("neighborhood", "neighbourhood (race)"))],
                "stats_samples (tokens)", logx=True)
    cols = ["stats_samples", "efficacy", "efficacy_top1", "neighborhood", "neighborhood_top1", "C_seconds", "n"]
    return [f"Second-moment statistics from the world corpus ({r['corpus_tokens']} tokens; sample counts above "
            "that are capped to it), computed fresh (no disk cache); single edits each applied alone.", "",
            f"![samples]({png})", "", *table(["method", *cols], [[x["method"], *(x.get(c) for c in cols)]
                                                                for x in r["rows"]])]


RENDER = {"single": ("Single edits", md_single), "batch": ("Batch editing", md_batch),
          "sequential": ("Sequential editing", md_sequential), "speed": ("Speed", md_speed),
          "samples": ("How many samples for C", md_samples)}


def header(parts: dict) -> list[str]:
    first = next(iter(parts.values()))
    org = first["organism"]
    hps = {}
    for d in parts.values():
        hps = {**d["hparams"], **hps}  # the first part that ran a method tells its settings
    keys = ["layers", *(k for k in dict.fromkeys(HP_KEYS["target"] + HP_KEYS["ft"]) if any(k in h for h in hps.values()))]
    return ["# The editors on the organism", "",
            "Quality and speed of ripple's editors (ROME, MEMIT, EMMET, AlphaEdit, FT-L, RECT as an option) on the "
            "model organism: single edits, batches, long sequences, timings, and how many samples the key "
            "statistics need. Every edit is a counterfactual person fact of the organism's world.", "",
            f"Organism: `{org['path']}`" + (" (the bundled one: `ripple organism show --json`)" if org["bundled"]
                                            else "") + f"; ripple at commit {org['commit']}; {first['threads']} "
            f"thread(s), device {first['device']}.", "",
            "Commands (one per part; `--parts` takes several at once):", "",
            *[f"- {p}: `{d['command']}`" for p, d in parts.items()], "",
            "Hyperparameters (from each method's first delta; the organism's `ripple_hparams.json` and the "
            "architecture defaults, via `resolve_hparams`):", "",
            *table(["method", *keys], [[k, *(h.get(c) for c in keys)] for k, h in hps.items()]),
            "Training configuration of the organism:", "", "```json",
            json.dumps(org.get("train_config"), indent=1), "```", ""]


def write_markdown(out: Path) -> None:
    from ripple.io import atomic_write_text

    parts = {p: json.loads((out / f"editors_{p}.json").read_text()) for p in PARTS
             if (out / f"editors_{p}.json").exists()}
    if not parts:
        return
    lines = header(parts)
    for p, d in parts.items():
        title, render = RENDER[p]
        lines += [f"## {title}", "", f"Reproduce: `{d['command']}`", "", *render(d, out)]
    atomic_write_text(out / "editors.md", "\n".join(lines))
    log(f"wrote {out / 'editors.md'} from parts {', '.join(parts)}")


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


PART_OPTIONS = {"single": ("n_single",), "batch": ("batch_sizes",), "sequential": ("n_seq", "every"),
                "speed": ("n_speed", "speed_batches"), "samples": ("n_samples_edits",)}


def part_command(args, part: str) -> str:
    """The command line that reruns ``part`` alone with the same settings."""
    opts = [f"--parts {part}"]
    for key in ("model", "out", *PART_OPTIONS[part], "methods", "threads", "device"):
        value = getattr(args, key)
        opts.append(f"--{key.replace('_', '-')} " + (" ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return "python benchmarks/editors.py " + " ".join(opts) + (" --rect" if args.rect else "")


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
    ap.add_argument("--speed-batches", type=int, nargs="+", default=[10, 100, 1000], help="MEMIT batch sizes timed")
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
    torch.set_num_threads(args.threads)
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
