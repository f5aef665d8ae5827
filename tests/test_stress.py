"""``ripple stress``: the edit stream past the world's facts, method names, the collapse point
against the checkpoints it is read from, the files, and the restored model."""

import json

import pytest

from ripple.editing.streams import edit_stream, fact_of, latest_edits
from ripple.editing.variant import Variant
from ripple.errors import RippleError
from ripple.organism.evaluate import load_world
from ripple.organism.paths import model_dir
from ripple.stress.run import parse_method

from helpers import assert_one_line_error, cli, digest, edit_requests

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out


def test_stream_goes_round_the_world_with_fresh_targets():
    world = load_world()
    stream = edit_stream(world, 700, seed=1)
    facts = [fact_of(r) for r in stream]
    assert len(stream) == 700 and len(set(facts[:640])) == 640  # every editable fact once first
    last_target = {}
    for r in stream:
        fact = fact_of(r)
        original = world.name(world.objects(*fact)[0])
        assert r.target_new != original
        # a re-edit races the new object against the one the fact holds now: the previous target
        assert r.target_true == last_target.get(fact, original)
        assert r.target_new != r.target_true
        last_target[fact] = r.target_new
    latest = latest_edits(stream)
    assert len(latest) == 640 and all(last_target[fact_of(r)] == r.target_new for r in latest)
    assert edit_stream(world, 700, seed=1) == stream


def test_method_names():
    assert parse_method("memit") == Variant("memit")
    assert parse_method("memit+rect") == Variant("memit", rect=0.4)
    assert parse_method("rome+rect=0.2") == Variant("rome", rect=0.2)
    with pytest.raises(RippleError, match="unknown method option"):
        parse_method("rome+fast")


@pytest.fixture(scope="module")
def stress_run(tmp_path_factory):
    """6 ROME edits measured every 3, on two methods, with a low alarm so the collapse rule fires."""
    from ripple.cli import main

    out = tmp_path_factory.mktemp("stress") / "out"
    disk = digest(model_dir())
    code = main(["stress", "--model", "organism", "--method", "rome", "--compare", "ft+rect", "--edits", "6",
                 "--every", "3", "--tasks", "organism_skill", "--limit", "20", "--collapse-ratio", "1.0001",
                 "--task-floor", "0.999", "--out", str(out), "--quiet"])
    return code, out, disk


def test_stress_files_and_curves(stress_run):
    code, out, disk = stress_run
    assert code == 0
    for name in ("stress.json", "stress.png", "stress.html", "stress.md", "timing.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    data = json.loads((out / "stress.json").read_text())
    assert list(data["curves"]) == ["rome", "ft+rect"]
    for curve in data["curves"].values():
        rows = curve["checkpoints"]
        assert [r["edits"] for r in rows] == [0, 3, 6]
        assert rows[0]["perplexity_ratio"] == 1.0 and rows[0]["edit_success"] is None
        assert rows[0]["weight_drift"] == 0.0 and rows[-1]["weight_drift"] > 0
        assert all("acc" in r["tasks"]["organism_skill"] for r in rows)
        # the collapse point is the first checkpoint at or over the alarm
        over = [r for r in rows if r["perplexity_ratio"] >= 1.0001]
        assert curve["collapse"] == ({"edits": over[0]["edits"], "perplexity_ratio": over[0]["perplexity_ratio"]}
                                     if over else None)
        assert all(r["alarm"] == (r["perplexity_ratio"] >= 1.0001) for r in rows)
        base = rows[0]["tasks"]["organism_skill"]["acc"]
        low = [r for r in rows if r["tasks"]["organism_skill"]["acc"] < 0.999 * base]
        cap = curve["capability_collapse"]
        assert (cap["edits"] if cap else None) == (low[0]["edits"] if low else None)
    last = data["curves"]["rome"]["checkpoints"][-1]
    assert last["edit_success"] == 1.0 and last["edit_success_gen"] == 1.0  # the organism says its new answers
    assert "edit_success_chat" not in last and data["config"]["chat"] is False  # no chat template: no chat mode
    assert "1 / 1" in (out / "stress.md").read_text()  # edit success, race / generated
    # ROME writes only block 5's MLP output projection: no other matrix moves
    drift = data["curves"]["rome"]["checkpoints"][-1]["weight_drift_by_matrix"]
    assert drift["transformer.h.5.mlp.c_proj.weight"] > 0
    assert all(v == 0.0 for k, v in drift.items() if k != "transformer.h.5.mlp.c_proj.weight")
    assert data["curves"]["ft+rect"]["rect"] == 0.4
    assert "rome" in (out / "stress.md").read_text()
    assert digest(model_dir()) == disk


def test_stress_html_charts_hold_the_curves_and_hover_to_their_values(stress_run, tmp_path):
    import re

    from test_audit import browser_or_skip

    from benchmarks.audit.browser_check import hover_chart, opened

    _, out, _ = stress_run
    curves = json.loads((out / "stress.json").read_text())["curves"]
    page = (out / "stress.html").read_text()
    blocks = {m.group(1): json.loads(m.group(2)) for m in
              re.finditer(r'<script type="application/json" id="(stress-[a-z_]+)-data">(.*?)</script>', page, re.S)}
    ppl = blocks["stress-perplexity_ratio"]
    assert [s["name"] for s in ppl["series"]] == list(curves) and ppl["y_log"] is True
    for s in ppl["series"]:
        assert s["points"] == [[r["edits"], r["perplexity_ratio"]] for r in curves[s["name"]]["checkpoints"]]
    assert ppl["marks"] and {m["label"] for m in ppl["marks"]} == {f"{n}: alarm" for n, c in curves.items() if c["collapse"]}
    assert "<noscript><img" in page
    with opened(browser_or_skip(), out / "stress.html", 1200) as (pg, errors):
        last = curves["rome"]["checkpoints"][-1]
        tip = hover_chart(pg, "stress-weight_drift", last["edits"], last["weight_drift"])
        assert "rome" in tip and f"{last['weight_drift']:.4g}" in tip, tip
        assert not errors, errors


def test_view_of_stress_runs_charts_every_run_and_method(stress_run, tmp_path):
    import re

    from ripple.viewing import view

    _, out, _ = stress_run
    curves = json.loads((out / "stress.json").read_text())["curves"]
    page = view([out, out], tmp_path / "v.html").read_text()  # one run twice: the same curves under two names
    data = json.loads(re.search(r'id="view-perplexity_ratio-data">(.*?)</script>', page, re.S).group(1))
    assert [s["name"] for s in data["series"]] == [f"{out}{n}: {m}" for n in ("", " #2") for m in curves]
    assert data["series"][0]["points"] == [[r["edits"], r["perplexity_ratio"]] for r in curves["rome"]["checkpoints"]]
    last = page.split("At the last checkpoint")[1].split("</table>")[0]
    assert all(f"<th>{out}{n}: {m}</th>" in last for n in ("", " #2") for m in curves)


def test_both_methods_start_from_the_same_model(stress_run):
    _, out, _ = stress_run
    data = json.loads((out / "stress.json").read_text())
    a, b = (c["checkpoints"][0] for c in data["curves"].values())
    assert a["untouched_accuracy"] == b["untouched_accuracy"] and a["tasks"] == b["tasks"]


@pytest.mark.parametrize("argv,needle", [
    (["--method", "romee"], "unknown editing method 'romee'"),
    (["--method", "rome", "--compare", "rome"], "named twice"),
    (["--method", "rome", "--collapse-ratio", "0.5"], "must be above 1"),
    (["--method", "rome", "--task-floor", "1.5"], "must be between 0 and 1"),
    (["--method", "rome", "--tasks", "organism_nope"], "unknown lm-eval task"),
    (["--method", "memit", "--chunk", "2"], "not a multiple of --chunk"),
    (["--method", "rome", "--hypernet", "hn"], "--hypernet is for rledit"),
])
def test_bad_input(capfd, tmp_path, argv, needle):
    code, _, err = cli(capfd, "stress", "--model", "organism", "--edits", 2, "--every", 1, "--out", tmp_path / "o",
                       *argv)
    assert needle in assert_one_line_error(code, err)


def test_chunked_stream_with_counterfact_scores(capfd, tmp_path):
    """--chunk 2: MEMIT solves two edits a step, ROME still goes one by one; the checkpoints fall on
    the same edit counts for both and carry efficacy, paraphrase and neighbourhood so far."""
    out = tmp_path / "out"
    code, _, err = cli(capfd, "stress", "--model", "organism", "--method", "memit", "--compare", "rome", "--edits", 4,
                       "--every", 2, "--chunk", 2, "--counterfact", "--out", out, "--quiet")
    assert code == 0, err
    data = json.loads((out / "stress.json").read_text())
    assert data["config"]["chunk"] == 2 and data["config"]["counterfact"] is True
    for method in ("memit", "rome"):
        rows = data["curves"][method]["checkpoints"]
        assert [r["edits"] for r in rows] == [0, 2, 4]
        assert rows[0]["counterfact"] is None
        assert all(0 <= r["counterfact"][k] <= 1 for r in rows[1:] for k in ("efficacy", "paraphrase", "neighborhood"))


def test_model_without_world_takes_an_edit_file(capfd, tmp_path, tiny_inputs):  # noqa: F811
    path, _, _, corpus = tiny_inputs
    edits = tmp_path / "edits.jsonl"
    edits.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in edit_requests()))
    out = tmp_path / "out"
    code, stdout, err = cli(capfd, "stress", "--model", path, "--method", "rome", "--edits", 2, "--every", 1,
                            "--edit-file", edits, "--stats-corpus", corpus, "--out", out, "--quiet",
                            "--set", "v_steps=2", "context_prefixes=0", "stats_samples=300", "layers=0",
                            "fact_token=last")
    assert code == 0, err
    rows = json.loads((out / "stress.json").read_text())["curves"]["rome"]["checkpoints"]
    assert [r["edits"] for r in rows] == [0, 1, 2]
    assert all("untouched_accuracy" not in r and r["ripple"] is None for r in rows)
    assert all(r["perplexity_ratio"] > 0 for r in rows)
    assert "rome: " in stdout


def test_model_without_world_samples_from_the_real_world_graph(capfd, tmp_path, tiny_inputs):  # noqa: F811
    """Without a world.json, stress samples its edits from the real-world graph; a model whose vocabulary
    cannot spell them gets one line naming the word (the tiny test model knows only w1..w99)."""
    path, *_ = tiny_inputs
    code, _, err = cli(capfd, "stress", "--model", path, "--method", "rome", "--edits", 2, "--every", 1,
                       "--out", tmp_path / "o")
    assert "words the model cannot read" in assert_one_line_error(code, err)
