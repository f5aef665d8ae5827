"""What GIE measures of each probe item: its hidden state at the subject's last token and at the
prompt's last token per probed layer, the model's greedy answer (first token) and log P(item's answer).

::

    state = measure_items(model, tok, spec, items, layers=[0, 1])
    state.reps[1].shape, state.last[1].shape, state.greedy[0], state.logp[0]
    # -> (torch.Size([8, 32]), torch.Size([8, 32]), 'Paris', tensor(-0.2, dtype=torch.float64))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ripple.arch import act_name, get_spec, resolve_site
from ripple.errors import RippleError
from ripple.hooks import SiteTrace
from ripple.modes import held
from ripple.probes.record import encode_items, gather
from ripple.probes.sets import ProbeItem
from ripple.scoring import answer_window, length_batches, pad_ids, score_answers, window_logits
from ripple.tokens import answer_ids

POSITION = "subject_last"
POSITIONS = ("subject_last", "last")  # ItemState.reps and ItemState.last


@dataclass(frozen=True)
class ItemState:
    """Per item (rows in item order): ``reps[layer]`` ``[n, hidden]`` float32 at the subject's last
    token, ``greedy`` first-token answer, ``logp`` log P(answer) (float64 ``[n]``), ``correct`` (the
    answer is the greedy one) and ``last[layer]`` at the prompt's last token (empty: not recorded)."""

    ids: tuple[str, ...]
    reps: dict[int, torch.Tensor]
    greedy: tuple[str, ...]
    logp: torch.Tensor
    correct: tuple[bool, ...]
    last: dict[int, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.ids)
        reps = [*self.reps.values(), *self.last.values()]
        sizes = {len(self.greedy), len(self.logp), len(self.correct)} | {t.shape[0] for t in reps}
        if sizes != {n} or any(t.dim() != 2 for t in reps):
            raise RippleError(f"ItemState fields must all have one row per item ({n} ids); got sizes "
                              f"{sorted(sizes)}; build it with measure_items")
        if self.last and set(self.last) != set(self.reps):
            raise RippleError("ItemState.last must cover the same layers as ItemState.reps; build it with "
                              "measure_items")

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.reps))

    @property
    def positions(self) -> tuple[str, ...]:
        return POSITIONS if self.last else (POSITION,)

    def rep(self, layer: int, position: str = POSITION) -> torch.Tensor:
        if position not in self.positions:
            raise RippleError(f"position {position!r} was not recorded; recorded: {', '.join(self.positions)}; "
                              "measure with measure_items to get both")
        if layer not in self.reps:
            raise RippleError(f"layer {layer} was not probed; probed layers: "
                              f"{', '.join(map(str, self.layers))}")
        return (self.last if position == "last" else self.reps)[layer]


def measure_items(model, tok, spec, items: Sequence[ProbeItem], layers: Sequence[int] | None = None,
                  batch_size: int = 64) -> ItemState:
    """Measure every item on ``model`` as it is now (``layers`` None: every block), with one
    forward pass per batch over prompt + answer: the hidden states at the subject's last token and
    at the prompt's last token (causal attention: the answer after them does not change them), the
    greedy first token after the prompt, and log P(answer) with whether greedy decoding gives it."""
    items = list(items)
    spec = get_spec(model) if spec is None else spec
    layers = tuple(range(spec.depth)) if layers is None else tuple(layers)
    if not layers:
        raise RippleError("no layers to probe; pass at least one layer, e.g. layers=[0]")
    if not items:
        raise RippleError("no probe items to measure; pass a non-empty probe set")
    sites = [act_name(layer, "out") for layer in layers]
    for site in sites:
        resolve_site(spec, site)  # one-line error for a layer out of range
    device = next(model.parameters()).device
    reps = {layer: [] for layer in layers}
    last = {layer: [] for layer in layers}
    greedy, logp, correct = [], [], []
    prompts_all, where_all = encode_items(tok, items)
    answers_all = [answer_ids(tok, item.answer) for item in items]
    empty = [item.answer for item, a in zip(items, answers_all) if not a]
    if empty:
        raise RippleError(f"probe answer {empty[0]!r} tokenizes to nothing; give every item an answer")
    order: list[int] = []
    with held(model, no_grad=True):
        for batch in length_batches([len(p) + len(a) for p, a in zip(prompts_all, answers_all)], batch_size):
            order += batch
            prompts, answers = [prompts_all[j] for j in batch], [answers_all[j] for j in batch]
            ids, mask = pad_ids([p + a for p, a in zip(prompts, answers)], tok, device)
            lo, hi = answer_window(prompts, answers)
            with SiteTrace(model, spec, sites) as st:
                logits = window_logits(model, ids, mask, lo, hi, use_cache=False)
            rows = torch.arange(len(batch), device=device)
            at_subject = torch.tensor([where_all["subject_last"][j] for j in batch], device=device)
            at_last = torch.tensor([where_all["last"][j] for j in batch], device=device)
            for layer, site in zip(layers, sites):
                reps[layer].append(gather(st[site], at_subject))
                last[layer].append(gather(st[site], at_last))
            lsm = torch.log_softmax(logits.float(), -1)
            greedy += lsm[rows, at_last - lo].argmax(-1).tolist()
            for lp, ok in score_answers(lsm, prompts, answers, offset=lo):
                logp.append(lp)
                correct.append(ok)
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))  # input order again
    greedy, logp, correct = [greedy[i] for i in back], [logp[i] for i in back], [correct[i] for i in back]
    reps = {layer: torch.cat(reps[layer])[back] for layer in layers}
    last = {layer: torch.cat(last[layer])[back] for layer in layers}
    return ItemState(ids=tuple(item.id for item in items),
                     reps=reps,
                     greedy=tuple(tok.decode([t]).strip() for t in greedy),
                     logp=torch.tensor(logp, dtype=torch.float64), correct=tuple(correct),
                     last=last)
