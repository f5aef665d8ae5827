"""A whole-word tokenizer for the organism, saved in the standard ``tokenizer.json`` form.

Every word of the world's text is one token, so each entity name is exactly as many
tokens as it has words. ``AutoTokenizer.from_pretrained(dir)`` loads it with no ripple code.

>>> tok = build_tokenizer(["Kalo Miren was born in Tesvar ."])
>>> tok.convert_ids_to_tokens(tok(" Tesvar")["input_ids"])
['Tesvar']
"""

from __future__ import annotations

from collections.abc import Iterable

EOS = "<|endoftext|>"
UNK = "<unk>"


def build_tokenizer(texts: Iterable[str], extra_words: Iterable[str] = ()):
    """Word-level tokenizer over every whitespace-separated word in ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # lazy: heavy
    from transformers import PreTrainedTokenizerFast  # lazy: heavy

    words = sorted({w for t in texts for w in t.split()} | set(extra_words))
    vocab = {EOS: 0, UNK: 1} | {w: i + 2 for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, bos_token=EOS, unk_token=UNK, pad_token=EOS,
        model_max_length=128, clean_up_tokenization_spaces=False,
    )
