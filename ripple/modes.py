"""One context manager for running a model without side effects: :func:`held`.

Inside: eval mode; optionally ``requires_grad`` only on some parameters, no autograd, or fresh
RNG use. On the way out (however the block ends): every module's training flag, every
parameter's ``requires_grad`` and the global RNG states are as they were.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
>>> with held(net, trainable=[net[0].bias]):
...     net.training, net[0].weight.requires_grad, net[0].bias.requires_grad
(False, False, True)
>>> net.training, net[0].weight.requires_grad
(True, True)
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator

import torch


@contextlib.contextmanager
def held(model: torch.nn.Module, trainable: Iterable[torch.nn.Parameter] | None = None, no_grad: bool = False,
         rng: bool = False) -> Iterator[None]:
    """Eval mode inside; ``trainable``: only these parameters require grad; ``no_grad``: inside
    :func:`torch.no_grad`; ``rng``: the Python, numpy and torch RNG states are restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    flags = None
    if trainable is not None:
        keep = {id(p) for p in trainable}
        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in flags:
            p.requires_grad_(id(p) in keep)
    states = None
    if rng:
        import numpy as np  # lazy: start-up

        states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                  torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    model.eval()
    try:
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            yield
    finally:
        for m, training in modes:
            m.training = training
        if flags is not None:
            for p, flag in flags:
                p.requires_grad_(flag)
        if states is not None:
            import numpy as np  # lazy: start-up

            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            if states[3] is not None:
                torch.cuda.set_rng_state_all(states[3])
