"""causal_trace on a tiny gpt2, against oracles that follow from causality and the model's structure.

- restoring the last block's output at the last token restores the logits exactly: IE = p_clean - p_corrupt;
- noise only touches subject tokens and attention is causal, so every state before the subject is
  the same in the clean and the corrupted run: restoring it changes nothing (IE = 0 at every layer);
- the last block's states at tokens other than the last never reach the last token's logits: IE = 0;
- the corrupted run, observed at the input of block 0, differs from the clean one at the subject only,
  by noise of scale ``noise * std(W_E)``; replaying that input by hand gives p_corrupt.
"""

import pytest
import torch

from ripple.arch import get_spec
from ripple.causal_trace import causal_trace

PROMPT, SUBJECT = "w10 w11 w12 w13 w14 w15", "w12 w13"  # subject = tokens 2 and 3
TOL = 1e-6  # probabilities here are ~0.01 .. 0.2 in float32


@pytest.fixture(scope="module")
def model():
    """Tiny gpt2 with every weight matrix scaled by 10, so clean and corrupted probabilities differ visibly."""
    from helpers import make_tiny_model

    m = make_tiny_model("gpt2")
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(10)
    return m


@pytest.fixture
def trace(model, tiny_tokenizer):
    def run(prompt=PROMPT, subject=SUBJECT, **kw):
        return causal_trace(model, tiny_tokenizer, get_spec(model), prompt, subject, **{"samples": 3, **kw})

    return run


def plain_probs(model, tok, text):
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return torch.softmax(model(ids).logits[0, -1].float(), -1)


def test_deterministic_for_a_seed(trace):
    a, b, c = trace(seed=4), trace(seed=4), trace(seed=5)
    assert a.p_corrupt == b.p_corrupt
    assert all(torch.equal(a.effects[k], b.effects[k]) for k in a.effects)
    assert c.p_corrupt != a.p_corrupt


def test_layout_and_p_clean_from_a_plain_forward(model, tiny_tokenizer, trace):
    probs = plain_probs(model, tiny_tokenizer, PROMPT)
    r = trace()  # answer = the model's own top token
    assert r.answer == tiny_tokenizer.convert_ids_to_tokens(int(probs.argmax()))
    assert r.p_clean == pytest.approx(probs.max().item(), abs=TOL)
    assert r.tokens == PROMPT.split() and r.subject_range == (2, 4)
    assert {k: tuple(v.shape) for k, v in r.effects.items()} == {k: (6, 2) for k in ("hidden", "mlp", "attn")}
    other = trace(answer="w40")
    assert other.p_clean == pytest.approx(probs[tiny_tokenizer.convert_tokens_to_ids("w40")].item(), abs=TOL)


def test_restoring_the_last_block_at_the_last_token_restores_everything(trace):
    for answer in (None, "w40"):
        r = trace(answer=answer)
        gap = r.p_clean - r.p_corrupt
        assert abs(gap) > 1e-4  # the oracle below is not 0 = 0
        assert r.effects["hidden"][-1, -1].item() == pytest.approx(gap, rel=1e-4, abs=1e-9)


def test_zero_noise_changes_nothing(trace):
    r = trace(noise=0.0)
    assert r.p_corrupt == pytest.approx(r.p_clean, abs=TOL)
    for grid in r.effects.values():
        assert grid.abs().max().item() <= TOL


@pytest.mark.parametrize("prompt, subject, start", [(PROMPT, SUBJECT, 2), ("w1 w2 w3 w4 w5", "w4", 3)])
def test_states_before_the_subject_and_off_the_last_token_cannot_matter(trace, prompt, subject, start):
    r = trace(prompt=prompt, subject=subject)
    assert r.subject_range[0] == start
    for kind, grid in r.effects.items():
        assert grid[:start].abs().max().item() <= TOL, kind  # every layer, every kind
        assert grid[:-1, -1].abs().max().item() <= TOL, kind  # the last block, not the last token
    # ... while restoring the subject itself does matter somewhere
    assert r.effects["hidden"][start:].abs().max().item() > 1e-4


def test_noise_is_on_the_subject_only_and_p_corrupt_replays(model, tiny_tokenizer, trace):
    seen = []

    def record(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handle = model.transformer.h[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        r = trace(samples=4, answer="w40")
    finally:
        handle.remove()
    assert [x.shape[0] for x in seen[:2]] == [1, 4]  # the clean run, then the corrupted one
    noise = seen[1] - seen[0]
    assert torch.equal(noise[:, :2], torch.zeros_like(noise[:, :2]))
    assert torch.equal(noise[:, 4:], torch.zeros_like(noise[:, 4:]))
    scale = 3.0 * model.transformer.wte.weight.std().item()
    assert 0.75 * scale < noise[:, 2:4].std().item() < 1.25 * scale

    ids = tiny_tokenizer(PROMPT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        embeds = model.transformer.wte(ids) + noise
        probs = torch.softmax(model(inputs_embeds=embeds).logits[:, -1].float(), -1)
    target = tiny_tokenizer.convert_tokens_to_ids("w40")
    assert r.p_corrupt == pytest.approx(probs[:, target].mean().item(), rel=1e-4, abs=1e-9)


@pytest.fixture(scope="module")
def byte_level_tok():
    """GPT-2-style tokens: every word has a bare form (``cc``) and a space-prefixed form (``Ġcc``)."""
    import itertools

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["".join(p) for p in itertools.product("abcdefg", repeat=2)][:49]
    vocab = {"<unk>": 0, "</s>": 1} | {w: 2 + k for k, w in enumerate(words)} | {
        "Ġ" + w: 51 + k for k, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="</s>")


def test_default_answer_is_the_models_own_top_token(model, byte_level_tok):
    """Even when that token has no leading space, so that " " + its text encodes to another token."""
    bare_tops = 0
    for prompt in ["aa ab ac", "ba bb bc bd", "ca cb", "da db dc", "ea eb ec ed", "fa fb"]:
        probs = plain_probs(model, byte_level_tok, prompt)
        top = byte_level_tok.convert_ids_to_tokens(int(probs.argmax()))
        bare_tops += not top.startswith("Ġ")
        r = causal_trace(model, byte_level_tok, get_spec(model), prompt, prompt.split()[1], samples=1,
                         kinds=("hidden",))
        assert r.answer == top.removeprefix("Ġ")
        assert r.p_clean == pytest.approx(probs.max().item(), abs=TOL)
    assert bare_tops > 0  # the case that needs the top token's id, not its re-encoded text


def test_noise_is_sized_on_what_the_blocks_receive(tiny_model):
    """Gemma's embedding multiplies its output by sqrt(width): the trace's noise follows that scale."""
    from ripple.arch import get_module, get_spec
    from ripple.causal_trace import embedding_noise_scale

    for model_type in ("gpt2", "gemma3_text"):
        model = tiny_model(model_type)
        spec = get_spec(model)
        module = get_module(model, spec.embed)
        ids = torch.arange(3, 40)[None]
        with torch.no_grad():
            out_std = module(ids).float().std().item()
        weight_std = module.weight.detach().float().std().item()
        expect = out_std / weight_std  # 1 for gpt2, sqrt(width) for gemma
        assert embedding_noise_scale(model, spec, 3.0) == pytest.approx(3.0 * weight_std * expect, rel=0.25)


def naive_trace(model, tok, prompt, subject, answer, samples, kinds, window, seed=0):
    """The trace as ROME's code runs it: one full forward pass per restored state, the clean row and
    the noisy rows in one batch, the state copied from the clean row; the noise drawn as
    causal_trace draws it. Module paths come from the architecture table."""
    from ripple.arch import resolve_site
    from ripple.causal_trace import embedding_noise_scale
    from ripple.hooks import TraceDict
    from ripple.tokens import subject_token_span

    spec = get_spec(model)
    ids = tok(prompt.replace("{}", subject), add_special_tokens=False, return_tensors="pt")["input_ids"]
    s0, s1 = subject_token_span(tok, prompt, subject)
    hidden = model.get_input_embeddings().weight.shape[1]
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, s1 - s0, hidden, generator=gen) * embedding_noise_scale(model, spec)
    target = tok.convert_tokens_to_ids(answer)
    n_tok, n_layers = ids.shape[1], spec.n_layers(model)
    embed = resolve_site(spec, "embed")[0]
    site = {"hidden": "out", "mlp": "mlp.out", "attn": "attn.out"}

    def run(patch):
        def edit(out, name):
            out = out.clone()
            if name == embed:
                out[1:, s0:s1] += eps
            if name in patch:
                out[1:, patch[name]] = out[0, patch[name]]
            return out

        with TraceDict(model, [embed, *patch], edit_output=edit), torch.no_grad():
            probs = torch.softmax(model(ids.repeat(samples + 1, 1)).logits[:, -1].float(), -1)
        return probs[1:, target].mean().item()

    p_corrupt = run({})
    out = {}
    for kind in kinds:
        base, _, w = kind.partition("/")
        width = 1 if base == "hidden" else int(w or window)
        grid = torch.zeros(n_tok, n_layers)
        for layer in range(n_layers):
            lo, hi = max(0, layer - width // 2), min(n_layers, layer - width // 2 + width)
            paths = [resolve_site(spec, f"blocks.{i}.{site[base]}")[0] for i in range(lo, hi)]
            for t in range(n_tok):
                grid[t, layer] = run({p: t for p in paths}) - p_corrupt
        out[kind] = grid
    return p_corrupt, out


@pytest.mark.parametrize("batch_rows", [3, 7, 1000])
def test_batched_trace_equals_one_pass_per_state(model, tiny_tokenizer, trace, batch_rows):
    """Batching the restorations and starting each pass at its first restored block changes nothing:
    the same effects as one full forward pass per restored state (ROME's loop), for every kind,
    windows included, whether a pass holds one restoration, a few, or all."""
    kinds = ("hidden", "mlp", "attn", "mlp/2", "attn/3")
    top = tiny_tokenizer.convert_ids_to_tokens(int(plain_probs(model, tiny_tokenizer, PROMPT).argmax()))
    p_corrupt, want = naive_trace(model, tiny_tokenizer, "w10 w11 {} w14 w15", SUBJECT, top, 3, kinds, 1)
    r = trace(answer=top, kinds=kinds, batch_rows=batch_rows)
    assert r.p_corrupt == pytest.approx(p_corrupt, rel=1e-5, abs=1e-8)
    assert set(r.effects) == set(kinds)
    for kind in kinds:
        torch.testing.assert_close(r.effects[kind], want[kind], rtol=1e-4, atol=1e-6, msg=kind)
    assert min(want[k].abs().max() for k in kinds) > 1e-3  # the comparison is not of zeros


def test_timing_counts_the_restorations(trace):
    r = trace(answer="w40")
    assert r.timing["restored_states"] == 3 * 6 * 2 and r.timing["rows"] == 3 * 6 * 2 * 3
    assert r.timing["seconds"] > 0


def test_options_object_and_keywords_agree(trace, model, tiny_tokenizer):
    from ripple.arch import get_spec
    from ripple.causal_trace import TraceOptions, causal_trace

    opts = TraceOptions(samples=3, kinds=("mlp",), seed=4)
    a = causal_trace(model, tiny_tokenizer, get_spec(model), PROMPT, SUBJECT, "w40", opts)
    b = causal_trace(model, tiny_tokenizer, get_spec(model), PROMPT, SUBJECT, "w40", samples=3, kinds=("mlp",), seed=4)
    assert torch.equal(a.effects["mlp"], b.effects["mlp"]) and a.p_corrupt == b.p_corrupt
    c = causal_trace(model, tiny_tokenizer, get_spec(model), PROMPT, SUBJECT, "w40", opts, seed=5)
    assert not torch.equal(a.effects["mlp"], c.effects["mlp"])  # a keyword overrides the object's field


@pytest.mark.parametrize("kind", ["mlps", "hidden/2", "mlp/0", "mlp/x"])
def test_bad_kind_is_one_line(trace, kind):
    from ripple.errors import RippleError

    with pytest.raises(RippleError, match="trace kind|unknown trace kind"):
        trace(kinds=(kind,))


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt_neox"])
def test_batched_trace_equals_one_pass_per_state_on_other_layouts(tiny_tokenizer, model_type):
    """Rotary positions, Gemma's scaled embeddings and sliding-window layers, a parallel block:
    starting a pass at a later block must still reproduce the full forward pass."""
    from helpers import make_tiny_model

    model = make_tiny_model(model_type)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4)
    top = tiny_tokenizer.convert_ids_to_tokens(int(plain_probs(model, tiny_tokenizer, PROMPT).argmax()))
    kinds = ("hidden", "mlp", "attn/2")
    p_corrupt, want = naive_trace(model, tiny_tokenizer, "w10 w11 {} w14 w15", SUBJECT, top, 2, kinds, 1)
    r = causal_trace(model, tiny_tokenizer, get_spec(model), PROMPT, SUBJECT, answer=top, samples=2,
                     kinds=kinds, batch_rows=5)
    assert r.p_corrupt == pytest.approx(p_corrupt, rel=1e-5, abs=1e-8)
    for kind in kinds:
        torch.testing.assert_close(r.effects[kind], want[kind], rtol=1e-4, atol=1e-6, msg=f"{model_type} {kind}")
    assert max(want[k].abs().max() for k in kinds) > 1e-4


def test_effects_by_token_kind_average_the_kinds_positions():
    """ROME's token kinds on a hand-made grid: 7 tokens, subject at 1..3 (three tokens)."""
    from ripple.causal_trace import TraceResult, effects_by_token_kind, token_kinds

    grid = torch.arange(7 * 2, dtype=torch.float32).view(7, 2)  # row t = [2t, 2t+1]
    r = TraceResult("p", "s", "a", list("abcdefg"), (1, 4), 0.5, 0.1, {"mlp": grid})
    kinds = token_kinds(7, (1, 4))
    assert kinds == {"before the subject": [0], "first subject token": [1], "middle subject tokens": [2],
                     "last subject token": [3], "first subsequent token": [4], "further tokens": [5],
                     "last token": [6]}
    by = effects_by_token_kind(r)["mlp"]
    assert by["middle subject tokens"] == [4.0, 5.0] and by["last token"] == [12.0, 13.0]
    # a one-token subject right before the last token: first = last subject token, no middle,
    # the first subsequent token is the last token, no further tokens
    short = token_kinds(3, (1, 2))
    assert short["first subject token"] == short["last subject token"] == [1]
    assert short["middle subject tokens"] == [] and short["further tokens"] == []
    assert short["first subsequent token"] == short["last token"] == [2]
    r2 = TraceResult("p", "s", "a", list("abc"), (1, 2), 0.5, 0.1, {"mlp": grid[:3]})
    assert effects_by_token_kind(r2)["mlp"]["middle subject tokens"] is None
