"""Probe sets and their recorded activations: the nodes of a GIE ripple graph.

::

    from ripple.probes import load_probe_set, record
    items = load_probe_set("probes/organism.jsonl")
    before = record(model, tok, spec, items, sites=("out",))      # blocks.{i}.out@subject_last, @last
    drift = before.diff(record(edited_model, tok, spec, items))   # per site: per-item distances

Names load lazily, so reading a probe set does not import torch.
"""

import importlib

_HOME = {"ActivationCache": "cache", "record": "record", "plain_hidden_states": "record",
         "ProbeItem": "sets", "ProbeLink": "sets", "load_probe_set": "sets", "save_probe_set": "sets",
         "world_probe_set": "sets"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'ripple.probes' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ripple.probes.{_HOME[name]}"), name)
