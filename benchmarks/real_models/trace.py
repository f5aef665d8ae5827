"""Where does a real model carry a fact? Causal traces (ripple.causal_trace) of facts it knows.

``--facts`` facts are drawn (seed 0) from the real-world graph's facts the model answers right on
the probe template (ripple.world.real; every relation); each is traced at the subject's last
token and at the prompt's last token, restoring one clean state at a time (block output, MLP
output with a window of ``--window`` layers). A fact whose corruption does not lower
P(answer) by at least 0.05 cannot be traced and is counted apart. Writes
``reports/real_trace_<model>.json`` and ``.png`` (the mean indirect effect per layer).

    python -m benchmarks real_models/trace --model smollm2 --facts 24
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from benchmarks.common import known_facts, set_threads


def main(argv=None) -> None:
    from ripple.causal_trace import causal_trace
    from ripple.editing.setup import load_setup

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--facts", type=int, default=24)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args(argv)
    set_threads()
    setup = load_setup(args.model, context=False)
    world = setup.world
    pairs = random.Random(0).sample(known_facts(setup), args.facts)
    n_layers = setup.spec.n_layers(setup.model)
    sums = {k: torch.zeros(2, n_layers) for k in ("hidden", "mlp")}
    rows, skipped = [], 0
    for s, r in pairs:
        rel = world.relations[r]
        answer = world.name(world.objects(s, r)[0])
        res = causal_trace(setup.model, setup.tok, setup.spec, rel.templates[0], world.name(s), answer=answer,
                           samples=args.samples, window=args.window, kinds=("hidden", "mlp"),
                           positions=("subject_last", -1))
        drop = res.p_clean - res.p_corrupt
        row = {"fact": f"{s}|{r}", "p_clean": round(res.p_clean, 4), "p_corrupt": round(res.p_corrupt, 4)}
        if drop < 0.05:
            skipped += 1
            rows.append(row | {"traced": False})
            continue
        s_last = res.subject_range[1] - 1
        for kind in sums:  # the effect as a share of what the corruption took away
            sums[kind] += torch.stack([res.effects[kind][s_last], res.effects[kind][-1]]) / drop
        rows.append(row | {"traced": True})
        print(row, flush=True)
    used = len(pairs) - skipped
    mean = {k: (v / max(1, used)).tolist() for k, v in sums.items()}
    name = Path(args.model).stem.replace(".", "_")
    result = {"model": args.model, "facts_sampled": len(pairs), "facts_traced": used, "samples": args.samples,
              "window": args.window, "n_layers": n_layers,
              "mean_relative_effect": {k: {"subject_last": v[0], "last": v[1]} for k, v in mean.items()},
              "facts": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"real_trace_{name}.json").write_text(json.dumps(result, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, kind in zip(axes, ("hidden", "mlp")):
        for pos, style in (("subject_last", "o-"), ("last", "s--")):
            ax.plot(range(n_layers), mean[kind][0 if pos == "subject_last" else 1], style, ms=3,
                    label=f"{pos.replace('_', ' ')} token")
        ax.set_title(f"{kind} ({'window ' + str(args.window) if kind == 'mlp' else 'one layer'})", fontsize=9)
        ax.set_xlabel("layer")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("indirect effect / (p clean - p corrupt)")
    fig.suptitle(f"{args.model}: causal trace, mean over {used} facts it knows", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / f"real_trace_{name}.png", dpi=110, metadata={"Software": None})
    print(f"{used} of {len(pairs)} facts traced; reports/real_trace_{name}.json")


if __name__ == "__main__":
    main()
