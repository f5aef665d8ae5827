"""CounterFact-style edit metrics (Meng et al., 2022), each as top-1 and as a probability race.

* efficacy: on the edit prompt, the new target is the greedy answer / P(new) > P(old);
* paraphrase: the same on paraphrases of the edit prompt;
* neighbourhood: on prompts about other subjects whose answer is the old target, the old
  target stays the greedy answer / P(old) > P(new) (with ``neighborhood_answers``, each prompt's
  own answer against the new target);
* fluency: weighted bi- and tri-gram entropy of greedy generations about the subject.

Each of the first three is also scored on what the model generates (``generate``): ``_gen``, the
greedy continuation of the completion prompt begins with the answer, and, given chat questions
(:mod:`ripple.editing.questions`), ``_chat``, the reply to the relation's question names it
before its rival (:mod:`ripple.answers`, :mod:`ripple.generation`).

>>> ngram_entropy(["a b c d"]) > ngram_entropy(["a a a a"])
True
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from ripple.devices import input_device
from ripple.editing.requests import EditRequest
from ripple.generation import Ask, ask
from ripple.scoring import answer_logprobs
from ripple.tokens import text_ids


def _mean(xs: list[bool]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def request_metrics(model, tok, req: EditRequest, generate: bool = False, chat=None) -> dict:
    """Metrics of one request on the model as it is now (apply the edit first); ``generate`` and
    ``chat`` as in :func:`requests_metrics`."""
    return requests_metrics(model, tok, [req], generate, None if chat is None else [chat])[0]


def _plan(req: EditRequest) -> list[tuple[str, list[tuple[str, str]]]]:
    """The (prompt, answer) pairs each metric scores: ``(name, pairs)``, in order."""
    new, true = req.target_new, req.target_true
    plan = []
    for name, prompts in (("efficacy", [req.rendered]), ("paraphrase", list(req.paraphrase_prompts))):
        plan += [(name, [(p, new) for p in prompts])]
        if true is not None:
            plan += [(f"{name}:old", [(p, true) for p in prompts])]
    nb = list(req.neighborhood_prompts)
    if req.neighborhood_answers:  # each neighbour's own true answer against the new target
        plan += [("neighborhood", list(zip(nb, req.neighborhood_answers))), ("neighborhood:new", [(p, new) for p in nb])]
    elif true is not None:
        plan += [("neighborhood", [(p, true) for p in nb]), ("neighborhood:new", [(p, new) for p in nb])]
    return plan


def _gen_plan(req: EditRequest, names=None) -> list[tuple[str, list[Ask]]]:
    """The completion prompts each metric generates from, with the answers that count (each by any
    of its ``names``, a callable giving an answer's other names) and the rival a longer one of
    which must not be what was said (" Guinea-Bissau" is not Guinea)."""
    names = names or (lambda x: (x,))
    new, old = names(req.target_new), names(req.target_true) if req.target_true else ()
    plan = [("efficacy", [Ask(req.rendered, new, old)]),
            ("paraphrase", [Ask(p, new, old) for p in req.paraphrase_prompts])]
    own = req.neighborhood_answers or ((req.target_true,) * len(req.neighborhood_prompts) if req.target_true else ())
    return plan + [("neighborhood", [Ask(p, names(a), new) for p, a in zip(req.neighborhood_prompts, own)])]


def _chat_plan(questions) -> list[tuple[str, list[Ask]]]:
    return [(name, list(getattr(questions, name))) for name in ("efficacy", "paraphrase", "neighborhood")]


def generated_metrics(model, tok, requests: list[EditRequest], chat: list | None = None, names=None) -> list[dict]:
    """Per request, the share of each metric's prompts whose generated answer is right: ``_gen``
    (completion prompts) and, with ``chat`` (one :class:`~ripple.editing.questions.ChatQuestions`
    per request), ``_chat``; every prompt of every request generated in one batched pass.
    ``names``: an answer's other names (``World.names_of``), any of which counts."""
    plans = [[(f"{n}_gen", a) for n, a in _gen_plan(r, names)] for r in requests]
    if chat is not None:
        plans = [p + [(f"{n}_chat", a) for n, a in _chat_plan(q)] for p, q in zip(plans, chat)]
    flat = [a for plan in plans for _, asks in plan for a in asks]
    results = iter(ask(model, tok, flat))
    return [{name: _mean([next(results).correct for _ in asks]) for name, asks in plan} for plan in plans]


def requests_metrics(model, tok, requests: list[EditRequest], generate: bool = False, chat: list | None = None,
                     names=None) -> list[dict]:
    """:func:`request_metrics` of each request, every prompt of every request scored in one
    batched pass (:func:`ripple.scoring.answer_logprobs`): the way to score many at once.
    ``generate``: also the generated-answer scores (:func:`generated_metrics`; ``chat``: its chat
    questions; ``names``: an answer's other names)."""
    rows = _race_metrics(model, tok, requests)
    if generate:
        rows = [row | gen for row, gen in zip(rows, generated_metrics(model, tok, requests, chat, names))]
    return rows


def _race_metrics(model, tok, requests: list[EditRequest]) -> list[dict]:
    plans = [_plan(r) for r in requests]
    flat = [pair for plan in plans for _, pairs in plan for pair in pairs]
    results = iter(answer_logprobs(model, tok, flat) if flat else [])
    out = []
    for plan in plans:
        got = {name: [next(results) for _ in pairs] for name, pairs in plan}
        row = {}
        for name in ("efficacy", "paraphrase", "neighborhood"):
            if name not in got:
                continue
            first, second = got[name], got.get(f"{name}:old", got.get(f"{name}:new"))
            top1 = [g for _, g in first]
            race = top1 if second is None else [x[0] > y[0] for x, y in zip(first, second)]
            row |= {f"{name}_top1": _mean(top1), name: _mean(race)}
        out.append(row)
    return out


def aggregate(rows: list[dict]) -> dict:
    """Mean of each metric over requests (ignoring missing ones) and CounterFact's score
    (harmonic mean of efficacy, paraphrase and neighbourhood)."""
    keys = sorted({k for r in rows for k in r})
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = round(sum(vals) / len(vals), 4) if vals else None
    parts = [out.get(k) for k in ("efficacy", "paraphrase", "neighborhood")]
    if all(p is not None for p in parts):
        out["score"] = round(0.0 if min(parts) == 0 else len(parts) / sum(1 / p for p in parts), 4)
    return out


def ngram_entropy(texts: list[str], ns=(2, 3), weights=(2 / 3, 4 / 3)) -> float:
    """ROME's fluency measure: weighted mean over ``ns`` of the n-gram entropy of each text."""
    vals = []
    for text in texts:
        words = text.split()
        ents = []
        for n in ns:
            grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
            total = sum(grams.values())
            ents.append(-sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0)
        vals.append(sum(w * e for w, e in zip(weights, ents)) / sum(weights))
    return sum(vals) / len(vals) if vals else float("nan")


@torch.no_grad()
def fluency(model, tok, prompts: list[str], max_new_tokens: int = 30) -> float:
    """n-gram entropy of greedy continuations of ``prompts`` (low = repetitive, collapsed)."""
    device = input_device(model)
    texts = []
    for p in prompts:
        ids = torch.tensor([text_ids(tok, p)], device=device)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        texts.append(tok.decode(out[0], skip_special_tokens=True))
    return ngram_entropy(texts)
