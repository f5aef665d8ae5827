"""One-after-another edits on the organism, judged on facts no edit touched (issue 43, item 4).

The edits: ``--edits`` facts of the evaluation half (ripple.rledit.train.fact_split, which the
hypernetwork never trained on), seed 0, applied as ``ripple edit --sequential --chunk C`` does
(``ripple.editing.session.run_edits``), for each method and each ``--chunks`` size. After the
whole stream:

* efficacy and paraphrase: CounterFact's race (P(new) > P(old)) on each edit's prompt and paraphrases;
* untouched facts kept: the facts of the edited relations that no edit of the stream rewrites and
  that the unedited model answers right in the relation's *held-out* wording (a template no editor
  and no training sequence reads: an independent judge), still answered right;
* the largest ``‖W_after − W_before‖ / ‖W_before‖`` over the edited projections.

Rows go to ``reports/rledit_sequential.json`` (one per method and chunk, with the code version;
a rerun skips the rows it has) and the table to ``reports/rledit_sequential.md``.

    python -m benchmarks editors/rledit_sequential                      # rledit and memit, chunks 1 and 20
    python -m benchmarks editors/rledit_sequential --methods rledit --chunks 1 --hypernet DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import REPORTS, load_json, md_table, set_threads, write_rows

OUT = REPORTS / "rledit_sequential.json"


def judge_queries(world, stream):
    """The held-out-wording queries of the edited relations' facts that no edit of ``stream`` rewrites."""
    from ripple.editing.streams import fact_of
    from ripple.world.queries import fact_query

    edited = {fact_of(r) for r in stream}
    relations = sorted({rel for _, rel in edited})
    pairs = sorted({(f.subject, f.relation) for f in world.facts if f.relation in relations})
    return [fact_query(world, s, rel, world.relations[rel].heldout_templates[0])
            for s, rel in pairs if (s, rel) not in edited]


def measure(setup, method: str, chunk: int, n: int, hypernet: str | None) -> dict:
    """One row (see the module docstring); its ``code`` is added by the caller."""
    import torch

    from ripple.devices import param_value
    from ripple.editing.metrics import request_metrics
    from ripple.editing.session import run_edits
    from ripple.editing.streams import edit_stream
    from ripple.rledit.train import editable_relations, fact_split
    from ripple.scoring import query_correct

    world, model, tok = setup.world, setup.model, setup.tok
    stream = edit_stream(world, n, seed=0, relations=editable_relations(world), pairs=fact_split(world)["eval"])
    judge = judge_queries(world, stream)
    known = [q for q, ok in zip(judge, query_correct(model, tok, judge)) if ok]
    hp = setup.hparams_for(method, [f"hypernet={hypernet}"] if hypernet and method == "rledit" else [])
    t0 = time.perf_counter()
    run = run_edits(setup.ctx, method, stream, hp, mode="sequential", chunk=chunk, force=True)
    seconds = time.perf_counter() - t0
    try:
        ratios = [float((param_value(model, name) - before).norm() / before.norm())
                  for name, before in run.snapshot.originals.items()]
        ms = [request_metrics(model, tok, r) for r in stream]
        kept = query_correct(model, tok, known)
    finally:
        run.restore(setup.ctx)
    mean = lambda k: round(sum(m[k] for m in ms) / len(ms), 4)  # noqa: E731
    return {"method": method, "chunk": chunk, "edits": len(stream), "efficacy": mean("efficacy"),
            "paraphrase": mean("paraphrase"), "untouched_kept": round(sum(kept) / max(1, len(kept)), 4),
            "untouched_n": len(known), "max_norm_ratio": round(max(ratios), 4),
            "seconds": round(seconds, 1), "torch_threads": torch.get_num_threads()}


COLUMNS = ["method", "chunk", "edits", "efficacy", "paraphrase", "untouched kept", "max ‖ΔW‖/‖W‖", "seconds", "code"]
# the same measurement on the code before issue 43's fix (hypernetwork format 1), kept for comparison
FORMAT1 = REPORTS / "rledit_sequential_format1.json"


def _body(rows: list[dict]) -> list[list]:
    return [[r["method"], r["chunk"], r["edits"], f"{r['efficacy']:.3f}", f"{r['paraphrase']:.3f}",
             f"{r['untouched_kept']:.3f} of {r['untouched_n']}", f"{r['max_norm_ratio']:.2f}", r["seconds"], r["code"]]
            for r in rows]


def render(rows: list[dict]) -> None:
    from ripple.io import atomic_write_text

    before = load_json(FORMAT1, {"rows": []})["rows"]
    old = ["", "Before the fix: the same benchmark on commit 49002b9 (hypernetwork format 1: blocks that never",
           "trained, and a gradient feature that grew as the call held fewer edits):", "",
           *md_table(COLUMNS, _body(before)), "",
           "    git worktree add /tmp/f1 49002b9 && cp benchmarks/editors/rledit_sequential.py /tmp/f1/benchmarks/editors/",
           "    cd /tmp/f1 && python -m benchmarks editors/rledit_sequential --methods rledit --chunks 1 20 \\",
           "        --out $OLDPWD/reports/rledit_sequential_format1.json"] if before else []
    text = "\n".join([
        "# One-after-another edits on the organism, judged on untouched facts",
        "",
        "Held-out edits (the evaluation half of `fact_split`, seed 0) applied one chunk after another,",
        "as `ripple edit --sequential --chunk C` does; then efficacy and paraphrase (P(new) > P(old)),",
        "the untouched facts of the edited relations that the unedited model answered right in each",
        "relation's held-out wording (a template nothing trains or edits on) still right, and the",
        "largest ‖ΔW‖/‖W‖ over the edited projections. Every fact of those relations that no edit",
        "rewrites is in the judge's population (not a sample).",
        "",
        *md_table(COLUMNS, _body(rows)),
        "",
        "    python -m benchmarks editors/rledit_sequential --methods rledit memit --chunks 1 20",
        *old,
        ""])
    atomic_write_text(REPORTS / "rledit_sequential.md", text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["rledit", "memit"])
    ap.add_argument("--chunks", nargs="+", type=int, default=[1, 20])
    ap.add_argument("--edits", type=int, default=60)
    ap.add_argument("--hypernet", default=None, help="an RLEdit hypernetwork directory (default: the shipped one)")
    ap.add_argument("--out", default=str(OUT), help="the rows' JSON file (the table goes beside the default only)")
    args = ap.parse_args(argv)
    set_threads()
    from ripple.editing.setup import load_setup
    from ripple.io import source_fingerprint

    code = source_fingerprint()  # the code this process runs (the tree may change during a long run)
    out = Path(args.out)
    data = load_json(out, {"rows": []})
    setup = load_setup("organism")
    for method in args.methods:
        for chunk in args.chunks:
            if any(r["method"] == method and r["chunk"] == chunk and r["edits"] == args.edits for r in data["rows"]):
                continue
            row = measure(setup, method, chunk, args.edits, args.hypernet) | {"code": code}
            data["rows"].append(row)
            write_rows(out, data)
            print(row, flush=True)
    if out == OUT:
        render(data["rows"])


if __name__ == "__main__":
    main()
