"""Batch and sequential editing, atomically, and the one sandbox every measurement uses.

* **batch**: one solve for all requests (an editor with ``one_request_per_solve``, such as ROME
  or FT, takes a batch of one);
* **sequential**: one request (or chunk) after another, each computed on the model as edited so
  far and applied before the next; each editor's ``after_apply`` hook runs after each step
  (AlphaEdit adds the edit's keys to its running statistics).

:func:`edited` is the sandbox: apply, yield, and restore the weights and every editor's running
state bit-exactly however the block ends (a return, an exception, a KeyboardInterrupt)::

    with edited(ctx, "memit", requests, hp, mode="sequential", chunk=10) as run:
        measure(model)                        # the edited model
    run.total.norm_ratios(model)              # the model is exactly as before here

:func:`run_edits` applies and leaves the model edited (undo with ``run.restore(ctx)``); a failed
or interrupted run leaves the model as it was.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ripple.arch import mlp_out_param
from ripple.editing.context import EditContext, copy_state
from ripple.editing.delta import EditDelta, WeightSnapshot
from ripple.editing.editor import get_editor
from ripple.errors import RippleError

MODES = ("batch", "sequential")


@dataclass
class EditRun:
    deltas: list[EditDelta]
    snapshot: WeightSnapshot  # the touched weights as they were before the run
    state: dict  # the editors' running state (EditContext.state) as it was before the run

    def restore(self, ctx: EditContext) -> None:
        """Undo the whole run: the weights bit-exactly, and the editors' running state."""
        self.snapshot.restore(ctx.model)
        ctx.state.clear()
        ctx.state.update(copy_state(self.state))

    @property
    def total(self) -> EditDelta:
        out = self.deltas[0]
        for d in self.deltas[1:]:
            out = out.combined(d)
        return out


def edit_groups(method: str, requests, mode: str = "batch", chunk: int = 1) -> list[list]:
    """The requests of each solve: one group for a batch, chunks of ``chunk`` in sequence."""
    editor = get_editor(method)
    if mode not in MODES:
        raise RippleError(f"unknown editing mode {mode!r}; use batch or sequential")
    if not requests:
        raise RippleError("no edit requests given; pass a file with at least one request")
    if mode == "batch":
        if editor.one_request_per_solve and len(requests) > 1:
            raise RippleError(f"{method} edits one fact per solve; pass --sequential for {len(requests)} "
                              "requests, or use a batch editor for a batch")
        return [list(requests)]
    return [list(requests[i : i + chunk]) for i in range(0, len(requests), chunk)]


def auto_mode(method: str, n_requests: int) -> str:
    """``single`` for one request; else ``sequential`` for an editor that solves one request at a
    time and ``batch`` for the others."""
    if n_requests == 1:
        return "single"
    return "sequential" if get_editor(method).one_request_per_solve else "batch"


def run_edits(ctx: EditContext, method: str, requests, hp, mode: str = "batch", chunk: int = 1,
              force: bool = False, on_step=None) -> EditRun:
    """Compute and apply the edits; the model stays edited on return (undo with ``restore``).

    ``on_step(i, model, delta)`` runs after the ``i``-th step (from 1) is applied."""
    editor = get_editor(method)
    groups = edit_groups(method, requests, "batch" if mode == "single" else mode, chunk)
    names = [mlp_out_param(ctx.spec, layer) for layer in hp.layers_for(ctx.n_layers())]
    run = EditRun([], WeightSnapshot.take(ctx.model, names), ctx.copy_state())
    try:
        for i, group in enumerate(groups):
            delta = editor.compute(ctx, group, hp)
            delta.info["norm_ratios"] = delta.check_norms(ctx.model, hp.max_update_ratio, force=force)
            delta.apply(ctx.model)
            if editor.after_apply is not None:
                editor.after_apply(ctx, group, hp, delta)
            run.deltas.append(delta)
            if on_step is not None:
                on_step(i + 1, ctx.model, delta)
    except BaseException:
        run.restore(ctx)
        raise
    return run


@contextlib.contextmanager
def applied_run(ctx: EditContext, delta: EditDelta):
    """:func:`edited` for a delta computed already (a mitigated edit): apply it, yield its
    :class:`EditRun`, restore bit-exactly however the block ends."""
    snapshot = delta.apply(ctx.model)
    run = EditRun([delta], snapshot, ctx.copy_state())
    try:
        yield run
    finally:
        run.restore(ctx)


@contextlib.contextmanager
def edited(ctx: EditContext, method: str, requests, hp, mode: str = "batch", chunk: int = 1,
           force: bool = False, on_step=None):
    """The sandbox: apply the edits, yield the :class:`EditRun`, then restore the weights and the
    editors' state bit-exactly, whatever ends the block."""
    run = run_edits(ctx, method, requests, hp, mode=mode, chunk=chunk, force=force, on_step=on_step)
    try:
        yield run
    finally:
        run.restore(ctx)
