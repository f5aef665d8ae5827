"""Throughput of the key statistics against a plain forward pass, and what a 7B model's would take.

Throughput of the key statistics (ripple.editing.dist_stats) against a plain batched forward
pass over the same tokens, and what a 7B model's statistics would take.

On ``--model`` (SmolLM2 by default) over the first ``--samples`` tokens of ``--corpus``:

* ``stats``: :func:`second_moments` at the layers ROME and MEMIT edit (one pass for all of them,
  stopping after the deepest), length-sorted batches, float64 sums;
* ``plain``: the model's full forward pass over exactly the same batches (no hooks, no sums);
* ``unsorted``: :func:`ripple.editing.stats.second_moment` one layer at a time in corpus order
  (how the editors computed C before), for the gain of batching by length.

Each is timed ``--repeats`` times (median). The extrapolation to a 7B model takes the measured
cost per token and FLOP (2 x non-embedding parameters per token) on this machine and the
FLOPs a 7B model needs for 100,000 Wikipedia-length samples, and writes reports/scale.md.

    python -m benchmarks speed/scale --model smollm2 --corpus graph --samples 20000
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import REPORTS, md_row, md_table, median_seconds, set_threads


def measure(args) -> dict:
    from ripple.editing.corpora import load_corpus
    from ripple.editing.dist_stats import second_moments, token_plan
    from ripple.editing.setup import load_setup
    from ripple.editing.stats import second_moment
    from ripple.scoring import pad_ids
    from ripple.tokens import text_ids

    setup = load_setup(args.model, context=False)
    model, tok, spec = setup.model, setup.tok, setup.spec
    n_layers = spec.n_layers(model)
    layers = sorted({x for m in ("rome", "memit") for x in setup.hparams_for(m).layers_for(n_layers)})
    corpus = list(load_corpus(args.corpus, setup.world, model, tok).lines)
    plan = token_plan(tok, corpus, args.samples)
    enc = [text_ids(tok, corpus[i])[:take] for i, take in plan]
    enc.sort(key=len)
    batches = [enc[j:j + args.batch_size] for j in range(0, len(enc), args.batch_size)]

    @torch.no_grad()
    def plain():
        for b in batches:
            ids, mask = pad_ids(b, tok, "cpu")
            model(input_ids=ids, attention_mask=mask)

    from ripple.arch import act_name, resolve_site
    from ripple.hooks import TraceDict

    deepest = resolve_site(spec, act_name(layers[-1], "mlp.key"))[0]

    @torch.no_grad()
    def to_depth():  # the same batches, stopped where the statistics stop, nothing kept
        for b in batches:
            ids, mask = pad_ids(b, tok, "cpu")
            with TraceDict(model, [deepest], retain_input=False, retain_output=False, stop=True):
                model(input_ids=ids, attention_mask=mask)

    stats_info = {}

    def stats():
        out = second_moments(model, tok, spec, layers, corpus, args.samples, batch_size=args.batch_size,
                             use_cache=False, save_every=0)
        stats_info.update(out[None])

    def unsorted():
        for layer in layers:
            second_moment(model, tok, spec, layer, corpus, args.samples, use_cache=False)

    plain()  # warm-up
    t_plain = median_seconds(plain, args.repeats)
    t_stats = median_seconds(stats, args.repeats)
    t_depth = median_seconds(to_depth, args.repeats)
    t_unsorted = median_seconds(unsorted, 1)
    embed = sum(p.numel() for n, p in model.named_parameters() if "embed" in n or "wte" in n or "lm_head" in n)
    params = sum(p.numel() for p in model.parameters())
    return {"model": args.model, "corpus": args.corpus, "samples": args.samples, "tokens": stats_info["tokens"],
            "forward_tokens": stats_info["forward_tokens"], "layers": layers, "n_layers": n_layers,
            "batch_size": args.batch_size, "plain_seconds": t_plain, "stats_seconds": t_stats, "depth_seconds": t_depth,
            "unsorted_seconds": t_unsorted, "params": params, "non_embedding_params": params - embed,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def render(r: dict) -> None:
    from ripple.io import atomic_write_text

    tok_s = r["tokens"] / r["stats_seconds"]
    flops_tok = 2 * r["non_embedding_params"]
    cpu_flops = flops_tok * r["tokens"] / r["plain_seconds"]  # what this machine did in the plain pass
    # a 7B model over 100,000 Wikipedia-length samples (ROME's mom2_n_samples, each truncated to
    # the model's context; ~1,000 tokens on average assumed)
    tokens_7b, params_7b = 100_000 * 1000, 6.5e9
    flops_7b = 2 * params_7b * tokens_7b
    lines = ["# Key statistics at scale", "",
             "Made by `python -m benchmarks speed/scale` (its docstring says what each time covers). "
             f"{r['model']}, corpus `{r['corpus']}`, the first {r['tokens']} tokens, layers {r['layers']} of "
             f"{r['n_layers']}, batches of {r['batch_size']} passages sorted by length; CPU, {r['threads']} "
             f"thread(s), torch {r['torch']}, with other benchmarks sharing the 2-core machine (the ratios, "
             "timed back to back, are what to read).", "",
             *md_table(["pass", "seconds", "tokens/s", "vs plain forward"], [
                 ["plain batched forward (full model)", f"{r['plain_seconds']:.2f}",
                  f"{r['tokens'] / r['plain_seconds']:.0f}", "1.00x"],
                 ["`ripple stats` (all layers in one pass, stops after the deepest)", f"{r['stats_seconds']:.2f}",
                  f"{tok_s:.0f}", f"**{r['stats_seconds'] / r['plain_seconds']:.2f}x** (target at most 1.2x)"],
                 ["the same batches, forward stopped at the deepest edited layer's key, nothing kept",
                  f"{r['depth_seconds']:.2f}", f"{r['tokens'] / r['depth_seconds']:.0f}",
                  f"{r['depth_seconds'] / r['plain_seconds']:.2f}x (the statistics' overhead over it: "
                  f"{r['stats_seconds'] / r['depth_seconds']:.2f}x)"],
                 ["before: one layer at a time in corpus order", f"{r['unsorted_seconds']:.2f}",
                  f"{r['tokens'] / r['unsorted_seconds']:.0f}", f"{r['unsorted_seconds'] / r['plain_seconds']:.2f}x"]]),
             "",
             f"Padding: {1 - r['tokens'] / r['forward_tokens']:.1%} of the tokens the statistics' forward passes ran.",
             "", "## A 7B model over 100,000 Wikipedia-length samples", "",
             f"The plain pass above ran {cpu_flops / 1e9:.1f} GFLOP/s on this CPU (2 x {r['non_embedding_params'] / 1e6:.0f}M "
             "non-embedding parameters per token). A 7B model (6.5B non-embedding parameters) over 100,000 samples of "
             f"about 1,000 tokens (1e8 tokens; ROME's sample count, each truncated to the context) needs "
             f"{flops_7b:.2g} FLOPs for a full forward pass. ripple's statistics pass cost "
             f"{r['stats_seconds'] / r['depth_seconds']:.2f}x a forward pass that stops at the same layer; the table "
             "counts it over the full depth (an upper bound: MEMIT's layers on GPT-J, 3-8 of 28, stop it at "
             "about a third).", "",
             *md_table(["hardware (assumed sustained throughput)", "1 device", "4 devices", "8 devices"])]
    for name, flops in (("A100, bf16 at 40% of 312 TFLOP/s", 125e12), ("A100, fp32 at 50% of 19.5 TFLOP/s", 9.75e12),
                        ("H200, bf16 at 40% of 989 TFLOP/s", 396e12)):
        hours = flops_7b * r["stats_seconds"] / r["depth_seconds"] / flops / 3600
        lines.append(md_row([name, f"{hours:.1f} h", f"{hours / 4:.1f} h", f"{hours / 8:.2f} h"]))
    one = {name: flops_7b * r["stats_seconds"] / r["depth_seconds"] / flops / 3600 for name, flops in
           (("bf16", 125e12), ("fp32", 9.75e12))}
    lines += ["", f"Gupta et al. (arXiv 2506.04226) report about 36 hours on one GPU for GPT-J and 40 for Llama-2-7B. "
              f"Those fall between the one-device estimates above for fp32 ({one['fp32']:.0f} h) and bf16 "
              f"({one['bf16']:.1f} h); data-parallel over 8 devices in bf16 the estimate is "
              f"{one['bf16'] / 8 * 60:.0f} minutes. These rows are extrapolations from FLOP counts and assumed "
              "sustained throughputs, not measurements: no GPU was lent to this session (the CUDA path of "
              "`ripple stats` is the nccl branch of the same code, untested here). The statistics' own cost over "
              "the forward pass is the float64 accumulation of k kᵀ at every edited layer (the keys are the MLP's "
              "hidden units, 1,536 wide on SmolLM2); it is what keeps the result equal, to float64 rounding, "
              "whatever the number of processes.", "",
              *samples_section()]
    atomic_write_text(REPORTS / "scale.md", "\n".join(lines))
    (REPORTS / "scale.json").write_text(json.dumps(r, indent=1) + "\n")


def plateau(rows: list[dict], tol: float = 0.01) -> int | None:
    """The smallest sample count from which no larger count scores more than ``tol`` above it."""
    rows = sorted(rows, key=lambda r: r["samples"])
    for i, r in enumerate(rows):
        if all(later["score"] <= r["score"] + tol for later in rows[i + 1:]):
            return r["samples"]
    return None


# the sweeps' corpora, counted with the model's tokenizer when the sweep was run
CORPUS_NOTES = {"smollm2": " (`samples:1024`: 1,024 passages of up to 64 tokens sampled from the model, 63,008 "
                           "SmolLM2 tokens, so the 65000 row takes them all)",
                "gemma3-270m": " (`samples:1024`: 1,024 passages of up to 64 tokens sampled from the model, 63,052 "
                               "Gemma tokens as the statistics read them, each passage's beginning-of-text token "
                               "included, so the 65000 row takes them all)"}


def samples_section() -> list[str]:
    """How many samples the key statistics need on a real model: reports/edit_sweep_<model>_samples.json
    (``python -m benchmarks editors/sweep`` with a stats_samples grid)."""
    lines = ["## How many samples a real model's statistics need", ""]
    found = sorted(REPORTS.glob("edit_sweep_*_samples.json"))
    plateaus: dict[str, int] = {}
    if not found:
        return lines + ["Not measured yet (`python -m benchmarks editors/sweep --model smollm2 --name smollm2_samples "
                        "--stats-corpus samples:1024 --grid 'rome:stats_samples=1000,4000,16000,65000' ...`).", ""]
    for path in found:
        rows = json.loads(path.read_text())
        name = path.stem.removeprefix("edit_sweep_")
        md = (REPORTS / f"{path.stem}.md").read_text().splitlines()
        reproduce = next((x for x in md if x.startswith("Reproduce:")), "")
        model = rows[0].get("model", name) if rows else name
        lines += [f"**{model}** ({reproduce.removeprefix('Reproduce: ')}; the rows: reports/{path.stem}.md): "
                  f"{rows[0].get('edits') if rows else '?'} edits of facts the model knows (every relation), the same "
                  "edits at every sample count, each applied alone; the statistics from the first N tokens of the "
                  "corpus the command names" + CORPUS_NOTES.get(model, "") + ". S: "
                  "CounterFact's score, the harmonic mean of efficacy, paraphrase and neighbourhood (probability "
                  "races; ripple.editing.metrics.aggregate). One edit in 20 is 0.05 of efficacy.", "",
                  *md_table(["method", "samples (tokens)", "efficacy", "paraphrase", "neighbourhood",
                             "relation specificity", "S"])]
        by_method: dict[str, list[dict]] = {}
        for r in rows:
            n = int(r["config"].split("=")[1])
            by_method.setdefault(r["method"], []).append({"samples": n, **r})
        for method, rs in by_method.items():
            for r in sorted(rs, key=lambda r: r["samples"]):
                lines.append(md_row([method, r["samples"], *(f"{r[k]:.3f}" for k in (
                    "efficacy", "paraphrase", "neighborhood", "relation_specificity", "score"))]))
        lines += [""] + [f"- {method}: S stops improving (no larger count more than 0.01 above) at "
                         f"{plateau(rs)} tokens of the {len(rs)} counts measured (up to "
                         f"{max(r['samples'] for r in rs)})." for method, rs in by_method.items()] + [""]
        plateaus[model] = max((plateau(rs) or 0) for rs in by_method.values())
    if plateaus:
        lines += ["Gupta et al. (arXiv 2506.04226) find that under 0.3% of MEMIT's 44 million vectors per layer "
                  "(about 130,000) suffice for MEMIT, ROME and EMMET. Here single edits stop improving by "
                  + ", ".join(f"{n} tokens on {m}" for m, n in plateaus.items())
                  + ". The default real-model corpus (`samples:256`, about 16,000 tokens) is "
                  + ("past that on each." if max(plateaus.values()) <= 16000 else "short of it on some.") + " "
                  "Batches and sequences of edits, which must keep more keys apart, are not measured at these "
                  "counts.", ""]
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--corpus", default="graph")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args(argv)
    if args.render:
        render(json.loads((REPORTS / "scale.json").read_text()))
        return
    set_threads()
    render(measure(args))


if __name__ == "__main__":
    main()
