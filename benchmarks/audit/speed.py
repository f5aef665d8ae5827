"""An audit's measuring time for one model state, against one batched forward pass (target 1.5x).

How long an audit spends measuring one model state, against one batched forward pass over every
sequence that measurement scores (issue 12, item 8: the target is at most 1.5x).

The audit's ``measure`` (ripple/auditing/measure.py) scores, for one state: the probe items (prompt +
answer), each request's rewrite, paraphrase and neighbourhood prompts with both answers, and the
general sentences for perplexity. The floor is one forward pass, in batches of 64 with no hooks,
over exactly those token sequences. Both are timed as the median of ``--repeats`` runs after a
warm-up, on the unedited model.

    RIPPLE_THREADS=2 python -m benchmarks audit/speed --model smollm2 --probes probes/real_world.jsonl \\
        --edit benchmarks/audit/eiffel_rome.json --out reports/audit_speed.md
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import md_row, md_table, median_seconds, set_threads


def sequences(tok, requests, items, sentences) -> list[list[int]]:
    """Every token sequence the audit's measure scores for one model state."""
    from ripple.tokens import answer_ids, text_ids

    seqs = [text_ids(tok, item.rendered) + answer_ids(tok, item.answer) for item in items]
    for r in requests:
        prompts = [r.rendered, *r.paraphrase_prompts, *r.neighborhood_prompts]
        for target in (r.target_new, r.target_true):
            if target is not None:
                seqs += [text_ids(tok, p) + answer_ids(tok, target) for p in prompts]
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return seqs + [bos + text_ids(tok, s) for s in sentences]


@torch.no_grad()
def one_forward(model, tok, seqs, batch_size: int = 64) -> None:
    from ripple.scoring import pad_ids

    device = next(model.parameters()).device
    for i in range(0, len(seqs), batch_size):
        ids, mask = pad_ids(seqs[i : i + batch_size], tok, device)
        model(input_ids=ids, attention_mask=mask, use_cache=False)


def measure_model(name: str, probes: str | None, edit: str | None, repeats: int) -> dict:
    from ripple.auditing.measure import AuditInputs, measure, plan_audit
    from ripple.editing.request_files import load_requests
    from ripple.editing.setup import load_setup
    from ripple.evaluate.perplexity import general_sentences_for
    from ripple.probes.sets import probe_items

    requests = load_requests(edit) if edit else []
    setup = load_setup(name, context=False)
    if not requests:
        from ripple.editing.from_world import sample_edits

        requests = sample_edits(setup.world, 1, seed=0)
    requests = setup.complete(requests)
    items = probe_items(probes, setup.world)
    sentences = general_sentences_for(setup.world)
    plan = plan_audit(setup.model, setup.tok, None, requests, items)  # no ripple plan: what every model has
    seqs = sequences(setup.tok, requests, plan.items, sentences)
    inputs = AuditInputs(setup, items, sentences)
    t_measure = median_seconds(lambda: measure(inputs, requests, plan),
                               repeats, warmup=True)
    t_forward = median_seconds(lambda: one_forward(setup.model, setup.tok, seqs), repeats, warmup=True)
    return {"model": name, "probes": len(plan.items), "requests": len(requests), "sentences": len(sentences),
            "sequences": len(seqs), "tokens": sum(map(len, seqs)), "measure_s": t_measure, "forward_s": t_forward,
            "ratio": t_measure / t_forward}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["organism"])
    ap.add_argument("--probes", nargs="+", default=None, help="one per model (default: the model's world)")
    ap.add_argument("--edit", nargs="+", default=None, help="one edit file per model (default: a world edit)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    threads = set_threads()
    n = len(args.model)
    probes = args.probes or [None] * n
    edits = args.edit or [None] * n
    rows = [measure_model(m, p if p != "-" else None, e if e != "-" else None, args.repeats)
            for m, p, e in zip(args.model, probes, edits)]
    command = "RIPPLE_THREADS={} python -m benchmarks audit/speed {}".format(threads, " ".join(argv))
    lines = ["# Audit measuring time against one forward pass", "", f"Reproduce: `{command}`", "",
             "One model state measured as the audit measures it (`ripple.auditing.measure.measure`: probe items, "
             "request metrics, perplexity sentences; no lm-eval tasks, no RippleEdits plan) against one batched "
             f"forward pass (64 a batch, no hooks) over the same token sequences; median of {args.repeats} after a "
             f"warm-up, {threads} thread(s), CPU. Target (issue 12, item 8): at most 1.5x.", "",
             "The floor runs the sequences in their order with logits at every position; measuring batches them by "
             "length and unembeds only where it scores, so it can take less than the floor (a ratio under 1x). "
             "The machine is shared: compare the ratio, not the seconds, across runs.", "",
             *md_table(["model", "probes", "requests", "sentences", "sequences", "tokens", "measure (s)",
                        "one forward (s)", "ratio"])]
    lines += [md_row([*(r[k] for k in ("model", "probes", "requests", "sentences", "sequences", "tokens")),
                      f"{r['measure_s']:.2f}", f"{r['forward_s']:.2f}", f"{r['ratio']:.2f}x"]) for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from ripple.io import atomic_write_text

        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
