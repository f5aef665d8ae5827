"""Batch and sequential editing, atomically: a failed or interrupted run leaves the model as it was.

* **batch**: one solve for all requests (MEMIT, EMMET, AlphaEdit; ROME and FT take one request
  per solve, so a batch of one);
* **sequential**: one request (or chunk) after another, each computed on the model as edited so
  far and applied before the next; AlphaEdit adds each edit's keys to its running statistics.

>>> # doctest: +SKIP
>>> ctx = EditContext(model, tok, spec, corpus)
>>> result = run_edits(ctx, "memit", requests, hp, mode="sequential", chunk=10,
...                    on_step=lambda i, model: print(i))
>>> result.snapshot.restore()                 # back to the unedited model, bit-exact
"""

from __future__ import annotations

from dataclasses import dataclass

from ripple.editing.delta import EditDelta, WeightSnapshot
from ripple.editing.methods import EditContext, get_editor, remember_keys
from ripple.errors import RippleError


@dataclass
class EditRun:
    deltas: list[EditDelta]
    snapshot: WeightSnapshot  # the touched weights as they were before the run
    prev_key_outer: dict  # AlphaEdit's running key statistics as they were before the run

    def restore(self, ctx: EditContext) -> None:
        """Undo the whole run: the weights bit-exactly, and AlphaEdit's remembered keys."""
        self.snapshot.restore(ctx.model)
        ctx.prev_key_outer.clear()
        ctx.prev_key_outer.update(self.prev_key_outer)

    @property
    def total(self) -> EditDelta:
        out = self.deltas[0]
        for d in self.deltas[1:]:
            out = out.combined(d)
        return out


def run_edits(ctx: EditContext, method: str, requests, hp, mode: str = "batch", chunk: int = 1,
              force: bool = False, on_step=None) -> EditRun:
    """Compute and apply the edits; the model stays edited on return (restore with ``snapshot``)."""
    editor = get_editor(method)
    if mode not in ("batch", "sequential"):
        raise RippleError(f"unknown editing mode {mode!r}; use batch or sequential")
    if not requests:
        raise RippleError("no edit requests given; pass a file with at least one request")
    if mode == "batch":
        if method in ("rome", "ft") and len(requests) > 1:
            raise RippleError(f"{method} edits one fact per solve; pass --sequential for {len(requests)} "
                              "requests, or use memit, emmet or alphaedit for a batch")
        groups = [list(requests)]
    else:
        groups = [list(requests[i : i + chunk]) for i in range(0, len(requests), chunk)]
    names = [ctx.spec.block(layer, ctx.spec.mlp_out) + ".weight" for layer in hp.layers_for(ctx.n_layers())]
    snapshot = WeightSnapshot.take(ctx.model, names)
    prev_key_outer = dict(ctx.prev_key_outer)  # AlphaEdit's running sums, rolled back with the weights
    deltas: list[EditDelta] = []
    try:
        for i, group in enumerate(groups):
            delta = editor(ctx, group, hp)
            delta.info["norm_ratios"] = delta.check_norms(ctx.model, hp.max_update_ratio, force=force)
            delta.apply(ctx.model)
            if method == "alphaedit":
                remember_keys(ctx, delta)
            else:
                delta.info.pop("keys_by_layer", None)
            deltas.append(delta)
            if on_step is not None:
                on_step(i + 1, ctx.model)
    except BaseException:
        snapshot.restore(ctx.model)
        ctx.prev_key_outer.clear()
        ctx.prev_key_outer.update(prev_key_outer)
        raise
    return EditRun(deltas, snapshot, prev_key_outer)
