"""Per-sentence perplexity on a fixed set of general sentences: ripple's collapse indicator.

A model that many edits are breaking loses fluency everywhere, which shows first as a rising
perplexity on ordinary text. The sentences are the world's own (in-distribution) for a model
that ships a ``world.json`` (the organism), else a bundled set of plain English sentences.

::

    sents = general_sentences_for(world)          # world=None: the bundled English set
    before = mean_perplexity(model, tok, sents)
    with edited(ctx, "rome", requests, hp):
        ratio = mean_perplexity(model, tok, sents) / before   # >3 is an alarm by default
"""

from __future__ import annotations

import math

import torch

#: The bundled English sentences (one per line) used for models without a world.
from ripple.data import english_sentences  # noqa: E402,F401 (read from here too)
from ripple.devices import input_device
from ripple.scoring import pad_ids, selected_logits
from ripple.tokens import bos_prefix, text_ids
from ripple.world.corpus import general_sentences


def general_sentences_for(world, n: int = 40) -> list[str]:
    """``n`` fixed world sentences when the model has a world, else the bundled English set."""
    if world is not None and world.kind == "synthetic":

        return general_sentences(world, n=n)
    return english_sentences()


@torch.no_grad()
def sentence_nlls(model, tok, sentences: list[str], batch_size: int = 32) -> list[float]:
    """Mean negative log-likelihood (nats per token) of each sentence. A beginning-of-text token,
    when the tokenizer has one, is put in front so the first word is scored too."""
    device = input_device(model)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None and not bos_prefix(tok) else []  # text_ids has it
    out: list[float] = []
    for i in range(0, len(sentences), batch_size):
        enc = [bos + text_ids(tok, s) for s in sentences[i : i + batch_size]]
        short = [s for s, e in zip(sentences[i : i + batch_size], enc) if len(e) < 2]
        if short:
            raise ValueError(f"sentence {short[0]!r} has fewer than two tokens; nothing to score")
        ids, mask = pad_ids(enc, tok, device)
        # each token predicted from the one before it: the logits at every unpadded position
        # but a row's last, and only there (selected_logits)
        keep = torch.zeros_like(mask, dtype=torch.bool)
        keep[:, :-1] = mask[:, 1:].bool()
        logits = selected_logits(model, ids, mask, keep).float()
        target = ids[:, 1:][keep[:, :-1]].to(logits.device)
        tgt_logp = logits.gather(-1, target[:, None])[:, 0] - torch.logsumexp(logits, -1)
        row = torch.arange(len(enc), device=logits.device)[:, None].expand_as(keep)[keep.to(logits.device)]
        total = torch.zeros(len(enc), dtype=tgt_logp.dtype, device=logits.device).index_add_(0, row, tgt_logp)
        out += (-total.cpu() / keep.sum(1).cpu()).tolist()
    return out


def sentence_perplexities(model, tok, sentences: list[str], batch_size: int = 32) -> list[float]:
    return [math.exp(x) for x in sentence_nlls(model, tok, sentences, batch_size)]


def mean_perplexity(model, tok, sentences: list[str], batch_size: int = 32) -> float:
    """Mean over sentences of each sentence's perplexity (``exp`` of its mean token NLL)."""
    ppl = sentence_perplexities(model, tok, sentences, batch_size)
    return sum(ppl) / len(ppl)
