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

from ripple.arch import act_name, get_spec
from ripple.errors import RippleError
from ripple.probes.record import record
from ripple.probes.sets import ProbeItem
from ripple.scoring import answer_logprobs, next_token_logits

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
    """Measure every item on ``model`` as it is now (``layers`` None: every block)."""
    items = list(items)
    spec = get_spec(model) if spec is None else spec
    layers = tuple(range(spec.depth)) if layers is None else tuple(layers)
    if not layers:
        raise RippleError("no layers to probe; pass at least one layer, e.g. layers=[0]")
    cache = record(model, tok, spec, items, sites=("out",), layers=layers, positions=POSITIONS,
                   batch_size=batch_size)
    prompts = [item.rendered for item in items]
    first = next_token_logits(model, tok, prompts, batch_size).argmax(-1).tolist()
    scored = answer_logprobs(model, tok, [(p, item.answer) for p, item in zip(prompts, items)], batch_size)
    return ItemState(ids=tuple(item.id for item in items),
                     reps={layer: cache[act_name(layer, "out", POSITION)] for layer in layers},
                     greedy=tuple(tok.decode([t]).strip() for t in first),
                     logp=torch.tensor([lp for lp, _ in scored], dtype=torch.float64),
                     correct=tuple(ok for _, ok in scored),
                     last={layer: cache[act_name(layer, "out", "last")] for layer in layers})
