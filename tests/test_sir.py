"""SIR against oracles: the re-solve's constraints and least-norm property on a random case, damage
made by hand and repaired, no damage left alone, bit-exact restore, and a failing mitigation that
leaves the model as it was."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ripple.editing.delta import EditDelta
from ripple.editing.solvers import c_cosine, emmet_update, keep_and_zero_correction, rome_update, select_rows
from ripple.errors import RippleError
from ripple.gie.pipeline import Edit
from ripple.mitigation import MITIGATIONS, Mitigation
from ripple.mitigation.run import mitigate
from ripple.mitigation.sir import SirHParams, damage_terms, revise

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out


def _case(seed=0, out=7, inn=6, m=2):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, inn, generator=g, dtype=torch.float64)
    A = torch.randn(inn, inn, generator=g, dtype=torch.float64)
    C = A @ A.T + 0.5 * torch.eye(inn, dtype=torch.float64)
    k = torch.randn(inn, generator=g, dtype=torch.float64)
    v = torch.randn(out, generator=g, dtype=torch.float64)
    Kd = torch.randn(inn, m, generator=g, dtype=torch.float64)
    return W, C, k, v, Kd


def test_correction_meets_its_constraints_exactly_on_the_selected_rows():
    W, C, k, v, Kd = _case()
    D = rome_update(W, C, k, v)
    rows = torch.tensor([0, 2, 3, 6])
    E = keep_and_zero_correction(D, k[:, None], Kd, C, rows)
    revised = D + E
    assert torch.allclose(revised @ k, D @ k, atol=1e-10)  # the edit's key keeps its new value
    assert torch.allclose(revised[rows] @ Kd, torch.zeros(len(rows), Kd.shape[1], dtype=torch.float64), atol=1e-10)
    others = torch.tensor([1, 4, 5])
    assert torch.equal(revised[others], D[others])  # rows not selected are untouched
    assert (revised[others] @ Kd).abs().max() > 1e-3  # ... and still reach the damaged keys


def test_correction_is_the_least_c_norm_one():
    """Oracle: whiten with C = L Lᵀ; the least-norm E with E K = B is B pinv(L⁻¹K) L⁻¹ (pinv, not solve)."""
    W, C, k, v, Kd = _case(seed=1)
    D = rome_update(W, C, k, v)
    E = keep_and_zero_correction(D, k[:, None], Kd, C)
    K = torch.cat([k[:, None], Kd], 1)
    B = torch.cat([torch.zeros(D.shape[0], 1, dtype=torch.float64), -D @ Kd], 1)
    L = torch.linalg.cholesky(C)
    Li = torch.linalg.inv(L)
    oracle = B @ torch.linalg.pinv(Li @ K) @ Li
    assert torch.allclose(E, oracle, atol=1e-9)
    # any other correction meeting the constraints has a larger C-norm
    null = torch.linalg.svd(K.T).Vh[K.shape[1]:]  # directions n with K^T n = 0
    other = E + torch.randn(D.shape[0], null.shape[0], dtype=torch.float64) @ null
    assert torch.allclose(other @ K, E @ K, atol=1e-9)
    assert torch.trace(other @ C @ other.T) > torch.trace(E @ C @ E.T)


def test_on_a_rome_update_the_revision_is_emmet_with_all_the_constraints():
    W, C, k, v, Kd = _case(seed=2)
    D = rome_update(W, C, k, v)
    R = torch.cat([(v - W @ k)[:, None], torch.zeros(W.shape[0], Kd.shape[1], dtype=torch.float64)], 1)
    assert torch.allclose(D + keep_and_zero_correction(D, k[:, None], Kd, C),
                          emmet_update(R, torch.cat([k[:, None], Kd], 1), C, eps=0.0), atol=1e-9)


def test_principal_basis_spans_the_keys_it_stands_for():
    from ripple.editing.solvers import principal_basis

    g = torch.Generator().manual_seed(3)
    K = torch.randn(8, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 30, generator=g, dtype=torch.float64)
    U = principal_basis(K, energy=0.999999)
    assert U.shape == (8, 2) and torch.allclose(U.T @ U, torch.eye(2, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(U @ (U.T @ K), K, atol=1e-9)  # a map that is zero on U is zero on every key
    assert principal_basis(K, max_rank=1).shape == (8, 1)
    W, C, k, v, _ = _case(out=5, inn=8)
    D = rome_update(W, C, k, v)
    E = keep_and_zero_correction(D, k[:, None], U, C)
    assert (((D + E) @ K).abs().max()) < 1e-8


def test_no_damaged_keys_no_correction_and_row_selection():
    W, C, k, v, Kd = _case()
    D = rome_update(W, C, k, v)
    assert torch.equal(keep_and_zero_correction(D, k[:, None], Kd[:, :0], C), torch.zeros_like(D))
    assert select_rows(torch.tensor([0.1, 5.0, 1.0, 3.0]), 0.9).tolist() == [1, 2, 3]
    assert select_rows(torch.tensor([0.0, -1.0]), 0.9).numel() == 0
    cos = c_cosine(C, torch.stack([k, -2 * k], 1), k)
    assert torch.allclose(cos, torch.tensor([1.0, -1.0], dtype=torch.float64))


# --- on the organism ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def organism():
    from ripple.editing.from_world import sample_edits
    from ripple.editing.setup import load_setup
    from ripple.probes.sets import world_probe_set

    setup = load_setup("organism", "rome")
    items = world_probe_set(setup.world)
    (request,) = setup.complete(sample_edits(setup.world, 1, seed=3))
    return setup, items, request


def _weights(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def hand_damage(setup, items, request, plain):
    """A delta that also hits a known key: plain + a rank-one term writing, at the key of a right
    answer about another subject (at the edited layer), a value that lowers that answer."""
    from ripple.arch import mlp_out_param, out_in_to_storage
    from ripple.gie.measure import measure_items

    model, tok, spec, hp = setup.model, setup.tok, setup.spec, setup.hp
    (layer,) = hp.layers_for(setup.ctx.n_layers())
    state = measure_items(model, tok, spec, items, layers=[layer])
    victim = next(it for it, ok in zip(items, state.correct) if ok and it.subject != request.subject)
    (K, G) = damage_terms(model, tok, spec, [layer], [victim], hp.fact_token, positions="fact")[layer]
    k, g = K[:, 0], G[:, 0]
    C = setup.ctx.C(layer, hp)
    hit = -32.0 * g / g.norm()  # a value pushing against the right answer
    cik = torch.linalg.solve(C, k)
    extra = torch.outer(hit, cik) / (cik @ k)  # maps the victim's key to that value
    name = mlp_out_param(spec, layer)
    deltas = {name: plain.deltas[name] + out_in_to_storage(extra, spec).float()}
    return EditDelta("rome", deltas, plain.requests, plain.hparams, dict(plain.info)), victim


def test_hand_made_damage_is_found_and_repaired(organism):
    from ripple.editing.editor import get_editor

    setup, items, request = organism
    before = _weights(setup.model)
    plain = get_editor("rome").compute(setup.ctx, [request], setup.hp)
    damaged_delta, victim = hand_damage(setup, items, request, plain)
    out = mitigate(setup.ctx, Edit("rome", (request,), setup.hp, delta=damaged_delta), items, setup.world)
    assert victim.id in out.damaged["plain"]  # the hand-made damage is there ...
    assert victim.id not in out.damaged["revised"]  # ... and repaired
    assert len(out.damaged["revised"]) < len(out.damaged["plain"])
    assert out.rounds[out.chosen]["efficacy"] == 1.0  # the edit still takes
    assert out.revised.method == "rome+sir" and out.chosen >= 1
    assert _same(before, _weights(setup.model))


def test_a_damaged_facts_other_phrasings_are_constrained_too(organism):
    from ripple.editing.editor import get_editor

    setup, items, request = organism
    plain = get_editor("rome").compute(setup.ctx, [request], setup.hp)
    damaged_delta, victim = hand_damage(setup, items, request, plain)
    got = {}
    for where in ("fact", "none"):
        revised, info = revise(setup.ctx, "rome", [request], setup.hp, damaged_delta, [victim],
                               replace(SirHParams(), phrasing_positions=where), setup.world)
        got[where] = (revised, info)
    n_phrasings = min(len(setup.world.relations[victim.relation].train_templates), SirHParams().paraphrases)
    assert got["fact"][1]["phrased_keys"] >= n_phrasings - 1  # one key a phrasing but the victim's own
    assert "phrased_keys" not in got["none"][1]
    name = next(iter(plain.deltas))
    assert not torch.equal(got["fact"][0].deltas[name], got["none"][0].deltas[name])  # more keys held: another solve


def test_damage_terms_a_chunk_at_a_time_equal_one_pass(organism):
    setup, items, request = organism
    (layer,) = setup.hp.layers_for(setup.ctx.n_layers())
    some = items[:7]
    whole = damage_terms(setup.model, setup.tok, setup.spec, [layer], some, "subject_last", chunk=100)[layer]
    bits = damage_terms(setup.model, setup.tok, setup.spec, [layer], some, "subject_last", chunk=2)[layer]
    assert whole[0].shape == bits[0].shape and whole[1].shape == bits[1].shape
    assert torch.allclose(whole[0], bits[0], atol=1e-5) and torch.allclose(whole[1], bits[1], atol=1e-6)


def test_no_damage_returns_the_edit_unchanged(organism):
    from ripple.editing.editor import get_editor

    setup, items, request = organism
    plain = get_editor("rome").compute(setup.ctx, [request], setup.hp)
    revised, info = revise(setup.ctx, "rome", [request], setup.hp, plain, [], SirHParams(), setup.world)
    assert revised is plain and info["damaged"] == []
    out = mitigate(setup.ctx, Edit("rome", (request,), setup.hp, delta=plain), items, setup.world)
    assert out.damaged["plain"] == [] and out.stopped == "no damage left"
    assert out.revised is plain and out.chosen == 0


def test_mitigated_delta_restores_bit_exactly_and_round_trips(organism, tmp_path):
    from ripple.editing.editor import get_editor

    setup, items, request = organism
    plain = get_editor("rome").compute(setup.ctx, [request], setup.hp)
    damaged_delta, _ = hand_damage(setup, items, request, plain)
    out = mitigate(setup.ctx, Edit("rome", (request,), setup.hp, delta=damaged_delta), items, setup.world)
    before = _weights(setup.model)
    with out.revised.applied(setup.model):
        assert not _same(before, _weights(setup.model))
    assert _same(before, _weights(setup.model))
    out.revised.save(tmp_path / "sir.safetensors")
    back = EditDelta.load(tmp_path / "sir.safetensors")
    assert back.method == "rome+sir" and all(torch.equal(back.deltas[n], d) for n, d in out.revised.deltas.items())


def test_a_failing_mitigation_leaves_the_model_as_it_was(organism):
    from ripple.editing.editor import get_editor

    setup, items, request = organism
    plain = get_editor("rome").compute(setup.ctx, [request], setup.hp)
    damaged_delta, _ = hand_damage(setup, items, request, plain)

    def broken(ctx, method, requests, edit_hp, plain, damaged, hp, world=None, cache=None):
        with torch.no_grad():  # writes into the model, then fails
            next(ctx.model.parameters()).add_(1.0)
        raise RippleError("broken on purpose")

    MITIGATIONS.register(Mitigation("broken", SirHParams, broken))
    try:
        before = _weights(setup.model)
        with pytest.raises(RippleError, match="broken on purpose"):
            mitigate(setup.ctx, Edit("rome", (request,), setup.hp, delta=damaged_delta), items, setup.world,
                     mitigation="broken")
        assert _same(before, _weights(setup.model))
    finally:
        MITIGATIONS.unregister("broken")


def test_bad_sir_settings_are_one_line_errors(organism):
    from ripple.editing.editor import get_editor

    setup, items, request = organism
    plain = get_editor("rome").compute(setup.ctx, [request], setup.hp)
    with pytest.raises(RippleError, match="unknown sir positions"):
        revise(setup.ctx, "rome", [request], setup.hp, plain, items[:1], replace(SirHParams(), positions="mid"))
    with pytest.raises(RippleError, match="unknown sir phrasing_positions"):
        revise(setup.ctx, "rome", [request], setup.hp, plain, items[:1],
               replace(SirHParams(), phrasing_positions="mid"))
    ft = EditDelta("ft", {"transformer.wte.weight": torch.zeros_like(setup.model.transformer.wte.weight)})
    with pytest.raises(RippleError, match="revises updates of MLP output projections"):
        revise(setup.ctx, "rome", [request], setup.hp, ft, items[:1], SirHParams())


# --- the command line -----------------------------------------------------------------------------

DAMAGING = ["--prompt", "{} is a citizen of", "--subject", "Treimair Mouzis", "--target", "Noutusia"]  # damages 1


def test_audit_with_mitigation_shows_both_edits(capfd, tmp_path):
    import json

    from helpers import cli

    out = tmp_path / "audit"
    code, stdout, _ = cli(capfd, "audit", "--model", "organism", "--method", "rome", *DAMAGING, "--mitigate", "sir",
                          "--out", out, "--quiet")
    report = json.loads((out / "report.json").read_text())
    plain = json.loads((out / "plain" / "report.json").read_text())
    mit = report["mitigation"]
    assert report["method"] == "rome+sir" and plain["method"] == "rome"
    assert plain["metrics"]["unintended_changes"] == len(mit["damaged"]["plain"]) >= 1
    assert report["metrics"]["unintended_changes"] == len(mit["damaged"]["mitigated"]) < len(mit["damaged"]["plain"])
    assert mit["plain"]["verdict"] == plain["verdict"]["status"]
    assert code == report["verdict"]["exit_code"]  # the verdict is the mitigated edit's
    assert {r["id"] for r in mit["items"]} >= set(mit["damaged"]["plain"])
    assert all(r["before_correct"] and not r["plain_correct"] for r in mit["items"] if r["id"] in mit["damaged"]["plain"])
    html = (out / "report.html").read_text()
    assert "Mitigation: the plain edit" in html and html.count("data:image/png;base64,") == 3
    assert (out / "plain_ripple_graph.png").is_file() and (out / "plain" / "report.html").is_file()
    assert "mitigated with sir" in stdout
    # ripple view of the plain edit and the mitigated one: the items SIR repaired differ in status
    code, _, _ = cli(capfd, "view", out / "plain", out, "--out", tmp_path / "sir.html")
    page = (tmp_path / "sir.html").read_text()
    differ = page[page.index("Probe items whose status differs"):page.index("Ripple graphs")]
    repaired = set(mit["damaged"]["plain"]) - set(mit["damaged"]["mitigated"])
    assert code == 0 and repaired and all(f"<td>{item}</td>" in differ for item in repaired)
    assert differ.count("<td>unintended: ") + differ.count("<td class=\"diff\">unintended: ") >= len(repaired)
    again = tmp_path / "again"  # same inputs, same report
    cli(capfd, "audit", "--model", "organism", "--method", "rome", *DAMAGING, "--mitigate", "sir", "--out", again,
        "--quiet")
    assert (again / "report.json").read_text() == (out / "report.json").read_text()


def test_mitigate_writes_a_loadable_revised_model(capfd, tmp_path):
    import json

    from transformers import AutoModelForCausalLM

    from ripple.organism.paths import model_dir

    from helpers import cli

    out = tmp_path / "sir"
    code, stdout, _ = cli(capfd, "mitigate", "--model", "organism", "--method", "rome", *DAMAGING, "--out", out,
                          "--quiet")
    assert code == 0 and "damaged items 1 -> 0" in stdout
    record = json.loads((out / "mitigation.json").read_text())
    assert record["mitigated"] == "rome+sir" and record["damaged"]["revised"] == []
    assert record["metrics"]["revised"]["efficacy"] == 1.0
    revised = EditDelta.load(out / "delta.safetensors")
    assert revised.method == "rome+sir" and EditDelta.load(out / "plain_delta.safetensors").method == "rome"
    base = AutoModelForCausalLM.from_pretrained(model_dir())
    loaded = AutoModelForCausalLM.from_pretrained(out)
    revised.apply(base)
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), loaded.state_dict().values()))
    # ripple view of a mitigation run: its figures before and after the revision, charted
    code, _, _ = cli(capfd, "view", out, "--out", tmp_path / "v.html")
    page = (tmp_path / "v.html").read_text()
    assert code == 0 and "<td>damaged (plain)</td><td>1</td>" in page and "<td>damaged (revised)</td><td>0</td>" in page
    assert 'id="view-mitigation-data"' in page


@pytest.mark.parametrize("argv, problem", [
    (["--mitigation", "nosuch"], "unknown mitigation 'nosuch'"),
    (["--mitigation-set", "neuron_share=2"], "neuron_share must be a share"),
    (["--mitigation-set", "bogus=1"], "unknown hyperparameter 'bogus' for sir"),
])
def test_mitigate_bad_input_is_one_line(capfd, tmp_path, argv, problem):
    from helpers import assert_one_line_error, cli

    code, _, err = cli(capfd, "mitigate", "--model", "organism", "--method", "rome", *DAMAGING, "--out",
                       tmp_path / "x", *argv)
    assert problem in assert_one_line_error(code, err)
    assert not (tmp_path / "x").exists()


def test_mitigate_refuses_a_sequential_batch_and_audit_needs_mitigate(capfd, tmp_path):
    from helpers import assert_one_line_error, cli, write_jsonl

    edits = tmp_path / "two.jsonl"
    write_jsonl(edits, [{"prompt": "{} is a citizen of", "subject": "Treimair Mouzis", "target_new": "Noutusia"},
                        {"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}])
    code, _, err = cli(capfd, "mitigate", "--model", "organism", "--method", "rome", "--edit", edits, "--out",
                       tmp_path / "x")
    assert "rome edits one fact per solve" in assert_one_line_error(code, err)
    code, _, err = cli(capfd, "audit", "--model", "organism", "--method", "rome", *DAMAGING, "--out", tmp_path / "y",
                       "--mitigation-set", "iterations=1")
    assert "--mitigation-set needs --mitigate" in assert_one_line_error(code, err)
