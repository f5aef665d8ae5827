"""The ``ripple`` command line, run in-process: outputs of ``trace``, one-line errors, ``organism show``."""

import json

import pytest
import torch

import ripple.data
import ripple.organism.paths
from ripple.arch import get_spec
from ripple.causal_trace import causal_trace

from helpers import assert_one_line_error, cli

PROMPT, SUBJECT = "w10 w11 w12 w13", "w11 w12"
TRACE_KEYS = {"prompt", "subject", "answer", "tokens", "subject_range", "p_clean", "p_corrupt", "indirect_effect",
              "model", "settings", "mlp_peak_layer_at_last_subject_token", "mlp_peak_effect_at_last_subject_token"}


def trace_argv(model, out, prompt=PROMPT, subject=SUBJECT):
    return ["trace", "--model", model, "--prompt", prompt, "--subject", subject, "--out", out, "--samples", 2]


def test_trace_writes_json_and_three_pngs(capfd, saved_gpt2, tiny_tokenizer, tmp_path):
    path, model = saved_gpt2
    out = tmp_path / "run" / "trace"
    code, stdout, err = cli(capfd, *trace_argv(path, out))
    assert code == 0, err
    assert str(out) in stdout
    for kind in ("hidden", "mlp", "attn"):
        assert (out / f"trace_{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "trace.json").read_text())
    assert set(data) == TRACE_KEYS

    # the same trace in-process, on the model the CLI loaded from disk (identical weights)
    ref = causal_trace(model, tiny_tokenizer, get_spec(model), PROMPT, SUBJECT, samples=2)
    ids = torch.tensor([[13, 14, 15, 16]])  # w{i} has id i + 3
    with torch.no_grad():
        probs = torch.softmax(model(ids).logits[0, -1], -1)
    assert data["answer"] == ref.answer == f"w{int(probs.argmax()) - 3}"
    assert data["p_clean"] == pytest.approx(probs.max().item(), abs=1e-6)
    assert data["p_corrupt"] == pytest.approx(ref.p_corrupt, abs=1e-6)
    assert (data["prompt"], data["subject"], data["tokens"]) == (PROMPT, SUBJECT, PROMPT.split())
    assert data["subject_range"] == [1, 3] and data["model"] == str(path)
    assert data["settings"] == {"samples": 2, "noise": 3.0, "window": 1, "seed": 0, "kinds": ["hidden", "mlp", "attn"]}
    for kind, grid in data["indirect_effect"].items():
        assert torch.tensor(grid) == pytest.approx(ref.effects[kind], abs=2e-6)
    mlp_last = ref.effects["mlp"][2]  # the last subject token
    assert data["mlp_peak_layer_at_last_subject_token"] == int(mlp_last.argmax())
    assert data["mlp_peak_effect_at_last_subject_token"] == pytest.approx(mlp_last.max().item(), abs=1e-6)


def test_subject_not_in_prompt(capfd, saved_gpt2, tmp_path):
    code, _, err = cli(capfd, *trace_argv(saved_gpt2[0], tmp_path / "o", subject="w50"))
    assert "'w50'" in assert_one_line_error(code, err)


def test_out_is_an_existing_file(capfd, saved_gpt2, tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    code, _, err = cli(capfd, *trace_argv(saved_gpt2[0], target))
    assert str(target) in assert_one_line_error(code, err)
    assert target.read_text() == "keep me"


def test_hub_id_while_offline(capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no local directory of that name
    code, _, err = cli(capfd, *trace_argv("someone/some-model", tmp_path / "o"))
    assert "offline" in assert_one_line_error(code, err)


def test_missing_local_path(capfd, tmp_path):
    missing = tmp_path / "no" / "model"
    code, _, err = cli(capfd, *trace_argv(missing, tmp_path / "o"))
    assert str(missing) in assert_one_line_error(code, err)


def check_organism_show(capfd):
    """``organism show --json`` names a model directory that plain transformers loads, and the world."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, out, err = cli(capfd, "organism", "show", "--json")
    assert code == 0, err
    info = json.loads(out)
    path, world = info["path"], info["world"]
    assert (ripple.organism.paths.model_dir() / "model.safetensors").is_file()
    assert str(ripple.organism.paths.model_dir()) == path
    world_data = json.loads(open(world).read())
    assert world_data["entities"] and world_data["facts"]
    model = AutoModelForCausalLM.from_pretrained(path)  # no trust_remote_code: standard classes only
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__module__.startswith("transformers.")
    assert type(tok).__module__.startswith("transformers.")
    return info, model, tok


def test_organism_show_on_a_stand_in(capfd, monkeypatch, saved_gpt2, tmp_path):
    path, _ = saved_gpt2
    (path / "world.json").write_text(json.dumps({"entities": [{"id": "x"}], "facts": [{"subject": "x"}]}))
    (path / "metrics.json").write_text(json.dumps({"single_hop": 0.5}))
    monkeypatch.setattr(ripple.data, "organism_dir", lambda: path)
    info, model, _ = check_organism_show(capfd)
    assert info["world"] == str(path / "world.json") and info["metrics"] == {"single_hop": 0.5}
    assert model.config.model_type == "gpt2"


def test_organism_show_without_an_organism(capfd, monkeypatch, tmp_path):
    monkeypatch.setattr(ripple.data, "organism_dir", lambda: tmp_path)
    code, out, err = cli(capfd, "organism", "show", "--json")
    assert out == ""
    assert str(tmp_path) in assert_one_line_error(code, err)


@pytest.mark.skipif(not (ripple.organism.paths.model_dir() / "model.safetensors").exists(),
                    reason="the bundled organism (ripple/organism/data/model.safetensors) is not trained yet")
def test_organism_show_bundled(capfd):
    from ripple.world import World

    info, model, tok = check_organism_show(capfd)
    world = World.from_dict(json.loads(open(info["world"]).read()))
    person = world.persons[0]
    assert len(tok(" " + person.name, add_special_tokens=False)["input_ids"]) == world.config.name_tokens
    assert len(tok) <= model.config.vocab_size


def test_library_warnings_stay_off_stderr_unless_verbose(capfd):
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ripple.cli import _quiet_libraries

    def draw():
        fig = plt.figure()
        fig.text(0.5, 0.5, "\u6f22\u5b57 \U0001f600")  # glyphs the default font lacks
        fig.canvas.draw()
        plt.close(fig)

    capfd.readouterr()
    with _quiet_libraries(verbose=False):
        draw()
    assert capfd.readouterr().err == ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _quiet_libraries(verbose=True):
            draw()
    assert any("Glyph" in str(w.message) for w in caught)


def test_trace_kinds_with_windows(capfd, saved_gpt2, tiny_tokenizer, tmp_path):
    import json

    from ripple.cli import main

    model_dir, _ = saved_gpt2
    out = tmp_path / "kinds"
    assert main([*map(str, trace_argv(str(model_dir), str(out))), "--kinds", "hidden", "mlp/2"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["trace_hidden.png", "trace_mlp_w2.png"]
    data = json.loads((out / "trace.json").read_text())
    assert set(data["indirect_effect"]) == {"hidden", "mlp/2"} and data["settings"]["kinds"] == ["hidden", "mlp/2"]
    for bad, msg in (("mlp/x", "whole number"), ("attn", "needs an mlp kind")):
        assert main([*map(str, trace_argv(str(model_dir), str(tmp_path / bad.replace("/", "_")))), "--kinds", bad]) == 2
        assert msg in capfd.readouterr().err


def test_default_threads_one_for_the_organism_the_cores_for_other_models(monkeypatch):
    from argparse import Namespace

    from ripple.cli import AUTO_THREADS_CAP, default_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert default_threads(Namespace(model="organism")) == 1
    assert default_threads(Namespace(command="stats")) == 1  # no model named: the organism, the default
    assert default_threads(Namespace(model="smollm2")) == 6
    assert default_threads(Namespace(model="smollm2", workers=4)) == 1
    assert default_threads(Namespace(model="smollm2", workers=2)) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_threads(Namespace(model="runs/my-model")) == AUTO_THREADS_CAP
