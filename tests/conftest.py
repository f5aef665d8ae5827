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
ARCH_TYPES = ("gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2")
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
}


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


@pytest.fixture
def tiny_tokenizer():
    """A word-level fast tokenizer over ``w0 .. w96`` with eos but no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i + 3 for i in range(VOCAB - 3)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


@pytest.fixture
def saved_gpt2(tmp_path, tiny_model, tiny_tokenizer):
    """A tiny gpt2 + tokenizer saved as safetensors in ``tmp_path / "gpt2"``; returns (dir, model)."""
    model = tiny_model("gpt2")
    out = tmp_path / "gpt2"
    model.save_pretrained(out, safe_serialization=True)
    tiny_tokenizer.save_pretrained(out)
    return out, model


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
