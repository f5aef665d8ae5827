"""Where can the organism be edited? ROME at every layer, at the last subject token and at the
prompt's last token, scored on efficacy, paraphrase, neighbourhood and relation specificity
(the subject's other facts, from the world's ground truth). Writes ``reports/edit_layer_sweep.md``.

    python benchmarks/edit_layer_sweep.py --edits 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def specificity_queries(world, request):
    """The subject's other relations, asked on their first core template (ground truth)."""
    from ripple.world.ground_truth import ripple_ground_truth

    subject, relation, new = request.case_id.split("|")
    qs = [q for q in ripple_ground_truth(world, subject, relation, new) if q.category == "relation_specificity"]
    return qs[::5]  # five templates per relation, in order: keep the first of each


def run_sweep(model, tok, spec, world, requests, positions, layers, extra=()) -> list[dict]:
    from ripple.editing.hparams import resolve_hparams
    from ripple.editing.methods import EditContext
    from ripple.editing.metrics import aggregate, request_metrics
    from ripple.editing.session import run_edits
    from ripple.organism.edits import world_corpus
    from ripple.scoring import query_correct

    ctx = EditContext(model, tok, spec, world_corpus(world))
    spec_q = {r.case_id: specificity_queries(world, r) for r in requests}
    known = {cid: query_correct(model, tok, qs) for cid, qs in spec_q.items()}
    rows = []
    for pos in positions:
        for layer in layers:
            hp = resolve_hparams("rome", spec.model_type, spec.n_layers(model),
                                 overrides=[f"fact_token={pos}", f"layers=({layer},)", *extra])
            metrics, kept, t0 = [], [], time.perf_counter()
            for r in requests:
                run = run_edits(ctx, "rome", [r], hp, force=True)
                metrics.append(request_metrics(model, tok, r))
                after = query_correct(model, tok, spec_q[r.case_id])
                kept += [a for a, k in zip(after, known[r.case_id]) if k]
                run.snapshot.restore()
            agg = aggregate(metrics)
            agg["relation_specificity"] = round(sum(kept) / max(1, len(kept)), 4)
            rows.append({"fact_token": pos, "layer": layer, **agg,
                         "seconds_per_edit": round((time.perf_counter() - t0) / len(requests), 3)})
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> None:
    from ripple.io import atomic_write_json, atomic_write_text
    from ripple.loading import load_model
    from ripple.organism.edits import sample_edits
    from ripple.organism.evaluate import load_world

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--out", default="reports")
    ap.add_argument("--set", nargs="*", default=[], help="extra hyperparameter overrides")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, tok, spec = load_model(args.model)
    world = load_world(Path(model.name_or_path) / "world.json")
    requests = sample_edits(world, args.edits, seed=1)
    rows = run_sweep(model, tok, spec, world, requests, ["subject_last", "last"], range(spec.n_layers(model)),
                     args.set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "edit_layer_sweep.json", rows)
    cols = ["fact_token", "layer", "efficacy", "efficacy_top1", "paraphrase", "neighborhood", "relation_specificity",
            "seconds_per_edit"]
    lines = ["# Where the organism can be edited: ROME by layer and position", "",
             f"Reproduce: `python benchmarks/edit_layer_sweep.py --edits {args.edits}"
             + (f" --set {' '.join(args.set)}" if args.set else "") + "`", "",
             f"{args.edits} random person-fact edits (seed 1), each applied alone to a fresh model. Efficacy, "
             "paraphrase and neighbourhood are CounterFact's probability races; relation specificity is the share "
             "of the subject's other facts (known before the edit) still answered correctly after it.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c)) for c in cols) + " |" for r in rows]
    atomic_write_text(out / "edit_layer_sweep.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
