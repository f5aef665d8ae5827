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

    out = mitigate(setup.ctx, "rome", requests, setup.hp, items, setup.world)
    out.stopped, len(out.damaged["plain"]), len(out.damaged["revised"]), out.revised.method
    # -> ('no damage left', 9, 0, 'rome+sir')
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ripple.editing.delta import EditDelta, WeightSnapshot
from ripple.editing.editor import get_editor
from ripple.editing.metrics import aggregate, request_metrics
from ripple.gie.measure import ItemState, measure_items
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

    def summary(self) -> dict:
        """JSON-ready figures, without the states and deltas."""
        return {"method": self.plain.method, "mitigated": self.revised.method, "stopped": self.stopped,
                "chosen_round": self.chosen, "damaged": self.damaged, "rounds": self.rounds,
                "seconds": self.seconds}


def _measure(ctx, items, requests, delta: EditDelta) -> tuple[ItemState, list[dict]]:
    with delta.applied(ctx.model):
        states = measure_items(ctx.model, ctx.tok, ctx.spec, items)
        metrics = [request_metrics(ctx.model, ctx.tok, r) for r in requests]
    return states, metrics


def mitigate(ctx, method: str, requests, edit_hp, items, world, mitigation: str = "sir", hp=None, plan=None,
             before: ItemState | None = None, plain: EditDelta | None = None, force: bool = False) -> Mitigated:
    """Edit with ``method`` (or take the computed ``plain`` delta), then run the loop above with
    ``mitigation`` (hyperparameters ``hp``, default its dataclass's). ``plan`` and ``before``: the
    audit's plan (:func:`~ripple.evaluate.changes.plan_audit`) and the unedited states when the caller
    has them; ``force`` skips the editor's norm guard."""
    from ripple.evaluate.changes import classify_changes, plan_audit

    entry = MITIGATIONS.get(mitigation)
    hp = entry.hparams() if hp is None else hp
    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    requests = list(requests)
    names = [n for n, _ in model.named_parameters()]
    with held(model), WeightSnapshot.take(model, names):  # nothing below may leave the model changed
        t0 = time.perf_counter()
        if plan is None:
            plan = plan_audit(model, tok, world, requests, items)
        if before is None:
            before = measure_items(model, tok, spec, plan.items)
        if plain is None:
            plain = get_editor(method).compute(ctx, requests, edit_hp)
        plain.check_norms(model, edit_hp.max_update_ratio, force=force)
        t_edit = plain.info.get("seconds", 0.0)
        t_measure = t_revise = 0.0

        t1 = time.perf_counter()
        states, metrics = _measure(ctx, plan.items, requests, plain)
        t_measure += time.perf_counter() - t1
        plain_states = states
        damaged = classify_changes(plan, before, states).unintended
        plain_eff = aggregate(metrics)["efficacy"]
        rounds = [{"round": 0, "damaged": damaged, **_figures(metrics), "norm_growth": 1.0, "seconds": 0.0}]
        best = (len(damaged), 0, plain, states)
        handled: list = []
        cache: dict = {}
        by_id = {item.id: item for item in plan.items}
        stopped = "no damage left" if not damaged else None
        while stopped is None:
            if len(rounds) > hp.iterations:
                stopped = "iteration budget"
                break
            new = [by_id[i] for i in damaged if by_id[i] not in handled]
            if not new:
                stopped = "no new damage"
                break
            handled += new
            t1 = time.perf_counter()
            revised, info = entry.compute(ctx, method, requests, edit_hp, plain, handled, hp, world, cache=cache)
            t_revise += time.perf_counter() - t1
            r = {"round": len(rounds), "constrained": len(handled), "norm_growth": info.get("norm_growth"),
                 "step": {k: v for k, v in info.items() if k not in ("damaged", "seconds")},
                 "seconds": info.get("seconds")}
            if info.get("norm_growth", 1.0) > hp.max_norm_growth:
                rounds.append({**r, "rejected": "norm budget"})
                stopped = "norm budget"
                break
            t1 = time.perf_counter()
            states, metrics = _measure(ctx, plan.items, requests, revised)
            t_measure += time.perf_counter() - t1
            damaged = classify_changes(plan, before, states).unintended
            rounds.append({**r, "damaged": damaged, **_figures(metrics)})
            if aggregate(metrics)["efficacy"] < plain_eff:
                rounds[-1]["rejected"] = "edit lost"
                stopped = "edit lost"
                break
            if len(damaged) < best[0]:
                best = (len(damaged), r["round"], revised, states)
            if not damaged:
                stopped = "no damage left"
        _, chosen, final, final_states = best
    return Mitigated(plain=plain, revised=final, rounds=rounds, chosen=chosen, stopped=stopped,
                     states={"before": before, "plain": plain_states, "revised": final_states},
                     damaged={"plain": rounds[0]["damaged"], "revised": rounds[chosen]["damaged"]},
                     seconds={"edit": round(t_edit, 3), "revise": round(t_revise, 3),
                              "measure": round(t_measure, 3), "total": round(time.perf_counter() - t0, 3)})


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
