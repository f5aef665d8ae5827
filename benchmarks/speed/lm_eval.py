"""The lm-eval bridge's time against a plain batched log-likelihood loop over the same requests.

Both score exactly the same token sequences (the loop takes them from lm-eval's own request
encoding) with the same batch size on the same in-memory model; the bridge's time is a whole
``LmEvalBridge.evaluate()`` (requests, model calls, metrics). Median of ``--repeats`` runs each.

    RIPPLE_THREADS=1 python -m benchmarks speed/lm_eval --out reports/lm_eval_speed.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.common import md_table, median_seconds, set_threads


def token_requests(bridge) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) of every request the bridge's tasks make."""
    lm, out = bridge.lm, []
    for task in bridge.task_dict["tasks"].values():
        task.build_all_requests(limit=bridge.limit, rank=0, world_size=1)
        for inst in task.instances:
            if inst.request_type == "loglikelihood":
                ctx, cont = inst.arguments
                out.append(lm._encode_pair(ctx, cont))
            elif inst.request_type == "loglikelihood_rolling":
                out.append(([lm.prefix_token_id], lm.tok_encode(inst.arguments[0])))
            else:
                raise ValueError(f"unsupported request type {inst.request_type}")
    return out


@torch.no_grad()
def plain_loop(model, pad_id: int, requests, batch_size: int) -> list[tuple[float, bool]]:
    out = []
    for i in range(0, len(requests), batch_size):
        chunk = requests[i : i + batch_size]
        seqs = [c + x for c, x in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for j, (c, x) in enumerate(chunk):
            pos = torch.arange(len(c) - 1, len(c) + len(x) - 1)
            tgt = torch.tensor(x)
            out.append((logp[j, pos, tgt].sum().item(), bool((logp[j, pos].argmax(-1) == tgt).all())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=["organism"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    set_threads()
    from ripple.editing.setup import world_of
    from ripple.evaluate.lm_eval_bridge import LmEvalBridge
    from ripple.loading import load_model

    model, tok, _ = load_model("organism")
    bridge = LmEvalBridge(model, tok, args.tasks, world=world_of(model.name_or_path), batch_size=args.batch_size,
                          limit=args.limit)
    requests = token_requests(bridge)
    n_tokens = sum(len(c) + len(x) for c, x in requests)
    bridge.evaluate()  # warm-up
    plain_loop(model, tok.pad_token_id, requests, args.batch_size)
    t_bridge = median_seconds(bridge.evaluate, args.repeats)
    t_plain = median_seconds(lambda: plain_loop(model, tok.pad_token_id, requests, args.batch_size), args.repeats)
    by_length = sorted(requests, key=lambda r: -(len(r[0]) + len(r[1])))  # what lm-eval's collator does first
    t_sorted = median_seconds(lambda: plain_loop(model, tok.pad_token_id, by_length, args.batch_size), args.repeats)
    ratio = t_bridge / t_plain
    lines = ["# lm-eval bridge speed", "",
             "`RIPPLE_THREADS=1 python -m benchmarks speed/lm_eval --out reports/lm_eval_speed.md`", "",
             f"Tasks {', '.join(args.tasks)} on the organism: {len(requests)} requests, {n_tokens} tokens, batch size "
             f"{args.batch_size}, {torch.get_num_threads()} thread(s); median of {args.repeats} runs.", "",
             *md_table(["", "seconds"], [
                 ("`LmEvalBridge.evaluate()` (whole lm-eval evaluation)", f"{t_bridge:.3f}"),
                 ("plain batched log-likelihood loop, same token sequences", f"{t_plain:.3f}"),
                 ("**ratio** (target ≤ 1.2)", f"**{ratio:.2f}**"),
                 ("the same loop with requests sorted longest first (less padding)", f"{t_sorted:.3f}"),
                 ("ratio to the sorted loop", f"{t_bridge / t_sorted:.2f}")]), "",
             "lm-eval's HFLM sorts requests by length before batching, which pads less than a loop in task "
             "order; against a loop sorted the same way the ratio is the second one.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        from ripple.io import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
