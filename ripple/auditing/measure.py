"""Audit one proposed edit (or several applied together) in a sandbox, one job per function:

* :func:`plan_audit`: on the unedited model, which probe items the edits rewrite, which the
  world's ground truth says must change, and the RippleEdits queries to score;
* :func:`measure`: what is measured before and after (CounterFact metrics per request,
  perplexity on general sentences, the probe items' states, the lm-eval tasks; after the edit
  also the RippleEdits categories);
* :func:`classify_changes`: which changed answers are intended, swaps between right answers,
  or unintended damage;
* :func:`audit_edits`: plan, then the pipeline (:mod:`ripple.gie.pipeline`: measure, edit in the
  sandbox, measure, restore); then the policy's
  metrics (:mod:`ripple.auditing.metrics`) and the report's details (:mod:`ripple.auditing.details`).

::

    setup = load_setup("organism", "rome", [request])
    inputs = AuditInputs(setup, world_probe_set(setup.world), general_sentences_for(setup.world))
    result = audit_edits(inputs, setup.requests)
    result.metrics["efficacy"], result.metrics["perplexity_ratio"]
    (1.0, 1.0002)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import networkx as nx

from ripple.auditing.details import Audited, report_details
from ripple.auditing.metrics import policy_metrics, rule_basis
from ripple.editing.external import EXTERNAL, source_of
from ripple.editing.metrics import requests_metrics
from ripple.editing.questions import chat_questions
from ripple.editing.session import auto_mode
from ripple.evaluate.changes import AuditPlan, Changes, answer_swaps, classify_changes, edited_items, plan_audit  # noqa: F401 (read from here too)
from ripple.evaluate.generated import Modes, ask_some, probe_asks, specificity_chat_asks
from ripple.evaluate.perplexity import sentence_perplexities
from ripple.evaluate.ripple_scores import score_ripples
from ripple.generation import Ask, continuations
from ripple.gie.budget import DEFAULT_RANKER
from ripple.gie.graph import build_graph, epicentre, graph_layer, ripple_profile
from ripple.gie.measure import ItemState, measure_items
from ripple.gie.pipeline import Budget, Edit, ItemProbe, drift_position, sandbox
from ripple.progress import Stages
from ripple.scoring import answer_logprobs
from ripple.tokens import fill

if TYPE_CHECKING:
    from ripple.editing.delta import EditDelta
    from ripple.editing.setup import EditSetup
    from ripple.evaluate.lm_eval_bridge import LmEvalBridge


@dataclass
class AuditResult:
    """What :func:`audit_edits` measured: the JSON-ready parts and the GIE graphs (for figures)."""

    metrics: dict  # the flat metrics the policy judges (None: not measurable here)
    details: dict  # JSON-ready: per-edit metrics, ripple categories, GIE profile, perplexity, norms
    graphs: list[nx.Graph] = field(default_factory=list)
    profiles: list[dict] = field(default_factory=list)
    delta: object = None  # the EditDelta audited (the sum of a sequential run's)
    plan: object = None  # the AuditPlan
    states_before: ItemState | None = None  # the probe items on the unedited model


@dataclass
class AuditInputs:
    """What an audit measures with: the loaded setup (model, editor, hyperparameters, world), the
    probe items, the general sentences for perplexity and the lm-eval bridge (None: no tasks)."""

    setup: EditSetup
    items: list
    sentences: list[str]
    bridge: LmEvalBridge | None = None


@dataclass(frozen=True)
class MeasureOptions:
    """How an audit measures: ``k`` graph neighbours, ``force`` past the editor's norm guard,
    ``budget`` (a share of the probe items evaluated after the edit, ordered by ``ranker``; None:
    all), the progress bar (``quiet``, ``desc``) and the answer ``modes`` scored besides the
    teacher-forced ones (generated completions; chat replies)."""

    k: int = 5
    force: bool = False
    quiet: bool = True
    desc: str = "audit"
    budget: float | None = None
    ranker: str = DEFAULT_RANKER
    modes: Modes = Modes()


@dataclass
class Measurement:
    """One side (before or after) of the audit."""

    requests: list[dict]  # CounterFact metrics per request
    perplexities: list[float]
    states: ItemState
    ripple: list[dict]  # RippleEdits scores per request (after the edit; empty before)
    tasks: dict | None  # lm-eval scores by task
    specificity: list[bool] = field(default_factory=list)  # the requests' specificity prompts kept their answers
    #: generated answers: ``specificity_gen``/``_chat``, ``probe_gen`` (per item)
    #: and ``texts`` (the edit prompt's, paraphrases' and chat question's generations, for the report)
    generated: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Asked:
    """The generated-answer prompts of an audit, fixed before the edit: the chat questions per
    request, the probe items' completions, the relation-specificity chat questions, the texts shown."""

    modes: Modes
    chat: list | None
    probe_gen: list
    specificity_chat: list
    shown: list[tuple[str, bool]]

    @classmethod
    def of(cls, requests, plan: AuditPlan, world, modes: Modes) -> Asked:
        if not modes.generate:
            return cls(modes, None, [], [], [])
        chat = [chat_questions(r, world) for r in requests] if modes.chat else None
        shown = [(p, False) for r in requests for p in (r.rendered, *r.paraphrase_prompts)]
        if chat:
            shown += [(a.prompt, True) for q in chat for a in (*q.efficacy, *q.paraphrase)]
        return cls(modes, chat, probe_asks(plan.items, world=world),  # not asked in chat form: CHAT_SCOPE
                   specificity_chat_asks(requests, plan.ripple_plans) if modes.chat else [], shown)


def _generated(model, tok, requests, asked: Asked, unedited: bool = False) -> dict:
    """Every generated answer of one side of the audit, in one batched pass per kind
    (``unedited``: the probe items' answers cached on disk for the next audit of this model)."""
    if not asked.modes.generate:
        return {}
    spec_gen = [Ask(fill(p, r.subject), (a,)) for r in requests for p, a in zip(r.specificity_prompts,
                                                                                 r.specificity_answers)]
    spec_chat = [a for q in (asked.chat or []) for a in q.specificity] + asked.specificity_chat
    texts = [continuations(model, tok, [p for p, c in asked.shown if c == chat], chat=chat) for chat in (False, True)]
    by_kind = {False: iter(texts[0]), True: iter(texts[1])}
    return {"specificity_gen": ask_some(model, tok, spec_gen),
            "specificity_chat": ask_some(model, tok, spec_chat),
            "probe_gen": ask_some(model, tok, asked.probe_gen, cache=unedited),
            "texts": [{"prompt": p, "chat": c, "text": next(by_kind[c])} for p, c in asked.shown],
            "chat_n": None if asked.chat is None else {
                name: sum(len(getattr(q, name)) for q in asked.chat) for name in ("efficacy", "paraphrase", "neighborhood")},
            "chat_off": asked.modes.note,
            "chat_reasons": sorted({q.reason for q in asked.chat or [] if q.reason})}


def measure(inputs: AuditInputs, requests, plan: AuditPlan, score_plans: bool = False,
            states: ItemState | None = None, asked: Asked | None = None) -> Measurement:
    """Measure the setup's model as it is now; ``score_plans``: also score the plan's RippleEdits
    queries; ``states``: the probe items' states, measured already (a budgeted or incremental pass);
    ``asked``: the generated answers to score too (:class:`Asked`)."""
    model, tok, spec, bridge = inputs.setup.model, inputs.setup.tok, inputs.setup.spec, inputs.bridge
    modes = asked.modes if asked is not None else Modes(generate=False)
    world = inputs.setup.world
    return Measurement(requests=requests_metrics(model, tok, list(requests), modes.generate,
                                                 asked.chat if asked is not None else None,
                                                 world.names_of if world is not None else None),
                       perplexities=sentence_perplexities(model, tok, inputs.sentences),
                       states=measure_items(model, tok, spec, plan.items) if states is None else states,
                       ripple=score_ripples(model, tok, plan.ripple_plans) if score_plans else [],
                       tasks=bridge.evaluate() if bridge is not None else None,
                       specificity=specificity_kept(model, tok, requests),
                       generated=_generated(model, tok, requests, asked, unedited=not score_plans)  # the before side scores no plans
                       if asked is not None else {})


def specificity_kept(model, tok, requests) -> list[bool]:
    """Whether greedy decoding still gives each request's ``specificity_answers`` (the subject's
    other relations, the answers they must keep), over every request in order."""
    pairs = [(fill(p, r.subject), a) for r in requests for p, a in zip(r.specificity_prompts, r.specificity_answers)]
    return [greedy for _, greedy in answer_logprobs(model, tok, pairs)] if pairs else []


def audit_edits(inputs: AuditInputs, requests, opts: MeasureOptions = MeasureOptions(),
                delta: EditDelta | None = None) -> AuditResult:
    """Audit ``requests`` applied together with the setup's editor and hyperparameters on its model,
    or the computed ``delta`` for them (a mitigated edit); the model is restored exactly before
    returning, also when a measurement fails or the run is interrupted. ``opts.budget``: after the
    edit, evaluate only that share of the probe items, the ones most at risk
    (:mod:`ripple.gie.budget`); the probe figures are then an estimate (``details["budget"]``)."""
    setup, items, bridge = inputs.setup, inputs.items, inputs.bridge
    k, budget = opts.k, opts.budget
    model, tok, spec, world = setup.model, setup.tok, setup.spec, setup.world
    method, hp = setup.method, setup.hp
    requests = list(requests)
    external = method == EXTERNAL  # an edit made elsewhere: the delta is given, the requests say what it meant
    mode = EXTERNAL if external else auto_mode(method, len(requests))
    edit_layers = hp.layers_for(spec.n_layers(model))
    position = drift_position(hp)
    edit = Edit(method, tuple(requests), hp, mode=mode, delta=delta, force=opts.force)
    with Stages(["before", "edit", "after", "restore"], desc=opts.desc, quiet=opts.quiet) as bar:
        bar.next("measuring the unedited model")
        plan = plan_audit(model, tok, world, requests, items, generate=opts.modes.generate)
        asked = Asked.of(requests, plan, world, opts.modes)
        probe = ItemProbe(setup.ctx, plan.items, edit_layers=edit_layers, budget=Budget.of(budget, opts.ranker),
                          cached=len(items))  # the probe set's unedited state: on disk after the first audit
        before = measure(inputs, requests, plan, states=probe.before(), asked=asked)
        bar.next(edit.describe())
        with sandbox(setup.ctx, edit) as run:
            try:
                bar.next("measuring the edited model")
                index = {item.id: i for i, item in enumerate(plan.items)}
                got = probe.after(run.total, [index[t] for t in plan.target_ids], position, requests)
                after = measure(inputs, requests, plan, score_plans=True, states=got.state, asked=asked)
            finally:
                bar.next("restoring the weights")
    norms = run.total.norm_ratios(model)

    graphs, profiles = [], []
    info = None if got.info is None else {key: value for key, value in got.info.items() if key != "seconds"}
    targets = plan.target_ids or [epicentre(plan.items, before.states, after.states,
                                            graph_layer(before.states, edit_layers), position)]
    for target in targets:
        g = build_graph(plan.items, before.states, after.states, target, k=k, edit_layers=edit_layers,
                        position=position)
        g.graph["method"] = method
        if not plan.target_ids:
            g.graph["centre"] = "inferred: no request names the edited fact; the changed item that drifted most"
        got.mark(g, plan.items)
        graphs.append(g)
        profiles.append(ripple_profile(g, plan.expected | (set(plan.target_ids) - {target})))
    changes = classify_changes(plan, before.states, after.states)
    metrics = policy_metrics(before, after, changes, norms, with_tasks=bridge is not None)
    basis = rule_basis(requests, plan, before, after, changes, world, norms)
    audited = Audited(mode, requests, plan, before, after, changes, graphs, profiles, norms, position, opts.modes)
    details = report_details(audited, metrics, k, world, bridge)
    corpus = getattr(setup, "corpus", None)
    details["stats_corpus"] = corpus.describe() if corpus is not None else None
    details["basis"] = {metric: dataclasses.asdict(b) for metric, b in basis.items()}
    if external:
        details["source"] = (delta.info or {}).get("source") or source_of(delta, None, f"EditDelta ({delta.method})")
        details["gie"]["centre"] = graphs[0].graph.get("centre", "the edited fact")
    if info is not None:
        details["budget"] = {**info, "n_items": len(plan.items)}
    return AuditResult(metrics=metrics, details=details, graphs=graphs, profiles=profiles, delta=run.total,
                       plan=plan, states_before=before.states)
