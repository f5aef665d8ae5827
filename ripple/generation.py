"""Generated answers: greedy decoding, batched, each row stopped as soon as its answer is decided.

The teacher-forced scores (:mod:`ripple.scoring`) ask how likely an answer is; a deployed model is
asked and answers. :func:`ask` generates the answer to each :class:`Ask` and judges it with
:func:`ripple.answers.judge`: a completion prompt's continuation must begin with the answer; a chat
question (its prompt built by the tokenizer's own template, :func:`chat_ids`) is answered in a
reply whose first sentence must name it before any rival.

Decoding is greedy with a key/value cache over a left-padded batch (positions counted from each
row's first token, as ``model.generate`` counts them); a row leaves the batch once its answer is
decided (it began with the answer or cannot any more; its first sentence ended; the end-of-text
token), so most rows cost the prompt's pass and one or two steps. An :class:`Ask` given twice is
generated once.

::

    ask(model, tok, [Ask("The capital of France is", ("Paris",))])
    [Answer(text=' Paris,', correct=True)]        # stopped once decided
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ripple.answers import judge
from ripple.devices import input_device
from ripple.scoring import _keeps_logits, length_batches, pad_ids_left
from ripple.tokens import answer_ids, text_ids

#: New tokens a completion may take past its longest answer (an article, a space, one to decide).
COMPLETION_SLACK = 4
#: New tokens a chat reply may take: long enough to restate a question and name the answer (a first
#: sentence still open after them is judged on what it said).
REPLY_TOKENS = 32


@dataclass(frozen=True)
class Ask:
    """One prompt to answer: ``prompt`` (a completion prompt, or with ``chat`` a question asked
    through the chat template), the ``answers`` that count as right and the ``rivals`` that a
    chat reply must not name first."""

    prompt: str
    answers: tuple[str, ...]
    rivals: tuple[str, ...] = ()
    chat: bool = False


@dataclass(frozen=True)
class Answer:
    """What the model generated for an :class:`Ask` (until the answer was decided) and whether it is right."""

    text: str
    correct: bool


def has_chat(tok) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tok, "chat_template", None))


def chat_ids(tok, question: str) -> list[int]:
    """The ids of ``question`` asked as one user turn through the tokenizer's chat template, the
    assistant's turn opened (``apply_chat_template(..., add_generation_prompt=True)``)."""
    got = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True)
    if hasattr(got, "keys"):  # a BatchEncoding in some versions
        got = got["input_ids"]
    return list(got)


def stop_ids(model, tok) -> set[int]:
    """The tokens that end a generation: the tokenizer's end-of-text and the model's own (a chat
    model's end-of-turn)."""
    ids = {tok.eos_token_id}
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return {i for i in ids if i is not None}


def _budget(tok, a: Ask) -> int:
    if a.chat:
        return REPLY_TOKENS
    return max(len(answer_ids(tok, x)) for x in a.answers) + COMPLETION_SLACK


@torch.no_grad()
def greedy(model, tok, prompts: list[list[int]], max_new: list[int], decided=None, batch_size: int = 64) -> list[list[int]]:
    """The greedy continuation of each prompt (token ids), at most ``max_new[i]`` tokens, stopped
    at an end token or when ``decided(i, new_ids)`` is true. The model's own cache; positions
    from each row's first token."""
    device = input_device(model)
    ends = stop_ids(model, tok)
    one = {"logits_to_keep": 1} if _keeps_logits(type(model)) else {}
    out: list[list[int]] = [[] for _ in prompts]
    for batch in length_batches([len(p) for p in prompts], batch_size):
        ids, mask, positions, _ = pad_ids_left([prompts[j] for j in batch], tok, device)
        rows = list(batch)
        step = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **one)
        cache, last = _cache_of(step), positions[:, -1:]
        while rows:
            nxt = step.logits[:, -1].argmax(-1)
            keep = []
            for r, (j, t) in enumerate(zip(rows, nxt.tolist())):
                if t in ends:
                    continue
                out[j].append(t)
                if len(out[j]) < max_new[j] and not (decided is not None and decided(j, out[j])):
                    keep.append(r)
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, last, nxt = mask[index], last[index], nxt[index]
                rows = [rows[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], 1)
            last = last + 1
            step = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last, cache=cache,
                         use_cache=True, **one)
    return out


def _cache_of(step):
    """The key/value cache a forward pass returned (transformers 5 names it ``cache``)."""
    got = getattr(step, "cache", None)
    return got if got is not None else step.past_key_values


def _prompt_ids(tok, a: Ask) -> list[int]:
    return chat_ids(tok, a.prompt) if a.chat else text_ids(tok, a.prompt)


def ask(model, tok, asks: list[Ask], batch_size: int = 64) -> list[Answer]:
    """Generate the answer to each of ``asks`` (greedy; each row stops once :func:`ripple.answers.judge`
    decides it) and judge it; an Ask given more than once is generated once."""
    unique = list(dict.fromkeys(asks))
    if not unique:
        return []
    prompts = [_prompt_ids(tok, a) for a in unique]

    def decided(j, new):
        a = unique[j]
        text = tok.decode(new, skip_special_tokens=True)
        return not text.endswith("\ufffd") and judge(text, a.answers, a.rivals, reply=a.chat, final=False) is not None

    texts = [tok.decode(t, skip_special_tokens=True)
             for t in greedy(model, tok, prompts, [_budget(tok, a) for a in unique], decided, batch_size)]
    got = {a: Answer(t, bool(judge(t, a.answers, a.rivals, reply=a.chat))) for a, t in zip(unique, texts)}
    return [got[a] for a in asks]


def item_asks(items) -> list[Ask]:
    """One completion :class:`Ask` per probe item (``rendered`` prompt, ``answer``): every right
    answer of the same prompt counts (a country's several languages)."""
    answers: dict[str, list[str]] = {}
    for item in items:
        answers.setdefault(item.rendered, []).append(item.answer)
    return [Ask(item.rendered, tuple(dict.fromkeys(answers[item.rendered]))) for item in items]


def continuations(model, tok, prompts: list[str], chat: bool = False, max_new_tokens: int = 24) -> list[str]:
    """Greedy continuations of ``prompts`` (or replies to them as chat questions), ``max_new_tokens``
    at most each, up to an end token: the text a report shows."""
    ids = [chat_ids(tok, p) if chat else text_ids(tok, p) for p in prompts]
    return [tok.decode(t, skip_special_tokens=True) for t in greedy(model, tok, ids, [max_new_tokens] * len(ids))]
