"""The editors on real models: CounterFact-style edits of facts the model knows, every relation.

Edits (``--edits``, seed 0): the real-world graph's facts the model answers right on the relation's
first template (``benchmarks.common.known_facts``), in random order (going round again past
the known facts, with another new object); each new object is an answer the model gives for
another known fact of the same relation (CounterFact's rule: a real, plausible answer). Each
edit is computed once per editor on the unedited model and measured twice, plain and with RECT
(``with_rect``, keep 0.4: a mask on the computed update), then undone:

* efficacy, paraphrase, neighbourhood: top-1 (the greedy answer) and the probability race
  (P(new) > P(old); neighbours: P(own answer) > P(new));
* relation specificity: the subject's other facts the model knew before, still the greedy answer
  (top-1) and still more likely than the new object (race);
* the RippleEdits categories (ripple.evaluate.ripple_scores, ground truth from the graph);
* perplexity ratio on the general sentences; seconds to compute the edit.

Target values go through :class:`ripple.editing.value_cache.ValueCache` (``$RIPPLE_CACHE/values``):
MEMIT and AlphaEdit optimize the same value on the unedited model (EMMET too where it takes MEMIT's
layers, as on Gemma-3), so whichever runs second reads it, single or in a batch, and processes
running at once share it. Its seconds still count the values' compute as it was measured
when they were made (``values_reused_s`` in a row: the share read from the cache).

Batches (``--part batch``): MEMIT, EMMET and AlphaEdit on one batch of 100 distinct known facts
and on the largest the graph allows (every distinct known fact, at most 1,000), plain and with
RECT: CounterFact's metrics pooled over every prompt, relation specificity over the edited
subjects' facts no request edits, the RippleEdits categories summed over the requests.
``--part values`` only fills the value cache with the largest batch's target values (no rows):
processes started at once share the list (the cache's locks), and a niced one beside the single
edits uses the time they spend waiting for a value another process is computing.

Resumable: rows are appended to ``reports/real_editors/<model>/<method>.json`` after every edit,
each with the code version (batches: ``.../batch.json``); a rerun with the same settings goes on,
and runs of different methods can go on in separate processes at once. One process given several
methods runs them edit by edit, so that MEMIT and AlphaEdit together optimize each value once.

    python -m benchmarks real_models/editors --model smollm2 --edits 200
    python -m benchmarks real_models/editors --model smollm2 --part batch
    nice python -m benchmarks real_models/editors --model smollm2 --part values   # optional, ahead of batch
    python -m benchmarks real_models/editors --render
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from benchmarks.common import REPORTS, known_facts, load_json, md_row, md_table, resumable, set_threads, write_rows
from benchmarks.editors.common import edited_key, pooled_scores

METHODS = ("rome", "memit", "emmet", "alphaedit", "ft")
BATCHED = ("memit", "emmet", "alphaedit")
RECT = 0.4
LARGEST = 1000  # the largest batch: every distinct known fact, at most this many
# the rows' settings versions; 2 and 3: the editors write one key per subject form (issue 43); 3 and
# 4: the default key statistics come from 128 sampled passages (was 256). FT reads neither the key
# statistics nor the subject's forms: its rows keep version 1 (FT_VERSION)
SINGLE_VERSION = 3
BATCH_VERSION = 4
FT_VERSION = 1
#: what the rows of an older single-edit version were made without (the page's previous section)
PREVIOUS = {1: "before the editors wrote one key per tokenized form of the subject",
            2: "with key statistics from 256 sampled passages, the default before 128"}


def single_version(method: str) -> int:
    """The settings version a method's single-edit rows are made under (FT's stays, see above)."""
    return FT_VERSION if method == "ft" else SINGLE_VERSION
CF = ("efficacy", "efficacy_top1", "paraphrase", "paraphrase_top1", "neighborhood", "neighborhood_top1")


def counterfact_edits(setup, n: int | None, seed: int = 0) -> tuple[list, int]:
    """``n`` edits of known facts (see the module docstring; ``None``: one per known fact, each
    fact once), and how many facts the model knows."""
    from ripple.editing.from_world import request_for

    world = setup.world
    known = known_facts(setup)
    given: dict[str, set[str]] = {}
    for s, r in known:
        given.setdefault(r, set()).update(world.objects(s, r))
    rng = random.Random(seed)
    order = list(known)
    rng.shuffle(order)
    n = len(order) if n is None else n
    out, used, i = [], set(), 0
    while len(out) < n and i < 20 * max(1, n) and (i < len(order) or len(order) < n):
        s, r = order[i % len(order)]
        i += 1
        pool = sorted(given[r] - set(world.objects(s, r)))
        pool = [o for o in pool if (s, r, o) not in used]
        if not pool:
            continue
        new = rng.choice(pool)
        used.add((s, r, new))
        out.append(request_for(world, s, r, new))
    return out, len(known)


def measure(setup, req, plan, spec_known, ppl_before, sentences) -> dict:
    from ripple.editing.metrics import request_metrics
    from ripple.evaluate.perplexity import sentence_nlls
    from ripple.evaluate.ripple_scores import score_ripple
    from ripple.scoring import answer_logprobs, query_correct

    m, tok = setup.model, setup.tok
    row = request_metrics(m, tok, req)
    qs = [q for q, k in zip(*spec_known) if k]
    if qs:
        now = query_correct(m, tok, qs)
        own = answer_logprobs(m, tok, [(q.prompt, q.answers[0]) for q in qs])
        new = answer_logprobs(m, tok, [(q.prompt, req.target_new) for q in qs])
        row["relation_specificity_top1"] = sum(now) / len(now)
        row["relation_specificity"] = sum(a[0] > b[0] for a, b in zip(own, new)) / len(qs)
        row["specificity_n"] = len(qs)
    rip = score_ripple(m, tok, plan)
    row["ripple"] = {c: {"n": v["n"], "correct": v["correct"]} for c, v in rip["categories"].items()}
    nll = sentence_nlls(m, tok, sentences)
    row["perplexity_ratio"] = float(torch.tensor(nll).mean().exp() / torch.tensor(ppl_before).mean().exp())
    return row


def plain_and_rect(setup, delta, measure_now) -> dict:
    """``{"plain": measure_now(), "rect": measure_now()}``, the first with ``delta`` applied, the
    second with its RECT version (keep :data:`RECT`); the weights restored after each."""
    from ripple.editing.editor import with_rect

    out = {}
    for label, d in (("plain", delta), ("rect", with_rect(setup.ctx, delta, RECT))):
        snap = d.apply(setup.model)
        try:
            out[label] = measure_now()
        finally:
            snap.restore(setup.model)
    return out


def single(args, setup) -> None:
    from ripple.editing.editor import get_editor
    from ripple.editing.from_world import specificity_queries
    from ripple.evaluate.perplexity import general_sentences_for, sentence_nlls
    from ripple.evaluate.ripple_scores import plan_ripple
    from ripple.io import source_fingerprint
    from ripple.scoring import query_correct

    world = setup.world
    reqs, n_known = counterfact_edits(setup, args.edits, args.seed)
    config = {"model": args.model, "edits": len(reqs), "seed": args.seed, "rect": RECT, "known_facts": n_known}
    sentences = general_sentences_for(None)
    ppl_before = sentence_nlls(setup.model, setup.tok, sentences)
    code = source_fingerprint()
    runs = []  # (method, its file, its rows so far)
    for method in args.methods:
        path = model_dir(args.model) / f"{method}.json"
        cfg = {"version": single_version(method), **config}
        keep_previous(path, cfg)
        runs.append((method, path, resumable(path, cfg, method=method, rows=[])))
    # edit by edit, every method in turn: the methods that optimize the same value (MEMIT,
    # AlphaEdit) compute it once, and the edit's queries are planned once
    for i, req in enumerate(reqs):
        pending = [run for run in runs if len(run[2]["rows"]) == i]
        if not pending:
            continue
        plan = plan_ripple(setup.model, setup.tok, world, req)
        qs = specificity_queries(world, req)
        spec_known = (qs, query_correct(setup.model, setup.tok, qs) if qs else [])
        for method, path, data in pending:
            t0 = time.perf_counter()
            delta = get_editor(method).compute(setup.ctx, [req], setup.hparams_for(method))
            secs = time.perf_counter() - t0
            reused = delta.info.get("timing", {}).get("values_reused", 0.0)
            row = {"case_id": req.case_id, "relation": req.case_id.split("|")[1],
                   "seconds": round(secs + reused, 3), "values_reused_s": round(reused, 3), "code": code}
            row |= plain_and_rect(setup, delta, lambda: measure(setup, req, plan, spec_known, ppl_before, sentences))
            data["rows"].append(row)
            write_rows(path, data)
            p = row["plain"]
            print(f"{method} {i + 1}/{len(reqs)} {req.case_id}: eff {p['efficacy_top1']} para {p['paraphrase_top1']:.2f} "
                  f"nbhd {p.get('neighborhood_top1')} spec {p.get('relation_specificity_top1')} {secs:.1f}s", flush=True)


def batch_queries(setup, reqs):
    """Relation specificity for a batch: the edited subjects' other facts (first template each)
    that no request of the batch edits, known before; each is raced against the new object of
    every request that edits its subject. Returns ``(queries, known, pairs)``, ``pairs`` as
    (query index, new object)."""
    from ripple.editing.from_world import specificity_queries
    from ripple.scoring import query_correct

    world = setup.world
    edited = {(world.name(s), r) for s, r in map(edited_key, reqs)}
    index: dict[str, int] = {}
    queries, pairs = [], set()
    for req in reqs:
        for q in specificity_queries(world, req):
            if (q.subject, q.relation) in edited:
                continue
            if q.prompt not in index:
                index[q.prompt] = len(queries)
                queries.append(q)
            pairs.add((index[q.prompt], req.target_new))
    known = query_correct(setup.model, setup.tok, queries) if queries else []
    return queries, known, sorted(pairs)


def measure_batch(setup, reqs, spec, plans, ppl_before, sentences) -> dict:
    """What :func:`measure` reads for one edit, for the batch as it is applied now: CounterFact's
    metrics pooled over every prompt, relation specificity (:func:`batch_queries`), the RippleEdits
    categories summed over the requests' plans, the perplexity ratio."""
    from ripple.evaluate.perplexity import sentence_nlls
    from ripple.evaluate.ripple_scores import category_totals, score_ripples
    from ripple.scoring import answer_logprobs, query_correct

    m, tok = setup.model, setup.tok
    row = pooled_scores(m, tok, reqs)
    queries, known, pairs = spec
    idx = [i for i, k in enumerate(known) if k]
    if idx:
        now = query_correct(m, tok, [queries[i] for i in idx])
        row["relation_specificity_top1"] = sum(now) / len(now)
        race = [(i, new) for i, new in pairs if known[i]]
        own = answer_logprobs(m, tok, [(queries[i].prompt, queries[i].answers[0]) for i, _ in race])
        new = answer_logprobs(m, tok, [(queries[i].prompt, t) for i, t in race])
        row["relation_specificity"] = sum(a[0] > b[0] for a, b in zip(own, new)) / len(race)
        row["specificity_n"] = len(idx)
    pooled = category_totals(score_ripples(m, tok, plans))["categories"]
    row["ripple"] = {c: {"n": v["n"], "correct": v["correct"]} for c, v in pooled.items()}
    nll = sentence_nlls(m, tok, sentences)
    row["perplexity_ratio"] = float(torch.tensor(nll).mean().exp() / torch.tensor(ppl_before).mean().exp())
    return row


def batch(args, setup) -> None:
    """MEMIT, EMMET and AlphaEdit on one batch of 100 distinct known facts and on every distinct
    known fact (at most 1,000): one solve each, measured plain and with RECT, then undone."""
    from ripple.editing.editor import get_editor
    from ripple.evaluate.perplexity import general_sentences_for, sentence_nlls
    from ripple.evaluate.ripple_scores import plan_ripple
    from ripple.io import source_fingerprint

    distinct, n_known = counterfact_edits(setup, None, args.seed)  # one edit per known fact
    path = model_dir(args.model) / "batch.json"
    config = {"version": BATCH_VERSION, "model": args.model, "seed": args.seed, "rect": RECT, "known_facts": n_known}
    keep_previous(path, config)
    sentences = general_sentences_for(None)
    ppl_before = sentence_nlls(setup.model, setup.tok, sentences)
    done = {(b["method"], b["requested"]) for b in read_batch(path, config)["batch"]}
    code = source_fingerprint()
    for size in sorted({min(100, len(distinct)), min(LARGEST, len(distinct))}):
        reqs = distinct[:size]
        todo = [m for m in BATCHED if m in args.methods and (m, size) not in done]
        if not todo:
            continue
        spec = batch_queries(setup, reqs)
        plans = [plan_ripple(setup.model, setup.tok, setup.world, r) for r in reqs]
        for method in todo:
            hp = setup.hparams_for(method)
            t0 = time.perf_counter()
            delta = get_editor(method).compute(setup.ctx, reqs, hp)
            reused = delta.info.get("timing", {}).get("values_reused", 0.0)
            row = {"method": method, "requested": size, "n": len(reqs), "distinct_known": len(distinct),
                   "seconds": round(time.perf_counter() - t0 + reused, 2), "values_reused_s": round(reused, 2),
                   "worst_norm_ratio": round(max(delta.norm_ratios(setup.model).values()), 4), "code": code}
            row |= plain_and_rect(setup, delta, lambda: measure_batch(setup, reqs, spec, plans, ppl_before, sentences))
            append_batch_row(path, config, row)
            p = row["plain"]
            print(f"batch {method} {size}: eff {p['efficacy']:.3f} para {p['paraphrase']:.3f} "
                  f"nbhd {p['neighborhood']:.3f} spec {p.get('relation_specificity')} {row['seconds']}s", flush=True)


def read_batch(path: Path, config: dict) -> dict:
    """batch.json's rows if they were made under ``config``, else none."""
    return resumable(path, config, batch=[])


def append_batch_row(path: Path, config: dict, row: dict) -> None:
    """Add ``row`` to batch.json under a lock, reading the file again first: processes measuring
    different methods share the file, and each keeps the rows the others wrote meanwhile. A row of
    the same method and size replaces the one there."""
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):
        data = read_batch(path, config)
        key = (row["method"], row["requested"])
        data["batch"] = [b for b in data["batch"] if (b["method"], b["requested"]) != key] + [row]
        write_rows(path, data)


def values(args, setup) -> None:
    """Fill the value cache with the target values of the largest batch (every distinct known
    fact, at most 1,000) for each batched method asked for; they share them where their target
    settings agree. Prints how many were computed and how many were there."""
    from ripple.editing.editors.memit import memit_targets

    distinct, _ = counterfact_edits(setup, None, args.seed)
    reqs = distinct[:LARGEST][::-1]  # from the end: single edits, which start where it starts, meet it last
    for method in [m for m in BATCHED if m in args.methods]:
        cache = setup.ctx.value_cache
        hits, misses = cache.hits, cache.misses
        t0 = time.perf_counter()
        tokens, *_ = memit_targets(setup.ctx, reqs, setup.hparams_for(method))
        print(f"values {method}: {len(reqs)} requests ({len(tokens)} values, one a target token): "
              f"{cache.misses - misses} computed, {cache.hits - hits} in the cache, "
              f"{time.perf_counter() - t0:.0f}s", flush=True)


def keep_previous(path: Path, config: dict) -> None:
    """Before rows under ``config`` start a file that holds rows made under other settings (an
    older editor version): move that file to ``previous/`` beside it (replacing an older one
    there), so the page shows the old rows beside the new until the rerun is complete."""
    old = load_json(path, {})
    if old.get("config", config) != config and (old.get("rows") or old.get("batch")):
        (path.parent / "previous").mkdir(exist_ok=True)
        path.replace(path.parent / "previous" / path.name)


def model_dir(model: str) -> Path:
    """Where a model's rows are kept: one JSON file per method, and batch.json (made if missing)."""
    folder = REPORTS / "real_editors" / model.replace(".", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------- report


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _f(x):
    return "-" if x is None else f"{x:.3f}"


def single_table(single: dict) -> list[str]:
    """The single edits' means, one line per method and one for it with RECT."""
    lines = md_table(["method", "n", "efficacy", "efficacy top-1", "paraphrase", "paraphrase top-1", "neighbourhood",
                      "neighbourhood top-1", "relation specificity", "rel. spec. top-1", "perplexity ratio",
                      "seconds/edit"])
    for method, rows in single.items():
        for label in ("plain", "rect"):
            cells = [_mean([r[label].get(k) for r in rows]) for k in (
                *CF, "relation_specificity", "relation_specificity_top1", "perplexity_ratio")]
            secs = _mean([r["seconds"] for r in rows])
            name = method if label == "plain" else f"{method}+rect"
            lines.append(md_row([name, len(rows), *map(_f, cells), f"{secs:.2f}"]))
    return lines


def render() -> None:
    from ripple.io import atomic_write_text

    lines = ["# The editors on real models", "",
             "CounterFact-style single edits of facts each model knows, every relation of the real-world graph, "
             "each applied alone to the unedited model and undone; the same edits for every editor. Made by "
             "`benchmarks/real_models/editors.py` (its docstring: how the edits and new objects are drawn, what each "
             "column measures).", ""]
    for folder in sorted(p for p in (REPORTS / "real_editors").glob("*") if p.is_dir() and any(p.iterdir())):
        current, previous = _versions(folder)
        for title, (singles, batch) in ((None, current), ("previous", previous)):
            if singles or batch:
                lines += _model_section(folder, singles, batch, title)
    notes = REPORTS / "real_editors_notes.md"
    if notes.is_file():
        lines.append(notes.read_text())
    atomic_write_text(REPORTS / "real_editors.md", "\n".join(lines))


def _versions(folder: Path) -> tuple[tuple[dict, list], tuple[dict, list]]:
    """A model's rows at the current versions (:data:`SINGLE_VERSION`, :data:`BATCH_VERSION`) and
    those at older ones (``previous/``, or a method not yet rerun): ``(singles, batches)`` each."""
    cur, prev = ({}, []), ({}, [])
    for where in (folder / "previous", folder):
        for m in METHODS:
            d = load_json(where / f"{m}.json")
            if d is not None:
                (cur if d["config"]["version"] == single_version(m) else prev)[0][m] = d
        b = load_json(where / "batch.json")
        if b is not None and b.get("batch"):
            target = cur if b["config"]["version"] == BATCH_VERSION else prev
            target[1][:] = sorted(b["batch"], key=lambda r: (r["requested"], BATCHED.index(r["method"])))
    return cur, prev


def _model_section(folder: Path, singles: dict, batch: list, title: str | None) -> list[str]:
    from benchmarks.common import source_versions
    from ripple.evaluate.ripple_scores import RIPPLE_CATEGORIES

    data = {"single": {m: d["rows"] for m, d in singles.items()}, "batch": batch}
    configs = [{k: v for k, v in d["config"].items() if k != "version"} for d in singles.values()]
    cfg = configs[0] if configs else {}
    versions = sorted({d["config"]["version"] for m, d in singles.items() if m != "ft"})
    if any(c != cfg for c in configs):
        raise SystemExit(f"{folder}: the methods' rows were made with different settings; rerun the odd ones")
    name = cfg.get("model", folder.name)
    lines = [f"## {name}", ""] if title is None else [
        f"### {name}: the previous editors", "",
        f"Rows made {'; '.join(PREVIOUS.get(v, 'by an older version') for v in versions) or 'by an older version'} "
        f"(single edits at version {', '.join(map(str, versions)) or '-'} of {SINGLE_VERSION}, batches before "
        f"{BATCH_VERSION}; the code versions below), kept until the rerun at the current versions is complete.", ""]
    if data["single"]:
        lines += [f"{cfg['edits']} edits drawn from the {cfg['known_facts']} facts the model knows (seed "
                  f"{cfg['seed']}); a method with fewer rows is still being measured (n).", ""]
        lines += single_table(data["single"])
        allrows = [r for rows in data["single"].values() for r in rows]
        common = min(len(rows) for rows in data["single"].values())
        if common and any(len(rows) > common for rows in data["single"].values()):
            lines += ["", f"Paired: the first {common} edits, which every method has so far (the same edits "
                      "in the same order):", ""]
            lines += single_table({m: rows[:common] for m, rows in data["single"].items()})
        lines += ["", "RippleEdits categories (pooled accuracy over the counted queries; n in brackets):", "",
                  *md_table(["method", *RIPPLE_CATEGORIES])]
        for method, rows in data["single"].items():
            for label in ("plain", "rect"):
                cells = []
                for c in RIPPLE_CATEGORIES:
                    n = sum(r[label]["ripple"].get(c, {}).get("n", 0) for r in rows)
                    k = sum(r[label]["ripple"].get(c, {}).get("correct", 0) for r in rows)
                    cells.append(f"{k / n:.3f} ({n})" if n else "-")
                lines.append(md_row([method if label == "plain" else method + "+rect", *cells]))
        lines += ["", source_versions(allrows), ""]
    if data["batch"]:
        lines += ["Batches: one solve over the first 100 distinct known facts (in the single edits' order) and "
                  "over all of them; CounterFact's metrics pooled over every prompt of the batch (neighbours "
                  "that are themselves edited left out); relation specificity over the edited subjects' other "
                  "facts that no request of the batch edits, known before, each raced against the new object "
                  "of every request that edits its subject; worst ‖ΔW‖/‖W‖ over the edited layers.", "",
                  *md_table(["method", "batch", "efficacy", "efficacy top-1", "paraphrase", "paraphrase top-1",
                             "neighbourhood", "neighbourhood top-1", "relation specificity", "rel. spec. top-1",
                             "perplexity ratio", "seconds", "worst norm ratio"])]
        for b in data["batch"]:
            for label in ("plain", "rect"):
                r = b[label]
                cells = [r.get(k) for k in (*CF, "relation_specificity", "relation_specificity_top1",
                                            "perplexity_ratio")]
                name = b["method"] if label == "plain" else b["method"] + "+rect"
                lines.append(md_row([name, b["n"], *map(_f, cells), f"{b['seconds']:.0f}",
                                     f"{b['worst_norm_ratio']:.3f}"]))
        lines += ["", "Batches, RippleEdits categories (summed over the requests' plans; n in brackets):", "",
                  *md_table(["method", "batch", *RIPPLE_CATEGORIES])]
        for b in data["batch"]:
            for label in ("plain", "rect"):
                rip = b[label]["ripple"]
                cells = [f"{rip[c]['correct'] / rip[c]['n']:.3f} ({rip[c]['n']})" if rip.get(c, {}).get("n")
                         else "-" for c in RIPPLE_CATEGORIES]
                name = b["method"] if label == "plain" else b["method"] + "+rect"
                lines.append(md_row([name, b["n"], *cells]))
        lines += ["", source_versions(data["batch"]), ""]
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--part", choices=("single", "batch", "values"), default="single")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args(argv)
    if args.part != "single" and not set(args.methods) & set(BATCHED):
        ap.error(f"--part {args.part} runs {', '.join(BATCHED)} only; name at least one in --methods")
    if not args.render:
        from ripple.editing.setup import load_setup
        from ripple.editing.stats import cache_dir
        from ripple.editing.value_cache import ValueCache

        set_threads()
        setup = load_setup(args.model)
        setup.ctx.value_cache = ValueCache(cache_dir() / "values")  # MEMIT's values serve AlphaEdit
        {"single": single, "batch": batch, "values": values}[args.part](args, setup)
    render()


if __name__ == "__main__":
    main()
