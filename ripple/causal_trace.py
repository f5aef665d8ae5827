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

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from ripple.arch import act_name, get_module, resolve_site
from ripple.devices import input_device, param_value
from ripple.errors import RippleError
from ripple.hooks import TraceDict, start_at_block
from ripple.io import atomic_savefig
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
    timing: dict = field(default_factory=dict)  # seconds, restored_states, rows

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "subject": self.subject, "answer": self.answer, "tokens": self.tokens,
                "subject_range": list(self.subject_range), "p_clean": self.p_clean, "p_corrupt": self.p_corrupt,
                "indirect_effect": {k: [[None if x != x else round(x, 6) for x in row] for row in v.tolist()]
                                    for k, v in self.effects.items()}}


def _module_of(spec, site: str) -> str:

    path, kind = resolve_site(spec, site)
    if kind != "output":
        raise RippleError(f"causal tracing restores module outputs; site {site!r} is a module's input in this "
                          f"{spec.model_type} layout")
    return path


def embedding_noise_scale(model, spec, factor: float = 3.0) -> float:
    """``factor`` times the standard deviation of the embedding entries the blocks receive (ROME
    used 3x): the weight's, times the module's ``embed_scale`` where it scales its output (Gemma
    multiplies by sqrt(width), so noise sized on the weight alone would be 25x too small there)."""

    module = get_module(model, spec.embed)
    scale = float(getattr(module, "embed_scale", 1.0))
    return factor * param_value(model, spec.embed + ".weight").float().std().item() * scale


def parse_kind(kind: str, window: int) -> tuple[str, int]:
    """``"mlp"`` -> (mlp, ``window``); ``"mlp/10"`` -> (mlp, 10); hidden states are one layer."""
    base, _, w = kind.partition("/")
    if base not in KINDS:
        raise RippleError(f"unknown trace kind {kind!r}; use {', '.join(KINDS)} (mlp and attn may take a window, "
                          "e.g. mlp/10)")
    if base == "hidden":
        if w and int(w) != 1:
            raise RippleError(f"trace kind {kind!r}: a hidden state is restored one layer at a time; use hidden")
        return base, 1
    try:
        width = int(w) if w else window
    except ValueError:
        raise RippleError(f"trace kind {kind!r}: the window must be a whole number of layers, e.g. mlp/10") from None
    if width < 1:
        raise RippleError(f"trace kind {kind!r}: the window must be at least 1 layer")
    return base, width


def _window(layer: int, width: int, n_layers: int) -> tuple[int, int]:
    """The layers restored together for ``layer`` (ROME's centred window, clipped at the ends)."""
    return max(0, layer - width // 2), min(n_layers, layer - width // 2 + width)


@dataclass(frozen=True)
class TraceOptions:
    """How :func:`causal_trace` corrupts and restores: ``samples`` noise draws of ``noise`` times
    the embeddings' spread (seeded by ``seed``); ``kinds`` restored (``hidden``, ``mlp``, ``attn``;
    ``mlp/10`` restores a window of 10 layers, a plain ``mlp`` or ``attn`` takes ``window``);
    ``positions``: trace only these token positions (negative counts from the end, or
    ``subject_last``; the others are NaN); ``batch_rows``: corrupted rows per forward pass."""

    samples: int = 10
    noise: float = 3.0
    window: int = 1
    seed: int = 0
    kinds: tuple = ("hidden", "mlp", "attn")
    positions: tuple | None = None
    batch_rows: int = 256


@dataclass
class _Corrupted:
    """The clean run's restorable states and the corrupted residual stream entering every block."""

    ids: torch.Tensor  # [1, tokens] on the model's input device
    target: int
    samples: int
    clean: dict[str, torch.Tensor]  # module -> [tokens, hidden]
    entering: list[torch.Tensor]  # block -> [samples, tokens, hidden]
    p_clean: float
    p_corrupt: float


@torch.no_grad()
def causal_trace(model, tok, spec, prompt: str, subject: str, answer: str | None = None,
                 opts: TraceOptions | None = None, **options) -> TraceResult:
    """Indirect effect of every (kind, token, layer) state; deterministic for a given seed.
    ``opts`` (a :class:`TraceOptions`) or its fields as keywords (``samples=2``, ``kinds=("mlp",)``).

    The restorations are batched: every restored state is one group of ``samples`` corrupted rows,
    up to ``batch_rows`` rows a forward pass, and since the corrupted run is the same for every
    restoration up to the first restored layer, each pass starts there from the cached corrupted
    residual stream (:func:`ripple.hooks.start_at_block`) instead of at the embeddings."""

    opts = dataclasses.replace(opts or TraceOptions(), **options)
    t_start = time.perf_counter()
    text = render_prompt(prompt, subject)
    s0, s1 = subject_token_span(tok, prompt, subject)
    ids = torch.tensor([text_ids(tok, text)])
    n_tok, n_layers = ids.shape[1], spec.n_layers(model)
    target, answer = _target(model, tok, ids, answer)
    if opts.samples < 1 or opts.batch_rows < 1:
        raise RippleError("samples and batch_rows must be at least 1")
    parsed = {kind: parse_kind(kind, opts.window) for kind in opts.kinds}
    gen = torch.Generator().manual_seed(opts.seed)
    hidden = model.get_input_embeddings().weight.shape[1]
    eps = torch.randn(opts.samples, s1 - s0, hidden, generator=gen) * embedding_noise_scale(model, spec, opts.noise)
    traced = list(range(n_tok)) if opts.positions is None else \
        sorted({s1 - 1 if p == "subject_last" else p % n_tok for p in opts.positions})
    jobs = _restorations(spec, parsed, traced, n_layers)
    run = _corrupt(model, spec, ids, target, eps, (s0, s1), sorted({m for job in jobs for m in job[4]}))
    effects = {kind: torch.full((n_tok, n_layers), float("nan")) for kind in parsed}
    for kind, layer, t, p in _restored_probs(model, spec, run, jobs, max(1, opts.batch_rows // opts.samples)):
        effects[kind][t, layer] = p - run.p_corrupt
    timing = {"seconds": time.perf_counter() - t_start, "restored_states": len(jobs), "rows": len(jobs) * opts.samples}
    tokens = tok.convert_ids_to_tokens(ids[0].tolist())
    return TraceResult(text, subject, answer, tokens, (s0, s1), run.p_clean, run.p_corrupt, effects, timing)


def _target(model, tok, ids: torch.Tensor, answer: str | None) -> tuple[int, str]:
    """The answer's first token id, and the answer (None: the model's own top token, traced as itself:
    re-encoding " " + its text may give another token)."""
    target = None
    if answer is None:
        target = int(last_logits(model, ids.to(input_device(model)))[0].argmax())
        answer = tok.decode([target]).strip()
    if not answer.strip():
        raise RippleError("the answer is empty; pass --answer or let the model's own prediction be traced")
    return (first_token_id(tok, answer) if target is None else target), answer


def _restorations(spec, parsed: dict, traced: list[int], n_layers: int) -> list[tuple]:
    """Every restoration: (kind, layer, token, the block its pass starts at, the modules restored)."""
    jobs = []
    for kind, (base, width) in parsed.items():
        for layer in range(n_layers):
            lo, hi = _window(layer, width, n_layers)
            mods = tuple(_module_of(spec, act_name(i, KINDS[base])) for i in range(lo, hi))
            jobs += [(kind, layer, t, lo, mods) for t in traced]
    return jobs


def _corrupt(model, spec, ids: torch.Tensor, target: int, eps: torch.Tensor, span: tuple[int, int],
             sites: list[str]) -> _Corrupted:
    """The clean run (its states at ``sites``, P(target)) and the corrupted one (``eps`` added to
    the subject's embeddings at ``span``: P(target) and the residual entering every block)."""
    s0, s1 = span
    embed_module = _module_of(spec, "embed")
    blocks = [spec.block(i) for i in range(spec.n_layers(model))]

    def corrupt(out, name):
        if name == embed_module:
            out = out.clone()
            out[:, s0:s1] += eps.to(out.device, out.dtype)
        return out

    ids_dev = ids.to(input_device(model))
    with TraceDict(model, sites, clone=True) as clean_tr:  # the clean states, [tokens, hidden] each
        p_clean = torch.softmax(last_logits(model, ids_dev)[0].float(), -1)[target].item()
    corrupted = ids_dev.repeat(eps.shape[0], 1)
    with TraceDict(model, [embed_module, *blocks], retain_input=True, retain_output=False, clone=True,
                   edit_output=corrupt) as corr_tr:  # the corrupted residual entering every block
        p_corrupt = torch.softmax(last_logits(model, corrupted).float(), -1)[:, target].mean().item()
    return _Corrupted(ids_dev, target, eps.shape[0], {m: clean_tr[m].output[0] for m in sites},
                      [corr_tr[b].input for b in blocks], p_clean, p_corrupt)


def _restored_probs(model, spec, run: _Corrupted, jobs: list[tuple], per_pass: int):
    """(kind, layer, token, P(target) with that state restored, averaged over the samples) for every
    job, ``per_pass`` restorations a forward pass, each pass started at its first restored block."""
    device, samples = run.ids.device, run.samples
    by_start: dict[int, list] = {}
    for job in jobs:
        by_start.setdefault(job[3], []).append(job)
    for start, group in sorted(by_start.items()):
        for c in range(0, len(group), per_pass):
            chunk = group[c:c + per_pass]
            feed = run.entering[start].repeat(len(chunk), 1, 1)
            where: dict[str, tuple[list[int], list[int]]] = {}
            for j, (_, _, t, _, mods) in enumerate(chunk):
                for m in mods:
                    r, k = where.setdefault(m, ([], []))
                    r += range(j * samples, (j + 1) * samples)
                    k += [t] * samples
            index = {m: (torch.tensor(r, device=device), torch.tensor(k, device=device)) for m, (r, k) in where.items()}

            def restore(out, name, index=index):
                r, k = index[name]
                out = out.clone()
                out[r, k] = run.clean[name][k].to(out.dtype)
                return out

            with start_at_block(model, spec, start, lambda feed=feed: feed), \
                    TraceDict(model, list(index), edit_output=restore, retain_output=False):
                logits = last_logits(model, run.ids.repeat(len(chunk) * samples, 1))
            probs = torch.softmax(logits.float(), -1)[:, run.target].view(len(chunk), samples).mean(1).cpu()
            for (kind, layer, t, _, _), p in zip(chunk, probs.tolist()):
                yield kind, layer, t, p


#: ROME's token kinds (Meng et al., 2022, Figure 2), and the tokens before the subject apart
TOKEN_KINDS = ("before the subject", "first subject token", "middle subject tokens", "last subject token",
               "first subsequent token", "further tokens", "last token")


def token_kinds(n_tok: int, subject_range: tuple[int, int]) -> dict[str, list[int]]:
    """The positions of each token kind, as ROME's averaging takes them: a one-token subject is both
    its first and its last token, and a first subsequent token that ends the prompt is also the last
    token; a kind the prompt lacks is absent.

    >>> token_kinds(6, (1, 3))["middle subject tokens"], token_kinds(6, (1, 3))["further tokens"]
    ([], [4])
    """
    s0, s1 = subject_range
    out = {"before the subject": list(range(0, s0)), "first subject token": [s0],
           "middle subject tokens": list(range(s0 + 1, s1 - 1)), "last subject token": [s1 - 1],
           "first subsequent token": [s1] if s1 < n_tok else [], "further tokens": list(range(s1 + 1, n_tok - 1)),
           "last token": [n_tok - 1]}
    return out


def effects_by_token_kind(result: TraceResult) -> dict[str, dict[str, list[float] | None]]:
    """Per trace kind and token kind, the indirect effect per layer averaged over the kind's
    positions (``None`` where the prompt has no such token)."""
    kinds = token_kinds(len(result.tokens), result.subject_range)
    out = {}
    for kind, grid in result.effects.items():
        out[kind] = {name: (grid[pos].mean(0).tolist() if pos else None) for name, pos in kinds.items()}
    return out


def plot_trace(result: TraceResult, path, kind: str) -> None:
    """One heatmap (tokens x layers) of a kind's indirect effect, the subject's tokens starred."""
    import matplotlib  # lazy: heavy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: heavy

    grid = result.effects[kind].numpy()
    labels = [t + ("*" if result.subject_range[0] <= i < result.subject_range[1] else "")
              for i, t in enumerate(result.tokens)]
    cmap = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}[kind.split("/")[0]]
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * grid.shape[1], 0.9 + 0.3 * grid.shape[0]), dpi=110)
    im = ax.imshow(grid, cmap=cmap, aspect="auto", vmin=min(0.0, grid.min()))
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xticks(range(grid.shape[1]))
    ax.set_xlabel("layer")
    ax.set_title(f"{kind}: restore one state\nP({result.answer}) clean {result.p_clean:.2f}, "
                 f"corrupted {result.p_corrupt:.2f}", fontsize=8)
    fig.colorbar(im, ax=ax, label="indirect effect")
    fig.tight_layout()

    atomic_savefig(fig, path)
    plt.close(fig)
