"""Batched scoring of prompts and answers, the primitive under every accuracy metric.

::

    answer_logprobs(model, tok, [("Kalo Miren was born in", "Tesvar")])
    # -> [(-0.01, True)]       # (log P(answer | prompt), answer is the greedy continuation)
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch

from ripple.devices import input_device
from ripple.tokens import answer_ids, text_ids


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length (shortest first), so that little of each batch is
    padding; callers put the results back in the input order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@lru_cache(maxsize=None)
def _keeps_logits(cls) -> bool:
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def window_logits(model, ids: torch.Tensor, mask: torch.Tensor | None, lo: int, hi: int, **kw) -> torch.Tensor:
    """Logits at positions ``lo .. hi-1`` only, shape ``[batch, hi - lo, vocab]``: the
    unembedding is a fifth of a small model's compute, and a prompt set needs it at a few
    positions (transformers' ``logits_to_keep``; the whole sequence for a model without it)."""
    if _keeps_logits(type(model)):
        keep = torch.arange(lo, hi, device=ids.device)
        return model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, **kw).logits
    return model(input_ids=ids, attention_mask=mask, **kw).logits[:, lo:hi]


def selected_logits(model, ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Logits at the positions where ``keep`` (``[batch, seq]``, bool) is true, shape ``[n, vocab]``
    in row-major order. The unembedding runs on those positions only: a forward pre-hook on the
    output embeddings passes them just the kept hidden states, so what the model does after it
    (Gemma-2's logit soft-capping) still applies. With a 262k-token vocabulary (Gemma-3) the
    unembedding costs more than the blocks, and a padded batch of sentences wastes a quarter of it."""
    head = model.get_output_embeddings()

    def only_kept(_module, args):
        hidden = args[0]
        return (hidden[keep.to(hidden.device)][None], *args[1:])

    handle = head.register_forward_pre_hook(only_kept)
    try:
        logits = model(input_ids=ids, attention_mask=mask).logits
    finally:
        handle.remove()
    return logits[0]


def last_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """Logits ``[batch, vocab]`` after the last token of unpadded ``ids``."""
    return window_logits(model, ids, None, ids.shape[1] - 1, ids.shape[1])[:, 0]


def encode_batch(tok, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask (positions stay absolute, as in training)."""
    return pad_ids([text_ids(tok, t) for t in texts], tok, device)


def pad_ids_left(enc: list[list[int]], tok, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Left-padded ids, attention mask and position ids (each row's positions from 0, as if
    unpadded), and each row's offset: every row ends at the last column, so the logits a batch
    needs at its rows' last few tokens are one narrow window (:func:`window_logits`)."""
    width = max(len(e) for e in enc)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(enc), width), pad, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    offsets = [width - len(e) for e in enc]
    for i, (e, o) in enumerate(zip(enc, offsets)):
        ids[i, o:] = torch.tensor(e)
        mask[i, o:] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device), offsets


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
    device = input_device(model)
    enc = [text_ids(tok, p) for p in prompts]
    out: list[torch.Tensor | None] = [None] * len(prompts)
    for batch in length_batches([len(e) for e in enc], batch_size):
        ids, mask = pad_ids([enc[j] for j in batch], tok, device)
        last = mask.sum(1) - 1
        lo, hi = int(last.min()), int(last.max()) + 1
        logits = window_logits(model, ids, mask, lo, hi)
        rows = logits[torch.arange(len(ids), device=device), last - lo].float().cpu()
        for j, row in zip(batch, rows):
            out[j] = row
    return torch.stack(out) if out else torch.empty(0)


@torch.no_grad()
def answer_logprobs(model, tok, pairs: list[tuple[str, str]], batch_size: int = 128) -> list[tuple[float, bool]]:
    """For each (prompt, answer): total log-probability of the answer's tokens after the prompt,
    and whether greedy decoding would produce exactly those tokens. A pair given more than once is
    scored once (pooled metrics over many requests repeat their neighbours)."""
    keys = [tuple(pair) for pair in pairs]
    unique = list(dict.fromkeys(keys))
    if len(unique) < len(keys):
        got = dict(zip(unique, answer_logprobs(model, tok, unique, batch_size)))
        return [got[k] for k in keys]
    device = input_device(model)
    p_all = [text_ids(tok, p) for p, _ in pairs]
    a_all = [answer_ids(tok, a) for _, a in pairs]
    if not all(a_all):
        raise ValueError(f"an answer tokenizes to nothing: {[a for _, a in pairs if not a.strip()]!r}")
    out: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
    for batch in length_batches([len(p) + len(a) for p, a in zip(p_all, a_all)], batch_size):
        p_ids, a_ids = [p_all[j] for j in batch], [a_all[j] for j in batch]
        ids, mask = pad_ids([p + a for p, a in zip(p_ids, a_ids)], tok, device)
        keep = torch.zeros_like(mask, dtype=torch.bool)  # the positions that predict each answer
        for r, (p, a) in enumerate(zip(p_ids, a_ids)):
            keep[r, len(p) - 1 : len(p) + len(a) - 1] = True
        logp = torch.log_softmax(selected_logits(model, ids, mask, keep).float(), -1)
        start = 0
        for j, a in zip(batch, a_ids):
            rows, target = logp[start : start + len(a)], torch.tensor(a, device=logp.device)
            out[j] = (rows[torch.arange(len(a), device=logp.device), target].sum().item(),
                      bool((rows.argmax(-1) == target).all()))
            start += len(a)
    return out


def answer_window(prompts: list[list[int]], answers: list[list[int]]) -> tuple[int, int]:
    """The positions whose logits score each answer after its prompt, for the whole batch."""
    return min(len(p) for p in prompts) - 1, max(len(p) + len(a) for p, a in zip(prompts, answers)) - 1


def score_answers(logp: torch.Tensor, prompts: list[list[int]], answers: list[list[int]],
                  offset: int = 0) -> list[tuple[float, bool]]:
    """From log-probabilities ``[batch, seq, vocab]`` of ``prompt + answer`` sequences (one a row;
    position ``offset`` first): each answer's total log-probability and whether greedy decoding
    gives exactly its tokens."""
    out = []
    for j, (p, a) in enumerate(zip(prompts, answers)):
        pos = torch.arange(len(p) - 1 - offset, len(p) + len(a) - 1 - offset, device=logp.device)
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
