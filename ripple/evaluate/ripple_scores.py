"""RippleEdits-style scores for organism edits, counted as Cohen et al. (2023) count them.

For one edit, :func:`ripple_eval` takes the world's exact ground truth
(:func:`ripple.world.ground_truth.ripple_ground_truth`), checks BEFORE the edit which condition
facts the model knows (greedy answer on the relation's first core template, see
:func:`condition_query`) and which must-keep
queries it answers correctly, applies the edit, scores every query, and undoes the edit.

Counted queries:

* must change (edit, logical generalization, compositionality I/II, subject aliasing): every
  condition fact known before the edit;
* must keep (preservation, relation specificity, neighbourhood): answered correctly before the
  edit (an answer that stays correct after it) and every condition fact known.

A query is correct after the edit when its greedy continuation is one of ``answers``. With
``generate``, each counted query is also scored on its generated answer (:mod:`ripple.generation`:
the continuation begins with one of ``answers``): a must-keep query counts there when its
generated answer was right before the edit (``counted_gen``); the categories then carry
``n_gen``, ``correct_gen`` and ``accuracy_gen`` beside the teacher-forced figures.
:func:`multihop_eval` reads MQuAKE's two figures off the same results: edit-wise success (the
edit prompt) against multi-hop accuracy (a two-hop question through the edited fact, correct if
any of its phrasings is, as MQuAKE scores its three questions).

::

    res = ripple_eval(model, tok, world, request, lambda: edited(ctx, "rome", [request], hp))
    res["categories"]["compositionality_1"]
    {'n': 2, 'correct': 0, 'accuracy': 0.0, 'total': 2}
"""

from __future__ import annotations

from ripple.generation import Ask, ask
from ripple.scoring import query_correct
from ripple.world.edits import WorldEdit
from ripple.world.generate import Fact, World
from ripple.world.ground_truth import CATEGORIES, ripple_ground_truth
from ripple.world.queries import Query, fact_query

#: The six RippleEdits categories, averaged into the overall score.
RIPPLE_CATEGORIES = ("logical_generalization", "compositionality_1", "compositionality_2", "subject_aliasing",
                     "preservation", "relation_specificity")
#: Edits whose two-hop questions MQuAKE-style evaluation asks.
MULTIHOP_RELATIONS = ("citizen_of", "born_in", "works_for")


def parse_case_id(case_id) -> tuple[str, str, str]:
    """``"subject|relation|new_object"`` -> its three parts (as :func:`ripple.editing.from_world.request_for` makes)."""
    edit = WorldEdit.require(case_id)
    return edit.subject, edit.relation, edit.new


def condition_query(world: World, fact: Fact) -> Query:
    """The condition fact asked on its relation's first core template. Every current object of
    (subject, relation) counts: greedy decoding gives one answer, so for a one-to-many relation
    (a country's languages) any of its objects shows the model knows the relation there."""
    return fact_query(world, fact.subject, fact.relation, world.relations[fact.relation].templates[0])


def _as_query(prompt: str, answers) -> Query:
    return Query(prompt, "", tuple(answers), "", "")


def plan_ripple(model, tok, world: World, request, max_per_category: int = 10, generate: bool = False) -> dict:
    """The BEFORE half of :func:`ripple_eval`: the ground-truth queries of ``request``, which of
    them count (condition facts known, must-keep queries right), measured on the unedited model;
    ``generate``: also which must-keep queries the model's generated answer got right (``counted_gen``)."""
    subject, relation, new = parse_case_id(request.case_id)
    gt = ripple_ground_truth(world, subject, relation, new, max_per_category=max_per_category)
    conds = sorted({c for q in gt for c in q.conditions}, key=lambda f: (f.subject, f.relation, f.object))
    known = dict(zip(conds, query_correct(model, tok, [condition_query(world, c) for c in conds])))
    keep = [q for q in gt if not q.must_change]
    # before the edit a must-keep query is right when it gives one of the answers it should keep
    kept_answers = [tuple(a for a in q.answers if a in q.old_answers) for q in keep]
    to_check = [(q, a) for q, a in zip(keep, kept_answers) if a]
    was_right = query_correct(model, tok, [_as_query(q.prompt, a) for q, a in to_check])
    right = dict(zip([id(q) for q, _ in to_check], was_right))
    rows = []
    for q in gt:
        cond_ok = all(known[c] for c in q.conditions)
        before = right.get(id(q), False) if not q.must_change else None
        rows.append({"category": q.category, "prompt": q.prompt, "answers": list(q.answers),
                     "subject": q.subject, "relation": q.relation,
                     "conditions_known": cond_ok, "before": before,
                     "counted": cond_ok and (q.must_change or bool(before))})
    out = {"case_id": request.case_id, "relation": relation, "rows": rows}
    if generate:
        out["generate"] = True
        keep_asks = [Ask(q.prompt, a) for q, a in to_check]
        right_gen = dict(zip([id(q) for q, _ in to_check], (x.correct for x in ask(model, tok, keep_asks))))
        for q, row in zip(gt, rows):
            row["counted_gen"] = row["conditions_known"] and (q.must_change or right_gen.get(id(q), False))
    return out


def score_ripple(model, tok, plan: dict) -> dict:
    """The AFTER half of :func:`ripple_eval`: score a :func:`plan_ripple` plan on the model as it
    is now (the edit applied)."""
    return score_ripples(model, tok, [plan])[0]


def score_ripples(model, tok, plans: list[dict]) -> list[dict]:
    """:func:`score_ripple` of each plan, the counted queries of every plan scored in one batched
    pass: the way to score a batch's or a run's many plans at once. Plans made with ``generate``
    are scored on generated answers too."""
    rows_of = [[dict(r) for r in plan["rows"]] for plan in plans]
    counted = [r for rows in rows_of for r in rows if r["counted"]]
    after = query_correct(model, tok, [_as_query(r["prompt"], r["answers"]) for r in counted])
    for r, ok in zip(counted, after):
        r["after"] = bool(ok)
    gen = [r for rows in rows_of for r in rows if r.get("counted_gen")]
    for r, got in zip(gen, ask(model, tok, [Ask(r["prompt"], tuple(r["answers"])) for r in gen])):
        r["after_gen"] = got.correct
    out = []
    for plan, rows in zip(plans, rows_of):
        cats = {}
        for cat in CATEGORIES:
            mine = [r for r in rows if r["category"] == cat]
            hits = [r["after"] for r in mine if r["counted"]]
            cats[cat] = {"n": len(hits), "correct": sum(hits), "total": len(mine),
                         "accuracy": sum(hits) / len(hits) if hits else None}
            if plan.get("generate"):
                got = [r["after_gen"] for r in mine if r.get("counted_gen")]
                cats[cat] |= {"n_gen": len(got), "correct_gen": sum(got),
                              "accuracy_gen": sum(got) / len(got) if got else None}
        out.append({"case_id": plan["case_id"], "relation": plan["relation"], "categories": cats, "queries": rows})
    return out


def ripple_eval(model, tok, world: World, request, sandbox, max_per_category: int = 10) -> dict:
    """Score one organism edit on the RippleEdits categories (see the module docstring).

    ``sandbox()`` gives a context manager inside which the model is edited (and outside of which
    it is not): :func:`ripple.editing.session.edited`. Returns
    ``{"case_id", "relation", "categories": {cat: {"n", "correct", "accuracy", "total"}}, "queries": [...]}``
    where ``n`` counts the counted queries, ``total`` all of them, and ``accuracy`` is None when none counted.
    """
    plan = plan_ripple(model, tok, world, request, max_per_category)
    with sandbox():
        return score_ripple(model, tok, plan)


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def category_totals(results: list[dict]) -> dict:
    """Counted queries pooled over edits: per category ``n``, ``correct`` and ``accuracy``
    (correct / n, None when nothing counted); ``overall``: the mean of the six RippleEdits
    categories' pooled accuracies (those with data). What an audit of one or several edits reports."""
    cats = {}
    for cat in (*RIPPLE_CATEGORIES, *(c for c in CATEGORIES if c not in RIPPLE_CATEGORIES)):
        cells = [r["categories"][cat] for r in results]
        n, correct = sum(c["n"] for c in cells), sum(c["correct"] for c in cells)
        cats[cat] = {"n": n, "correct": correct, "accuracy": correct / n if n else None}
        if cells and all("n_gen" in c for c in cells):
            n, correct = sum(c["n_gen"] for c in cells), sum(c["correct_gen"] for c in cells)
            cats[cat] |= {"n_gen": n, "correct_gen": correct, "accuracy_gen": correct / n if n else None}
    out = {"categories": cats, "overall": _mean([cats[c]["accuracy"] for c in RIPPLE_CATEGORIES])}
    if all("n_gen" in cats[c] for c in RIPPLE_CATEGORIES):
        out["overall_gen"] = _mean([cats[c]["accuracy_gen"] for c in RIPPLE_CATEGORIES])
    return out


def aggregate(results: list[dict]) -> dict:
    """Per category: ``mean`` over edits of the per-edit accuracy (edits with a counted query),
    ``micro`` over all counted queries, ``n`` counted queries, ``edits`` edits that counted any;
    ``overall``: the mean of the six RippleEdits categories' means (those with data)."""
    pooled = category_totals(results)["categories"]
    out = {}
    for cat in CATEGORIES:
        cells = [r["categories"][cat] for r in results]
        out[cat] = {"mean": _mean([c["accuracy"] for c in cells]), "micro": pooled[cat]["accuracy"],
                    "n": pooled[cat]["n"], "edits": sum(c["n"] > 0 for c in cells),
                    "total": sum(c["total"] for c in cells)}
    return {"categories": out, "overall": _mean([out[c]["mean"] for c in RIPPLE_CATEGORIES]), "n_edits": len(results)}


def ripple_eval_many(model, tok, world: World, requests, sandbox_for, max_per_category: int = 10,
                     on_result=None) -> dict:
    """:func:`ripple_eval` for each request (``sandbox_for(request)`` gives the context manager that
    edits), then :func:`aggregate` and :func:`multihop_eval`; per-edit results under ``"edits"``."""
    results = []
    for req in requests:
        results.append(ripple_eval(model, tok, world, req, lambda: sandbox_for(req), max_per_category))
        if on_result is not None:
            on_result(results[-1])
    return {**aggregate(results), "multihop": multihop_eval(results), "edits": results}


def multihop_eval(results: list[dict]) -> dict:
    """MQuAKE's two figures from :func:`ripple_eval` results, over the edits of a person's
    citizen_of / born_in / works_for that have a counted two-hop question (compositionality I):
    ``edit_wise`` = the edit prompt (first core template) answered with the new object;
    ``multihop`` = some counted phrasing of some two-hop question answered with the new answer;
    ``multihop_given_edit`` = multi-hop accuracy among the edits that succeeded."""
    edit_ok, hop_ok = [], []
    for r in results:
        if r["relation"] not in MULTIHOP_RELATIONS:
            continue
        hops = [q["after"] for q in r["queries"] if q["category"] == "compositionality_1" and q["counted"]]
        if not hops:
            continue
        first_edit = next(q for q in r["queries"] if q["category"] == "edit")
        edit_ok.append(bool(first_edit.get("after")))
        hop_ok.append(any(hops))
    both = [h for e, h in zip(edit_ok, hop_ok) if e]
    return {"cases": len(edit_ok), "edit_wise": _mean([float(x) for x in edit_ok]),
            "multihop": _mean([float(x) for x in hop_ok]),
            "multihop_given_edit": _mean([float(x) for x in both])}
