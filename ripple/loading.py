"""Load a supported causal LM, its tokenizer and its :class:`~ripple.arch.ArchSpec` in one call.

::

    from ripple.loading import load_model
    model, tokenizer, spec = load_model()                    # the bundled organism
    model, tokenizer, spec = load_model("/models/gpt2-xl", dtype="float16")   # a local directory
    spec.mlp_out                                             # 'mlp.c_proj'

Every failure a user can fix is a one-line :class:`~ripple.errors.RippleError`: a missing path, a
directory without ``config.json``, an unsupported ``model_type`` (checked from the config before
any weight is read), ``.bin``-only weights (only safetensors are loaded), or a hub id while the hub
is offline. ``trust_remote_code`` is passed on exactly as given (default ``False``).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open

from ripple import data as ripple_data
from ripple.arch import ArchSpec, get_spec
from ripple.devices import DEVICE_MAPS
from ripple.errors import RippleError
from ripple.gguf import PACKAGES, resolve
from ripple.io import absent, loads_json
from ripple.progress import quiet_transformers

_TRUE = {"1", "ON", "YES", "TRUE"}
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class LoadedModel(NamedTuple):
    """``(model, tokenizer, spec)``; the model is in eval mode on the requested device."""

    model: Any
    tokenizer: Any
    spec: ArchSpec


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _offline_var() -> str | None:
    return next((v for v in _OFFLINE_VARS if os.environ.get(v, "").upper() in _TRUE), None)


def _local_dir(name_or_path: str) -> Path | None:
    """The local model directory meant by ``name_or_path``, or ``None`` for a hub id."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RippleError(f"no config.json in {path}; pass a transformers model directory")
        return path
    if path.is_file():
        raise RippleError(f"model path {name_or_path} is a file; pass the directory holding config.json")
    if name_or_path.startswith((".", "/", "~")):

        raise RippleError(f"model path {name_or_path} {absent(path)}")
    return None


def _check_local(path: Path) -> None:
    """Fail fast on an unsupported model_type or missing safetensors, before any weight is read."""
    config = path / "config.json"
    try:
        data = loads_json(config.read_bytes().decode("utf-8"), config)
    except json.JSONDecodeError as exc:
        raise RippleError(f"{config} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it or re-save the "
                          "model with save_pretrained") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RippleError(f"cannot read {config}: {_one_line(exc)}; check the file and its permissions") from None
    if not isinstance(data, dict):
        raise RippleError(f"{config} must hold a JSON object (a transformers config); re-save the model")
    get_spec(str(data.get("model_type")))
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        if any(path.glob("*.bin")):
            raise RippleError(f"{path} has only PyTorch .bin weights; ripple loads safetensors only: "
                              "re-save with save_pretrained(dir, safe_serialization=True)")
        raise RippleError(f"no *.safetensors weights in {path}; pass a complete model directory")

    for f in weights:  # the header only: a truncated or empty file fails here, before loading
        try:
            with safe_open(str(f), "pt") as handle:
                handle.keys()
        except Exception as exc:  # SafetensorError, OSError: all the same to the user
            raise RippleError(f"weights file {f} is corrupt or truncated ({_one_line(exc)}); re-save or "
                              "re-download the model") from None


def _torch_dtype(dtype) -> torch.dtype | str:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise RippleError(f"unknown dtype {dtype!r}; use float32, float16, bfloat16 or auto")
    return resolved


def _dtype_kwarg() -> str:
    """transformers >= 4.56 calls it ``dtype``; older releases only know ``torch_dtype``."""
    import transformers  # lazy: heavy

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


#: What ripple reads from a model directory beside the weights, carried into an edited model it
#: saves so that the edited model is audited as its base was: the world it was trained on (probes,
#: ground truth, statistics corpus) and its editors' settings (layers).
CARRIED = ("world.json", "ripple_hparams.json")


def save_model(model, tokenizer, path, base: str | None = None, edit: dict | None = None) -> None:
    """``save_pretrained`` of model (safetensors) and tokenizer, quietly. ``base``: the model it was
    loaded from ('organism', a directory): its :data:`CARRIED` files are copied beside, and
    ``ripple_base.json`` records the base and ``edit`` (what was done to it)."""

    with quiet_transformers():
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
    if base is None:
        return
    src = model_path(base)
    carried = []
    for name in CARRIED:
        if src is not None and (src / name).is_file():
            shutil.copyfile(src / name, Path(path) / name)
            carried.append(name)
    record = {"base": str(base), "carried": carried, **({"edit": edit} if edit else {})}
    (Path(path) / "ripple_base.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def model_path(name_or_path: str) -> Path | None:
    """The local directory ``name_or_path`` names ("organism": the bundled one), None for a hub id;
    nothing is loaded (so the CLI can check ``--out`` against it first)."""
    if name_or_path == "organism":

        return ripple_data.organism_dir()

    if name_or_path in PACKAGES:
        return None  # a file inside an installed package: never an --out
    path = Path(name_or_path).expanduser()
    return path if path.exists() else None


#: Model types that read a prompt well only after their beginning-of-text token (Gemma: without it
#: Gemma-3-270M answers "The capital of Japan is the city of" with " Kyoto"-like noise; with it, " Tokyo").
BOS_FIRST = ("gemma", "gemma2", "gemma3_text")


def _placement(device_map, max_memory, offload_folder) -> dict:
    """``from_pretrained``'s placement arguments, checked (accelerate is needed for a device map)."""
    if importlib.util.find_spec("accelerate") is None:
        raise RippleError("a device map needs accelerate; pip install accelerate")
    if isinstance(device_map, str) and device_map not in DEVICE_MAPS:
        raise RippleError(f"unknown device map {device_map!r}; use one of {', '.join(DEVICE_MAPS)} "
                          "or a JSON file of {module: device}")
    out = {"device_map": device_map}
    if max_memory:
        out["max_memory"] = dict(max_memory)
    uses_disk = (isinstance(device_map, dict) and "disk" in device_map.values()) or \
        (max_memory and "disk" in max_memory) or isinstance(device_map, str)
    if uses_disk:  # accelerate offloads what does not fit to disk, into this folder
        out["offload_folder"] = offload_folder or tempfile.mkdtemp(prefix="ripple-offload-")
    return out


def _check_map(config, device_map: dict, remote: dict) -> None:
    """A one-line error unless ``device_map`` names modules of this model and places every
    parameter (transformers would quietly ignore a misspelt module)."""

    from accelerate import init_empty_weights  # lazy: heavy
    from transformers import AutoModelForCausalLM  # lazy: heavy

    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config, **remote)
    modules = {name for name, _ in skeleton.named_modules()}
    for key in device_map:
        if key not in modules:
            close = difflib.get_close_matches(key, sorted(modules), n=2, cutoff=0.6)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "name modules of the model"
            raise RippleError(f"the device map names {key!r}, which is not a module of this "
                              f"{config.model_type} model; {hint}")
    for name, _ in skeleton.named_parameters():
        if not any(key == "" or name == key or name.startswith(key + ".") for key in device_map):
            raise RippleError(f"the device map places no module holding {name!r}; map it or a module "
                              "above it (or use --device-map auto)")


def load_model(name_or_path: str = "organism", device: str = "cpu", dtype=None,
               trust_remote_code: bool = False, device_map=None, max_memory: dict | None = None,
               offload_folder: str | None = None) -> LoadedModel:
    """Load ``name_or_path`` ("organism", a local directory, or a hub id) as a :class:`LoadedModel`.

    ``dtype`` is a ``torch.dtype``, its name (``"bfloat16"``), ``"auto"`` (as stored), or ``None``
    for float32. A missing ``tokenizer.pad_token`` is set to the eos token (in memory only).
    ``device_map`` (``"auto"``, ``"balanced"``, ``"sequential"`` or ``{module: device}``, devices
    including ``"cpu"`` and ``"disk"``) spreads the model over devices through accelerate, within
    ``max_memory`` (``{0: "20GiB", "cpu": "60GiB"}``); disk-offloaded weights go to
    ``offload_folder`` (default: a fresh temporary directory). ``device`` is then ignored.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # lazy: heavy

    if name_or_path == "organism":

        name_or_path = str(ripple_data.organism_dir())
        if not (ripple_data.organism_dir() / "config.json").is_file():
            raise RippleError(f"the bundled organism is missing from {name_or_path}; build it with "
                              f"python -m ripple.organism.train --out {name_or_path}, or pass a model path")

    gguf_dir = resolve(name_or_path)  # smollm2, gemma3-270m, FILE.gguf: the cached converted directory
    if gguf_dir is not None:
        name_or_path = str(gguf_dir)
    source = _local_dir(name_or_path)
    if source is not None:
        _check_local(source)
    elif (var := _offline_var()) is not None:
        raise RippleError(f"model {name_or_path!r} is not a local directory and the Hugging Face hub "
                          f"is offline ({var}=1); download it and pass its local path")
    where = str(source) if source is not None else name_or_path
    torch_dtype = _torch_dtype(dtype)
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise RippleError(f"unknown device {device!r}; use e.g. cpu or cuda") from exc
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    placement = _placement(device_map, max_memory, offload_folder) if device_map is not None else {}
    if device_map is None and max_memory is not None:
        raise RippleError("--max-memory bounds a device map; pass it with --device-map auto")
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(where, **remote)
            get_spec(config)
            if isinstance(device_map, dict):
                _check_map(config, device_map, remote)
            model = AutoModelForCausalLM.from_pretrained(where, config=config, use_safetensors=True,
                                                         **{_dtype_kwarg(): torch_dtype}, **placement, **remote)
            tokenizer = AutoTokenizer.from_pretrained(where, **remote)
    except (OSError, ValueError, KeyError) as exc:
        raise RippleError(f"cannot load model {name_or_path!r}: {_one_line(exc)}") from exc
    if device_map is None:
        try:
            model = model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise RippleError(f"cannot move the model to {device}: {_one_line(exc)}") from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    spec = get_spec(model)
    if spec.model_type in BOS_FIRST and tokenizer.bos_token_id is not None:
        tokenizer.ripple_bos = True  # ripple's encoders put the BOS token first (ripple.tokens)
    return LoadedModel(model, tokenizer, spec)
