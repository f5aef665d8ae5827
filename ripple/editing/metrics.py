"""CounterFact-style edit metrics (Meng et al., 2022), each as top-1 and as a probability race.

* efficacy: on the edit prompt, the new target is the greedy answer / P(new) > P(old);
* paraphrase: the same on paraphrases of the edit prompt;
* neighbourhood: on prompts about other subjects whose answer is the old target, the old
  target stays the greedy answer / P(old) > P(new) (with ``neighborhood_answers``, each prompt's
  own answer against the new target);
* fluency: weighted bi- and tri-gram entropy of greedy generations about the subject.

>>> ngram_entropy(["a b c d"]) > ngram_entropy(["a a a a"])
True
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from ripple.devices import input_device
from ripple.editing.requests import EditRequest
from ripple.scoring import answer_logprobs
from ripple.tokens import text_ids


def _mean(xs: list[bool]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def request_metrics(model, tok, req: EditRequest) -> dict:
    """Metrics of one request on the model as it is now (apply the edit first)."""
    return requests_metrics(model, tok, [req])[0]


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


def requests_metrics(model, tok, requests: list[EditRequest]) -> list[dict]:
    """:func:`request_metrics` of each request, every prompt of every request scored in one
    batched pass (:func:`ripple.scoring.answer_logprobs`): the way to score many at once."""
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
