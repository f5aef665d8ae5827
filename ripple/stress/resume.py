"""A stress run that stops (a crash, a kill, the end of a session) goes on from its last checkpoint.

At every checkpoint ``ripple stress`` saves each method's state in ``OUT/.ripple/resume/``:

* ``<method>.json``: the settings it was made with (``key``), the checkpoint rows so far, how
  many edits were applied, the steps over the norm guard, the seconds spent, and which version of
  ripple's code ran each stretch;
* ``<method>-<edits>.safetensors``: the touched weights as edited so far, a hash of the
  unedited ones (a different model at the same path is refused), and the editors' running state
  (AlphaEdit's key sums, RLEdit's moments).

``ripple stress --resume`` with the same settings loads them and applies only the remaining
edits; the curves equal those of a run that never stopped, bit for bit (tests/test_stress_resume.py).
Another method (``--compare``) already finished is not run again. The folder is removed once the
run's outputs are written.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ripple.errors import RippleError
from ripple.io import atomic_write_json

FOLDER = Path(".ripple") / "resume"


def weights_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 (16 hex digits) over the names and bytes of ``tensors``."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        # the raw bytes (numpy has no bfloat16)
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + b"\0" + t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _encode(obj, prefix: str, tensors: dict):
    """``obj`` (an editor's running state) as JSON, its tensors put into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().clone().contiguous()
        return {"tensor": prefix}
    if isinstance(obj, dict):
        items = []
        for i, (k, v) in enumerate(obj.items()):
            if not isinstance(k, (str, int)):
                raise RippleError(f"cannot save an editor state keyed by {type(k).__name__}; rerun without --resume")
            items.append(["int" if isinstance(k, int) else "str", k, _encode(v, f"{prefix}.{i}", tensors)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        return {"list": [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    cls = type(obj)
    if cls.__module__.startswith("ripple.") and hasattr(obj, "tensors") and hasattr(cls, "from_tensors"):
        tensors.update({k: v.detach().cpu().clone().contiguous() for k, v in obj.tensors(prefix + ".").items()})
        return {"object": f"{cls.__module__}:{cls.__qualname__}", "prefix": prefix + "."}
    raise RippleError(f"cannot save an editor state of type {cls.__name__} for --resume; rerun without --resume")


def _decode(node, tensors: dict):
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "dict" in node:
        return {(int(k) if kind == "int" else k): _decode(v, tensors) for kind, k, v in node["dict"]}
    if "list" in node:
        items = [_decode(v, tensors) for v in node["list"]]
        return tuple(items) if node["tuple"] else items
    if "value" in node:
        return node["value"]
    module, _, name = node["object"].partition(":")
    if not module.startswith("ripple."):
        raise RippleError(f"the resume state names {node['object']}, not a ripple class; delete it and rerun")
    cls = getattr(importlib.import_module(module), name)
    return cls.from_tensors(tensors, node["prefix"])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass
class SavedRun:
    """A method's stress run at a checkpoint: what :meth:`ResumeStore.save` writes."""

    edits: int  # applied so far
    rows: list  # the checkpoint rows
    weights: dict  # the edited parameters' current values
    state: dict  # the editors' running state
    over_guard: list  # steps over the norm guard
    seconds: float
    measure_seconds: float
    segments: list  # which code version applied which edits


class ResumeStore:
    """The saved state of a stress run's methods under ``out`` (see the module docstring).

    ``key``: everything the curves depend on (settings, hyperparameters, the edit stream); a saved
    state made with another key is refused on load, with the settings that differ."""

    def __init__(self, out, key: dict, code: str):
        self.folder = Path(out).expanduser() / FOLDER
        self.key, self.code = json.loads(json.dumps(key)), code

    def _json(self, name: str) -> Path:
        return self.folder / f"{_safe(name)}.json"

    def exists(self) -> bool:
        return self.folder.is_dir() and any(self.folder.glob("*.json"))

    def load(self, name: str, key: dict) -> dict | None:
        """The saved state of method ``name`` (``key``: its own settings, with the run's), or None."""

        path = self._json(name)
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
            tensors = load_file(str(self.folder / saved["tensors"]))
        except (OSError, ValueError, KeyError, RecursionError) as e:
            raise RippleError(f"the resume state {path} cannot be read ({type(e).__name__}); delete {self.folder} and rerun "
                              "without --resume") from None
        want = json.loads(json.dumps({**self.key, **key}))
        if saved["key"] != want:
            differ = sorted(k for k in set(want) | set(saved["key"]) if want.get(k) != saved["key"].get(k))
            raise RippleError(f"the partial run in {self.folder} was made with other settings ({', '.join(differ)} "
                              "differ); resume with the same settings, or pass another --out")
        weights = {k[len("weight."):]: v for k, v in tensors.items() if k.startswith("weight.")}
        state = {k: v for k, v in tensors.items() if k.startswith("state")}
        return {**saved, "weights": weights, "state": _decode(saved["state"], state)}

    def saved_keys(self) -> dict[str, dict]:
        """Method name -> the settings its saved state was made with (unreadable files: a one-line error)."""
        out = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                saved = json.loads(path.read_text())
                out[saved["method"]] = saved["key"]
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
                raise RippleError(f"the resume state {path} cannot be read ({type(e).__name__}); move {self.folder} "
                                  "away to start over") from None
        return out

    def check(self, names) -> None:
        """Before any work: every saved method is among ``names`` (the run's methods) and was made
        with this run's settings, else a one-line error that names what differs (nothing is
        deleted: a run with other settings never throws the saved state away)."""
        saved = self.saved_keys()
        extra = [m for m in saved if m not in names]
        if extra:
            raise RippleError(f"the partial run in {self.folder} is of {', '.join(saved)}, and --method/--compare "
                              f"now name {', '.join(names)} (without {', '.join(extra)}); resume with the same "
                              "methods, or pass another --out")
        for method, key in saved.items():
            differ = sorted(k for k in self.key if key.get(k) != self.key[k])
            if differ:
                raise RippleError(f"the partial run in {self.folder} ({method}) was made with other settings "
                                  f"({', '.join(differ)} differ); resume with the same settings, or pass another "
                                  "--out")

    def progress(self, name: str) -> dict | None:
        """What a stopped (or still running) run of method ``name`` has measured so far, without
        its tensors or a check of its settings: ``edits``, ``rows`` (the checkpoints), ``seconds``,
        ``measure_seconds`` and ``key``; None when nothing is saved."""
        path = self._json(name)
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        return {k: saved[k] for k in ("edits", "rows", "seconds", "measure_seconds", "key")}

    def save(self, name: str, key: dict, run: SavedRun) -> None:
        """Save method ``name``'s state after ``run.edits`` edits (atomically: the tensors under a
        new name first, then the JSON that points at them; older tensor files go last)."""
        edits, weights = run.edits, run.weights
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {f"weight.{k}": v.detach().cpu().clone().contiguous()
                                            for k, v in weights.items()}
        encoded = _encode(run.state, "state", tensors)
        fname = f"{_safe(name)}-{edits}.safetensors"
        tmp = self.folder / f".{fname}.{os.getpid()}.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, self.folder / fname)
        atomic_write_json(self._json(name), {
            "key": {**self.key, **key}, "method": name, "edits": edits, "rows": run.rows,
            "over_guard": run.over_guard, "seconds": run.seconds, "measure_seconds": run.measure_seconds,
            "segments": run.segments, "tensors": fname, "state": encoded})
        for old in self.folder.glob(f"{_safe(name)}-*.safetensors"):
            if old.name != fname:
                old.unlink(missing_ok=True)

    def clear(self) -> None:

        shutil.rmtree(self.folder, ignore_errors=True)
