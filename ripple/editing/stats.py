"""Second moment ``C = E[k kᵀ]`` of MLP keys at a layer, cached on disk.

The cache key is the model's weights fingerprint, the layer, the corpus fingerprint and the
number of token samples, so a different model, corpus or sample count never reuses a stale
file. The default cache directory is ``$RIPPLE_CACHE`` or ``~/.cache/ripple``.

::

    C = second_moment(model, tok, spec, layer=1, corpus=world_text, n_samples=20000)
    C.shape
    # -> torch.Size([768, 768])
"""

from __future__ import annotations

import hashlib

import torch

from ripple.arch import act_name, resolve_site
from ripple.devices import input_device, param_value
from ripple.errors import RippleError
from ripple.hooks import Trace
from ripple.io import (
    atomic_torch_save,
    cache_dir,  # noqa: F401 (read from here too)
)
from ripple.scoring import pad_ids
from ripple.tokens import text_ids


def model_fingerprint(model, tok, layer: int) -> str:
    """Hash of the config, the tokenizer's vocabulary and a strided sample of every weight.

    Any change to the weights (an edited model) or to the tokenizer gives new statistics."""
    h = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    h.update(repr(sorted(tok.get_vocab().items())).encode())
    for name, _ in model.named_parameters():
        w = param_value(model, name).flatten()
        h.update(name.encode())
        h.update(w[:: max(1, w.numel() // 2048)].float().cpu().numpy().tobytes())
    h.update(str(layer).encode())
    return h.hexdigest()[:16]


def corpus_fingerprint(corpus: list[str]) -> str:
    h = hashlib.sha256()
    for line in corpus:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


@torch.no_grad()
def collect_keys(model, tok, spec, layer: int, corpus: list[str], n_samples: int,
                 batch_size: int = 64) -> torch.Tensor:
    """Up to ``n_samples`` MLP keys (one per real token) from the corpus, in order, ``[n, in]``."""
    site = resolve_site(spec, act_name(layer, "mlp.key"))[0]
    device = input_device(model)
    keys, got = [], 0
    for i in range(0, len(corpus), batch_size):
        enc = [text_ids(tok, t)[: tok.model_max_length] for t in corpus[i : i + batch_size]]
        enc = [e for e in enc if e]
        if not enc:
            continue
        ids, mask = pad_ids(enc, tok, device)
        with Trace(model, site, retain_input=True, retain_output=False, stop=True) as t:
            model(input_ids=ids, attention_mask=mask)
        k = t.input[mask.bool()].double().cpu()
        keys.append(k)
        got += len(k)
        if got >= n_samples:
            break
    if not keys:
        raise RippleError("the statistics corpus is empty; pass a text file with general sentences")
    return torch.cat(keys)[:n_samples]


def second_moment(model, tok, spec, layer: int, corpus: list[str], n_samples: int = 20000,
                  use_cache: bool = True) -> torch.Tensor:
    """``E[k kᵀ]`` over up to ``n_samples`` corpus tokens, float64 ``[in, in]``, cached on disk."""
    path = cache_dir() / "mom2" / (f"{model_fingerprint(model, tok, layer)}-L{layer}-"
                                   f"{corpus_fingerprint(corpus)}-n{n_samples}.pt")
    if use_cache and path.exists():
        return torch.load(path, weights_only=True)
    K = collect_keys(model, tok, spec, layer, corpus, n_samples)
    C = K.T @ K / len(K)
    if use_cache:

        atomic_torch_save(C, path)
    return C
