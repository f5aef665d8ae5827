"""Causal tracing averaged over the facts a real model knows, as ROME's Figure 2 shows it for GPT-2 XL.

``--facts`` facts are drawn (seed 0) from the real-world graph's facts the model answers right on
the relation's first template (every relation; ``benchmarks.common.known_facts``). Each is
traced over every token and layer (ripple.causal_trace: noise 3 times the standard deviation of
the embeddings the blocks receive, ``--samples`` noise draws), restoring one state at a time:
the block's hidden output, the MLP output (one layer, and ROME's window of 10) and the attention
output (one layer, and a window of 10). The indirect effects are averaged by token kind (first,
middle and last subject token, first subsequent token, further tokens, last token; the tokens
before the subject apart) and layer over all the facts drawn, the ones whose corruption hardly
lowers P(answer) included (they are counted in the report).

Speed: the trace batches its restorations and starts each pass at the first restored block; on
the first ``--floor-facts`` facts it also times the floor, the plain corrupted forward passes
the trace stands for (kinds x tokens x layers x samples rows, batched the same way), and the
report gives the trace's time as a ratio of it.

Resumable: facts already in ``reports/tracing_<model>.json`` (same settings and code) are kept.

    python -m benchmarks real_models/tracing --model smollm2 --facts 100
    python -m benchmarks real_models/tracing --model gemma3-270m --facts 100
    python -m benchmarks real_models/tracing --render
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from benchmarks.common import REPORTS, known_facts, md_row, md_table, resumable, set_threads, write_rows

KINDS = ("hidden", "mlp", "mlp/10", "attn", "attn/10")
MODELS = ("smollm2", "gemma3-270m")


def _round(x):
    return None if x is None else [round(v, 5) for v in x]


def trace_facts(args) -> None:
    from ripple.causal_trace import causal_trace, effects_by_token_kind
    from ripple.editing.setup import load_setup
    from ripple.io import source_fingerprint

    setup = load_setup(args.model, context=False)
    world = setup.world
    known = known_facts(setup)
    pairs = random.Random(0).sample(known, min(args.facts, len(known)))
    config = {"version": 1, "model": args.model, "facts": len(pairs), "known": len(known), "samples": args.samples,
              "noise": 3.0, "kinds": list(KINDS), "batch_rows": args.batch_rows, "seed": 0,
              "n_layers": setup.spec.n_layers(setup.model)}
    name = args.model.replace(".", "_")
    path = REPORTS / f"tracing_{name}.json"
    code = source_fingerprint()
    data = resumable(path, config)
    done = {r["fact"] for r in data["rows"]}
    for i, (s, r) in enumerate(pairs):
        fact = f"{s}|{r}"
        if fact in done:
            continue
        rel = world.relations[r]
        answer = world.name(world.objects(s, r)[0])
        res = causal_trace(setup.model, setup.tok, setup.spec, rel.templates[0], world.name(s), answer=answer,
                           samples=args.samples, kinds=KINDS, seed=i, batch_rows=args.batch_rows)
        if i < args.floor_facts:
            res.timing["floor_seconds"] = floor_seconds(setup, res, args.samples, args.batch_rows)
        row = {"fact": fact, "prompt": res.prompt, "answer": res.answer, "tokens": res.tokens,
               "subject_range": list(res.subject_range), "p_clean": round(res.p_clean, 5),
               "p_corrupt": round(res.p_corrupt, 5), "timing": res.timing, "code": code,
               "by_token_kind": {k: {t: _round(v) for t, v in d.items()} for k, d in effects_by_token_kind(res).items()}}
        data["rows"].append(row)
        write_rows(path, data)
        t = res.timing
        ratio = f", floor {t['floor_seconds']:.1f} s (x{t['seconds'] / t['floor_seconds']:.2f})" if "floor_seconds" in t else ""
        print(f"{len(data['rows'])}/{len(pairs)} {fact}: p clean {res.p_clean:.3f} corrupt {res.p_corrupt:.3f}; "
              f"{len(res.tokens)} tokens, {t['seconds']:.1f} s{ratio}", flush=True)


def floor_seconds(setup, res, samples: int, batch_rows: int) -> float:
    """The seconds of the plain corrupted forward passes the trace stands for: one full pass per
    restored state and noise sample, batched as the trace batches them (noise on the subject's
    embeddings, no restoring hooks, every pass from the embeddings)."""
    from ripple.arch import resolve_site
    from ripple.causal_trace import embedding_noise_scale
    from ripple.devices import input_device
    from ripple.hooks import TraceDict
    from ripple.scoring import last_logits
    from ripple.tokens import text_ids

    model, spec = setup.model, setup.spec
    ids = torch.tensor([text_ids(setup.tok, res.prompt)]).to(input_device(model))
    s0, s1 = res.subject_range
    embed = resolve_site(spec, "embed")[0]
    scale = embedding_noise_scale(model, spec)
    hidden = model.get_input_embeddings().weight.shape[1]
    per_pass = max(1, batch_rows // samples)
    t0 = time.perf_counter()
    with torch.no_grad():
        for c in range(0, res.timing["restored_states"], per_pass):
            rows = min(per_pass, res.timing["restored_states"] - c) * samples
            eps = torch.randn(rows, s1 - s0, hidden) * scale

            def corrupt(out, name, eps=eps):
                out = out.clone()
                out[:, s0:s1] += eps.to(out.device, out.dtype)
                return out

            with TraceDict(model, [embed], edit_output=corrupt, retain_output=False):
                last_logits(model, ids.repeat(rows, 1))
    return time.perf_counter() - t0


# ---------------------------------------------------------------- report


def _mean_grid(rows, kind):
    """token kind -> (mean effect per layer over the facts that have that kind, how many)."""
    from ripple.causal_trace import TOKEN_KINDS

    out = {}
    for tk in TOKEN_KINDS:
        have = [r["by_token_kind"][kind][tk] for r in rows if r["by_token_kind"][kind][tk] is not None]
        out[tk] = (torch.tensor(have).mean(0).tolist() if have else None, len(have))
    return out


def _heatmaps(model, rows, n_layers, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ripple.causal_trace import TOKEN_KINDS
    from ripple.io import atomic_savefig

    fig, axes = plt.subplots(1, len(KINDS), figsize=(3.3 * len(KINDS), 3.2), sharey=True)
    cmaps = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}
    for ax, kind in zip(axes, KINDS):
        grid = _mean_grid(rows, kind)
        mat = [grid[tk][0] if grid[tk][0] is not None else [float("nan")] * n_layers for tk in TOKEN_KINDS]
        im = ax.imshow(mat, cmap=cmaps[kind.split("/")[0]], aspect="auto", vmin=0)
        ax.set_yticks(range(len(TOKEN_KINDS)), TOKEN_KINDS, fontsize=7)
        ax.set_xlabel("layer", fontsize=8)
        label = {"hidden": "hidden state", "mlp": "MLP, one layer", "mlp/10": "MLP, window 10",
                 "attn": "attention, one layer", "attn/10": "attention, window 10"}[kind]
        ax.set_title(f"{label}", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle(f"{model}: average indirect effect over {len(rows)} known facts", fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def render() -> None:
    from benchmarks.common import source_versions
    from ripple.causal_trace import TOKEN_KINDS
    from ripple.io import atomic_write_text

    lines = ["# Causal tracing on real models, averaged", "",
             "What ROME's Figure 2 shows for GPT-2 XL (Meng et al., 2022), measured on the real models ripple "
             "loads from PyPI: the average indirect effect (AIE) of restoring one clean state inside a run whose "
             "subject embeddings were corrupted with Gaussian noise of 3 times the standard deviation of the "
             "embeddings the blocks receive. AIE = mean over facts of P(answer | corrupted, state restored) - "
             "P(answer | corrupted). Made by `benchmarks/real_models/tracing.py` (its docstring gives the population).", ""]
    for model in MODELS:
        path = REPORTS / f"tracing_{model.replace('.', '_')}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        cfg, rows = data["config"], data["rows"]
        n_layers = cfg["n_layers"]
        png = f"tracing_{model.replace('.', '_')}.png"
        _heatmaps(model, rows, n_layers, REPORTS / png)
        weak = sum(r["p_clean"] - r["p_corrupt"] < 0.05 for r in rows)
        lines += [f"## {model}", "",
                  f"{len(rows)} of {cfg['facts']} facts drawn (seed 0) from the {cfg['known']} facts of the "
                  f"real-world graph (probes/real_world.jsonl) it answers right, all relations; {cfg['samples']} noise samples per "
                  f"fact. Mean P(answer): clean {sum(r['p_clean'] for r in rows) / len(rows):.3f}, corrupted "
                  f"{sum(r['p_corrupt'] for r in rows) / len(rows):.3f}; on {weak} facts the corruption lowers "
                  "P(answer) by less than 0.05 (they stay in the averages).", "",
                  f"![average indirect effects]({png})", "",
                  "Peak AIE per token kind (layer of the peak in brackets); n: facts whose prompt has that kind.", "",
                  *md_table(["token kind", "n", *KINDS])]
        grids = {k: _mean_grid(rows, k) for k in KINDS}
        for tk in TOKEN_KINDS:
            n = grids[KINDS[0]][tk][1]
            cells = []
            for k in KINDS:
                v = grids[k][tk][0]
                cells.append("-" if v is None else f"{max(v):.3f} ({max(range(n_layers), key=v.__getitem__)})")
            lines.append(md_row([tk, n, *cells]))
        cols = (("mlp", "last subject token"), ("mlp/10", "last subject token"), ("attn/10", "last subject token"),
                ("mlp/10", "last token"), ("attn", "last token"), ("attn/10", "last token"))
        lines += ["", "Per layer (AIE at the two sites ROME contrasts; a window of 10 is centred on the layer, "
                  "ROME's convention: layer l restores layers l-5 .. l+4, clipped at the ends):", "",
                  *md_table(["layer", *(f"{k} at the {tk}" for k, tk in cols)])]
        for layer in range(n_layers):
            vals = [grids[k][tk][0][layer] for k, tk in cols]
            lines.append(md_row([layer, *(f"{v:.3f}" for v in vals)]))
        timed = [r["timing"] for r in rows if "floor_seconds" in r["timing"]]
        secs = [r["timing"]["seconds"] for r in rows]
        lines += ["", f"Time: {sum(secs) / len(secs):.1f} s per fact on average "
                  f"({sum(r['timing']['restored_states'] for r in rows) / len(rows):.0f} restored states, "
                  f"{cfg['samples']} samples each), {sum(secs) / 60:.0f} minutes in all, on "
                  f"torch {torch.__version__} CPU, one thread, with other benchmarks sharing the machine. "
                  + source_versions(rows)]
        if timed:
            ratio = sum(t["seconds"] for t in timed) / sum(t["floor_seconds"] for t in timed)
            lines += ["", f"On the first {len(timed)} facts the floor was timed in the same run: the trace took "
                      f"{sum(t['seconds'] for t in timed):.0f} s against {sum(t['floor_seconds'] for t in timed):.0f} s "
                      f"for the plain corrupted forward passes it stands for, **x{ratio:.2f}** (target at most x1.5). "
                      "Below 1 because a restoration's pass starts at its first restored block from the cached "
                      "corrupted residual stream: the blocks before it are the same for every restoration."]
        lines.append("")
    notes = REPORTS / "tracing_notes.md"  # the comparison with the paper, written by hand after reading the tables
    if notes.exists():
        lines += ["", "## What it shows", "", notes.read_text().strip()]
    atomic_write_text(REPORTS / "tracing.md", "\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--facts", type=int, default=100)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--batch-rows", type=int, default=256)
    ap.add_argument("--floor-facts", type=int, default=3, help="time the floor on this many facts")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args(argv)
    if not args.render:
        set_threads()
        t0 = time.perf_counter()
        trace_facts(args)
        print(f"{time.perf_counter() - t0:.0f} s")
    render()


if __name__ == "__main__":
    main()
