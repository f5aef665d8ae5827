"""What editors share across calls on one model: :class:`EditContext`.

::

    ctx = EditContext(model, tok, spec, corpus=world_text)
    C = ctx.C(layer, hp)                    # key second moment, computed once (and cached on disk)
    ctx.editor_state("alphaedit")           # an editor's running state between sequential edits
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ripple.editing.compute import context_templates
from ripple.editing.stats import second_moment


def copy_state(state: dict) -> dict:
    """A snapshot of editors' running states (``EditContext.state``; editors replace values, never
    change them in place, so copying each editor's dict is enough)."""
    return {name: dict(values) for name, values in state.items()}


@dataclass
class EditContext:
    """The model, the statistics corpus, cached statistics and prefixes, and each editor's running
    state (``state[name]``: e.g. AlphaEdit's sums of earlier edits' keys). The sandbox
    (:func:`ripple.editing.session.edited`) rolls ``state`` back with the weights."""

    model: torch.nn.Module
    tok: object
    spec: object
    corpus: list[str]
    use_disk_cache: bool = True
    value_cache: object = None  # a ripple.editing.value_cache.ValueCache: reuse target values (opt-in)
    state: dict = field(default_factory=dict)
    loaded: dict = field(default_factory=dict)  # what editors load once (RLEdit's hypernetwork); never rolled back
    _C: dict = field(default_factory=dict)
    _derived: dict = field(default_factory=dict)
    _contexts: dict = field(default_factory=dict)

    def C(self, layer: int, hp) -> torch.Tensor:
        """Second moment at ``layer``, ridge-regularized (``C_reg`` relative to its mean eigenvalue)."""
        key = (layer, hp.stats_samples)
        if key not in self._C:
            self._C[key] = second_moment(self.model, self.tok, self.spec, layer, self.corpus, hp.stats_samples,
                                         use_cache=self.use_disk_cache)
        C = self._C[key]
        return C + hp.C_reg * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype)

    def derived(self, key: tuple, make):
        """``make()``, computed once per ``key``: for what editors derive from the unedited
        model's statistics alone (AlphaEdit's null-space projectors), which ``C`` keeps fixed."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    def contexts(self, hp) -> list[str]:
        key = (hp.context_prefixes, hp.prefix_tokens, hp.seed)
        if key not in self._contexts:
            self._contexts[key] = context_templates(self.model, self.tok, hp.context_prefixes, hp.prefix_tokens,
                                                    hp.seed)
        return self._contexts[key]

    def read_unedited(self, hp, key_stats: bool) -> None:
        """Compute (or load) what an editor reads from the unedited model before its first edit:
        the context prefixes and, with ``key_stats``, the key statistics at ``hp``'s layers (so that
        a run resumed on edited weights, or a worker, does not compute them from another model)."""
        self.contexts(hp)
        if key_stats:
            self.read_key_stats(hp)

    def read_key_stats(self, hp) -> None:
        """The key statistics at ``hp``'s layers, computed (or loaded) now."""
        for layer in hp.layers_for(self.n_layers()):
            self.C(layer, hp)

    def copy_state(self) -> dict:
        return copy_state(self.state)

    def n_layers(self) -> int:
        return self.spec.n_layers(self.model)

    def editor_state(self, name: str) -> dict:
        """The running state of editor ``name`` (a dict it owns; empty at first). An editor replaces
        values in it rather than changing them in place, so a copy of the dict is a snapshot."""
        return self.state.setdefault(name, {})
