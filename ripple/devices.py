"""Where a model's tensors live, for models on one device and models accelerate has spread out.

A model loaded with ``device_map`` (``ripple ... --device-map auto``) has its blocks on several
devices, or offloaded to the CPU or to disk: an offloaded module's parameters sit on the ``meta``
device and accelerate's hook (``module._hf_hook``) fills them in from its weights map for each
forward pass. ripple therefore never asks ``next(model.parameters()).device`` where inputs go, and
never reads or writes a weight through the parameter object alone:

* :func:`input_device` is where token ids go (the input embedding's execution device);
* :func:`module_device` is where a module computes (its hook's execution device, else its weights');
* :func:`param_value` reads a parameter's value wherever it is kept (an offloaded one: a CPU
  tensor from accelerate's weights map);
* :func:`assign` writes a value there (on the weight's own device; an offloaded weight's new value
  goes into the weights map, in CPU memory, which the next forward pass reads), and :func:`add_into`
  adds a delta the same way.

>>> import torch
>>> lin = torch.nn.Linear(2, 2)
>>> module_device(lin), is_dispatched(lin)
(device(type='cpu'), False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ripple.errors import RippleError

if TYPE_CHECKING:  # torch stays out of the CLI's start-up
    import torch


#: The placement strategies accelerate computes a device map for (``--device-map``).
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def check_device(value: str) -> str:
    """``value`` when torch can place a model there now, else a one-line error with the fix, before
    anything is loaded: ``cuda`` on a machine without CUDA, an index past the GPUs there are.

    >>> check_device("cpu")
    'cpu'
    """
    import torch  # lazy: start-up


    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise RippleError(f"--device {value!r} is an unknown device; pass cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RippleError(f"--device {value}: this machine has no CUDA GPU (or torch was built without CUDA); "
                              "pass --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RippleError(f"--device {value}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                              f"numbered from 0; pass --device cuda:0")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise RippleError(f"--device {value}: MPS is not available here; pass --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise RippleError(f"--device {value}: ripple places models on cpu, cuda or mps; pass one of those")
    return value


def _hooks(module):
    """The accelerate hooks on ``module`` (a SequentialHook unpacked), or none."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])


def _device(value) -> torch.device:
    import torch  # lazy: start-up

    return torch.device(value) if not isinstance(value, int) else torch.device("cuda", value)


def is_dispatched(model) -> bool:
    """True when accelerate placed ``model`` with a device map (hooks move the activations)."""
    return bool(getattr(model, "hf_device_map", None)) and any(
        _hooks(m) for m in model.modules())


def module_device(module) -> torch.device:
    """The device ``module`` computes on: its accelerate hook's execution device, else the device of
    its first parameter that is not on ``meta``, else the CPU."""
    for hook in _hooks(module):
        if getattr(hook, "execution_device", None) is not None:
            return _device(hook.execution_device)
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    for sub in module.modules():  # an offloaded module: its leaves carry the hooks
        for hook in _hooks(sub):
            if getattr(hook, "execution_device", None) is not None:
                return _device(hook.execution_device)
    return _device("cpu")


def input_device(model) -> torch.device:
    """Where the token ids of a forward pass go: the input embedding's device."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if get is not None else None
    return module_device(emb if emb is not None else model)


def _offloaded(model, name: str):
    """``(weights_map, key)`` when parameter ``name`` is kept in accelerate's offload map, else None."""
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    for hook in _hooks(module):
        if getattr(hook, "offload", False) and getattr(hook, "weights_map", None) is not None:
            return hook.weights_map, leaf
    return None


def param_value(model, name: str) -> torch.Tensor:
    """The value of parameter ``name`` (detached; an offloaded one read from its weights map)."""
    p = model.get_parameter(name)
    if p.device.type == "meta":
        found = _offloaded(model, name)
        if found is None:
            raise RuntimeError(f"parameter {name!r} is on the meta device and no accelerate hook holds its value")
        weights, key = found
        return weights[key].detach()
    return p.detach()


def _store(weights, key: str):
    """The mutable mapping and full key behind an accelerate weights map entry."""
    from accelerate.utils.offload import OffloadedWeightsLoader, PrefixedDataset  # lazy: start-up

    while isinstance(weights, PrefixedDataset):
        key, weights = weights.prefix + key, weights.dataset
    if isinstance(weights, OffloadedWeightsLoader):
        return weights.state_dict, key  # read before the disk index: the edited value wins
    return weights, key


def assign(model, name: str, value: torch.Tensor) -> None:
    """Set parameter ``name`` to ``value`` (in its dtype, on its device; an offloaded one in its
    weights map, kept in CPU memory). Call under ``torch.no_grad``."""
    p = model.get_parameter(name)
    if p.device.type != "meta":
        p.data.copy_(value.to(device=p.device, dtype=p.dtype))
        return
    found = _offloaded(model, name)
    if found is None:
        raise RuntimeError(f"parameter {name!r} is on the meta device and no accelerate hook holds its value")
    store, full = _store(*found)  # kept on the CPU, in the parameter's dtype (a meta tensor keeps it)
    store[full] = value.detach().to(device="cpu", dtype=p.dtype, copy=True)


def add_into(model, name: str, delta: torch.Tensor) -> None:
    """``parameter += delta`` in the parameter's dtype, where its value is kept."""
    p = model.get_parameter(name)
    if p.device.type != "meta":
        p.add_(delta.to(device=p.device, dtype=p.dtype))
        return
    old = param_value(model, name)  # one read of the offloaded value
    assign(model, name, old + delta.to(device=old.device, dtype=old.dtype))
