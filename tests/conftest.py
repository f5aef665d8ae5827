"""Shared test setup: offline hub, one CPU thread, tiny random models of every supported architecture.

    def test_something(tiny_model):
        model = tiny_model("llama")          # 2 layers, hidden 32, vocab 100, seed 0, eval mode
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

VOCAB = 100
ARCH_TYPES = ("gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text")
_TOKENS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=None)
_LLAMA_LIKE = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=64, max_position_embeddings=64)
TINY_CONFIGS = {
    "gpt2": ("GPT2Config", dict(n_layer=2, n_embd=32, n_head=4, n_positions=64)),
    "gptj": ("GPTJConfig", dict(n_layer=2, n_embd=32, n_head=4, n_positions=64, rotary_dim=4)),
    "gpt_neox": ("GPTNeoXConfig", dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=64)),
    "llama": ("LlamaConfig", _LLAMA_LIKE),
    "mistral": ("MistralConfig", _LLAMA_LIKE),
    "qwen2": ("Qwen2Config", _LLAMA_LIKE),
    "gemma": ("GemmaConfig", dict(_LLAMA_LIKE, head_dim=8)),
    # the unembed site is lm_head's output; gemma2 soft-caps the logits after it (off here, so the
    # traced logits equal the model's)
    "gemma2": ("Gemma2Config", dict(_LLAMA_LIKE, head_dim=8, final_logit_softcapping=None)),
    "gemma3_text": ("Gemma3TextConfig", dict(_LLAMA_LIKE, head_dim=8)),
}

#: The MLP output projection of block ``{}`` (the weight editors rewrite), written out by hand per type.
MLP_OUT = {"gpt2": "transformer.h.{}.mlp.c_proj", "gptj": "transformer.h.{}.mlp.fc_out",
           "gpt_neox": "gpt_neox.layers.{}.mlp.dense_4h_to_h", "llama": "model.layers.{}.mlp.down_proj",
           "mistral": "model.layers.{}.mlp.down_proj", "qwen2": "model.layers.{}.mlp.down_proj",
           "gemma": "model.layers.{}.mlp.down_proj", "gemma2": "model.layers.{}.mlp.down_proj",
           "gemma3_text": "model.layers.{}.mlp.down_proj"}


def make_tiny_model(model_type: str, seed: int = 0):
    """A tiny randomly initialised causal LM of ``model_type``, in eval mode."""
    import transformers

    class_name, kwargs = TINY_CONFIGS[model_type]
    config = getattr(transformers, class_name)(vocab_size=VOCAB, **kwargs, **_TOKENS)
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_model():
    """Factory fixture: ``tiny_model("gpt2")`` -> a fresh tiny model (same weights for a seed)."""
    return make_tiny_model


@pytest.fixture
def token_ids():
    """A fixed [2, 6] batch of token ids."""
    return torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))


def make_tiny_tokenizer():
    """A word-level fast tokenizer over ``w0 .. w96`` with eos but no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i + 3 for i in range(VOCAB - 3)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


def save_tiny_gpt2(directory):
    """A tiny gpt2 and the tiny tokenizer saved (safetensors) in ``directory``; returns the model."""
    model = make_tiny_model("gpt2")
    model.save_pretrained(directory, safe_serialization=True)
    make_tiny_tokenizer().save_pretrained(directory)
    return model


@pytest.fixture
def tiny_tokenizer():
    """A word-level fast tokenizer over ``w0 .. w96`` with eos but no pad token."""
    return make_tiny_tokenizer()


@pytest.fixture
def saved_gpt2(tmp_path):
    """A tiny gpt2 + tokenizer saved as safetensors in ``tmp_path / "gpt2"``; returns (dir, model)."""
    out = tmp_path / "gpt2"
    return out, save_tiny_gpt2(out)


@pytest.fixture(scope="session")
def world():
    """The default knowledge world (``WorldConfig(seed=0)``); shared, so never mutate it."""
    from ripple.world import build_world

    return build_world()


def scan(world, subject=None, relation=None, obj=None) -> list[str]:
    """Hand oracle: walk ``world.facts`` and return the objects (or, with ``obj``, the subjects) that match.

    Independent of the World's own indexes (``objects``, ``subjects_with``, ``two_hop_answers``).
    """
    hits = [f for f in world.facts if (subject is None or f.subject == subject)
            and (relation is None or f.relation == relation) and (obj is None or f.object == obj)]
    return [f.subject for f in hits] if obj is not None else [f.object for f in hits]


def scan_one(world, subject, relation) -> str:
    """The single object of a functional fact, found by :func:`scan`."""
    (found,) = scan(world, subject, relation)
    return found


def stats_corpus(n: int = 30, seed: int = 0) -> list[str]:
    """``n`` sentences of 3 to 10 words from ``w0 .. w96`` (lengths differ, so batches get padded)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 11, (n,), generator=g).tolist()
    return [" ".join(f"w{i}" for i in torch.randint(0, VOCAB - 3, (m,), generator=g).tolist()) for m in lengths]


def edit_requests():
    """Two edit requests over the tiny tokenizer's words (subjects of two tokens and of one)."""
    from ripple.editing.requests import EditRequest

    return [EditRequest("{} w20 w21", "w10 w11", "w50", "w51", paraphrase_prompts=("w30 {} w21",),
                        neighborhood_prompts=("w12 w13 w20 w21",), case_id="a"),
            EditRequest("{} w22", "w14", "w52", "w53", case_id="b")]


@torch.no_grad()
def hooked_io(model, module_name: str, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, output)`` of one module in a forward pass of ``ids``, read with plain torch hooks."""
    got = {}
    module = model.get_submodule(module_name)
    handles = [module.register_forward_pre_hook(lambda m, args: got.__setitem__("in", args[0].clone())),
               module.register_forward_hook(lambda m, args, out: got.__setitem__("out", out.clone()))]
    try:
        model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return got["in"], got["out"]


def word_ids(text: str) -> torch.Tensor:
    """The tiny tokenizer's ids of ``text`` (``w{i}`` is ``i + 3``), by hand, as a [1, n] batch."""
    return torch.tensor([[int(w[1:]) + 3 for w in text.split()]])


@pytest.fixture
def tiny_inputs(tmp_path, monkeypatch, saved_gpt2):
    """``(model dir, edit.json, probes.jsonl, corpus.txt)`` for the first standard request on a tiny gpt2."""
    import json

    from ripple.probes.sets import save_probe_set

    from helpers import tiny_probe_items

    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))
    path, _ = saved_gpt2
    edit, probes, corpus = tmp_path / "edit.json", tmp_path / "probes.jsonl", tmp_path / "corpus.txt"
    edit.write_text(json.dumps(edit_requests()[0].to_dict()))
    save_probe_set(tiny_probe_items(), probes)
    corpus.write_text("\n".join(stats_corpus()) + "\n")
    return path, edit, probes, corpus
