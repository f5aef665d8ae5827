"""A trained RLEdit hypernetwork as one value: its networks (one per projection shape), the
projections it edits, its running moments, and the model it was trained for.

On disk, a directory with ``hypernet.safetensors`` (every network's weights and moments) and
``hypernet.json`` (the edited parameters, the model's identity, the hyperparameters and the
training record). Loading checks the identity against the model it is asked to edit and refuses
another architecture, another size or another model of the same architecture with one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ripple.arch import mlp_out_param, out_in_to_storage
from ripple.devices import param_value
from ripple.errors import RippleError
from ripple.rledit.net import HyperNet, Moments

# 2: trainable blocks (clamp, not relu) and gradient features of the summed NLL (rledit.net,
# rledit.features); a format-1 network was trained on other features and is refused
FORMAT = 2
WEIGHTS, META = "hypernet.safetensors", "hypernet.json"


def model_identity(model, spec) -> dict:
    """What a hypernetwork must match: the architecture, the depth, every MLP output projection's
    shape and a digest of the token embedding (which no ripple editor changes)."""
    emb = param_value(model, next(n for n, p in model.named_parameters()
                                  if p is model.get_input_embeddings().weight)).float().cpu().contiguous()
    digest = hashlib.sha256(emb.numpy().tobytes()).hexdigest()[:16]
    n = spec.n_layers(model)
    shape = tuple(model.get_parameter(mlp_out_param(spec, 0)).shape)
    return {"model_type": spec.model_type, "n_layers": n, "mlp_out_shape": list(shape), "embedding_sha256": digest}


def _key(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


@dataclass
class Hypernetwork:
    """``nets[shape key]``: the :class:`HyperNet` for projections ``[in, out]`` of that shape;
    ``modules``: per edited layer, its parameter name, net and index within the net;
    ``moments[shape key]``: the running moments the network was left with."""

    nets: nn.ModuleDict
    modules: dict[int, dict]
    moments: dict[str, Moments]
    meta: dict = field(default_factory=dict)

    @classmethod
    def build(cls, model, spec, layers, rank: int, n_blocks: int, lr: float, seed: int) -> Hypernetwork:
        """A fresh hypernetwork for the MLP output projections of ``layers`` (deterministic in ``seed``)."""
        shapes, modules = {}, {}
        for layer in layers:
            name = mlp_out_param(spec, layer)
            W = model.get_parameter(name)
            in_out = (W.shape[0], W.shape[1]) if spec.mlp_out_transposed else (W.shape[1], W.shape[0])
            key = _key(in_out)
            shapes.setdefault(key, [in_out, 0])
            modules[layer] = {"name": name, "net": key, "index": shapes[key][1]}
            shapes[key][1] += 1
        gen = torch.random.fork_rng(devices=[])
        with gen:
            torch.manual_seed(seed)
            nets = nn.ModuleDict({k: HyperNet(s[0], s[1], rank, n_blocks, n, lr) for k, (s, n) in shapes.items()})
        moments = {k: Moments.empty(s[0] + s[1]) for k, (s, _) in shapes.items()}
        meta = {"format": FORMAT, "model": model_identity(model, spec), "layers": list(layers),
                "rank": rank, "n_blocks": n_blocks}
        return cls(nets, modules, moments, meta)

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(self.modules)

    def updated_moments(self, moments: dict[str, Moments], feats: dict) -> dict[str, Moments]:
        """``moments`` with this batch's ``[k; δ]`` rows added, projection by projection."""
        out = dict(moments)
        for layer, m in self.modules.items():
            K, D = feats[layer]
            out[m["net"]] = out[m["net"]].updated(torch.cat([K, D], -1))
        return out

    def shifts(self, spec, feats: dict, moments: dict[str, Moments]) -> dict[str, torch.Tensor]:
        """Per edited parameter, its weight change in the stored layout (differentiable in the
        networks' parameters), from each layer's keys and output gradients ``feats[layer] = (K, D)``."""
        out = {}
        for layer, m in self.modules.items():
            net = self.nets[m["net"]]
            K, D = feats[layer]
            dW = net.shift_for(K.to(net.lr.device), D.to(net.lr.device), m["index"], moments[m["net"]])
            out[m["name"]] = out_in_to_storage(dW.T, spec)
        return out

    def check_model(self, model, spec, where: str) -> None:
        """A one-line error unless this hypernetwork was trained for ``model``."""
        mine, theirs = self.meta["model"], model_identity(model, spec)
        if mine != theirs:
            what = ("another architecture" if mine["model_type"] != theirs["model_type"] else
                    "a model of another size" if mine != {**theirs, "embedding_sha256": mine["embedding_sha256"]}
                    else "another model of the same architecture (its token embedding differs)")
            raise RippleError(
                f"the RLEdit hypernetwork in {where} was trained for {what} ({mine['model_type']}, "
                f"{mine['n_layers']} layers, MLP {'x'.join(map(str, mine['mlp_out_shape']))}, embedding "
                f"{mine['embedding_sha256']}), not for this {theirs['model_type']} model (embedding "
                f"{theirs['embedding_sha256']}); train one for it with 'ripple rledit train --model M --out DIR'")

    # ---------------------------------------------------------------- files

    def save(self, directory) -> None:
        """Write ``hypernet.safetensors`` and ``hypernet.json`` into ``directory`` (which exists)."""

        directory = Path(directory)
        tensors = {f"net.{k}.{n}": p.detach().float().cpu().contiguous()
                   for k, net in self.nets.items() for n, p in net.state_dict().items()}
        for k, m in self.moments.items():
            tensors |= m.tensors(f"moments.{k}.")
        save_file(tensors, str(directory / WEIGHTS))
        meta = dict(self.meta, modules={str(layer): m for layer, m in self.modules.items()},
                    shapes={k: [net.key_size, net.value_size, len(net.lr)] for k, net in self.nets.items()})
        (directory / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory) -> Hypernetwork:
        """The hypernetwork saved in ``directory``; one-line errors for a missing or broken one."""

        directory = Path(directory).expanduser()
        if not (directory / META).is_file() or not (directory / WEIGHTS).is_file():
            raise RippleError(f"{directory} holds no RLEdit hypernetwork ({META} and {WEIGHTS}); train one with "
                              "'ripple rledit train --model M --out DIR' and pass that DIR")
        try:
            meta = json.loads((directory / META).read_text())
            tensors = load_file(str(directory / WEIGHTS))
        except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError) as e:
            raise RippleError(f"the RLEdit hypernetwork in {directory} cannot be read ({type(e).__name__}: {e}); "
                              "train it again with 'ripple rledit train'") from None
        if meta.get("format") != FORMAT:
            raise RippleError(f"the RLEdit hypernetwork in {directory} has format {meta.get('format')!r}, this "
                              f"ripple reads {FORMAT}; train it again with 'ripple rledit train'")
        nets = nn.ModuleDict()
        for k, (key_size, value_size, n_modules) in meta["shapes"].items():
            net = HyperNet(key_size, value_size, meta["rank"], meta["n_blocks"], n_modules, 0.0)
            state = {n.removeprefix(f"net.{k}."): t for n, t in tensors.items() if n.startswith(f"net.{k}.")}
            try:
                net.load_state_dict(state)
            except RuntimeError:
                raise RippleError(f"the RLEdit hypernetwork in {directory} does not match its {META}; "
                                  "train it again with 'ripple rledit train'") from None
            nets[k] = net
        moments = {k: Moments.from_tensors(tensors, f"moments.{k}.") for k in meta["shapes"]}
        modules = {int(layer): m for layer, m in meta.pop("modules").items()}
        meta.pop("shapes")
        return cls(nets, modules, moments, meta)
