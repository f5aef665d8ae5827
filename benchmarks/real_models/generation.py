"""Teacher-forced against generated scoring: the same edits scored four ways on real models.

The edits are :mod:`benchmarks.real_models.editors`' (``counterfact_edits``: known facts of every
relation of the real-world graph, seed 0, a plausible new object), each computed by each editor
on the unedited model, applied alone, measured, undone. Every metric is scored in four modes:

* ``race``: P(new) > P(old) (neighbours and relation specificity: P(own answer) > P(new));
* ``top1``: the answer's tokens are the greedy ones, teacher-forced;
* ``gen``: the greedy completion of the prompt begins with the answer (:func:`ripple.answers.judge`);
* ``chat`` (tokenizers with a chat template): the reply to the relation's question, asked through
  the chat template, names the answer in its first sentence before its rival.

Relation specificity: the edited subject's other facts (first template each, graph ground
truth) that the unedited model got right in that mode, still right after. Each row also keeps
the edit prompt's and first paraphrase's generated text after the edit, for the examples.

``--part unedited``: the same edits' prompts scored on the unedited model in every mode (the
baseline: relation specificity there is 1 by construction, the others show what the model said
before any edit). ``--part batch``: MEMIT on one batch of the first 100 distinct edits, pooled over every prompt.

Target values go through :class:`ripple.editing.value_cache.ValueCache` (``$RIPPLE_CACHE/values``):
MEMIT and AlphaEdit optimize the same value, and the batch reads the single edits' values; a row's
``seconds`` is the edit's compute as it ran (a value read from the cache costs little).

Resumable: rows go to ``reports/generation/<model>/<method>.json`` after every edit (with the
code version); ``--render`` writes reports/generation.md from them.

    python -m benchmarks real_models/generation --model smollm2 --edits 200
    python -m benchmarks real_models/generation --model smollm2 --methods rome ft &   # two processes, one core each
    python -m benchmarks real_models/generation --model smollm2 --methods memit alphaedit
    python -m benchmarks real_models/generation --model gemma3-270m --edits 200
    python -m benchmarks real_models/generation --model smollm2 --part unedited
    python -m benchmarks real_models/generation --model smollm2 --part batch
    python -m benchmarks real_models/generation --render
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import REPORTS, resumable, set_threads, write_rows
from benchmarks.real_models.editors import keep_previous

METHODS = ("rome", "memit", "alphaedit", "ft")
#: the rows' settings version: 2, the editors write one key per subject form (issue 43) and the
#: default key statistics come from 128 sampled passages (was 256); FT, which reads neither, keeps 1.
#: Rows of an older version are moved to ``previous/`` when the rerun begins.
VERSION, BATCH_VERSION = 2, 2


def version_of(method: str) -> int:
    return 1 if method == "ft" else VERSION
MODES = ("race", "top1", "gen", "chat")
CF = ("efficacy", "paraphrase", "neighborhood")
BATCH = 100


def model_dir(model: str) -> Path:
    return REPORTS / "generation" / model


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def gen_asks(setup, req, queries) -> list:
    """Completion asks of the subject's other facts: any name of a right answer, the new object the rival."""
    from ripple.generation import Ask

    names = setup.world.names_of
    return [Ask(q.prompt, tuple(n for a in q.answers for n in names(a)), names(req.target_new)) for q in queries]


def specificity_before(setup, req, chat: bool) -> dict:
    """The subject's other facts (first template each) and which the unedited model gets right in each mode."""
    from ripple.editing.from_world import specificity_queries
    from ripple.evaluate.generated import question_for
    from ripple.generation import Ask, ask
    from ripple.scoring import query_correct

    m, tok = setup.model, setup.tok
    qs = specificity_queries(setup.world, req)
    out = {"queries": qs, "top1": query_correct(m, tok, qs) if qs else [],
           "gen": [a.correct for a in ask(m, tok, gen_asks(setup, req, qs))]}
    if chat:
        asks = [Ask(question_for(q.relation, q.subject), q.answers, (req.target_new,), chat=True) for q in qs
                if question_for(q.relation, q.subject) is not None]  # every graph relation has questions
        out["chat_asks"] = asks
        out["chat"] = [a.correct for a in ask(m, tok, asks)]
    return out


def specificity_after(setup, req, before: dict) -> dict:
    from ripple.generation import ask
    from ripple.scoring import answer_logprobs, query_correct

    m, tok = setup.model, setup.tok
    qs = before["queries"]
    row = {}
    known = [q for q, k in zip(qs, before["top1"]) if k]
    if known:
        own = answer_logprobs(m, tok, [(q.prompt, q.answers[0]) for q in known])
        new = answer_logprobs(m, tok, [(q.prompt, req.target_new) for q in known])
        row["relation_specificity_race"] = _mean([a[0] > b[0] for a, b in zip(own, new)])
        row["relation_specificity_top1"] = _mean(query_correct(m, tok, known))
    gen = [q for q, k in zip(qs, before["gen"]) if k]
    if gen:
        row["relation_specificity_gen"] = _mean([a.correct for a in ask(m, tok, gen_asks(setup, req, gen))])
    if "chat" in before:
        asks = [a for a, k in zip(before["chat_asks"], before["chat"]) if k]
        if asks:
            row["relation_specificity_chat"] = _mean([a.correct for a in ask(m, tok, asks)])
    row["specificity_n"] = {"top1": len(known), "gen": len(gen), "chat": sum(before.get("chat", []))}
    return row


def measure(setup, req, spec_before: dict, chat) -> dict:
    """Every metric in every mode on the model as it is now (the edit applied)."""
    from ripple.editing.metrics import requests_metrics
    from ripple.generation import continuations

    m, tok = setup.model, setup.tok
    got = requests_metrics(m, tok, [req], generate=True, chat=None if chat is None else [chat],
                           names=setup.world.names_of)[0]
    row = {}
    for metric in CF:
        row[f"{metric}_race"] = got.get(metric)
        for mode in MODES[1:]:
            row[f"{metric}_{mode}"] = got.get(f"{metric}_{mode}")
    row |= specificity_after(setup, req, spec_before)
    shown = [req.rendered, *req.paraphrase_prompts[:1]]
    row["texts"] = continuations(m, tok, shown, max_new_tokens=12)
    if chat is not None and chat.efficacy:
        row["chat_text"] = continuations(m, tok, [chat.efficacy[0].prompt], chat=True, max_new_tokens=24)[0]
    return row


def single(args, setup) -> None:
    from benchmarks.real_models.editors import counterfact_edits
    from ripple.editing.editor import get_editor
    from ripple.editing.questions import chat_questions
    from ripple.generation import has_chat
    from ripple.io import source_fingerprint

    reqs, n_known = counterfact_edits(setup, args.edits, args.seed)
    chat_on = has_chat(setup.tok)
    config = {"model": args.model, "edits": len(reqs), "seed": args.seed, "chat": chat_on, "known_facts": n_known}
    code = source_fingerprint()
    runs = []
    for method in args.methods:
        path = model_dir(args.model) / f"{method}.json"
        cfg = {"version": version_of(method), **config}
        if path.parent.is_dir():
            keep_previous(path, cfg)
        runs.append((method, path, resumable(path, cfg, method=method, rows=[])))
    for i, req in enumerate(reqs):
        pending = [run for run in runs if len(run[2]["rows"]) == i]
        if not pending:
            continue
        spec = specificity_before(setup, req, chat_on)
        chat = chat_questions(req, setup.world) if chat_on else None
        for method, path, data in pending:
            t0 = time.perf_counter()
            delta = get_editor(method).compute(setup.ctx, [req], setup.hparams_for(method))
            secs = time.perf_counter() - t0
            snap = delta.apply(setup.model)
            try:
                t1 = time.perf_counter()
                row = measure(setup, req, spec, chat)
                row["measure_seconds"] = round(time.perf_counter() - t1, 3)
            finally:
                snap.restore(setup.model)
            row |= {"case_id": req.case_id, "relation": req.case_id.split("|")[1], "target_new": req.target_new,
                    "target_true": req.target_true, "prompt": req.rendered, "seconds": round(secs, 3), "code": code}
            data["rows"].append(row)
            model_dir(args.model).mkdir(parents=True, exist_ok=True)
            write_rows(path, data)
            print(f"{method} {i + 1}/{len(reqs)} {req.case_id}: eff race {row['efficacy_race']} gen "
                  f"{row['efficacy_gen']} chat {row.get('efficacy_chat')} {secs:.1f}s", flush=True)


def unedited(args, setup) -> None:
    """The same edits' metrics on the unedited model, every mode: the baseline each edited figure is
    read against (a neighbour the model never said is not damage)."""
    from benchmarks.real_models.editors import counterfact_edits
    from ripple.editing.questions import chat_questions
    from ripple.generation import has_chat
    from ripple.io import source_fingerprint

    reqs, _ = counterfact_edits(setup, args.edits, args.seed)
    chat_on = has_chat(setup.tok)
    path = model_dir(args.model) / "unedited.json"
    data = resumable(path, {"model": args.model, "edits": len(reqs), "seed": args.seed, "chat": chat_on}, rows=[])
    model_dir(args.model).mkdir(parents=True, exist_ok=True)
    code = source_fingerprint()  # the code this process runs (the tree may change during a long run)
    for req in reqs[len(data["rows"]):]:  # resumable: each edit's prompts saved as they are scored
        spec = specificity_before(setup, req, chat_on)
        row = measure(setup, req, spec, chat_questions(req, setup.world) if chat_on else None)
        data["rows"].append({"case_id": req.case_id, "code": code,
                             **{k: v for k, v in row.items() if k not in ("texts", "chat_text")}})
        write_rows(path, data)
        print(f"unedited {len(data['rows'])}/{len(reqs)} {req.case_id}", flush=True)


def batch(args, setup) -> None:
    from benchmarks.real_models.editors import counterfact_edits
    from ripple.editing.editor import get_editor
    from ripple.editing.metrics import aggregate, requests_metrics
    from ripple.editing.questions import chat_questions
    from ripple.generation import has_chat
    from ripple.io import source_fingerprint

    reqs, _ = counterfact_edits(setup, None, args.seed)
    seen, chosen = set(), []
    for r in reqs:
        if r.case_id.rsplit("|", 1)[0] not in seen:
            seen.add(r.case_id.rsplit("|", 1)[0])
            chosen.append(r)
    chosen = chosen[:BATCH]
    path = model_dir(args.model) / "batch.json"
    chat_on = has_chat(setup.tok)
    config = {"version": BATCH_VERSION, "model": args.model, "batch": len(chosen), "seed": args.seed, "chat": chat_on}
    if path.parent.is_dir():
        keep_previous(path, config)
    data = resumable(path, config, rows=[])
    done = {r["method"] for r in data["rows"]}
    chats = [chat_questions(r, setup.world) for r in chosen] if chat_on else None
    code = source_fingerprint()  # the code this process runs (the tree may change during a long run)
    for method in [m for m in ("memit",) if m not in done]:
        t0 = time.perf_counter()
        delta = get_editor(method).compute(setup.ctx, chosen, setup.hparams_for(method))
        secs = time.perf_counter() - t0
        snap = delta.apply(setup.model)
        try:
            rows = requests_metrics(setup.model, setup.tok, chosen, generate=True, chat=chats)
        finally:
            snap.restore(setup.model)
        data["rows"].append({"method": method, "n": len(chosen), "seconds": round(secs, 1),
                             "metrics": aggregate(rows), "code": code})
        model_dir(args.model).mkdir(parents=True, exist_ok=True)
        write_rows(path, data)
        print(f"{method} batch of {len(chosen)}: {aggregate(rows)}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--part", choices=("single", "unedited", "batch"), default="single")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args(argv)
    if args.render:
        from benchmarks.real_models.generation_report import render

        render()
        return
    from ripple.editing.setup import load_setup
    from ripple.editing.stats import cache_dir
    from ripple.editing.value_cache import ValueCache

    set_threads()
    setup = load_setup(args.model)
    setup.ctx.value_cache = ValueCache(cache_dir() / "values")  # MEMIT's values serve AlphaEdit and the batch
    {"single": single, "unedited": unedited, "batch": batch}[args.part](args, setup)


if __name__ == "__main__":
    main()
