"""Causal tracing (Meng et al., 2022): where does the model recall a fact?

Run the prompt clean, then with Gaussian noise added to the subject's token embeddings
(the corrupted run); then, one at a time, restore a single clean state (a block's hidden
output, an MLP output, or an attention output, at one token) inside the corrupted run.
The indirect effect of a state is P(answer | restored) - P(answer | corrupted).

::

    from ripple.loading import load_model
    model, tok, spec = load_model("organism")
    r = causal_trace(model, tok, spec, "{} was born in", "Kalo Miren")
    r.effects["mlp"].shape            # [tokens, layers]
    # -> (5, 6)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ripple.arch import act_name
from ripple.errors import RippleError
from ripple.hooks import TraceDict
from ripple.scoring import first_token_id, last_logits
from ripple.tokens import render_prompt, subject_token_span, text_ids

KINDS = {"hidden": "out", "mlp": "mlp.out", "attn": "attn.out"}  # kind -> block site


@dataclass
class TraceResult:
    prompt: str
    subject: str
    answer: str
    tokens: list[str]
    subject_range: tuple[int, int]
    p_clean: float
    p_corrupt: float
    effects: dict[str, torch.Tensor] = field(default_factory=dict)  # kind -> [tokens, layers] of IE

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "subject": self.subject, "answer": self.answer, "tokens": self.tokens,
                "subject_range": list(self.subject_range), "p_clean": self.p_clean, "p_corrupt": self.p_corrupt,
                "indirect_effect": {k: [[None if x != x else round(x, 6) for x in row] for row in v.tolist()]
                                    for k, v in self.effects.items()}}


def _module_of(spec, site: str) -> str:
    from ripple.arch import resolve_site

    return resolve_site(spec, site)[0]


def embedding_noise_scale(model, spec, factor: float = 3.0) -> float:
    """``factor`` times the standard deviation of the embedding entries the blocks receive (ROME
    used 3x): the weight's, times the module's ``embed_scale`` where it scales its output (Gemma
    multiplies by sqrt(width), so noise sized on the weight alone would be 25x too small there)."""
    from ripple.arch import get_module

    module = get_module(model, spec.embed)
    scale = float(getattr(module, "embed_scale", 1.0))
    return factor * module.weight.detach().float().std().item() * scale


@torch.no_grad()
def causal_trace(model, tok, spec, prompt: str, subject: str, answer: str | None = None,
                 samples: int = 10, noise: float = 3.0, window: int = 1, seed: int = 0,
                 kinds=("hidden", "mlp", "attn"), positions=None) -> TraceResult:
    """Indirect effect of every (kind, token, layer) state; deterministic for a given ``seed``.
    ``positions``: trace only these token positions (negative counts from the end; the others
    are NaN), e.g. ``("subject_last", -1)`` to ask only where a layer sweep would edit."""
    text = render_prompt(prompt, subject)
    s0, s1 = subject_token_span(tok, prompt, subject)
    ids = torch.tensor([text_ids(tok, text)])
    device = next(model.parameters()).device
    n_tok, n_layers = ids.shape[1], spec.n_layers(model)
    batch = ids.repeat(samples + 1, 1).to(device)
    target = None
    if answer is None:  # trace the model's own top token itself: re-encoding " " + its text may give another
        target = int(last_logits(model, ids.to(device))[0].argmax())
        answer = tok.decode([target]).strip()
    if not answer.strip():
        raise RippleError("the answer is empty; pass --answer or let the model's own prediction be traced")
    target = first_token_id(tok, answer) if target is None else target
    gen = torch.Generator().manual_seed(seed)
    hidden = model.get_input_embeddings().weight.shape[1]
    eps = torch.randn(samples, s1 - s0, hidden, generator=gen) * embedding_noise_scale(model, spec, noise)
    embed_module = _module_of(spec, "embed")

    def corrupt(out, name):
        if name == embed_module:
            out = out.clone()
            out[1:, s0:s1] += eps.to(out.device, out.dtype)
        return out

    def run(patch: dict[str, int]) -> float:
        """P(target) averaged over the corrupted rows, with ``patch`` module -> token restored."""

        def edit(out, name):
            out = corrupt(out, name)
            if name in patch:
                out = out.clone()
                out[1:, patch[name]] = out[0, patch[name]]
            return out

        with TraceDict(model, [embed_module, *patch], edit_output=edit, retain_output=False):
            probs = torch.softmax(last_logits(model, batch).float(), -1)
        return probs[1:, target].mean().item()

    with torch.no_grad():
        p_clean = torch.softmax(last_logits(model, ids.to(device))[0].float(), -1)[target].item()
    p_corrupt = run({})
    if positions is None:
        traced = list(range(n_tok))
    else:
        traced = sorted({s1 - 1 if p == "subject_last" else p % n_tok for p in positions})
    effects = {}
    for kind in kinds:
        grid = torch.full((n_tok, n_layers), float("nan"))
        for layer in range(n_layers):
            lo, hi = (layer, layer + 1) if kind == "hidden" else (
                max(0, layer - window // 2), min(n_layers, layer - window // 2 + window))
            mods = [_module_of(spec, act_name(i, KINDS[kind])) for i in range(lo, hi)]
            for t in traced:
                grid[t, layer] = run({m: t for m in mods}) - p_corrupt
        effects[kind] = grid
    tokens = tok.convert_ids_to_tokens(ids[0].tolist())
    return TraceResult(text, subject, answer, tokens, (s0, s1), p_clean, p_corrupt, effects)


def plot_trace(result: TraceResult, path, kind: str) -> None:
    """One heatmap (tokens x layers) of a kind's indirect effect, the subject's tokens starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.effects[kind].numpy()
    labels = [t + ("*" if result.subject_range[0] <= i < result.subject_range[1] else "")
              for i, t in enumerate(result.tokens)]
    cmap = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}[kind]
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * grid.shape[1], 0.9 + 0.3 * grid.shape[0]), dpi=110)
    im = ax.imshow(grid, cmap=cmap, aspect="auto", vmin=min(0.0, grid.min()))
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xticks(range(grid.shape[1]))
    ax.set_xlabel("layer")
    ax.set_title(f"{kind}: restore one state\nP({result.answer}) clean {result.p_clean:.2f}, "
                 f"corrupted {result.p_corrupt:.2f}", fontsize=8)
    fig.colorbar(im, ax=ax, label="indirect effect")
    fig.tight_layout()
    from ripple.io import atomic_savefig

    atomic_savefig(fig, path)
    plt.close(fig)
