"""What GIE measures of each probe item: its hidden state at the subject's last token and at the
prompt's last token per probed layer (an :class:`~ripple.probes.cache.ActivationCache`, the one
activation container), the model's greedy answer (first token) and log P(item's answer).

::

    state = measure_items(model, tok, spec, items, layers=[0, 1])
    state.reps[1].shape, state.last[1].shape, state.greedy[0], state.logp[0]
    # -> (torch.Size([8, 32]), torch.Size([8, 32]), 'Paris', tensor(-0.2, dtype=torch.float64))
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ripple.arch import act_name, get_spec, resolve_site
from ripple.devices import input_device
from ripple.errors import RippleError
from ripple.gie.keys import KeyRecorder
from ripple.hooks import SiteTrace, Trace, TraceDict, start_at_block
from ripple.modes import held
from ripple.probes.cache import ActivationCache
from ripple.probes.record import encode_items, gather
from ripple.probes.sets import ProbeItem
from ripple.scoring import answer_window, length_batches, pad_ids, score_answers, window_logits
from ripple.tokens import answer_ids

POSITION = "subject_last"
POSITIONS = ("subject_last", "last")  # ItemState.reps and ItemState.last


class ItemState:
    """Per item (rows in item order): its hidden states at each probed layer, held as an
    :class:`~ripple.probes.cache.ActivationCache` (``acts``: sites ``blocks.L.out@subject_last`` and,
    when recorded, ``blocks.L.out@last``; rows named by ``ids``; save, diff and concat it as any
    recorded cache), and its answers: ``greedy`` first-token answer, ``logp`` log P(answer) (float64
    ``[n]``), ``correct`` (the answer is the greedy one). ``reps[layer]`` and ``last[layer]`` are
    the ``[n, hidden]`` float32 views at the subject's last token and at the prompt's last token
    (the cache keeps its tensors as float32 on the CPU, as :func:`measure_items` gathers them)."""

    __slots__ = ("ids", "acts", "greedy", "logp", "correct", "_layers")

    def __init__(self, ids: Sequence[str], reps: dict[int, torch.Tensor], greedy: Sequence[str],
                 logp: torch.Tensor, correct: Sequence[bool], last: dict[int, torch.Tensor] | None = None):
        last = last or {}
        n = len(ids)
        tensors = [*reps.values(), *last.values()]
        sizes = {len(greedy), len(logp), len(correct)} | {t.shape[0] for t in tensors}
        if sizes != {n} or any(t.dim() != 2 for t in tensors):
            raise RippleError(f"ItemState fields must all have one row per item ({n} ids); got sizes "
                              f"{sorted(sizes)}; build it with measure_items")
        if last and set(last) != set(reps):
            raise RippleError("ItemState.last must cover the same layers as ItemState.reps; build it with "
                              "measure_items")
        sites = {_site(L, POSITION): t for L, t in reps.items()}
        sites.update({_site(L, "last"): t for L, t in last.items()})
        self.ids, self.acts = tuple(ids), ActivationCache(sites, ids)
        self.greedy, self.logp, self.correct = tuple(greedy), logp, tuple(correct)
        self._layers = tuple(reps)

    @property
    def reps(self) -> dict[int, torch.Tensor]:
        return {L: self.acts[_site(L, POSITION)] for L in self._layers}

    @property
    def last(self) -> dict[int, torch.Tensor]:
        if "last" not in self.positions:
            return {}
        return {L: self.acts[_site(L, "last")] for L in self._layers}

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self._layers))

    @property
    def positions(self) -> tuple[str, ...]:
        return POSITIONS if self._layers and _site(self._layers[0], "last") in self.acts else (POSITION,)

    def rep(self, layer: int, position: str = POSITION) -> torch.Tensor:
        if position not in self.positions:
            raise RippleError(f"position {position!r} was not recorded; recorded: {', '.join(self.positions)}; "
                              "measure with measure_items to get both")
        if layer not in self._layers:
            raise RippleError(f"layer {layer} was not probed; probed layers: "
                              f"{', '.join(map(str, self.layers))}")
        return self.acts[_site(layer, position)]

    def __repr__(self) -> str:
        return f"ItemState({len(self.ids)} items, layers {list(self.layers)}, positions {list(self.positions)})"


def _site(layer: int, position: str) -> str:
    return f"{act_name(layer, 'out')}@{position}"


def measure_items(model, tok, spec, items: Sequence[ProbeItem], layers: Sequence[int] | None = None,
                  batch_size: int = 64, resume: Resume | None = None) -> ItemState:
    """Measure every item on ``model`` as it is now (``layers`` None: every block), with one
    forward pass per batch over prompt + answer: the hidden states at the subject's last token and
    at the prompt's last token (causal attention: the answer after them does not change them), the
    greedy first token after the prompt, and log P(answer) with whether greedy decoding gives it.

    ``resume`` (from :func:`prepare_resume`, on the unedited model): run only the blocks from
    ``resume.layer`` on, from the residual stream cached there before the edit; exact when the
    model changed only in those blocks (what an edit of those layers does). Layers below it are
    copied from the state measured then. ``items`` may be any subset of the prepared ones."""
    return _measure(model, tok, spec, items, layers, batch_size, resume=resume)[0]


@dataclass
class Resume:
    """The residual stream entering block ``layer`` of every prepared item (``inputs[id]``:
    ``[tokens, hidden]``, prompt + answer, measured before the edit) and that measurement
    (``before``), for :func:`measure_items` to re-run only the blocks from ``layer`` on."""

    layer: int
    inputs: dict[str, torch.Tensor]
    before: ItemState
    keys: object = None  # a KeyCache recorded in the same pass (prepare_resume's key_layers)

    def check(self, items: Sequence[ProbeItem], layers: Sequence[int]) -> None:
        missing = [item.id for item in items if item.id not in self.inputs]
        if missing:
            raise RippleError(f"item {missing[0]!r} was not prepared for incremental measuring; prepare_resume "
                              "on a probe set that holds it")
        low = [layer for layer in layers if layer < self.layer and layer not in self.before.reps]
        if low:
            raise RippleError(f"layer {low[0]} is below the resume layer {self.layer} and was not measured before; "
                              "prepare_resume with the same layers")


def prepare_resume(model, tok, spec, items: Sequence[ProbeItem], layer: int, layers: Sequence[int] | None = None,
                   batch_size: int = 64, key_layers: Sequence[int] = ()) -> tuple[ItemState, Resume]:
    """Measure ``items`` (as :func:`measure_items`) and keep the residual stream entering block
    ``layer``: what :func:`measure_items` needs to re-measure them after an edit of blocks
    ``layer`` and later by running those blocks only (incremental re-evaluation). ``key_layers``:
    also record, in the same pass, the damage rankers' key cache at those layers
    (``resume.keys``, a :class:`~ripple.gie.keys.KeyCache` without gradients)."""
    spec = get_spec(model) if spec is None else spec
    if not 0 <= layer < spec.n_layers(model):
        raise RippleError(f"resume layer {layer} is out of range for a {spec.n_layers(model)}-block model; "
                          f"use 0..{spec.n_layers(model) - 1}")
    rec = None
    if key_layers:

        rec = KeyRecorder(model, spec, key_layers, list(items), tok)
    state, inputs = _measure(model, tok, spec, items, layers, batch_size, keep_input_of=layer, recorder=rec)
    return state, Resume(layer, inputs, state, rec.finish() if rec is not None else None)


def _measure(model, tok, spec, items: Sequence[ProbeItem], layers: Sequence[int] | None, batch_size: int,
             resume: Resume | None = None, keep_input_of: int | None = None, recorder=None) -> tuple[ItemState, dict]:
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
    prompts, where = encode_items(tok, items)
    answers = [answer_ids(tok, item.answer) for item in items]
    empty = [item.answer for item, a in zip(items, answers) if not a]
    if empty:
        raise RippleError(f"probe answer {empty[0]!r} tokenizes to nothing; give every item an answer")
    if resume is not None:
        resume.check(items, layers)
    run = _Pass(model, spec, items, layers, sites, prompts, answers, where, resume, keep_input_of, recorder)
    with held(model, no_grad=True):
        for batch in length_batches([len(p) + len(a) for p, a in zip(prompts, answers)], batch_size):
            run.batch(batch, tok)
    return run.state(tok), run.kept


@dataclass
class _Pass:
    """One measuring pass over ``items``: what every batch needs, and what the batches gathered."""

    model: object
    spec: object
    items: list
    layers: tuple
    sites: list
    prompts: list
    answers: list
    where: dict
    resume: Resume | None
    keep_input_of: int | None
    recorder: object
    order: list = field(default_factory=list)
    kept: dict = field(default_factory=dict)
    greedy: list = field(default_factory=list)
    logp: list = field(default_factory=list)
    correct: list = field(default_factory=list)
    reps: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)

    def batch(self, batch: list[int], tok) -> None:
        """Run the rows ``batch`` (indices into the items) and gather their states and answers."""
        model, spec, rec = self.model, self.spec, self.recorder
        device = input_device(model)
        self.order += batch
        prompts, answers = [self.prompts[j] for j in batch], [self.answers[j] for j in batch]
        ids, mask = pad_ids([p + a for p, a in zip(prompts, answers)], tok, device)
        lo, hi = answer_window(prompts, answers)
        with contextlib.ExitStack() as stack:
            if self.resume is not None:
                cached = _padded([self.resume.inputs[self.items[j].id] for j in batch], ids.shape[1], device)
                stack.enter_context(start_at_block(model, spec, self.resume.layer, lambda: cached))
            if self.keep_input_of is not None:
                entry = stack.enter_context(Trace(model, spec.block(self.keep_input_of), retain_input=True,
                                                  retain_output=False))
            if rec is not None:
                kd = stack.enter_context(TraceDict(model, rec.names, retain_input=True, retain_output=False))
            st = stack.enter_context(SiteTrace(model, spec, self.sites if rec is None else [*self.sites, rec.final]))
            logits = window_logits(model, ids, mask, lo, hi, use_cache=False)
        rows = torch.arange(len(batch), device=device)
        if rec is not None:
            at = torch.tensor([len(p) - 1 for p in prompts], device=device)
            rec.record(batch, {layer: kd[name].input for name, layer in rec.names.items()},
                       st[rec.final][rows, at], logits[rows, at - lo].float())
        if self.keep_input_of is not None:
            for row, j in enumerate(batch):
                self.kept[self.items[j].id] = entry.input[row, : len(prompts[row]) + len(answers[row])].clone()
        at_subject = torch.tensor([self.where["subject_last"][j] for j in batch], device=device)
        at_last = torch.tensor([self.where["last"][j] for j in batch], device=device)
        for layer, site in zip(self.layers, self.sites):
            self.reps.setdefault(layer, []).append(gather(st[site], at_subject))
            self.last.setdefault(layer, []).append(gather(st[site], at_last))
        lsm = torch.log_softmax(logits.float(), -1)
        self.greedy += lsm[rows, at_last - lo].argmax(-1).tolist()
        for lp, ok in score_answers(lsm, prompts, answers, offset=lo):
            self.logp.append(lp)
            self.correct.append(ok)

    def state(self, tok) -> ItemState:
        """The gathered rows in item order (below a resume layer: the states measured before)."""
        back = torch.empty(len(self.order), dtype=torch.long)
        back[torch.tensor(self.order, dtype=torch.long)] = torch.arange(len(self.order))  # input order again
        greedy = [self.greedy[i] for i in back]
        reps = {layer: torch.cat(self.reps[layer])[back] for layer in self.layers}
        last = {layer: torch.cat(self.last[layer])[back] for layer in self.layers}
        if self.resume is not None:  # blocks below the resume layer did not run: their states are the old ones
            where = {item_id: i for i, item_id in enumerate(self.resume.before.ids)}
            rows = [where[item.id] for item in self.items]
            for layer in self.layers:
                if layer < self.resume.layer:
                    reps[layer] = self.resume.before.reps[layer][rows].clone()
                    last[layer] = self.resume.before.last[layer][rows].clone()
        return ItemState(ids=tuple(item.id for item in self.items), reps=reps,
                         greedy=tuple(tok.decode([t]).strip() for t in greedy),
                         logp=torch.tensor([self.logp[i] for i in back], dtype=torch.float64),
                         correct=tuple(self.correct[i] for i in back), last=last)


def _padded(rows: list[torch.Tensor], width: int, device) -> torch.Tensor:
    """``[len(rows), width, hidden]``: each row's states followed by zeros (right padding: causal
    attention and the mask keep the padding from reaching the real positions)."""
    out = torch.zeros(len(rows), width, rows[0].shape[-1], dtype=rows[0].dtype, device=device)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out
