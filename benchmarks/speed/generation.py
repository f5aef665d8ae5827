"""What generated answers cost: ripple's batched early-stopping decoding against the teacher-forced
pass it sits beside and against a plain batched ``model.generate`` over the same prompts.

Prompts: every item of the model's probe set (completion prompts, every right answer of the
prompt counting), and for a model with a chat template the first ``--chat`` items' relation
questions asked through it. Three timings over the same prompts, batch size 64:

* teacher-forced: :func:`ripple.scoring.answer_logprobs` over (prompt, answer) pairs, which is
  what the top-1 and race figures of these items cost;
* ripple: :func:`ripple.generation.ask` (greedy, a row leaves the batch once its answer is decided);
* plain ``generate``: left-padded batches, greedy, ``max_new_tokens`` = the same bound ripple gives
  each row (the batch's largest), every row decoded to the end.

It also checks that both decodings judge every prompt the same (``agree``). Each figure is the
best of ``--repeat`` runs; one torch thread. Writes ``reports/generation/speed-<model>.json``;
``python -m benchmarks real_models/generation --render`` puts them in reports/generation.md.

    python -m benchmarks speed/generation --model smollm2
    python -m benchmarks speed/generation --model organism
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import REPORTS, set_threads


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


@torch.no_grad()
def plain_generate(model, tok, asks, batch_size: int = 64) -> list[str]:
    """``model.generate`` over left-padded batches, each to the batch's largest bound."""
    from ripple.generation import _budget, _prompt_ids, stop_ids
    from ripple.scoring import length_batches, pad_ids_left

    prompts = [_prompt_ids(tok, a) for a in asks]
    out = [""] * len(asks)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for batch in length_batches([len(p) for p in prompts], batch_size):
        ids, mask, _, _ = pad_ids_left([prompts[j] for j in batch], tok, "cpu")
        n = max(_budget(tok, asks[j]) for j in batch)
        got = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=n, pad_token_id=pad,
                             eos_token_id=sorted(stop_ids(model, tok)))
        for r, j in enumerate(batch):
            out[j] = tok.decode(got[r, ids.shape[1]:], skip_special_tokens=True)
    return out


def measure(model, tok, asks, repeat: int) -> dict:
    from ripple.answers import judge
    from ripple.generation import ask
    from ripple.scoring import answer_logprobs

    pairs = [(a.prompt, a.answers[0]) for a in asks if not a.chat]
    tf = best(lambda: answer_logprobs(model, tok, pairs), repeat)[0] if pairs else None
    ours_s, ours = best(lambda: ask(model, tok, asks), repeat)
    plain_s, plain = best(lambda: plain_generate(model, tok, asks), repeat)
    agree = sum(o.correct == bool(judge(p, a.answers, a.rivals, reply=a.chat)) for a, o, p in zip(asks, ours, plain))
    return {"prompts": len(asks), "teacher_forced_s": tf, "ripple_s": ours_s, "generate_s": plain_s,
            "ratio_to_teacher_forced": ours_s / tf if tf else None, "ratio_to_generate": ours_s / plain_s,
            "agree": agree, "right": sum(o.correct for o in ours)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--chat", type=int, default=200, help="chat questions timed (the first N probe items)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    from ripple.evaluate.generated import probe_asks
    from ripple.generation import has_chat
    from ripple.io import atomic_write_json, source_fingerprint
    from ripple.probes.sets import world_probe_set

    set_threads()
    import ripple

    lab = ripple.load(args.model)
    model, tok = lab.model, lab.tokenizer
    items = lab._items(None) if hasattr(lab, "_items") else world_probe_set(lab.world)
    out = {"model": args.model, "threads": torch.get_num_threads(), "code": source_fingerprint(),
           "completion": measure(model, tok, probe_asks(items), args.repeat)}
    if has_chat(tok):
        chat = [a for a in probe_asks(items, chat=True) if a is not None][: args.chat]
        out["chat"] = measure(model, tok, chat, args.repeat)
    (REPORTS / "generation").mkdir(parents=True, exist_ok=True)
    atomic_write_json(REPORTS / "generation" / f"speed-{args.model}.json", out)
    print(out)


if __name__ == "__main__":
    main()
