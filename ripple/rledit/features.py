"""What RLEdit reads from the current model: keys and output gradients at the answer tokens, and
the losses its training sums (answer NLL, KL on unrelated prompts)."""

from __future__ import annotations

import torch

from ripple.devices import input_device
from ripple.hooks import MlpGradProbe
from ripple.modes import held
from ripple.scoring import pad_ids
from ripple.tokens import answer_ids, text_ids


def _pairs_batch(tok, pairs: list[tuple[str, str]], device):
    """Right-padded ``prompt + answer`` ids, and per row the positions that predict each answer
    token with those tokens: ``[(row, position, token)]``."""
    seqs, where = [], []
    for row, (prompt, answer) in enumerate(pairs):
        p, a = text_ids(tok, prompt), answer_ids(tok, answer)
        seqs.append(p + a)
        where += [(row, len(p) - 1 + j, t) for j, t in enumerate(a)]
    ids, mask = pad_ids(seqs, tok, device)
    rows, pos, tgt = (torch.tensor(c, device=device) for c in zip(*where))
    return ids, mask, rows, pos, tgt


def _nll(model, batch, reduction: str = "mean") -> torch.Tensor:
    ids, mask, rows, pos, tgt = batch
    logits = model(input_ids=ids, attention_mask=mask).logits
    nll = -torch.log_softmax(logits[rows, pos].float(), -1).gather(1, tgt[:, None])
    return nll.sum() if reduction == "sum" else nll.mean()


def answer_nll(model, tok, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """Mean negative log-likelihood of each answer token after its prompt (differentiable)."""
    return _nll(model, _pairs_batch(tok, pairs, input_device(model)))


def keys_and_grads(model, tok, spec, layers, pairs: list[tuple[str, str]]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: the inputs ``K`` ``[tokens, in]`` of its MLP output projection and the gradient
    ``D`` ``[tokens, out]`` of the summed answer NLL at that projection's output, at every position
    that predicts an answer token (the model as it is now; its weights get no gradient).

    Summed, not averaged: a token's gradient is then its own NLL's, whatever else is in the
    batch. With the mean, an edit made alone read a ``D`` as many times larger as the batches the
    hypernetwork was trained on had edits (20 for the organism's), and one-at-a-time edits wrecked
    the model (issue 43: 6% of untouched facts kept after 60 edits)."""
    batch = _pairs_batch(tok, pairs, input_device(model))
    rows, pos = batch[2], batch[3]
    with held(model, trainable=()), MlpGradProbe(model, spec, layers) as gp:
        grads = torch.autograd.grad(_nll(model, batch, "sum"), gp.zeros())
    return {layer: (gp.key(layer)[rows, pos].detach().float(), g[rows, pos].detach().float())
            for layer, g in zip(gp.layers, grads)}


def last_logprobs(model, tok, prompts: list[str]) -> torch.Tensor:
    """Log-probabilities ``[prompts, vocab]`` of the next token after each prompt."""
    device = input_device(model)
    enc = [text_ids(tok, p) for p in prompts]
    ids, mask = pad_ids(enc, tok, device)
    logits = model(input_ids=ids, attention_mask=mask).logits
    last = torch.tensor([len(e) - 1 for e in enc], device=device)
    return torch.log_softmax(logits[torch.arange(len(enc), device=device), last].float(), -1)
