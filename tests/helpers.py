"""Helpers the test modules share (fixtures live in conftest.py)."""

import hashlib
import json

import torch

from ripple.cli import main
from ripple.probes.sets import ProbeItem, ProbeLink


def cli(capfd, *argv):
    capfd.readouterr()  # drop what fixtures printed (save_pretrained's progress bar)
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_line_error(code, err):
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ripple: error:"), err
    return lines[0]


def state(model) -> dict[str, torch.Tensor]:
    """Every entry of the state dict (gpt2's tied lm_head.weight included), cloned."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_state(model, expected):
    now = model.state_dict()
    assert now.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(now[k], v), k


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tiny_probe_items():
    """The first edit request's fact ("w10 w11" + "{} w20 w21") and six more over the same words."""
    spec = [("e", "w10 w11", "{} w20 w21", "w51", [("s2", "same_subject")]),
            ("s2", "w10 w11", "{} w22", "w52", [("e", "same_subject")]),
            ("n1", "w12 w13", "{} w20 w21", "w53", [("e", "same_object")]),
            ("n2", "w14", "{} w20 w21", "w54", []), ("n3", "w15 w16", "{} w23", "w55", [("n2", "inverse")]),
            ("n4", "w30", "w31 {} w32", "w56", []), ("n5", "w51", "{} w24", "w57", [])]
    return [ProbeItem(i, s, "r", p, a, links=tuple(ProbeLink(t, k) for t, k in links)) for i, s, p, a, links in spec]


def digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def tree_digest(root) -> dict | None:
    """Every file under ``root`` (links followed) -> sha256; None when ``root`` does not exist."""
    from pathlib import Path

    root = Path(root)
    if not root.exists():
        return None
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fill(argv, ws, out):
    """The argv with ``{name}`` placeholders of the workspace filled in (a prompt's ``{}`` stays)."""
    values = {**{k: str(v) for k, v in ws.items()}, "out": str(out)}
    filled = []
    for a in map(str, argv):
        for key, value in values.items():
            a = a.replace("{" + key + "}", value)
        filled.append(a)
    return filled


# ---- tiny models and their inputs (the fixtures in conftest.py are built from these) ----

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




# ---- editors on the tiny models ----

SPREAD = ("memit", "emmet", "alphaedit")  # MEMIT's plan over several layers


def hparams(method, model_type="gpt2", *extra):
    """Cheap settings. The spread methods edit layers 0 and 1 of the 2-layer model and so read the
    target at the last token: block 1's output at the subject cannot reach the answer position."""
    over = ["v_steps=3", "context_prefixes=2", "stats_samples=500"]
    over += ["layers=(0,1)"] if method == "rledit" else \
        ["layers=(0,1)", "fact_token=last"] if method in SPREAD else ["layers=(0,)"]
    over += ["ft_steps=3"] if method == "ft" else []
    over += ["null_threshold=0.1"] if method == "alphaedit" else []  # llama's keys: no eigenvalue under 1e-2
    from ripple.editing.hparams import resolve_hparams

    return resolve_hparams(method, model_type, 2, overrides=over + list(extra))


def context(model, tok):
    """An editing context over the tiny corpus, without the disk cache."""
    from ripple.arch import get_spec
    from ripple.editing.context import EditContext

    return EditContext(model, tok, get_spec(model), stats_corpus(), use_disk_cache=False)
