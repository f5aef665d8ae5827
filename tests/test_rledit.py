"""RLEdit: the hypernetwork's pieces against hand-computed oracles, training, and the editor's contract."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from ripple.arch import get_spec
from ripple.editing.context import EditContext
from ripple.editing.requests import EditRequest
from ripple.editing.session import edited
from ripple.errors import RippleError
from ripple.rledit.editor import RLEditHParams
from ripple.rledit.hypernet import Hypernetwork
from ripple.rledit.net import HyperNet, Moments, ridge_shift
from ripple.rledit.train import Curriculum, run_sequence, train

from helpers import assert_one_line_error, assert_state, cli, make_tiny_model, make_tiny_tokenizer, state, stats_corpus

HP = RLEditHParams(layers=(0, 1), rank=8, n_blocks=2, lr_init=1e-2, meta_lr=1e-2, batch_edits=2, seq_batches=2,
                   n_sequences=2, back_depth=2, paraphrases=1, loc_prompts=4)


def tiny_requests(n=6):
    words = [f"w{i}" for i in range(10, 10 + n)]
    return [EditRequest("{} w20 w21", w, f"w{60 + i}", f"w{40 + i}", paraphrase_prompts=(f"w30 {w} w21",),
                        case_id=f"c{i}") for i, w in enumerate(words)]


def tiny_ctx(seed=0):
    model = make_tiny_model("gpt2", seed=seed)
    return EditContext(model, make_tiny_tokenizer(), get_spec(model), corpus=stats_corpus())


def test_moments_match_numpy_over_batches():
    x = torch.randn(13, 5, dtype=torch.float64)
    m = Moments.empty(5).updated(x[:4]).updated(x[4:9]).updated(x[9:])
    assert m.n.item() == 13
    np.testing.assert_allclose(m.mean.numpy(), x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.std.numpy(), x.numpy().std(0, ddof=1), rtol=1e-12)


def test_blocks_start_as_the_identity_and_the_change_is_a_normalized_gradient_step():
    torch.manual_seed(0)
    net = HyperNet(key_size=4, value_size=3, rank=5, n_blocks=3, n_modules=2, lr=0.1)
    K, D = torch.randn(6, 4), torch.randn(6, 3)
    m = Moments.empty(7).updated(torch.cat([K, D], -1))
    h = m.normalize(torch.cat([K, D], -1))
    for block in net.blocks:  # each block's residual branch is exactly zero
        assert torch.equal(block(h, 1) - h, torch.zeros_like(h))
    # so k~, d~ are the normalized inputs and dV = -lr <k, k~> d~, by hand
    kt, dt = h[:, :4], h[:, 4:]
    expect = -0.1 * (K * kt).sum(-1, keepdim=True) * dt
    assert torch.equal(net.value_change(K, D, 1, m), expect)


def test_every_part_of_the_blocks_trains():
    """At the start the blocks' branch is exactly 0; its rectifier must still pass a gradient there,
    or A, B, bias and scale never move (relu's gradient at 0 is 0: the format-1 networks kept
    B = 0, bias = 0, scale = 1 through training). After one step every parameter has a gradient."""
    torch.manual_seed(0)
    net = HyperNet(key_size=4, value_size=3, rank=5, n_blocks=2, n_modules=1, lr=0.1)
    K, D = torch.randn(6, 4), torch.randn(6, 3)
    m = Moments.empty(7).updated(torch.cat([K, D], -1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        net.value_change(K, D, 0, m).pow(2).sum().backward()
        opt.step()
    for name, p in net.named_parameters():
        if name != "log_lam":  # the ridge weight is outside value_change
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert net.blocks[0].B.abs().sum() > 0


def test_step_sizes_and_blocks_train_at_their_own_rates():
    """lr_lr moves each module's step size and ridge weight, meta_lr the blocks: Adam's first step
    moves every parameter with a gradient by about its group's rate."""
    ctx = tiny_ctx()
    hp = replace(HP, n_sequences=1, meta_lr=1e-7, lr_lr=1e-2)
    hn = train(ctx, None, hp, requests=tiny_requests(), log=lambda *x, **k: None)
    net = next(iter(hn.nets.values()))
    assert torch.allclose((net.lr.detach() - HP.lr_init).abs(), torch.full_like(net.lr, 1e-2), rtol=1e-3)
    assert float(net.log_lam.detach().abs().max()) == pytest.approx(1e-2, rel=1e-3)
    moved = max(float(p.detach().abs().max()) for b in net.blocks for p in (b.B, b.bias, b.shift))
    assert 0 < moved <= 1.01e-7


def test_an_edits_features_do_not_depend_on_the_rest_of_its_batch():
    """D is the gradient of the summed NLL: an edit reads the same keys and gradients alone as in a
    batch (with the mean, alone it read D times the batch's size, outside anything it trained on)."""
    from ripple.rledit.features import keys_and_grads

    ctx = tiny_ctx()
    pairs = [(r.rendered, r.target_new) for r in tiny_requests(4)]
    alone = keys_and_grads(ctx.model, ctx.tok, ctx.spec, (0, 1), pairs[:1])
    batch = keys_and_grads(ctx.model, ctx.tok, ctx.spec, (0, 1), pairs)
    for layer in (0, 1):
        n = alone[layer][0].shape[0]
        assert torch.allclose(alone[layer][0], batch[layer][0][:n], atol=1e-5)
        assert torch.allclose(alone[layer][1], batch[layer][1][:n], atol=1e-6, rtol=1e-4)
        assert alone[layer][1].abs().sum() > 0


def test_ridge_solve_matches_its_closed_form_and_its_gradient():
    g = torch.Generator().manual_seed(3)
    K = torch.randn(7, 4, generator=g, dtype=torch.float64)
    dV = torch.randn(7, 3, generator=g, dtype=torch.float64)
    lam = torch.tensor(0.3, dtype=torch.float64)
    got = ridge_shift(K, dV, lam)
    # closed form: least squares on [K; sqrt(e^lam) I] against [dV; 0]
    A = np.vstack([K.numpy(), np.sqrt(np.exp(0.3)) * np.eye(4)])
    B = np.vstack([dV.numpy(), np.zeros((4, 3))])
    np.testing.assert_allclose(got.numpy(), np.linalg.lstsq(A, B, rcond=None)[0], rtol=1e-10, atol=1e-12)
    inputs = (K.clone().requires_grad_(), dV.clone().requires_grad_(), lam.clone().requires_grad_())
    assert torch.autograd.gradcheck(ridge_shift, inputs)


def test_one_training_step_lowers_the_training_loss():
    ctx = tiny_ctx()
    hp = replace(HP, n_sequences=1)
    hn = Hypernetwork.build(ctx.model, ctx.spec, hp.layers, hp.rank, hp.n_blocks, hp.lr_init, hp.seed)
    cur = Curriculum(None, hp, 0, tiny_requests())
    batches = cur.sequence(0)
    cur.rng.seed(1)
    _, before = run_sequence(ctx, hn, batches, cur, hp, hn.moments, learn=True)
    opt = torch.optim.Adam(hn.nets.parameters(), lr=hp.meta_lr)
    torch.nn.utils.clip_grad_norm_(hn.nets.parameters(), hp.max_grad_norm)
    opt.step()
    cur.rng.seed(1)  # the same unrelated prompts
    _, after = run_sequence(ctx, hn, batches, cur, hp, hn.moments, learn=False)
    total = lambda x: x["edit"] + x["locality"] + x["reg"]  # noqa: E731
    assert total(after) < total(before)


def test_training_is_deterministic_and_leaves_the_model_as_it_was(tmp_path):
    ctx = tiny_ctx()
    before = state(ctx.model)
    a = train(ctx, None, HP, requests=tiny_requests(), log=lambda *x, **k: None)
    assert_state(ctx.model, before)
    b = train(ctx, None, HP, requests=tiny_requests(), log=lambda *x, **k: None)
    sa, sb = a.nets.state_dict(), b.nets.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(m.equal(b.moments[k]) for k, m in a.moments.items())
    assert any(not torch.equal(sa[k], Hypernetwork.build(ctx.model, ctx.spec, HP.layers, 8, 2, 1e-2, 0)
                               .nets.state_dict()[k]) for k in sa)  # training changed the network
    a.save(tmp_path)
    c = Hypernetwork.load(tmp_path)
    assert all(torch.equal(sa[k], c.nets.state_dict()[k]) for k in sa)


def test_an_rledit_edit_restores_bit_exactly_with_its_running_moments(tmp_path):
    ctx = tiny_ctx()
    train(ctx, None, HP, requests=tiny_requests(), log=lambda *x, **k: None).save(tmp_path)
    hp = replace(HP, hypernet=str(tmp_path))
    before = state(ctx.model)
    with edited(ctx, "rledit", tiny_requests(4), hp, mode="sequential", chunk=2, force=True) as run:
        assert len(run.deltas) == 2 and run.total.norm_ratios(ctx.model)
        assert not torch.equal(state(ctx.model)["transformer.h.1.mlp.c_proj.weight"],
                               before["transformer.h.1.mlp.c_proj.weight"])
        assert ctx.editor_state("rledit")["moments"]  # the moments moved on with the edits
    assert_state(ctx.model, before)
    assert "moments" not in ctx.editor_state("rledit")


def test_a_hypernetwork_for_another_model_is_refused(tmp_path):
    ctx = tiny_ctx()
    train(ctx, None, replace(HP, n_sequences=1), requests=tiny_requests(), log=lambda *x, **k: None).save(tmp_path)
    hp = replace(HP, hypernet=str(tmp_path))
    other = tiny_ctx(seed=1)  # the same architecture and size, other weights
    with pytest.raises(RippleError, match="another model of the same architecture") as e:
        with edited(other, "rledit", tiny_requests(2), hp, force=True):
            pass
    assert "\n" not in str(e.value) and "ripple rledit train" in str(e.value)
    llama = make_tiny_model("llama")
    lctx = EditContext(llama, make_tiny_tokenizer(), get_spec(llama), corpus=stats_corpus())
    with pytest.raises(RippleError, match="another architecture"):
        with edited(lctx, "rledit", tiny_requests(2), hp, force=True):
            pass
    with pytest.raises(RippleError, match="edits layers \\[0, 1\\], not \\[1\\]"):
        with edited(ctx, "rledit", tiny_requests(2), replace(hp, layers=(1,)), force=True):
            pass


def test_cli_trains_and_edits_with_a_hypernetwork(tmp_path, capfd, monkeypatch, saved_gpt2):
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    from helpers import write_jsonl

    model_dir, _ = saved_gpt2
    edits = tmp_path / "edits.jsonl"
    write_jsonl(edits, [r.to_dict() for r in tiny_requests(4)])
    sets = ["--set", "layers=0,1", "rank=4", "n_blocks=1", "batch_edits=2", "seq_batches=2", "n_sequences=1"]
    code, out, err = cli(capfd, "rledit", "train", "--model", str(model_dir), "--edits", str(edits),
                         "--out", str(tmp_path / "hn"), "--quiet", *sets)
    assert code == 0, err
    assert (tmp_path / "hn" / "hypernet.json").is_file()
    code, out, err = cli(capfd, "edit", "--model", str(model_dir), "--method", "rledit", "--edits", str(edits),
                         "--hypernet", str(tmp_path / "hn"), "--set", "layers=0,1", "--out", str(tmp_path / "e"),
                         "--force")
    assert code == 0, err
    assert (tmp_path / "e" / "delta.safetensors").exists()
    assert "trained on calls of" not in err  # a batch of 4 against training's 2
    code, out, err = cli(capfd, "edit", "--model", str(model_dir), "--method", "rledit", "--edits", str(edits),
                         "--hypernet", str(tmp_path / "hn"), "--set", "layers=0,1", "--out", str(tmp_path / "s"),
                         "--force", "--sequential")
    assert code == 0, err
    assert "trained on calls of 2 edits and was given 1 a call" in err and "--chunk 2" in err
    code, out, err = cli(capfd, "edit", "--model", str(model_dir), "--method", "memit", "--edits", str(edits),
                         "--hypernet", str(tmp_path / "hn"), "--out", str(tmp_path / "m"))
    assert_one_line_error(code, err)
    assert "--hypernet is for --method rledit" in err
    code, out, err = cli(capfd, "edit", "--model", str(model_dir), "--method", "rledit", "--edits", str(edits),
                         "--hypernet", str(tmp_path / "nothing"), "--out", str(tmp_path / "n"))
    assert_one_line_error(code, err)
    assert "holds no RLEdit hypernetwork" in err


@pytest.mark.slow
def test_the_shipped_hypernetwork_fits_the_organism_and_audits_an_edit(capfd, tmp_path):
    """The organism ships its trained hypernetwork (at most 10 MB); rledit finds it without --hypernet."""
    import json

    from ripple.loading import load_model
    from ripple.rledit.store import find_hypernet, shipped_dir

    assert sum(p.stat().st_size for p in shipped_dir().iterdir()) <= 10_000_000
    model, _, spec = load_model("organism")
    hn = Hypernetwork.load(find_hypernet(model, spec, None))
    hn.check_model(model, spec, "the package")
    assert hn.meta["training"]["sequences"] and hn.layers == (3, 4, 5)
    out = tmp_path / "audit"
    code, _, err = cli(capfd, "audit", "--model", "organism", "--method", "rledit", "--prompt", "{} was born in",
                       "--subject", "Lodro Toudein", "--target", "Kraile", "--out", out, "--quiet")
    assert code in (0, 1), err
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["status"] in ("pass", "warn", "fail")
    assert "rledit" in json.dumps(report)


@pytest.mark.slow
def test_stress_runs_rledit_with_its_hypernetwork(capfd, tmp_path):
    """``ripple stress --method rledit`` (the shipped hypernetwork, two edits a step); --hypernet goes
    to rledit only, while the compared editor runs with its own settings."""
    import json

    from ripple.rledit.store import shipped_dir

    out = tmp_path / "out"
    code, _, err = cli(capfd, "stress", "--model", "organism", "--method", "rledit", "--compare", "rome", "--edits", 4,
                       "--every", 2, "--chunk", 2, "--counterfact", "--hypernet", shipped_dir(), "--out", out, "--quiet")
    assert code == 0, err
    curves = json.loads((out / "stress.json").read_text())["curves"]
    assert [r["edits"] for r in curves["rledit"]["checkpoints"]] == [0, 2, 4]
    assert curves["rledit"]["checkpoints"][-1]["counterfact"]["efficacy"] >= 0


def test_a_training_sequence_longer_than_the_training_facts_goes_round_them_to_new_objects(world):
    from ripple.editing.streams import fact_of
    from ripple.rledit.train import editable_relations, fact_split

    train_facts = {p for p in fact_split(world)["train"] if p[1] in editable_relations(world)}
    n_batches = len(train_facts) // 10 + 5  # more edits than facts: some facts come round again
    hp = replace(HP, batch_edits=10, seq_batches=n_batches)
    batches = Curriculum(world, hp, 0).sequence(0)
    edits = [r for b in batches for r in b]
    assert len(batches) == n_batches and all(len(b) == 10 for b in batches)
    assert {fact_of(r) for r in edits} == train_facts  # every training fact, and only those
    last = {}
    for r in edits:
        fact = fact_of(r)
        if fact in last:  # a second edit of a fact: a new object, raced against the one it holds now
            assert r.target_new != last[fact].target_new and r.target_true == last[fact].target_new
        last[fact] = r
    assert len(last) < len(edits)


def test_a_format_1_hypernetwork_is_refused_with_the_command_that_retrains_it(tmp_path):
    """Format 1 was trained on other gradient features (the mean NLL's) with blocks that never
    trained; reading it now would edit with features it never saw."""
    import json

    from ripple.rledit.hypernet import META

    train(tiny_ctx(), None, replace(HP, n_sequences=1), requests=tiny_requests(), log=lambda *x, **k: None).save(tmp_path)
    meta = json.loads((tmp_path / META).read_text())
    meta["format"] = 1
    (tmp_path / META).write_text(json.dumps(meta))
    with pytest.raises(RippleError, match="has format 1") as e:
        Hypernetwork.load(tmp_path)
    assert "\n" not in str(e.value) and "ripple rledit train" in str(e.value)


@pytest.mark.slow
def test_one_at_a_time_edits_keep_the_facts_no_edit_touched():
    """The shipped hypernetwork, 20 held-out organism edits made one after another (chunk 1, the
    CLI's default), judged on every untouched fact of the edited relations in held-out wording.
    Format 1 (its gradient feature grew with 1 / batch size) kept 6.1% of the 619, efficacy 0.90;
    the shipped format 2 keeps 64.9%, efficacy 1.0 (benchmarks/editors/rledit_sequential.py)."""
    from benchmarks.editors.rledit_sequential import measure
    from ripple.editing.setup import load_setup

    row = measure(load_setup("organism"), "rledit", 1, 20, None)
    assert row["untouched_n"] > 200
    assert row["efficacy"] >= 0.95 and row["untouched_kept"] >= 0.5, row
