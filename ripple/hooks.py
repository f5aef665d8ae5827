"""Forward hooks (baukit-style, over native torch hooks): read or rewrite what a module sees and returns.

Not causal tracing: that is :mod:`ripple.causal_trace`, which is built on these hooks.

Read an output (tuples are unwrapped to element 0)::

    with Trace(model, "transformer.h.3.mlp") as t:
        model(ids)
    t.output                                    # [batch, seq, hidden]

Rewrite an output, stop the forward pass early, read many modules at once::

    zero = lambda out, name: torch.zeros_like(out)
    with Trace(model, "transformer.h.3.mlp", edit_output=zero):
        logits = model(ids).logits              # as if that MLP were switched off

    with TraceDict(model, ["transformer.h.0", "transformer.h.1"], stop=True) as td:
        model(ids)                              # returns nothing: stopped after the last one fired
    td["transformer.h.1"].output

    with SiteTrace(model, spec, ["blocks.1.mlp.key", "blocks.1.out"]) as st:
        model(ids)
    st["blocks.1.mlp.key"]                      # a tensor, input or output as the site demands

Hooks are always removed on exit, also when an exception leaves the ``with`` block; the internal
:class:`StopForward` raised by ``stop=True`` is swallowed there.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch

from ripple.arch import ArchSpec, get_module, get_spec, resolve_site

EditFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class StopForward(Exception):
    """Raised by a hook to end the forward pass early; the tracing context manager swallows it."""


def _first_input(args: tuple, kwargs: dict):
    """The first positional input, else ``hidden_states=``, else the first keyword argument."""
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    return next(iter(kwargs.values()), None)


class Trace:
    """Hook one module by dotted name; see the module docstring.

    ``edit_output(output, layer_name)`` gets element 0 of a tuple output and returns its
    replacement (returning ``None`` keeps the, possibly in-place edited, original); the rest of the
    tuple is kept. ``.input`` is the first positional input, ``.output`` the (edited) output;
    ``detach``/``clone`` apply to what is retained, never to what flows on through the model.
    """

    def __init__(self, model: torch.nn.Module, layer: str, retain_input: bool = False,
                 retain_output: bool = True, edit_output: EditFn | None = None, stop: bool = False,
                 detach: bool = True, clone: bool = False):
        self.layer = layer
        self.module = get_module(model, layer)
        self.retain_input, self.retain_output = retain_input, retain_output
        self.edit_output, self.detach, self.clone = edit_output, detach, clone
        self.input = self.output = None
        self.fired = False
        self._should_stop: Callable[[], bool] = lambda: stop
        self._handles: list = []

    def _keep(self, value):
        if isinstance(value, torch.Tensor):
            value = value.clone() if self.clone else value
            value = value.detach() if self.detach else value
        return value

    def _pre_hook(self, module, args, kwargs):
        self.input = self._keep(_first_input(args, kwargs))

    def _hook(self, module, args, output):
        is_tuple = isinstance(output, tuple)
        main = output[0] if is_tuple else output
        if self.edit_output is not None:
            edited = self.edit_output(main, self.layer)
            main = main if edited is None else edited
            output = (main, *output[1:]) if is_tuple else main
        if self.retain_output:
            self.output = self._keep(main)
        self.fired = True
        if self._should_stop():
            raise StopForward(self.layer)
        return output

    def open(self) -> None:
        """Register the hooks (``__enter__`` does this)."""
        self.fired = False
        if self.retain_input:
            self._handles.append(self.module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        self._handles.append(self.module.register_forward_hook(self._hook))

    def close(self) -> None:
        """Remove the hooks (``__exit__`` does this)."""
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> "Trace":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return exc_type is not None and issubclass(exc_type, StopForward)


class TraceDict(dict):
    """Several :class:`Trace` objects keyed by module name, sharing the options.

    With ``stop=True`` the forward pass stops once every listed module has produced its output.
    All names are checked before any hook is registered.
    """

    def __init__(self, model: torch.nn.Module, layers: Iterable[str], retain_input: bool = False,
                 retain_output: bool = True, edit_output: EditFn | None = None, stop: bool = False,
                 detach: bool = True, clone: bool = False):
        super().__init__()
        for name in dict.fromkeys(layers):
            trace = Trace(model, name, retain_input, retain_output, edit_output, False, detach, clone)
            trace._should_stop = lambda: stop and all(t.fired for t in self.values())
            self[name] = trace

    def __enter__(self) -> "TraceDict":
        try:
            for trace in self.values():
                trace.open()
        except BaseException:
            self._close()
            raise
        return self

    def _close(self) -> None:
        for trace in self.values():
            trace.close()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._close()
        return exc_type is not None and issubclass(exc_type, StopForward)


class SiteTrace(dict):
    """Trace canonical sites (see :mod:`ripple.arch`); after the block ``self[site]`` is a tensor.

    ``spec`` may be ``None`` (looked up from the model). ``stop=True`` stops after the last site.
    """

    def __init__(self, model: torch.nn.Module, spec: ArchSpec | None, sites: Iterable[str],
                 stop: bool = False, detach: bool = True, clone: bool = False):
        super().__init__()
        spec = get_spec(model) if spec is None else spec
        self._where = {site: resolve_site(spec, site) for site in sites}
        wants_input = any(kind == "input" for _, kind in self._where.values())
        paths = [path for path, _ in self._where.values()]
        self._traces = TraceDict(model, paths, retain_input=wants_input, stop=stop,
                                 detach=detach, clone=clone)

    def __enter__(self) -> "SiteTrace":
        self._traces.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        swallow = self._traces.__exit__(exc_type, exc, tb)
        for site, (path, kind) in self._where.items():
            trace = self._traces[path]
            self[site] = trace.input if kind == "input" else trace.output
        return swallow


class MlpGradProbe(TraceDict):
    """Read the MLP output projections of ``layers``: their inputs (the keys) after the pass, and,
    through a zero tensor added to each output, the gradient of any loss at that output.

    ::

        with held(model, trainable=()), MlpGradProbe(model, spec, [5, 6]) as gp:
            loss = model(ids).logits[0, -1, answer]
            grads = torch.autograd.grad(loss, gp.zeros())   # [batch, seq, out] per layer
        gp.key(5)                                           # [batch, seq, in]

    The zeros change nothing in the forward pass; they only give autograd a leaf at each output.
    """

    def __init__(self, model: torch.nn.Module, spec: ArchSpec, layers: Iterable[int]):
        self.layers = tuple(dict.fromkeys(layers))
        self._layer_of = {spec.block(layer, spec.mlp_out): layer for layer in self.layers}
        self._zeros: dict[int, torch.Tensor] = {}
        super().__init__(model, self._layer_of, retain_input=True, retain_output=False, edit_output=self._add_zero)

    def _add_zero(self, out: torch.Tensor, name: str) -> torch.Tensor:
        z = torch.zeros_like(out, requires_grad=True)
        self._zeros[self._layer_of[name]] = z
        return out + z

    def zeros(self) -> list[torch.Tensor]:
        """The zero leaves of the last pass, in ``layers`` order (``torch.autograd.grad``'s inputs)."""
        missing = [layer for layer in self.layers if layer not in self._zeros]
        if missing:
            raise RuntimeError(f"the MLP output of layer {missing[0]} did not run; run the model inside the block")
        return [self._zeros[layer] for layer in self.layers]

    def key(self, layer: int) -> torch.Tensor:
        """The input of layer ``layer``'s MLP output projection in the last pass."""
        return next(self[name].input for name, at in self._layer_of.items() if at == layer)


@contextlib.contextmanager
def start_at_block(model, spec, layer: int, feed):
    """Run the model's forward from block ``layer``: the blocks before it pass their input through
    untouched and block ``layer`` gets ``feed()`` (a cached residual stream, ``[batch, seq, hidden]``)
    instead of its input. The ids given to the model then only set the batch's shape, positions and
    mask; what the blocks before ``layer`` would compute is skipped (GIE's incremental
    re-evaluation, the batched causal trace)."""
    blocks = [get_module(model, spec.block(i)) for i in range(layer + 1)]

    def inject(module, args, kwargs):
        x = feed()
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": x}

    def passthrough(*args, **kwargs):
        return args[0] if args else kwargs["hidden_states"]

    handle = blocks[layer].register_forward_pre_hook(inject, with_kwargs=True)
    try:
        for block in blocks[:layer]:
            block.forward = passthrough
        yield
    finally:
        handle.remove()
        for block in blocks[:layer]:
            block.__dict__.pop("forward", None)
