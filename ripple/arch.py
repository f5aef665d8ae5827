"""Where things live inside each supported architecture: one table, keyed by ``config.model_type``.

Everything else in ripple names *abstract sites* and asks this module for the module path, so
no other code ever branches on a model name or a tensor shape:

>>> spec = get_spec("gpt2")                       # a model, a config, or a model_type string
>>> resolve_site(spec, "blocks.3.mlp.key")        # the input of the rewritten projection
('transformer.h.3.mlp.c_proj', 'input')
>>> mlp_out_param(spec, 3)
'transformer.h.3.mlp.c_proj.weight'

With a model::

    spec = get_spec(model)
    spec.n_layers(model)                             # 12
    W = weight_as_out_in(mlp_out_weight(model, spec, 3), spec)   # always [out, in]
    value = W @ key                                  # ... whatever the storage layout

Canonical sites (``i`` counts blocks from 0; kind is what resolve_site returns):

- ``embed``: token embedding output (gpt2: *before* its learned position embedding) - output
- ``blocks.{i}.out``: residual stream after block ``i`` (element 0 if a tuple) - output
- ``blocks.{i}.mlp.key``: input of the MLP output projection, the "key" - input
- ``blocks.{i}.mlp.out``: output of the whole MLP module - output
- ``blocks.{i}.attn.out``: output of the attention module (element 0 of its tuple) - output
- ``final_norm``: output of the final norm (HF's ``hidden_states[-1]``) - output
- ``unembed``: the logits - output
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace

import torch

from ripple.errors import RippleError


@dataclass(frozen=True)
class ArchSpec:
    """Module paths for one architecture; block-relative fields are relative to ``{blocks}.{i}``.

    ``depth`` is filled in by :func:`get_spec` from the config (``None`` for a bare table entry);
    :func:`resolve_site` uses it to check layer indices.
    """

    model_type: str
    blocks: str
    mlp: str
    mlp_in: str
    mlp_out: str
    attn: str
    attn_out: str
    embed: str
    final_norm: str
    unembed: str
    n_layers_attr: str
    mlp_out_transposed: bool
    depth: int | None = None
    n_positions_attr: str = "max_position_embeddings"
    mlp_post_norm: str | None = None  # a norm between the MLP's output and the residual stream

    def block_of(self, name: str) -> int | None:
        """The block a parameter name belongs to (``transformer.h.3.mlp.c_proj.weight`` -> 3), or None
        for one outside the blocks (embeddings, the final norm)."""
        m = re.match(rf"{re.escape(self.blocks)}\.(\d+)\.", name)
        return int(m.group(1)) if m else None

    def n_layers(self, model_or_config) -> int:
        """Number of blocks, read from the config attribute named by ``n_layers_attr``."""
        config = getattr(model_or_config, "config", model_or_config)
        return int(getattr(config, self.n_layers_attr))

    def context_length(self, model_or_config) -> int | None:
        """The longest input in tokens, from the config attribute named by ``n_positions_attr``."""
        config = getattr(model_or_config, "config", model_or_config)
        value = getattr(config, self.n_positions_attr, None)
        return int(value) if value else None

    def block(self, layer: int, rel: str = "") -> str:
        """Dotted path of block ``layer``, or of ``rel`` inside it: ``spec.block(2, spec.mlp_out)``."""
        path = f"{self.blocks}.{layer}"
        return f"{path}.{rel}" if rel else path


_GPT_STYLE = dict(blocks="transformer.h", embed="transformer.wte", final_norm="transformer.ln_f",
                  unembed="lm_head", n_layers_attr="n_layer", n_positions_attr="n_positions")
_LLAMA_STYLE = dict(blocks="model.layers", mlp="mlp", mlp_in="mlp.up_proj", mlp_out="mlp.down_proj",
                    attn="self_attn", attn_out="self_attn.o_proj", embed="model.embed_tokens",
                    final_norm="model.norm", unembed="lm_head", n_layers_attr="num_hidden_layers",
                    mlp_out_transposed=False)

#: The one table. gpt2 stores Conv1D weights as [in, out]; everything else is nn.Linear [out, in].
ARCH_TABLE: dict[str, ArchSpec] = {
    "gpt2": ArchSpec("gpt2", mlp="mlp", mlp_in="mlp.c_fc", mlp_out="mlp.c_proj", attn="attn",
                     attn_out="attn.c_proj", mlp_out_transposed=True, **_GPT_STYLE),
    "gptj": ArchSpec("gptj", mlp="mlp", mlp_in="mlp.fc_in", mlp_out="mlp.fc_out", attn="attn",
                     attn_out="attn.out_proj", mlp_out_transposed=False, **_GPT_STYLE),
    # transformers < 5 calls the neox head ``embed_out``; get_spec(model) falls back to it.
    "gpt_neox": ArchSpec("gpt_neox", blocks="gpt_neox.layers", mlp="mlp", mlp_in="mlp.dense_h_to_4h",
                         mlp_out="mlp.dense_4h_to_h", attn="attention", attn_out="attention.dense",
                         embed="gpt_neox.embed_in", final_norm="gpt_neox.final_layer_norm",
                         unembed="lm_head", n_layers_attr="num_hidden_layers", mlp_out_transposed=False),
    "llama": ArchSpec("llama", **_LLAMA_STYLE),
    "mistral": ArchSpec("mistral", **_LLAMA_STYLE),
    "qwen2": ArchSpec("qwen2", **_LLAMA_STYLE),
    # Gemma: llama's paths. gemma2 and gemma3_text add pre/post-feedforward norms around the MLP
    # (mlp.out is the MLP's own output, before its post norm) and q/k norms; embed_tokens scales by
    # sqrt(hidden) inside the module for gemma3_text and in the model's forward for gemma/gemma2
    # (there the embed site is before the scaling); the unembedding is tied to the embedding, and the
    # unembed site is lm_head's output, before gemma2's final logit soft-capping.
    "gemma": ArchSpec("gemma", **_LLAMA_STYLE),
    "gemma2": ArchSpec("gemma2", mlp_post_norm="post_feedforward_layernorm", **_LLAMA_STYLE),
    "gemma3_text": ArchSpec("gemma3_text", mlp_post_norm="post_feedforward_layernorm", **_LLAMA_STYLE),
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(ARCH_TABLE)

_TOP_SITES = {"embed": "embed", "final_norm": "final_norm", "unembed": "unembed"}
# block-relative site suffix -> (ArchSpec field, or "" for the block itself; kind)
_BLOCK_SITES = {"out": ("", "output"), "mlp.key": ("mlp_out", "input"),
                "mlp.out": ("mlp", "output"), "attn.out": ("attn", "output")}
_BLOCK_SITE_RE = re.compile(r"^blocks\.(-?\d+)\.(.+)$")


def get_spec(model_or_config) -> ArchSpec:
    """The :class:`ArchSpec` for a model, a config, or a ``model_type`` string.

    >>> get_spec("llama").mlp_out
    'mlp.down_proj'
    """
    if isinstance(model_or_config, str):
        model_type, config = model_or_config, None
    else:
        config = getattr(model_or_config, "config", model_or_config)
        model_type = getattr(config, "model_type", None)
    if model_type not in ARCH_TABLE:
        raise RippleError(f"unsupported model_type {model_type!r}; supported model types: "
                          f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    spec = ARCH_TABLE[model_type]
    if config is not None:
        spec = replace(spec, depth=spec.n_layers(config))
    if isinstance(model_or_config, torch.nn.Module):
        spec = _with_present_unembed(model_or_config, spec)
    return spec


def _with_present_unembed(model: torch.nn.Module, spec: ArchSpec) -> ArchSpec:
    """Use the name transformers itself reports (``get_output_embeddings``) if the table's is absent."""
    modules = dict(model.named_modules())
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if spec.unembed in modules or head is None:
        return spec
    name = next((n for n, m in modules.items() if m is head), spec.unembed)
    return replace(spec, unembed=name)


def site_names(spec: ArchSpec, n_layers: int | None = None) -> list[str]:
    """Every canonical site of a model with ``n_layers`` blocks (default ``spec.depth``)."""
    n = spec.depth if n_layers is None else n_layers
    if n is None:
        raise RippleError("site_names needs the depth: pass n_layers or a spec from get_spec(model)")
    per_block = [f"blocks.{i}.{suffix}" for i in range(n) for suffix in _BLOCK_SITES]
    return ["embed", *per_block, "final_norm", "unembed"]


def resolve_site(spec: ArchSpec, site: str) -> tuple[str, str]:
    """``(module_path, "input" | "output")`` for a canonical site name.

    >>> resolve_site(get_spec("gpt2"), "blocks.0.attn.out")
    ('transformer.h.0.attn', 'output')
    """
    if site in _TOP_SITES:
        return getattr(spec, _TOP_SITES[site]), "output"
    match = _BLOCK_SITE_RE.match(site)
    if match is None or match.group(2) not in _BLOCK_SITES:
        known = ["embed", *(f"blocks.{{i}}.{s}" for s in _BLOCK_SITES), "final_norm", "unembed"]
        raise RippleError(f"unknown site {site!r}; valid sites: {', '.join(known)}")
    layer = _check_layer(spec, int(match.group(1)))
    field, kind = _BLOCK_SITES[match.group(2)]
    return spec.block(layer, getattr(spec, field) if field else ""), kind


def split_site(site: str) -> tuple[int, str] | None:
    """``(layer, part)`` of a block site, None for a top site.

    >>> split_site("blocks.7.mlp.out"), split_site("final_norm")
    ((7, 'mlp.out'), None)
    """
    match = _BLOCK_SITE_RE.match(site)
    return (int(match.group(1)), match.group(2)) if match else None


def _check_layer(spec: ArchSpec, layer: int) -> int:
    upper = spec.depth if spec.depth is not None else float("inf")
    if not 0 <= layer < upper:
        valid = f"0..{spec.depth - 1}" if spec.depth is not None else "0 or more"
        raise RippleError(f"layer {layer} is out of range for this {spec.model_type} model; "
                          f"valid layers: {valid}")
    return layer


def fraction_to_layer(n_layers: int, frac: float) -> int:
    """``frac`` of the way through ``n_layers`` blocks (0.0 = first, 1.0 = last), halves round up.

    >>> fraction_to_layer(12, 0.5)
    6
    """
    if not 0.0 <= frac <= 1.0:
        raise RippleError(f"layer fraction {frac} is outside [0, 1]; pass e.g. 0.5 for mid-depth")
    return int(frac * (n_layers - 1) + 0.5)


def get_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at dotted ``path`` (``""`` is the model), suggesting close names if absent."""
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    close = difflib.get_close_matches(path, list(modules), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}?" if close else \
        "list valid names with [n for n, _ in model.named_modules()]"
    raise RippleError(f"no module named {path!r} in {type(model).__name__}; {hint}")


def mlp_out_weight(model: torch.nn.Module, spec: ArchSpec, layer: int) -> torch.nn.Parameter:
    """The stored weight of block ``layer``'s MLP output projection (the one ROME/MEMIT rewrite)."""
    return get_module(model, spec.block(_check_layer(spec, layer), spec.mlp_out)).weight


def weight_as_out_in(W: torch.Tensor, spec: ArchSpec) -> torch.Tensor:
    """A view of a stored mlp_out weight as [out, in], so that ``value = W_oi @ key``."""
    return W.T if spec.mlp_out_transposed else W


def out_in_to_storage(delta: torch.Tensor, spec: ArchSpec) -> torch.Tensor:
    """Turn an [out, in] update into the stored layout: ``W += out_in_to_storage(delta, spec)``."""
    return delta.T if spec.mlp_out_transposed else delta


def mlp_out_param(spec: ArchSpec, layer: int) -> str:
    """The parameter name (as ``model.named_parameters()`` gives it) of block ``layer``'s MLP output
    projection: the weight ROME, MEMIT and the other editors rewrite."""
    return spec.block(layer, spec.mlp_out) + ".weight"


def act_name(layer: int | None, site: str, position: str | None = None) -> str:
    """The canonical name of an activation site, and with ``position`` its activation-cache key.

    >>> act_name(3, "mlp.key")
    'blocks.3.mlp.key'
    >>> act_name(3, "out", "last")
    'blocks.3.out@last'
    >>> act_name(None, "final_norm", "subject_last")
    'final_norm@subject_last'
    """
    name = site if layer is None else f"blocks.{layer}.{site}"
    return name if position is None else f"{name}@{position}"
