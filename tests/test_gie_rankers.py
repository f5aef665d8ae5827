"""GIE's damage rankers, the key cache and incremental re-evaluation, against hand-computed answers
and the full evaluation; and the curve arithmetic of benchmarks/gie/recall.py."""

import math

import pytest
import torch

from benchmarks.gie import recall as gr
from ripple.arch import get_spec, mlp_out_param, out_in_to_storage
from ripple.editing.delta import EditDelta
from ripple.errors import RippleError
from ripple.gie.keys import KeyCache
from ripple.gie.measure import ItemState, measure_items, prepare_resume
from ripple.gie.rankers import RANKERS, Ranker, RankInput
from ripple.probes.sets import ProbeItem, ProbeLink

from helpers import make_tiny_model, tiny_probe_items


def _state(n, reps=None):
    reps = torch.eye(n)[:, :3] if reps is None else reps
    return ItemState(ids=tuple(f"i{j}" for j in range(n)), reps={0: reps}, greedy=("x",) * n,
                     logp=torch.zeros(n, dtype=torch.float64), correct=(True,) * n)


def test_rank_leaves_out_the_edited_items_and_breaks_ties_by_index():
    scores = torch.tensor([0.9, 1.0, 0.5, 0.9, 0.1])
    ranker = Ranker("fixed", lambda inp: scores)
    inp = RankInput(_state(5), edited=(1,), layer=0, position="last")
    assert ranker.rank(inp) == [0, 3, 2, 4]
    assert Ranker("nan", lambda inp: torch.tensor([float("nan"), 1.0, 0.0])).rank(
        RankInput(_state(3), edited=(), layer=0, position="last")) == [1, 2, 0]  # NaN: last


# --- a hand-built key cache: 3 items, a rank-one edit u vᵀ at layer 4 of a llama -----------------

LAYER = 4
U = torch.tensor([1.0, 2.0])  # out = 2
V = torch.tensor([1.0, 0.0, 0.0])  # in = 3
# positions: item 0 has 2 (keys e0, 2 e0), item 1 has 2 (e1, e0/2), item 2 has 1 (e2 + e0/10)
KEYS = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0.5, 0, 0], [0.1, 0, 1.0]])
GRAD_M = torch.tensor([[1.0, 0], [0, 0], [0, 0], [-1.0, 1.0], [0, -1.0]])
DIRECT = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
MARGIN = torch.tensor([2.0, 0.5, 4.0], dtype=torch.float64)


def _cache():
    item = torch.tensor([0, 0, 1, 1, 2])
    pos = torch.tensor([0, 1, 0, 1, 0])
    return KeyCache(ids=("i0", "i1", "i2"), layers=(LAYER,), item=item, pos=pos,
                    in_prompt=torch.tensor([True, True, True, True, True]), keys={LAYER: KEYS}, margin=MARGIN,
                    top2=torch.zeros(3, 2, dtype=torch.long), subject_last=torch.tensor([0, 0, 0]),
                    last=torch.tensor([1, 1, 0]), direct=DIRECT, grad_margin={LAYER: GRAD_M},
                    grad_logp={LAYER: GRAD_M})


def _input(state=None, edited=()):
    spec = get_spec("llama")
    delta = EditDelta("hand", {mlp_out_param(spec, LAYER): out_in_to_storage(torch.outer(U, V), spec)})
    return RankInput(state or _state(3), edited=edited, layer=0, position="subject_last", cache=_cache(),
                     delta=delta, spec=spec)


def test_key_rankers_by_hand():
    inp = _input()
    # ΔW k = u (v·k): |ΔW k| = |u| |k_0|; item 0: max(1, 2)|u|, item 1: max(0, .5)|u|, item 2: .1|u|
    nu = math.sqrt(5)
    assert torch.allclose(RANKERS.get("key_norm").scores(inp), torch.tensor([2, 0.5, 0.1], dtype=torch.float64) * nu)
    # at the fact token (subject_last: position 0 of each): 1, 0, .1
    assert torch.allclose(RANKERS.get("key_norm_fact").scores(inp),
                          torch.tensor([1, 0, 0.1], dtype=torch.float64) * nu)
    assert torch.allclose(RANKERS.get("key_margin").scores(inp),
                          torch.tensor([2 / 2, 0.5 / 0.5, 0.1 / 4], dtype=torch.float64) * nu)
    assert RANKERS.get("key_margin").rank(inp) == [0, 1, 2]  # a tie (|u|) broken by index


def test_direct_and_taylor_by_hand():
    inp = _input()
    # direct: at the last position (item 0: pos 1, k = 2e0: ΔWk = 2u; item 1: pos 1, .5u; item 2: pos 0, .1u)
    # -(direct · ΔWk) / m: item 0: -(0,1)·(2,4)/2 = -2; item 1: -(1,0)·(.5,1)/.5 = -1; item 2: -(-1,0)·(.1,.2)/4
    assert torch.allclose(RANKERS.get("direct").scores(inp), torch.tensor([-2.0, -1.0, 0.025], dtype=torch.float64))
    # taylor: -Σ_t g_t·u (v·k_t) / m: item 0: -(1*1 + 0)/2 = -.5; item 1: -(0 + (-1+2)*.5)/.5 = -1;
    # item 2: -((0, -1)·(1, 2) * .1)/4 = .05
    assert torch.allclose(RANKERS.get("taylor").scores(inp), torch.tensor([-0.5, -1.0, 0.05], dtype=torch.float64))
    assert RANKERS.get("taylor").rank(inp) == [2, 0, 1]


def test_gradsim_by_hand():
    inp = _input()
    # the edit's gradient: g = (1, 0) at key e0, i.e. the matrix E with a 1 at (0, 0)
    inp.memo["edit_grad"] = {LAYER: (torch.tensor([[1.0, 0, 0]], dtype=torch.float64),
                                     torch.tensor([[1.0, 0]], dtype=torch.float64))}
    # item 0: (1,0)⊗e0 + 0 = E: cosine 1; item 1: (-1,1)⊗(e0/2): <., E> = -1/2, norm 1/√2;
    # item 2: (0,-1)⊗(e0/10 + e2): no entry at (0, 0): 0
    assert torch.allclose(RANKERS.get("gradsim").scores(inp),
                          torch.tensor([1.0, -0.5 / math.sqrt(0.5), 0.0], dtype=torch.float64))


def test_gradsim_reads_the_edit_gradient_from_the_model(tiny_tokenizer):
    from ripple.gie.rankers import edit_gradient

    from helpers import edit_requests

    model = make_tiny_model("llama")
    spec = get_spec(model)
    req = edit_requests()[0]
    grads = edit_gradient(model, tiny_tokenizer, spec, [req], [1])
    K, G = grads[1]
    # the gradient of log P(new | prompt) at down_proj's weight equals Σ_t g_t k_tᵀ
    w = model.get_submodule(spec.block(1, spec.mlp_out)).weight
    from ripple.tokens import answer_ids, text_ids
    p, a = text_ids(tiny_tokenizer, req.rendered), answer_ids(tiny_tokenizer, req.target_new)
    logp = torch.log_softmax(model(input_ids=torch.tensor([p + a])).logits[0].float(), -1)
    loss = logp[len(p) - 1 + torch.arange(len(a)), torch.tensor(a)].sum()
    (gw,) = torch.autograd.grad(loss, [w])
    assert torch.allclose((G.T @ K).float(), gw, atol=1e-5)


def test_combined_is_reciprocal_rank_fusion():
    inp = _input()
    # key_sqrt_margin: 2|u|/√2, .5|u|/√.5, .1|u|/2 -> ranks [1, 2, 3]; taylor ranks [2, 3, 1]
    assert torch.allclose(RANKERS.get("key_sqrt_margin").scores(inp), math.sqrt(5) * torch.tensor(
        [2 / math.sqrt(2), 0.5 / math.sqrt(0.5), 0.1 / 2], dtype=torch.float64))
    expect = [1 / 61 + 1 / 62, 1 / 62 + 1 / 63, 1 / 63 + 1 / 61]
    assert torch.allclose(RANKERS.get("combined").scores(inp), torch.tensor(expect, dtype=torch.float64))


def test_hops_follow_links_and_similarity_orders_within_a_hop():
    items = [ProbeItem(f"i{j}", "s", "r", "{} x", "a", links=links) for j, links in
             enumerate([(ProbeLink("i1", "same_subject"),), (ProbeLink("i2", "same_object"),), (), ()])]
    reps = torch.tensor([[1.0, 0], [0.0, 1], [1.0, 0.1], [1.0, 0.01]])
    inp = RankInput(_state(4, reps), edited=(0,), layer=0, position="subject_last", items=items)
    # i1 one hop, i2 two hops, i3 unreachable (however similar)
    assert RANKERS.get("hops").rank(inp) == [1, 2, 3]


def test_rankers_needing_keys_say_what_is_missing():
    with pytest.raises(RippleError, match="key cache"):
        RANKERS.get("taylor").rank(RankInput(_state(3), edited=(), layer=0, position="last"))
    inp = _input()
    inp.cache.grad_margin = {}
    with pytest.raises(RippleError, match="margin gradients"):
        RANKERS.get("taylor").rank(inp)
    spec = get_spec("llama")
    other = EditDelta("hand", {mlp_out_param(spec, 2): torch.zeros(2, 3)})
    with pytest.raises(RippleError, match="does not cover"):
        RANKERS.get("key_norm").rank(RankInput(_state(3), (), 0, "last", cache=_cache(), delta=other, spec=spec))


# --- on tiny models -----------------------------------------------------------------------------


def _rank_one_delta(model, spec, layer, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = model.get_submodule(spec.block(layer, spec.mlp_out)).weight
    out_dim, in_dim = (w.shape[1], w.shape[0]) if spec.mlp_out_transposed else w.shape
    dw = scale * torch.outer(torch.randn(out_dim, generator=g), torch.randn(in_dim, generator=g))
    return EditDelta("hand", {mlp_out_param(spec, layer): out_in_to_storage(dw, spec)})


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_taylor_matches_the_margin_change_of_a_small_edit(model_type, tiny_tokenizer):
    """The cached margin gradients and keys predict a small edit's margin change to first order."""
    model = make_tiny_model(model_type)
    spec = get_spec(model)
    items = tiny_probe_items()
    cache = KeyCache.build(model, tiny_tokenizer, spec, items, layers=[1])
    delta = _rank_one_delta(model, spec, 1, 1e-3)
    inp = RankInput(_state(len(items)), (), 0, "last", cache=cache, delta=delta, spec=spec)
    predicted = -RANKERS.get("taylor").scores(inp) * cache.margin.clamp_min(1e-3)
    with delta.applied(model):
        after = KeyCache.build(model, tiny_tokenizer, spec, items, layers=[1], grads=())
    z_after = after.margin  # margins of the same top-2 tokens only if they did not swap
    assert torch.equal(after.top2, cache.top2)
    actual = z_after - cache.margin
    assert actual.abs().max() > 1e-6  # the edit moved something
    assert torch.allclose(predicted, actual, atol=1e-3 * actual.abs().max().item() + 1e-7, rtol=2e-2)


def test_key_cache_keys_are_the_projection_inputs(tiny_tokenizer):
    from ripple.hooks import TraceDict
    from ripple.probes.record import encode_items
    from ripple.tokens import answer_ids

    model = make_tiny_model("llama")
    spec = get_spec(model)
    items = tiny_probe_items()
    cache = KeyCache.build(model, tiny_tokenizer, spec, items, layers=[0, 1], grads=())
    prompts, _ = encode_items(tiny_tokenizer, items)
    for j in (0, 4):
        seq = prompts[j] + answer_ids(tiny_tokenizer, items[j].answer)
        name = spec.block(1, spec.mlp_out)
        with torch.no_grad(), TraceDict(model, [name], retain_input=True, retain_output=False) as td:
            model(input_ids=torch.tensor([seq]))
        rows = (cache.item == j).nonzero().squeeze(1)
        assert torch.allclose(cache.keys[1][rows], td[name].input[0, : len(seq) - 1], atol=1e-6)
        assert cache.in_prompt[rows].sum() == len(prompts[j])


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "gemma3_text"])
def test_incremental_re_evaluation_equals_the_full_evaluation(model_type, tiny_tokenizer):
    model = make_tiny_model(model_type)
    spec = get_spec(model)
    items = tiny_probe_items()
    before, resume = prepare_resume(model, tiny_tokenizer, spec, items, layer=1, batch_size=3)
    assert before.logp.tolist() == measure_items(model, tiny_tokenizer, spec, items, batch_size=3).logp.tolist()
    delta = _rank_one_delta(model, spec, 1, 5.0)
    with delta.applied(model):
        full = measure_items(model, tiny_tokenizer, spec, items, batch_size=3)
        inc = measure_items(model, tiny_tokenizer, spec, items, batch_size=3, resume=resume)
        part = measure_items(model, tiny_tokenizer, spec, items[2:5], batch_size=3, resume=resume)
    assert full.greedy == inc.greedy and torch.equal(full.logp, inc.logp)
    assert all(torch.equal(full.reps[L], inc.reps[L]) and torch.equal(full.last[L], inc.last[L]) for L in full.layers)
    assert not torch.equal(full.logp, before.logp)  # the edit changed what was measured
    assert part.greedy == full.greedy[2:5] and torch.allclose(part.logp, full.logp[2:5], atol=1e-5)
    # the model's own forward is whole again afterwards
    assert measure_items(model, tiny_tokenizer, spec, items, batch_size=3).logp.tolist() == before.logp.tolist()


def test_resume_rejects_items_it_was_not_prepared_on(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    items = tiny_probe_items()
    _, resume = prepare_resume(model, tiny_tokenizer, None, items[:3], layer=1)
    with pytest.raises(RippleError, match="was not prepared"):
        measure_items(model, tiny_tokenizer, None, items, resume=resume)
    with pytest.raises(RippleError, match="out of range"):
        prepare_resume(model, tiny_tokenizer, None, items, layer=7)


# --- the benchmark's curve arithmetic -------------------------------------------------------------


def test_interpolated_times_and_curves_by_hand():
    times = {"0.5": 2.0, "1.0": 4.0}
    assert gr.interp(times, 0.25) == 1.0 and gr.interp(times, 0.75) == 3.0 and gr.interp(times, 1.0) == 4.0
    data = {"n_items": 11, "times": {"plain": times, "incremental": {"0.5": 1.0, "1.0": 2.0}},
            "rows": [{"n_damaged": 2, "damaged": {"r": [0, 6]}, "rank_seconds": {"r": 0.4}},
                     {"n_damaged": 1, "damaged": {"r": [1]}, "rank_seconds": {"r": 0.0}}]}
    pts = {s: (c, rec) for s, c, rec in gr.curve(data, "r", "damaged", "plain")}
    # share .1 of 10 others: k = 1 -> finds rank 0 only: 1/3; cost (0.2 + 0.4) / 4
    assert pts[0.1][1] == pytest.approx(1 / 3) and pts[0.1][0] == pytest.approx(0.15)
    assert pts[0.5][1] == pytest.approx(2 / 3) and pts[1.0][1] == 1.0
    rnd = {s: rec for s, _, rec in gr.curve(data, "random", "damaged", "incremental")}
    assert rnd[0.5] == pytest.approx(0.5)
    assert gr.at_cost(gr.curve(data, "r", "damaged", "plain"), 0.15) == pytest.approx(1 / 3)


def test_the_probe_pass_records_the_same_keys_as_the_key_cache(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    spec = get_spec(model)
    items = tiny_probe_items()
    _, resume = prepare_resume(model, tiny_tokenizer, spec, items, layer=1, key_layers=[0, 1], batch_size=4)
    built = KeyCache.build(model, tiny_tokenizer, spec, items, layers=[0, 1], grads=())
    got = resume.keys
    assert torch.equal(got.item, built.item) and torch.equal(got.pos, built.pos) and torch.equal(got.top2, built.top2)
    assert all(torch.allclose(got.keys[L], built.keys[L], atol=1e-6) for L in (0, 1))
    assert torch.allclose(got.margin, built.margin, atol=1e-5) and torch.allclose(got.direct, built.direct, atol=1e-5)


def test_expected_recall_reads_the_benchmark_table(tmp_path, monkeypatch):
    import json

    from ripple.gie import budget

    table = tmp_path / "gie_recall.json"
    table.write_text(json.dumps({"organism_rome": {"model": "organism", "method": "rome", "edits": 400, "damaged": 171,
                                                   "recall_at_budget": {
                                                       "key_norm": {"0.05": 0.9, "0.1": 0.95, "0.2": 1.0},
                                                       "taylor": {"0.05": 0.5, "0.1": 0.6, "0.2": 0.7}}}}))
    monkeypatch.setattr(budget, "RECALL_TABLE", table)
    got = budget.expected_recall("organism", "rome", 0.15, "key_norm")  # the nearest measured budget below: 0.1
    assert (got["budget"], got["recall"], got["run"]) == (0.1, 0.95, "organism_rome")
    assert got["curves"] == {"key_norm": [[0.05, 0.9], [0.1, 0.95], [0.2, 1.0]],  # the report's recall chart
                             "taylor": [[0.05, 0.5], [0.1, 0.6], [0.2, 0.7]]}
    assert budget.expected_recall("organism", "rome", 0.15, "taylor")["recall"] == 0.6
    assert budget.expected_recall("organism", "rome", 0.01, "key_norm")["recall"] is None
    assert budget.expected_recall("organism", "rome", 0.5, "similarity") is None  # not measured
    assert budget.expected_recall("/models/other", "rome", 0.5, "key_norm") is None
    with pytest.raises(RippleError, match="share of the probe set"):
        budget.check_budget(0)
