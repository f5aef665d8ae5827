"""load_model: one-line errors for every fixable problem, and a faithful safetensors round trip."""

import json

import pytest
import torch

import ripple.data
import ripple.organism.paths
from ripple.errors import RippleError
from ripple.loading import LoadedModel, load_model


def one_line_error(name, match):
    with pytest.raises(RippleError, match=match) as err:
        load_model(name)
    assert "\n" not in str(err.value)
    return str(err.value)


def snapshot(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_unsupported_model_type_fails_before_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))  # and no weights
    message = one_line_error(str(tmp_path), "unsupported model_type 'bert'")
    assert all(t in message for t in ("gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2"))


@pytest.mark.parametrize("var, value", [("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "true")])
def test_hub_id_while_offline(monkeypatch, var, value):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(var, value)
    one_line_error("someone/some-model", r"model 'someone/some-model' is not a local directory and the "
                                         rf"Hugging Face hub is offline \({var}=1\); download it and pass")


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "~/no/such/model"])
def test_missing_path(name):
    one_line_error(name, f"model path {name} does not exist")


def test_dir_without_config(tmp_path):
    one_line_error(str(tmp_path), f"no config.json in {tmp_path}; pass a transformers model directory")


def test_file_instead_of_dir(tmp_path):
    (tmp_path / "weights.safetensors").write_text("")
    one_line_error(str(tmp_path / "weights.safetensors"), "is a file")


def test_bin_only_weights(saved_gpt2):
    path, _ = saved_gpt2
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    one_line_error(str(path), "has only PyTorch .bin weights")


def test_round_trip_gives_identical_logits(saved_gpt2, token_ids, monkeypatch):
    path, original = saved_gpt2
    import transformers

    seen = {}
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    files_before = snapshot(path)
    loaded = load_model(str(path))
    assert isinstance(loaded, LoadedModel)
    model, tokenizer, spec = loaded
    assert seen["use_safetensors"] is True and not seen.get("trust_remote_code", False)
    assert spec.model_type == "gpt2" and spec.depth == 2 and not model.training
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    assert snapshot(path) == files_before  # the pad token is set in memory only
    with torch.no_grad():
        assert torch.equal(model(token_ids).logits, original(token_ids).logits)
    assert tokenizer("w5 w7")["input_ids"] == [8, 10]


def test_organism_resolves_through_model_dir(saved_gpt2, monkeypatch):
    path, _ = saved_gpt2
    monkeypatch.setattr(ripple.data, "organism_dir", lambda: path)
    assert load_model().spec.model_type == "gpt2"


def test_missing_organism_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(ripple.data, "organism_dir", lambda: tmp_path / "data")
    one_line_error("organism", "the bundled organism is missing from .*ripple.organism.train")


def test_bad_dtype(saved_gpt2):
    with pytest.raises(RippleError, match="unknown dtype 'float7'"):
        load_model(str(saved_gpt2[0]), dtype="float7")
