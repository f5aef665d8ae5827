"""RippleEdits / MQuAKE scoring on a hand-made situation: the model is an oracle that answers
each prompt from a dict, one dict before the edit and one after, so every count is known."""

import contextlib

import pytest

import ripple.evaluate.ripple_scores as RS
from ripple.editing.from_world import request_for
from ripple.errors import RippleError
from ripple.world import build_world
from ripple.world.ground_truth import ripple_ground_truth

WRONG = "nobody"


@contextlib.contextmanager
def undoing(undo):
    """A sandbox that edits nothing and calls ``undo`` on leaving, however the block ends."""
    try:
        yield
    finally:
        undo()


class Oracle:
    """Stands in for the model: ``answer[prompt]`` is its greedy continuation."""

    def __init__(self, before):
        self.answer, self.calls = dict(before), []

    def query_correct(self, model, tok, queries, batch_size=128):
        self.calls.append(len(queries))
        return [self.answer.get(q.prompt, WRONG) in q.answers for q in queries]


@pytest.fixture(scope="module")
def situation():
    w = build_world()
    p = next(x for x in w.persons if w.objects(x.id, "citizen_of") and x.aliases)
    old = w.objects(p.id, "citizen_of")[0]
    new = next(e.id for e in w.of_type("country") if e.id != old)
    return w, p.id, new, request_for(w, p.id, "citizen_of", new), ripple_ground_truth(w, p.id, "citizen_of", new)


def _before(w, gt):
    """Knows every condition and every must-keep answer, except the new country's capital and the
    second template of the first other relation."""
    ans = {}
    for q in gt:
        for c in q.conditions:
            ans[RS.condition_query(w, c).prompt] = w.name(c.object)
        if not q.must_change:
            ans[q.prompt] = next(a for a in q.answers if a in q.old_answers)
    capital = next(c for q in gt for c in q.conditions if c.relation == "capital")
    ans[RS.condition_query(w, capital).prompt] = WRONG
    spec = [q for q in gt if q.category == "relation_specificity"]
    ans[spec[1].prompt] = WRONG
    return ans, capital, spec[1]


def test_counts_and_accuracies_exact(situation, monkeypatch):
    w, _, _, req, gt = situation
    before, capital, unknown_spec = _before(w, gt)
    oracle = Oracle(before)
    monkeypatch.setattr(RS, "query_correct", oracle.query_correct)
    # after the edit: the first edit template, every other two-hop, the first alias template and
    # relation specificity (all but one) right; the neighbourhood forgotten
    after = dict(before)
    by_cat = {}
    for q in gt:
        by_cat.setdefault(q.category, []).append(q)
    for i, q in enumerate(by_cat["edit"]):
        after[q.prompt] = q.answers[0] if i == 0 else WRONG
    for i, q in enumerate(by_cat["compositionality_1"]):
        after[q.prompt] = q.answers[0] if i % 2 == 0 else WRONG
    for i, q in enumerate(by_cat["subject_aliasing"]):
        after[q.prompt] = q.answers[0] if i == 0 else WRONG
    after[by_cat["relation_specificity"][0].prompt] = WRONG
    for q in by_cat["neighbourhood"]:
        after[q.prompt] = WRONG
    undone = []

    @contextlib.contextmanager
    def run_edit():
        assert oracle.calls, "the before-edit checks must run before the edit"
        oracle.answer = after
        try:
            yield
        finally:
            undone.append(True)

    res = RS.ripple_eval(None, None, w, req, run_edit)
    assert undone == [True]
    c = res["categories"]
    assert c["edit"] == {"n": 5, "correct": 1, "total": 5, "accuracy": 0.2}
    # the two capital questions are not counted: the new country's capital was unknown
    comp = [q for q in by_cat["compositionality_1"] if capital not in q.conditions]
    assert c["compositionality_1"]["total"] == len(by_cat["compositionality_1"]) == 6
    assert c["compositionality_1"]["n"] == len(comp) == 4
    hits = sum(after[q.prompt] in q.answers for q in comp)
    assert c["compositionality_1"]["correct"] == hits and c["compositionality_1"]["accuracy"] == hits / 4
    assert c["subject_aliasing"]["n"] == len(by_cat["subject_aliasing"])
    assert c["subject_aliasing"]["correct"] == 1
    # relation specificity: one query wrong before (not counted), one forgotten after
    n_spec = len(by_cat["relation_specificity"])
    rs = c["relation_specificity"]
    assert rs["total"] == n_spec and rs["n"] == n_spec - 1 and rs["correct"] == n_spec - 2
    assert c["neighbourhood"]["n"] == len(by_cat["neighbourhood"]) and c["neighbourhood"]["accuracy"] == 0.0
    for cat in ("logical_generalization", "compositionality_2", "preservation"):
        assert c[cat] == {"n": 0, "correct": 0, "total": 0, "accuracy": None}
    row = next(r for r in res["queries"] if r["prompt"] == unknown_spec.prompt)
    assert row["before"] is False and row["counted"] is False and "after" not in row


def test_undo_runs_when_scoring_fails(situation, monkeypatch):
    w, _, _, req, _ = situation
    state = {"n": 0}

    def flaky(model, tok, queries, batch_size=128):
        state["n"] += 1
        if state["n"] == 3:
            raise RuntimeError("boom")
        return [True] * len(queries)

    monkeypatch.setattr(RS, "query_correct", flaky)
    undone = []
    with pytest.raises(RuntimeError):
        RS.ripple_eval(None, None, w, req, lambda: undoing(lambda: undone.append(1)))
    assert undone == [1]


def test_many_aggregates_and_multihop(situation, monkeypatch):
    w, subject, new, req, gt = situation
    other = next(e.id for e in w.of_type("country") if e.id not in (new, w.objects(subject, "citizen_of")[0]))
    req2 = request_for(w, subject, "citizen_of", other)
    before, _, _ = _before(w, gt)
    before.update(_before(w, ripple_ground_truth(w, subject, "citizen_of", other))[0])
    oracle = Oracle(before)
    monkeypatch.setattr(RS, "query_correct", oracle.query_correct)

    @contextlib.contextmanager
    def make(r):  # the edit prompt succeeds; the two-hops only for the first request
        prev = dict(oracle.answer)
        for q in ripple_ground_truth(w, *RS.parse_case_id(r.case_id)):
            if q.category == "edit" or (q.category == "compositionality_1" and r is req):
                oracle.answer[q.prompt] = q.answers[0]
        try:
            yield
        finally:
            oracle.answer = prev

    out = RS.ripple_eval_many(None, None, w, [req, req2], make)
    assert out["n_edits"] == 2 and len(out["edits"]) == 2
    assert out["categories"]["edit"]["mean"] == 1.0
    comp = [e["categories"]["compositionality_1"] for e in out["edits"]]
    assert comp[1]["accuracy"] == 0.0 and comp[0]["accuracy"] == 1.0
    agg = out["categories"]["compositionality_1"]
    assert agg["mean"] == 0.5 and agg["n"] == comp[0]["n"] + comp[1]["n"] and agg["edits"] == 2
    assert agg["micro"] == comp[0]["n"] / agg["n"]
    # overall: the mean over the six categories that have data
    six = [out["categories"][c]["mean"] for c in RS.RIPPLE_CATEGORIES]
    assert out["overall"] == pytest.approx(sum(x for x in six if x is not None) / sum(x is not None for x in six))
    assert out["multihop"] == {"cases": 2, "edit_wise": 1.0, "multihop": 0.5, "multihop_given_edit": 0.5}


def test_multihop_skips_other_relations_and_uncounted():
    def res(rel, edit_ok, hops):
        qs = [{"category": "edit", "after": edit_ok, "counted": True}]
        qs += [{"category": "compositionality_1", "after": h, "counted": c} for h, c in hops]
        return {"relation": rel, "queries": qs}

    results = [res("citizen_of", True, [(False, True), (True, True)]),
               res("born_in", False, [(False, True)]),
               res("works_for", True, [(True, False)]),  # no counted two-hop: skipped
               res("studied_at", True, [(True, True)])]  # not a MQuAKE relation: skipped
    assert RS.multihop_eval(results) == {"cases": 2, "edit_wise": 0.5, "multihop": 0.5, "multihop_given_edit": 1.0}
    assert RS.multihop_eval([])["edit_wise"] is None


def test_bad_case_id_is_one_line_error(situation):
    w, _, _, req, _ = situation
    from dataclasses import replace

    with pytest.raises(RippleError, match="subject\\|relation\\|new_object") as e:
        RS.ripple_eval(None, None, w, replace(req, case_id="17"), contextlib.nullcontext)
    assert "\n" not in str(e.value)


def test_score_ripples_scores_many_plans_in_one_pass_as_each_alone(situation, monkeypatch):
    w, pid, new, req, gt = situation
    before, _, _ = _before(w, gt)
    oracle = Oracle(before)
    monkeypatch.setattr(RS, "query_correct", oracle.query_correct)
    other_new = next(e.id for e in w.of_type("country") if e.id not in (new, *w.objects(pid, "citizen_of")))
    plans = [RS.plan_ripple(None, None, w, r) for r in (req, request_for(w, pid, "citizen_of", other_new))]
    oracle.answer = {p: (WRONG if i % 3 == 0 else a) for i, (p, a) in enumerate(sorted(before.items()))}
    for plan in plans:  # what the edited model now says to the first edit query: the new object
        first_edit = next(r for r in plan["rows"] if r["category"] == "edit")
        oracle.answer[first_edit["prompt"]] = first_edit["answers"][0]
    alone = [RS.score_ripple(None, None, p) for p in plans]
    calls = len(oracle.calls)
    together = RS.score_ripples(None, None, plans)
    assert len(oracle.calls) == calls + 1  # one pass for both plans
    assert together == alone
    scored = [r["after"] for p in together for r in p["queries"] if r["counted"]]
    assert True in scored and False in scored  # the comparison covers both outcomes
    assert together[0]["case_id"] != together[1]["case_id"]
