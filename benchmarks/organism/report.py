"""Measure the organism and write ``reports/organism.md`` (recall figures, causal-tracing heatmaps).

    python -m benchmarks organism/report                         # the bundled organism
    python -m benchmarks organism/report --model DIR --out reports --facts 60

Causal tracing is averaged over ``--facts`` person facts asked with a subject-first template,
in the token groups of Meng et al. (2022): subject tokens before the last, the last subject
token, the first token after the subject, further tokens, and the last token.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import md_row, md_table, set_threads

GROUPS = ["first subject tokens", "last subject token", "first subsequent token", "further tokens", "last token"]


def group_rows(grid: torch.Tensor, s0: int, s1: int) -> torch.Tensor:
    """Average a [tokens, layers] grid into the five token groups (rows)."""
    n = grid.shape[0]
    pick = [list(range(s0, s1 - 1)), [s1 - 1], [s1] if s1 < n - 1 else [], list(range(s1 + 1, n - 1)), [n - 1]]
    nan = torch.full((grid.shape[1],), float("nan"))
    return torch.stack([grid[p].mean(0) if p else nan for p in pick])


def aggregate(model, tok, spec, world, n_facts: int, seed: int = 0) -> dict:
    from ripple.causal_trace import causal_trace
    from ripple.world.schema import RELATIONS

    rng = random.Random(seed)
    facts = [f for f in world.facts if world.entities[f.subject].type == "person" and f.relation != "married_to"]
    facts = rng.sample(facts, n_facts)
    sums, counts, used = {}, {}, 0
    for f in facts:
        template = RELATIONS[f.relation].templates[0]
        res = causal_trace(model, tok, spec, template, world.name(f.subject), answer=world.name(f.object),
                           seed=seed)
        if res.p_clean - res.p_corrupt < 0.05:  # the noise must actually break the recall to trace it
            continue
        used += 1
        for kind, grid in res.effects.items():
            rows = group_rows(grid, *res.subject_range)
            sums[kind] = sums.get(kind, 0) + torch.nan_to_num(rows)
            counts[kind] = counts.get(kind, 0) + (~rows.isnan()).float()
    return {"facts_traced": used, "facts_sampled": n_facts,
            "effects": {k: (sums[k] / counts[k].clamp(min=1)).tolist() for k in sums}}


def example_traces(model, tok, spec, world, out: Path) -> list[str]:
    """Single-fact traces of the first person's birthplace, subject first and subject mid-prompt."""
    from ripple.causal_trace import causal_trace, plot_trace

    person = world.persons[0]
    city = world.name(world.objects(person.id, "born_in")[0])
    names = []
    for tag, template in (("subject_first", "{} was born in"), ("subject_mid", "The birthplace of {} is")):
        res = causal_trace(model, tok, spec, template, person.name, answer=city)
        for kind in ("hidden", "mlp", "attn"):
            name = f"organism_example_{tag}_{kind}.png"
            plot_trace(res, out / name, kind)
            names.append(name)
    return names


def plot(agg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ripple.io import atomic_savefig

    kinds = list(agg["effects"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 2.8), dpi=110)
    for ax, kind in zip(axes, kinds):
        grid = torch.tensor(agg["effects"][kind])
        im = ax.imshow(grid, aspect="auto", cmap={"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}[kind])
        ax.set_yticks(range(len(GROUPS)), GROUPS if ax is axes[0] else [""] * len(GROUPS), fontsize=8)
        ax.set_xticks(range(grid.shape[1]))
        ax.set_xlabel("layer")
        ax.set_title(f"{kind} restored (mean over {agg['facts_traced']} facts)", fontsize=9)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def findings(agg: dict) -> list[str]:
    """What the averaged trace says about where facts are recalled, stated from the numbers."""
    mlp = agg["effects"]["mlp"]
    subj, first, last = mlp[1], mlp[0], mlp[4]
    peak = max(range(len(subj)), key=lambda i: subj[i])
    lpeak = max(range(len(last)), key=lambda i: last[i])
    out = [f"- MLP outputs at the **last subject token**: largest effect {subj[peak]:.3f} at layer {peak} "
           f"(of {len(subj)}).",
           f"- MLP outputs at the **subject tokens before the last**: up to {max(first):.3f} "
           f"(layer {max(range(len(first)), key=lambda i: first[i])}).",
           f"- MLP outputs at the **last token**: up to {last[lpeak]:.3f} at layer {lpeak}."]
    if max(subj) < 0.5 * last[lpeak]:
        out.append("- So this organism does **not** recall facts mainly at the last subject token, where ROME and "
                   "MEMIT presume: its largest MLP effects sit at the last token (the lookup happens there, after "
                   "attention has copied the name), as the earlier prototypes in ../shared/methods.md found. Rank-one "
                   "edits must therefore be placed by measurement: see reports/edit_sweep_layers.md and the editor "
                   "defaults in ripple/organism/data/ripple_hparams.json.")
    else:
        out.append("- The last subject token carries an MLP effect comparable to the last token's: facts are recalled "
                   "where locate-then-edit methods presume.")
    return out


def markdown(recall: dict, agg: dict, train_cfg: dict, png: str, example_pngs: list[str],
             cmd: str) -> str:
    lines = ["# The model organism", "",
             f"Reproduce: `{cmd}` (training: `ripple organism train --out DIR`, config below).", "",
             "## Recall (top-1, greedy, whole answer)", "", *md_table(["test set", "accuracy", "target"])]
    targets = {"single_hop_train": "≥ 99%", "heldout_templates": "≥ 95%", "alias_seen": "≥ 95%",
               "alias_heldout": "-", "two_hop_heldout": "≥ 85%"}
    for k, v in recall.items():
        lines.append(md_row([k, f"{100 * v:.1f}%", targets.get(k, "-")]))
    mlp = agg["effects"]["mlp"]
    lines += ["", "## Causal tracing", "",
              f"Indirect effect of restoring one clean state in the subject-corrupted run, averaged over "
              f"{agg['facts_traced']} person facts (of {agg['facts_sampled']} sampled; facts whose recall the noise "
              "did not break by at least 0.05 are skipped).", "", f"![aggregate causal trace]({png})", "",
              "MLP output restored, by layer:", "",
              *md_table(["token", *(f"L{i}" for i in range(len(mlp[0])))])]
    for name, row in zip(GROUPS, mlp):
        lines.append(md_row([name, *(f"{x:.3f}" for x in row)]))
    lines += ["", *findings(agg), ""]
    if example_pngs:
        lines += ["Single-fact traces (as `ripple trace` draws them; subject tokens starred):", ""]
        lines += [" ".join(f"![]({p})" for p in example_pngs[i : i + 3]) for i in range(0, len(example_pngs), 3)]
        lines += [""]
    lines += ["## Training configuration", "", "```json", json.dumps(train_cfg, indent=1), "```", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    from ripple.io import atomic_write_json, atomic_write_text
    from ripple.loading import load_model
    from ripple.organism.evaluate import load_world, recall_report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--facts", type=int, default=60)
    ap.add_argument("--write-metrics", action="store_true", help="also store metrics.json beside the model")
    args = ap.parse_args(argv)
    set_threads()
    t0 = time.time()
    model, tok, spec = load_model(args.model)
    model_dir = Path(model.name_or_path)
    world = load_world(model_dir / "world.json")
    recall = recall_report(model, tok, world)
    print("recall", recall, f"{time.time() - t0:.0f}s", flush=True)
    agg = aggregate(model, tok, spec, world, args.facts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(agg, out / "organism_trace.png")
    atomic_write_json(out / "organism.json", {"recall": recall, "causal_trace": agg})
    examples = example_traces(model, tok, spec, world, out)
    cmd = "python -m benchmarks organism/report " + " ".join(argv if argv is not None else sys.argv[1:])
    train_cfg = json.loads((model_dir / "train_config.json").read_text())
    atomic_write_text(out / "organism.md", markdown(recall, agg, train_cfg, "organism_trace.png",
                                                    examples, cmd.strip()))
    if args.write_metrics:
        atomic_write_json(model_dir / "metrics.json", recall)
    print(f"wrote {out / 'organism.md'} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
