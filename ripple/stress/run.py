"""Capability over many sequential edits: where does each editor collapse?

Every ``every`` edits (and before the first) a checkpoint measures, on the model as edited so far:

* ``edit_success``: efficacy (P(new) > P(current)) over the latest edit of every fact edited so
  far, ``edit_success_top1`` (the new object is the greedy answer), ``edit_success_gen`` (the
  greedy completion begins with it, :mod:`ripple.generation`) and, with ``chat``,
  ``edit_success_chat`` (the reply to the relation's chat question names it before the old one);
* ``untouched_accuracy`` (locality): accuracy on a fixed sample of world facts no edit touches;
* ``ripple``: the RippleEdits categories of a fixed sample of tracked edits made so far (planned
  on the unedited model; a tracked fact edited again later drops out);
* ``weight_drift``: ‖W − W₀‖/‖W₀‖ of the most changed MLP output projection, the accumulated
  edit (norm growth, which Gupta et al. 2025 tie to collapse);
* ``perplexity_ratio``: mean per-sentence perplexity on the general sentences over the
  unedited model's, with ``alarm`` when it reaches the collapse threshold;
* ``tasks``: the lm-eval bridge's scores, when tasks are given.

The **collapse point** is the first checkpoint whose perplexity ratio reaches the threshold
(default 3: "several-fold", as Yang et al. 2024 read it); the **capability collapse** is the
first whose lm-eval task score falls below half the unedited model's (``task_floor``). The model is restored bit-exactly
after each method, so every method starts from the same weights and gets the same edits.

::

    setup = load_setup("organism")
    result = run_stress(setup, ["memit", "memit+rect"], stress_stream(setup, 1000)[0], StressOptions(every=100))
    result.curves["memit+rect"]["collapse"]      # {'edits': 400, 'perplexity_ratio': 3.4} or None
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field

from ripple.arch import mlp_out_param
from ripple.devices import param_value
from ripple.editing.delta import WeightSnapshot
from ripple.editing.editor import get_editor
from ripple.editing.from_world import complete_from_world
from ripple.editing.metrics import aggregate, requests_metrics
from ripple.editing.questions import chat_questions
from ripple.editing.request_files import load_requests
from ripple.editing.requests import validate_for_model
from ripple.editing.session import edited
from ripple.editing.streams import edit_stream, fact_of, latest_edits
from ripple.editing.variant import DEFAULT_RECT, Variant
from ripple.errors import RippleError
from ripple.evaluate.lm_eval_bridge import LmEvalBridge
from ripple.evaluate.perplexity import general_sentences_for, mean_perplexity
from ripple.evaluate.ripple_scores import category_totals, plan_ripple, score_ripples
from ripple.generation import Ask, ask
from ripple.io import source_fingerprint
from ripple.scoring import answer_logprobs, query_correct
from ripple.stress.report import task_score
from ripple.stress.resume import SavedRun, weights_hash
from ripple.world.edits import WorldEdit
from ripple.world.queries import fact_query

COLLAPSE_RATIO = 3.0


def _share(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None

TASK_FLOOR = 0.5


def parse_method(name: str) -> Variant:
    """A stress run's method as a :class:`~ripple.editing.variant.Variant`: ``memit``,
    ``memit+rect`` (RECT at its default share) or ``memit+rect=0.2``; no mitigation here."""
    base, _, extra = name.partition("+")
    if not extra:
        return Variant(base)
    get_editor(base)
    key, _, value = extra.partition("=")
    if key != "rect":
        raise RippleError(f"unknown method option {extra!r} in {name!r}; the only one is +rect or +rect=SHARE")
    try:
        return Variant(base, rect=float(value) if value else DEFAULT_RECT)
    except ValueError:
        raise RippleError(f"bad RECT share {value!r} in {name!r}; write e.g. memit+rect=0.4") from None


def untouched_queries(world, stream, n: int = 300, seed: int = 0):
    """A fixed sample of facts (first core template) whose (subject, relation) no edit in ``stream`` touches."""
    edited = {fact_of(r) for r in stream}
    keys = sorted({(f.subject, f.relation) for f in world.facts} - edited)
    keys = random.Random(seed).sample(keys, min(n, len(keys)))
    return [fact_query(world, s, r, world.relations[r].templates[0]) for s, r in keys]


def tracked_plans(model, tok, world, stream, n: int = 20) -> list[tuple[int, dict]]:
    """Ripple plans (on the unedited model) for the first ``n`` first-time edits of the stream."""
    seen, out = set(), []
    for i, req in enumerate(stream):
        if fact_of(req) in seen:
            continue
        seen.add(fact_of(req))
        out.append((i, plan_ripple(model, tok, world, req)))
        if len(out) == n:
            break
    return out


@dataclass(frozen=True)
class StressOptions:
    """How a stress run goes: measure every ``every`` edits, ``chunk`` edits a step (a multiple of
    ``chunk``); ``tasks`` (lm-eval, ``limit`` documents each) at every checkpoint; the collapse rule
    (``collapse_ratio`` of perplexity, ``task_floor`` of the unedited task score); hyperparameter
    ``overrides`` for every method and ``method_overrides`` for one editor (``{"rledit":
    ["hypernet=DIR"]}``); ``counterfact``: each checkpoint also scores efficacy, paraphrase and
    neighbourhood over the latest edit of every fact edited so far (in every answer mode); ``chat``:
    also ask each edit's relation question through the chat template (``ripple.evaluate.generated.modes_for``)."""

    every: int
    chunk: int = 1
    tasks: tuple = ()
    limit: int | None = None
    collapse_ratio: float = COLLAPSE_RATIO
    task_floor: float = TASK_FLOOR
    overrides: tuple = ()
    method_overrides: dict = field(default_factory=dict)
    counterfact: bool = False
    chat: bool = False


class Checkpoints:
    """What a checkpoint measures (fixed at the start, on the unedited model)."""

    N_UNTOUCHED = 300  # facts no edit touches, scored at every checkpoint
    N_TRACKED = 20  # edits whose ripple categories are scored at every checkpoint

    def __init__(self, setup, world, stream, sentences, opts: StressOptions | None = None, bridge=None):
        model, tok, spec = setup.model, setup.tok, setup.spec
        opts = opts or StressOptions(every=1)
        self.model, self.tok, self.stream, self.sentences, self.bridge = model, tok, stream, sentences, bridge
        self.counterfact, self.chat, self.world = opts.counterfact, opts.chat, world
        names = [mlp_out_param(spec, i) for i in range(spec.n_layers(model))]
        self.w0 = {n: param_value(model, n).float().clone() for n in names}
        self.collapse_ratio = opts.collapse_ratio
        self.untouched = untouched_queries(world, stream, self.N_UNTOUCHED) if world is not None else []
        self.plans = tracked_plans(model, tok, world, stream, self.N_TRACKED) if world is not None else []
        self.ppl_before = mean_perplexity(model, tok, sentences)

    def measure(self, n_done: int) -> dict:
        model, tok = self.model, self.tok
        latest = latest_edits(self.stream[:n_done])
        row: dict = {"edits": n_done}
        if latest:
            new = answer_logprobs(model, tok, [(r.rendered, r.target_new) for r in latest])
            old = answer_logprobs(model, tok, [(r.rendered, r.target_true) for r in latest])
            row["edit_success"] = sum(a[0] > b[0] for a, b in zip(new, old)) / len(latest)
            row["edit_success_top1"] = sum(a[1] for a in new) / len(latest)
            names = self.world.names_of if self.world is not None else (lambda x: (x,))
            asks = [Ask(r.rendered, names(r.target_new), names(r.target_true) if r.target_true else ()) for r in latest]
            row["edit_success_gen"] = _share([a.correct for a in ask(model, tok, asks)])
        else:
            row["edit_success"] = row["edit_success_top1"] = row["edit_success_gen"] = None
        chat = [chat_questions(r, self.world) for r in latest] if self.chat else None
        if self.chat:
            asks = [q.efficacy[0] for q in chat if q.efficacy]  # the edits whose relation has a question
            row["edit_success_chat"] = _share([a.correct for a in ask(model, tok, asks)])
            row["edit_success_chat_n"] = len(asks)
        if self.counterfact:  # efficacy, paraphrase, neighbourhood over the latest edit of every fact so far
            rows = requests_metrics(model, tok, latest, generate=True, chat=chat,
                                    names=self.world.names_of if self.world is not None else None)
            row["counterfact"] = aggregate(rows) if latest else None
        if self.untouched:
            hits = query_correct(model, tok, self.untouched)
            row["untouched_accuracy"] = sum(hits) / len(hits)
        live = []
        for i, plan in self.plans:
            if i >= n_done:
                continue
            fact = fact_of(self.stream[i])
            if any(fact_of(r) == fact for r in self.stream[i + 1 : n_done]):
                continue  # edited again since: its plan no longer describes the model
            live.append(plan)
        row["ripple"] = category_totals(score_ripples(model, tok, live)) if live else None
        row["perplexity"] = mean_perplexity(model, tok, self.sentences)
        row["perplexity_ratio"] = row["perplexity"] / self.ppl_before
        row["alarm"] = row["perplexity_ratio"] >= self.collapse_ratio
        if self.w0:
            drift = {n: float((param_value(self.model, n).float() - w).norm() / w.norm())
                     for n, w in self.w0.items()}
            row["weight_drift"] = max(drift.values())
            row["weight_drift_by_matrix"] = drift
        if self.bridge is not None:
            row["tasks"] = self.bridge.evaluate()
        return row


def collapse_points(rows: list[dict], collapse_ratio: float = COLLAPSE_RATIO, task_floor: float = TASK_FLOOR) -> dict:
    """``collapse``: the first checkpoint whose perplexity ratio reaches ``collapse_ratio``;
    ``capability_collapse``: the first whose lm-eval task score falls below ``task_floor`` times
    the unedited model's (None without tasks). Each is None when it never happens."""

    collapse = next(({"edits": r["edits"], "perplexity_ratio": r["perplexity_ratio"]} for r in rows
                     if r["perplexity_ratio"] >= collapse_ratio), None)
    base = task_score(rows[0]) if rows else None
    capability = None
    if base:
        capability = next(({"edits": r["edits"], "task_score": task_score(r), "unedited": base} for r in rows
                           if task_score(r) is not None and task_score(r) < task_floor * base), None)
    return {"collapse": collapse, "capability_collapse": capability,
            "collapse_rule": {"perplexity_ratio": collapse_ratio, "task_floor": task_floor}}


@dataclass
class _Progress:
    """Where a method's stress run stands: its checkpoint rows, the edits applied, the steps over the
    norm guard, the seconds spent before (a resumed run) and the code versions that applied them."""

    rows: list
    start: int
    over_guard: list
    prior: float
    measure_s: float
    segments: list


def _begin(setup, hp, editor, checkpoints: Checkpoints, saved: dict | None, code, n_stream: int) -> _Progress:
    """A fresh start (checkpoint 0 measured), or the ``saved`` state with its weights and the
    editors' state put back into the model; ``code``: the source version that applies the edits."""
    if saved is None:
        return _Progress([checkpoints.measure(0)], 0, [], 0.0, 0.0, [{"from_edit": 0, "code": code}])
    prog = _Progress(saved["rows"], saved["edits"], list(saved["over_guard"]), saved["seconds"],
                     saved["measure_seconds"], list(saved["segments"]))
    if prog.start < n_stream:
        prog.segments.append({"from_edit": prog.start, "code": code})
        setup.ctx.read_unedited(hp, editor.reads_key_stats)  # before the saved weights go in
        WeightSnapshot(saved["weights"], setup.model).restore()
        setup.ctx.state.clear()
        setup.ctx.state.update(saved["state"])
    return prog


def stress_method(setup, name: str, stream, checkpoints: Checkpoints, opts: StressOptions, on_checkpoint=None,
                  store=None, resume: bool = False) -> dict:
    """Apply ``stream`` with method ``name`` (``+rect`` allowed) on ``setup``'s model,
    ``opts.chunk`` edits a step (one at a time for an editor of one fact per solve), measuring every
    ``opts.every`` edits; the model is restored exactly before returning (also on error).

    ``store`` (a :class:`ripple.stress.resume.ResumeStore`): save the method's state at every
    checkpoint; with ``resume``, go on from the state saved there."""
    variant = parse_method(name)
    method, every, chunk = variant.base, opts.every, opts.chunk
    overrides = [*opts.overrides, *opts.method_overrides.get(method, [])]
    hp = setup.hparams_for(method, [*overrides, *([f"rect={variant.rect}"] if variant.rect else [])])
    editor = get_editor(method)
    ctx, model = setup.ctx, setup.model
    step_size = 1 if editor.one_request_per_solve else chunk
    names = [mlp_out_param(setup.spec, layer) for layer in hp.layers_for(ctx.n_layers())]
    original = WeightSnapshot.take(model, names)
    state0 = ctx.copy_state()
    key = {"method": name, "hparams": json.loads(json.dumps(dataclasses.asdict(hp), default=str)),
           "unedited": weights_hash(original.originals) if store is not None else None}
    code = source_fingerprint() if store is not None else None
    saved = store.load(name, key) if store is not None and resume else None
    prog = _begin(setup, hp, editor, checkpoints, saved, code, len(stream))
    rows, start, over_guard, prior, segments = prog.rows, prog.start, prog.over_guard, prog.prior, prog.segments
    measure_s = prog.measure_s
    if on_checkpoint:
        on_checkpoint(name, rows[-1])
    t0 = time.perf_counter()

    def step(i, _model, delta):
        nonlocal measure_s
        if max(delta.info.get("norm_ratios", {}).values(), default=0.0) > hp.max_update_ratio:
            over_guard.append(start // step_size + i)
        n = min(start + i * step_size, len(stream))  # edits applied so far
        if n % every == 0 or n == len(stream):
            t = time.perf_counter()
            rows.append(checkpoints.measure(n))
            measure_s += time.perf_counter() - t
            if store is not None:
                store.save(name, key, SavedRun(n, rows, {k: param_value(model, k) for k in names}, ctx.state,
                                               over_guard, prior + time.perf_counter() - t0, measure_s, segments))
            if on_checkpoint:
                on_checkpoint(name, rows[-1])

    try:
        if start < len(stream):
            with edited(ctx, method, stream[start:], hp, mode="sequential", chunk=step_size, force=True,
                        on_step=step):
                pass
    finally:
        original.restore(model)
        ctx.state.clear()
        ctx.state.update(state0)
    timing = {"seconds": prior + time.perf_counter() - t0, "measure_seconds": measure_s}
    if len(segments) > 1:
        timing["segments"] = segments  # a resumed run: which code version applied which edits
    return {"method": method, "rect": variant.rect, "checkpoints": rows,
            **collapse_points(rows, checkpoints.collapse_ratio, opts.task_floor),
            "guard_exceeded": {"count": len(over_guard), "first": over_guard[0] if over_guard else None,
                               "limit": hp.max_update_ratio},
            "timing": timing}


def stress_stream(setup, n: int, edit_file=None, seed: int = 0) -> tuple[list, object]:
    """The first ``n`` edits of ``edit_file``, else ``n`` sampled from the model's world (going
    round its facts again); also the world to score ripple categories with (None when the edits
    are not world edits)."""
    world = setup.world
    if edit_file:
        stream = load_requests(edit_file)
        if len(stream) < n:
            raise RippleError(f"{edit_file} holds {len(stream)} edit request(s), fewer than the {n} edits asked for; "
                              f"pass --edits {len(stream)} or a longer file")
        stream = stream[:n]
        if world is not None:

            stream = [complete_from_world(world, r) for r in stream]
        if any(r.target_true is None for r in stream):
            raise RippleError(f"{edit_file}: every request needs target_true (the object it replaces)")
        if world is None or any(WorldEdit.of(r) is None for r in stream):
            world = None  # ripple categories need world edits
    elif world is None:
        raise RippleError("this model has no world.json to sample edits from; pass --edit-file FILE")
    else:
        stream = edit_stream(world, n, seed=seed)
    validate_for_model(stream, setup.tok, context=setup.context_length, progress=True)
    return stream, world


@dataclass
class StressResult:
    curves: dict  # method name -> curve (checkpoints, collapse points, guard count)
    timing: dict  # method name -> seconds (kept out of the curves so reruns match)


def run_stress(setup, names, stream, opts: StressOptions, world=None, on_checkpoint=None, store=None,
               resume: bool = False) -> StressResult:
    """Every method of ``names`` over the same ``stream`` from the same weights (see the module
    docstring); ``world``: score ripple categories and untouched facts from it (None: skip them);
    ``store``, ``resume``: save each method's state at every checkpoint and go on from it
    (:func:`stress_method`)."""
    bridge = None
    if opts.tasks:

        bridge = LmEvalBridge(setup.model, setup.tok, list(opts.tasks), world=world, limit=opts.limit)
    checkpoints = Checkpoints(setup, world, stream, general_sentences_for(world), opts, bridge)
    curves, timing = {}, {}
    for name in names:
        curve = stress_method(setup, name, stream, checkpoints, opts, on_checkpoint, store, resume)
        timing[name] = curve.pop("timing")
        curves[name] = curve
    return StressResult(curves, timing)
