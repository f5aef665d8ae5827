"""The GIE -> mitigation loop: measure what the edit damaged, revise, measure again.

Round 0 measures the plain edit: every probe item's state (GIE's measurement,
:func:`~ripple.gie.measure.measure_items`) and the requests' CounterFact metrics; the damaged
items are those answered right before the edit and wrong after it, neither edited nor required to
change by the ground truth (:func:`~ripple.evaluate.changes.classify_changes`). Each later round
revises the *plain* edit against every item found damaged so far (revisions do not compound) and
measures the result. The loop stops when

* ``no damage left``: the last revision damages nothing;
* ``iteration budget``: ``hp.iterations`` revisions were made;
* ``no new damage``: every damaged item is constrained already and some damage stays;
* ``norm budget``: a revision would grow an edited parameter's update past ``hp.max_norm_growth``
  times the plain one (it is not applied);
* ``edit lost``: a revision lowers the requests' efficacy below the plain edit's (it is not kept).

The result keeps the best round: fewest damaged items among those that kept the edit, the earlier
on a tie. The model is left exactly as it was, whatever happens.

::

    out = mitigate(setup.ctx, Edit("rome", requests, setup.hp), items, setup.world)
    out.stopped, len(out.damaged["plain"]), len(out.damaged["revised"]), out.revised.method
    # -> ('no damage left', 9, 0, 'rome+sir')
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from ripple.editing.delta import EditDelta, WeightSnapshot
from ripple.editing.editor import get_editor
from ripple.editing.external import EXTERNAL
from ripple.editing.metrics import aggregate, request_metrics
from ripple.evaluate.changes import classify_changes, plan_audit
from ripple.gie.measure import ItemState
from ripple.gie.pipeline import Edit, ItemProbe, sandbox
from ripple.mitigation import MITIGATIONS
from ripple.modes import held


@dataclass
class Mitigated:
    """What :func:`mitigate` did: the plain and revised deltas, each round's figures, why it stopped."""

    plain: EditDelta
    revised: EditDelta
    rounds: list[dict]  # per round: damaged ids, request metrics, norm growth, the step's info, seconds
    chosen: int  # the round whose delta is ``revised`` (0: the plain edit, nothing better was found)
    stopped: str
    states: dict[str, ItemState] = field(default_factory=dict)  # before, plain, revised
    damaged: dict[str, list[str]] = field(default_factory=dict)  # plain, revised
    seconds: dict = field(default_factory=dict)  # edit (the editor's own), revise (the steps), measure
    plan: object = None  # the AuditPlan the damage was classified by (its items: the probe set measured)

    def summary(self) -> dict:
        """JSON-ready figures, without the states and deltas."""
        return {"method": self.plain.method, "mitigated": self.revised.method, "stopped": self.stopped,
                "chosen_round": self.chosen, "damaged": self.damaged, "rounds": self.rounds,
                "seconds": self.seconds}


def _measure(ctx, probe: ItemProbe, requests, delta: EditDelta) -> tuple[ItemState, list[dict]]:
    with sandbox(ctx, Edit(delta=delta)) as run:
        states = probe.after(run.total).state
        metrics = [request_metrics(ctx.model, ctx.tok, r) for r in requests]
    return states, metrics


@dataclass
class _Loop:
    """The loop's running state: its rounds, the best round so far, the items constrained, the times."""

    rounds: list[dict]
    best: tuple  # (damaged count, round, delta, states)
    plain_states: ItemState
    seconds: dict  # measure, revise
    handled: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)


def mitigate(ctx, edit: Edit, items, world, mitigation: str = "sir", hp=None, plan=None,
             before: ItemState | None = None) -> Mitigated:
    """Edit with ``edit.method`` for ``edit.requests`` (hyperparameters ``edit.hp``; or take the
    computed ``edit.delta``), then run the loop above with ``mitigation`` (hyperparameters ``hp``,
    default its dataclass's). ``plan`` and ``before``: the audit's plan
    (:func:`~ripple.evaluate.changes.plan_audit`) and the unedited states when the caller has them;
    ``edit.force`` skips the editor's norm guard."""

    entry = MITIGATIONS.get(mitigation)
    hp = entry.hparams() if hp is None else hp
    model, requests = ctx.model, list(edit.requests)
    names = [n for n, _ in model.named_parameters()]
    with held(model), WeightSnapshot.take(model, names):  # nothing below may leave the model changed
        t0 = time.perf_counter()
        if plan is None:
            plan = plan_audit(model, ctx.tok, world, requests, items)
        probe = ItemProbe(ctx, plan.items, cached=len(items))
        if before is None:
            before = probe.before()
        plain = edit.delta if edit.delta is not None else get_editor(edit.method).compute(ctx, requests, edit.hp)
        if edit.method != EXTERNAL:  # an edit made elsewhere is revised as it is: no guard of ours refuses it
            plain.check_norms(model, edit.hp.max_update_ratio, force=edit.force)
        loop, stopped = _revise_until_done(ctx, replace(edit, requests=tuple(requests), delta=plain), entry, hp,
                                           world, plan, probe, before)
        _, chosen, final, final_states = loop.best
        rounds = loop.rounds
    return Mitigated(plain=plain, revised=final, rounds=rounds, chosen=chosen, stopped=stopped, plan=plan,
                     states={"before": before, "plain": loop.plain_states, "revised": final_states},
                     damaged={"plain": rounds[0]["damaged"], "revised": rounds[chosen]["damaged"]},
                     seconds={"edit": round(plain.info.get("seconds", 0.0), 3),
                              "revise": round(loop.seconds["revise"], 3), "measure": round(loop.seconds["measure"], 3),
                              "total": round(time.perf_counter() - t0, 3)})


def _revise_until_done(ctx, edit: Edit, entry, hp, world, plan, probe: ItemProbe, before: ItemState) -> tuple[_Loop, str]:
    """Round 0 measures the plain edit (``edit.delta``); each later round revises it against every
    item damaged so far and measures the result, until one of the stops above."""

    requests, plain = list(edit.requests), edit.delta
    seconds = {"measure": 0.0, "revise": 0.0}
    states, metrics = _timed_measure(ctx, probe, requests, plain, seconds)
    damaged = classify_changes(plan, before, states).unintended
    plain_eff = aggregate(metrics)["efficacy"]
    loop = _Loop([{"round": 0, "damaged": damaged, **_figures(metrics), "norm_growth": 1.0, "seconds": 0.0}],
                 (len(damaged), 0, plain, states), states, seconds)
    by_id = {item.id: item for item in plan.items}
    while damaged:
        if len(loop.rounds) > hp.iterations:
            return loop, "iteration budget"
        new = [by_id[i] for i in damaged if by_id[i] not in loop.handled]
        if not new:
            return loop, "no new damage"
        loop.handled += new
        t1 = time.perf_counter()
        revised, info = entry.compute(ctx, edit.method, requests, edit.hp, plain, loop.handled, hp, world,
                                      cache=loop.cache)
        loop.seconds["revise"] += time.perf_counter() - t1
        r = {"round": len(loop.rounds), "constrained": len(loop.handled), "norm_growth": info.get("norm_growth"),
             "step": {k: v for k, v in info.items() if k not in ("damaged", "seconds")}, "seconds": info.get("seconds")}
        if info.get("unrevisable"):  # an edit made elsewhere with nothing the mitigation can re-solve
            loop.rounds.append({**r, "rejected": "nothing revisable"})
            return loop, "nothing revisable"
        if info.get("norm_growth", 1.0) > hp.max_norm_growth:
            loop.rounds.append({**r, "rejected": "norm budget"})
            return loop, "norm budget"
        states, metrics = _timed_measure(ctx, probe, requests, revised, loop.seconds)
        damaged = classify_changes(plan, before, states).unintended
        loop.rounds.append({**r, "damaged": damaged, **_figures(metrics)})
        if aggregate(metrics)["efficacy"] < plain_eff:
            loop.rounds[-1]["rejected"] = "edit lost"
            return loop, "edit lost"
        if len(damaged) < loop.best[0]:
            loop.best = (len(damaged), r["round"], revised, states)
    return loop, "no damage left"


def _timed_measure(ctx, probe: ItemProbe, requests, delta: EditDelta, seconds: dict):
    t1 = time.perf_counter()
    out = _measure(ctx, probe, requests, delta)
    seconds["measure"] += time.perf_counter() - t1
    return out


def item_table(items, ids, states: dict) -> list[dict]:
    """Per item in ``ids``: its prompt, right answer and greedy answer in each state."""
    index = {item.id: i for i, item in enumerate(items)}
    rows = []
    for item_id in ids:
        i = index[item_id]
        item = items[i]
        rows.append({"id": item_id, "prompt": item.rendered, "answer": item.answer,
                     **{name: st.greedy[i] for name, st in states.items()},
                     **{f"{name}_correct": bool(st.correct[i]) for name, st in states.items()}})
    return rows


def _figures(metrics: list[dict]) -> dict:
    agg = aggregate(metrics)
    return {k: agg.get(k) for k in ("efficacy", "paraphrase", "neighborhood")}
