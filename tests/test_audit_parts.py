"""The audit's jobs one at a time, against hand-made inputs: the plan (edited items, expected
changes), the classification of changed answers, and the policy's metric dict."""

from types import SimpleNamespace

import pytest

from ripple.auditing.measure import AuditPlan, Changes, classify_changes, edited_items, plan_audit
from ripple.auditing.metrics import AUDIT_METRICS, policy_metrics, task_acc_drop
from ripple.auditing.policy import DEFAULT_POLICY
from ripple.editing.from_world import request_for
from ripple.editing.requests import EditRequest
from ripple.evaluate.ripple_scores import RIPPLE_CATEGORIES
from ripple.probes.sets import ProbeItem, world_probe_set

ITEMS = [ProbeItem("e", "X", "born_in", "{} was born in", "C1"),
         ProbeItem("x", "X", "works_for", "{} works for", "F1"),
         ProbeItem("l1", "Y", "language", "{} speaks", "L1"), ProbeItem("l2", "Y", "language", "{} speaks", "L2"),
         ProbeItem("z", "Z", "born_in", "{} was born in", "C3")]


def states(greedy, correct):
    return SimpleNamespace(greedy=tuple(greedy), correct=tuple(correct))


def test_classify_changes_by_hand():
    plan = AuditPlan(items=ITEMS, target_ids=["e"], expected={"x"}, ripple_plans=[])
    before = states(["C1", "F1", "L1", "L1", "C3"], [True, True, True, False, True])
    after = states(["C2", "F2", "L2", "L2", "C9"], [False, False, False, True, False])
    got = classify_changes(plan, before, after)
    # every answer changed; e is edited, x expected, l1/l2 a swap of right answers, z damage
    assert got == Changes(changed=[0, 1, 2, 3, 4], swaps={"l1", "l2"}, unintended=["z"])
    assert classify_changes(plan, before, before) == Changes([], set(), [])
    # a wrong answer that moves (z wrong before) is reported apart and not counted
    wrong_z = states(["C1", "F1", "L1", "L1", "C4"], [True, True, True, False, False])
    got = classify_changes(plan, wrong_z, after)
    assert got.unintended == [] and got.wrong_flips == ["z"]


def test_edited_items_adds_the_edited_fact_when_the_probe_set_lacks_it():
    req = EditRequest("{} lives in", "X", "C2", "C1")
    items, ids = edited_items(ITEMS, [req], world=None)
    assert ids == ["edit-1:X"] and len(items) == len(ITEMS) + 1
    assert (items[-1].prompt, items[-1].subject, items[-1].answer) == ("{} lives in", "X", "C1")
    same = EditRequest("{} was born in", "X", "C2", "C1")
    assert edited_items(ITEMS, [same], world=None) == (ITEMS, ["e"])


def test_plan_audit_finds_the_edited_world_fact_by_subject_and_prompt(world):
    person = world.persons[0].id
    old = world.objects(person, "born_in")[0]
    new = next(e.id for e in world.of_type("city") if e.id != old)
    req = request_for(world, person, "born_in", new)
    items = world_probe_set(world)
    plan = plan_audit(None, None, None, [req], items)  # no world: nothing expected, no ripple plans
    assert plan.target_ids == [f"{person}|born_in|{old}"] and plan.expected == set() and plan.ripple_plans == []
    assert plan.items == items  # the probe set has the edited fact: nothing added


def measurement(requests, ppl, ripple=(), tasks=None):
    return SimpleNamespace(requests=requests, perplexities=ppl, ripple=list(ripple), tasks=tasks)


def test_policy_metrics_cover_every_audit_metric_and_the_default_rules():
    row = {"efficacy": True, "efficacy_top1": True, "paraphrase": 0.5, "paraphrase_top1": 0.0,
           "neighborhood": 1.0, "neighborhood_top1": 1.0}
    before = measurement([row], [2.0, 4.0], tasks={"t": {"acc": 0.9}})
    after = measurement([row], [3.0, 6.0], tasks={"t": {"acc": 0.6}})
    changes = Changes([0, 1], set(), ["z"])
    m = policy_metrics(before, after, changes, {"w": 0.25, "v": 0.5}, with_tasks=True)
    assert set(m) == set(AUDIT_METRICS)
    assert {r.metric for r in DEFAULT_POLICY.rules} <= set(AUDIT_METRICS)
    assert m["perplexity_ratio"] == pytest.approx(4.5 / 3.0) and m["update_norm_ratio"] == 0.5
    assert m["unintended_changes"] == 1 and m["task_acc_drop"] == pytest.approx(0.3)
    assert m["efficacy"] == 1.0 and m["paraphrase"] == 0.5
    assert all(m[c] is None for c in (*RIPPLE_CATEGORIES, "ripple_overall"))  # no world: not measurable
    assert policy_metrics(before, after, changes, {}, with_tasks=False)["task_acc_drop"] is None


def test_task_acc_drop_is_the_largest_fall():
    assert task_acc_drop({"a": {"acc": 0.9}, "b": {"acc": 0.5}, "p": {"ppl": 3}},
                         {"a": {"acc": 0.8}, "b": {"acc": 0.1}, "p": {"ppl": 9}}) == pytest.approx(0.4)
    assert task_acc_drop({"p": {"ppl": 3}}, {"p": {"ppl": 9}}) is None
