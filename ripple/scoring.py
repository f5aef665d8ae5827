"""Batched scoring of prompts and answers, the primitive under every accuracy metric.

::

    answer_logprobs(model, tok, [("Kalo Miren was born in", "Tesvar")])
    # -> [(-0.01, True)]       # (log P(answer | prompt), answer is the greedy continuation)
"""

from __future__ import annotations

import torch

from ripple.tokens import answer_ids, text_ids


def encode_batch(tok, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask (positions stay absolute, as in training)."""
    return pad_ids([text_ids(tok, t) for t in texts], tok, device)


def pad_ids(enc: list[list[int]], tok, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(e) for e in enc)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(enc), width), pad, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def next_token_logits(model, tok, prompts: list[str], batch_size: int = 128) -> torch.Tensor:
    """Logits of the token after each prompt, shape ``[len(prompts), vocab]``, float32 on CPU."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = encode_batch(tok, prompts[i : i + batch_size], device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        last = mask.sum(1) - 1
        out.append(logits[torch.arange(len(ids), device=device), last].float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def answer_logprobs(model, tok, pairs: list[tuple[str, str]], batch_size: int = 128) -> list[tuple[float, bool]]:
    """For each (prompt, answer): total log-probability of the answer's tokens after the prompt,
    and whether greedy decoding would produce exactly those tokens."""
    device = next(model.parameters()).device
    out: list[tuple[float, bool]] = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        p_ids = [text_ids(tok, p) for p, _ in chunk]
        a_ids = [answer_ids(tok, a) for _, a in chunk]
        if not all(a_ids):
            raise ValueError(f"an answer tokenizes to nothing: {[a for _, a in chunk if not a.strip()]!r}")
        ids, mask = pad_ids([p + a for p, a in zip(p_ids, a_ids)], tok, device)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        out += score_answers(logp, p_ids, a_ids)
    return out


def score_answers(logp: torch.Tensor, prompts: list[list[int]], answers: list[list[int]]) -> list[tuple[float, bool]]:
    """From log-probabilities ``[batch, seq, vocab]`` of ``prompt + answer`` sequences (one a row):
    each answer's total log-probability and whether greedy decoding gives exactly its tokens."""
    out = []
    for j, (p, a) in enumerate(zip(prompts, answers)):
        pos = torch.arange(len(p) - 1, len(p) + len(a) - 1, device=logp.device)
        target = torch.tensor(a, device=logp.device)
        out.append((logp[j, pos, target].sum().item(), bool((logp[j, pos].argmax(-1) == target).all())))
    return out


def query_correct(model, tok, queries, batch_size: int = 128) -> list[bool]:
    """Whether each query's greedy continuation is one of its answers (multi-token answers too)."""
    pairs = [(q.prompt, a) for q in queries for a in q.answers]
    res = iter(answer_logprobs(model, tok, pairs, batch_size))
    return [any([next(res)[1] for _ in q.answers]) for q in queries]


def accuracy(model, tok, queries, batch_size: int = 128) -> float:
    """Share of queries answered correctly (see :func:`query_correct`)."""
    hits = query_correct(model, tok, queries, batch_size)
    return sum(hits) / len(hits) if hits else float("nan")


def first_token_id(tok, answer: str) -> int:
    """The id of the first token of ``answer`` as it follows a prompt (with a leading space)."""
    ids = answer_ids(tok, answer)
    if not ids:
        raise ValueError(f"answer {answer!r} tokenizes to nothing")
    return ids[0]
