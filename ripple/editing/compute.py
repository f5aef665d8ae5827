"""What every locate-then-edit method computes before its solve: keys and target values.

* :func:`context_templates`: ``"{}"`` plus short prefixes the model generates itself, so keys and
  targets are averaged over contexts (ROME, MEMIT).
* :func:`subject_forms` / :func:`form_requests`: the contexts grouped by how the subject is
  tokenized in them; an editor writes one key per form (see :func:`subject_forms`).
* :func:`fact_keys`: the MLP key at the fact token, averaged over the contexts (of each form).
* :func:`optimize_delta`: gradient steps on a vector added at the fact token to a module's
  output (the MLP output for ROME, the block output for MEMIT) so that the model predicts
  the new target, with a KL term keeping the subject's other predictions and a norm penalty.
* :func:`token_requests`: with the fact at the prompt's last token, a target of several tokens
  as one request per token (each later token is predicted at a position of its own).

None of these change the model's weights; hooks add the vector only inside the forward passes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import torch

from ripple.arch import act_name, resolve_site, split_site
from ripple.devices import input_device
from ripple.editing.requests import EditRequest
from ripple.hooks import Trace
from ripple.modes import held
from ripple.scoring import encode_batch, pad_ids_left, window_logits
from ripple.tokens import answer_ids, fill, subject_token_span, text_ids


def context_templates(model, tok, n: int, length: int, seed: int = 0) -> list[str]:
    """``["{}"]`` plus ``n`` prefixes sampled from the model (deterministic for a seed; the caller's
    RNG state is left untouched)."""
    if n <= 0:
        return ["{}"]
    device = input_device(model)
    start = torch.full((n, 1), tok.eos_token_id if tok.eos_token_id is not None else 0, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model.generate(start, attention_mask=torch.ones_like(start), do_sample=True, top_k=5,
                             max_new_tokens=length, min_new_tokens=length, pad_token_id=start[0, 0].item())
    texts = [tok.decode(o[1:], skip_special_tokens=True).replace("{", " ").replace("}", " ").strip() for o in out]
    return ["{}"] + [f"{t} . {{}}" if t else "{}" for t in texts]


def fact_position(tok, text: str, prompt: str, subject: str, fact_token: str) -> int:
    """Token index of the fact token in ``text`` (a context-prefixed rendering of ``prompt``)."""
    if fact_token == "last":
        return len(text_ids(tok, text)) - 1
    s0, s1 = subject_token_span(tok, text, subject)
    return s0 if fact_token == "subject_first" else s1 - 1


def token_requests(tok, requests: list[EditRequest], fact_token: str) -> list[EditRequest]:
    """The requests an editor solves for: with ``fact_token="last"`` (a model that recalls at the
    prompt's last token, as the organism does), a target of ``n`` tokens becomes ``n`` requests,
    the ``j``-th asking for token ``j`` after the prompt followed by tokens ``0..j-1``. A vector at
    the prompt's last token alone cannot write the later tokens: they are predicted at the target's
    own positions, whose keys the edit does not touch (the organism's two-token names got their
    first token and lost the second on every edit). A target whose tokens do not round-trip
    through the text (a token that is not a whole word) is kept whole. Other fact tokens: the
    requests as given (the subject's key carries the whole target, as in ROME)."""
    if fact_token != "last":
        return list(requests)
    out = []
    for r in requests:
        ids = answer_ids(tok, r.target_new)
        if len(ids) < 2:
            out.append(r)
            continue
        base = text_ids(tok, r.rendered)
        subs = []
        for j in range(len(ids)):
            prefix = tok.decode(ids[:j]).strip()
            sub = replace(r, prompt=f"{r.prompt} {prefix}" if prefix else r.prompt,
                          target_new=tok.decode(ids[j:j + 1]).strip(), target_true=None, paraphrase_prompts=(),
                          neighborhood_prompts=(), neighborhood_answers=())
            if text_ids(tok, sub.rendered) != base + ids[:j] or answer_ids(tok, sub.target_new) != ids[j:j + 1]:
                subs = [r]
                break
            subs.append(sub)
        out += subs
    return out


def _render(ctx: str, req: EditRequest) -> str:
    return fill(ctx, fill(req.prompt, req.subject))


def subject_forms(tok, request: EditRequest, contexts: list[str], fact_token: str) -> list[list[str]]:
    """The contexts grouped by the subject's tokens in them, in the order of their first context.

    A tokenizer without a BOS token splits a subject at the very start of a text otherwise than
    after a prefix: SmolLM2 reads "Greece is" as ``G|ree|ce`` and ". Greece" as `` Greece``. The two
    forms have different keys, and a key averaged over both writes neither (on SmolLM2 every
    missed edit of 200 had its subject opening the prompt; reports/real_editors_notes.md). So an
    editor writes each form's key, averaged over that form's contexts, with the same value.

    A form whose fact token is the text's first token joins the largest other form: a one-token
    subject opening a BOS-less text has no key of its own (on SmolLM2 the keys of France,
    Germany, Italy, Spain and Japan there have C-cosine 0.89-0.94 with one another), and writing
    it would move every such subject. With the fact at the prompt's last token (``"last"``) there
    is one form: the subject's tokens do not decide the key's position."""
    if fact_token == "last" or len(contexts) < 2:
        return [list(contexts)]
    forms: dict[tuple, list[int]] = {}
    opening = set()
    for i, c in enumerate(contexts):
        text = _render(c, request)
        s0, s1 = subject_token_span(tok, text, request.subject)
        form = tuple(text_ids(tok, text)[s0:s1])
        forms.setdefault(form, []).append(i)
        if fact_position(tok, text, request.prompt, request.subject, fact_token) == 0:
            opening.add(form)
    groups = list(forms.values())
    for form in opening:
        others = [g for f, g in forms.items() if f not in opening]
        if others and len(groups) > 1:
            groups.remove(forms[form])
            max(others, key=len).extend(forms[form])
    return [[contexts[i] for i in sorted(g)] for g in sorted(groups, key=min)]


def opening_subject_note(tok, request: EditRequest, fact_token: str) -> str | None:
    """What to tell a user whose edit prompt opens with a one-token subject and no BOS token: the
    model has no key of its own for the subject there (see :func:`subject_forms`), so no
    locate-then-edit editor can change that prompt's answer without moving every such subject.
    ``None`` for any other edit."""
    if fact_token == "last" or fact_position(tok, request.rendered, request.prompt, request.subject, fact_token):
        return None  # the rule subject_forms merges by: the fact token is not the text's first token
    return (f"edit {request.case_id or request.subject!r}: the subject {request.subject!r} is one token opening a "
            "prompt with no BOS token, where the model has no key of its own for it; the edit is written where "
            "the subject follows other words, and this prompt's own answer may not change (on SmolLM2, the 5 "
            "such edits of 200 missed; reports/real_editors_notes.md); a word before the subject gives it a key")


def form_requests(tok, requests: list[EditRequest], contexts: list[str], fact_token: str
                  ) -> tuple[list[EditRequest], list[list[str]], list[int]]:
    """One entry per request and subject form (:func:`subject_forms`): the requests repeated, each
    form's contexts, and the index of the request each entry comes from."""
    reqs, ctxs, owner = [], [], []
    for i, r in enumerate(requests):
        for form in subject_forms(tok, r, contexts, fact_token):
            reqs.append(r)
            ctxs.append(form)
            owner.append(i)
    return reqs, ctxs, owner


def _per_request(contexts, n: int) -> list[list[str]]:
    """``contexts`` shared by ``n`` requests (a list of strings) or one list per request."""
    if contexts and isinstance(contexts[0], str):
        return [list(contexts)] * n
    if len(contexts) != n:
        raise ValueError(f"{len(contexts)} context lists for {n} requests")
    return [list(c) for c in contexts]


@torch.no_grad()
def _site_means(model, tok, spec, mod, requests: list[EditRequest], contexts, fact_token: str,
                read_input: bool) -> torch.Tensor:
    """``[dim, n_requests]``: ``mod``'s input (or output) at the fact token, averaged over each
    request's contexts."""
    texts, where = [], []
    for i, (r, ctxs) in enumerate(zip(requests, _per_request(contexts, len(requests)))):
        for c in ctxs:
            text = _render(c, r)
            texts.append(text)
            where.append((i, fact_position(tok, text, r.prompt, r.subject, fact_token)))
    device = input_device(model)
    ids, mask = encode_batch(tok, texts, device)
    with Trace(model, mod, retain_input=read_input, retain_output=not read_input, stop=True) as t:
        model(input_ids=ids, attention_mask=mask)
    acts = t.input if read_input else t.output
    vals = torch.stack([acts[j, p] for j, (_, p) in enumerate(where)]).double().cpu()
    owner = torch.tensor([i for i, _ in where])
    return torch.stack([vals[owner == i].mean(0) for i in range(len(requests))], dim=1)


def fact_keys(model, tok, spec, layer: int, requests: list[EditRequest], contexts,
              fact_token: str) -> torch.Tensor:
    """Keys ``[in, n_requests]`` at ``blocks.{layer}.mlp.key``, averaged over the contexts (shared,
    or one list per request: each subject form's, :func:`form_requests`)."""
    site = resolve_site(spec, act_name(layer, "mlp.key"))[0]
    return _site_means(model, tok, spec, site, requests, contexts, fact_token, read_input=True)


def site_values(model, tok, spec, site: str, requests: list[EditRequest], fact_token: str,
                contexts=None) -> torch.Tensor:
    """The output of ``site`` at the fact token, ``[out, n_requests]``: of each bare prompt, or
    averaged over ``contexts`` (shared, or one list per request)."""
    mod = resolve_site(spec, site)[0]
    return _site_means(model, tok, spec, mod, requests, ["{}"] if contexts is None else contexts, fact_token,
                       read_input=False)


def frozen_blocks(site: str) -> list[int]:
    """The blocks whose output an optimization at ``site`` cannot change: those before the site's
    block, and the block itself when the site is its output (the vector is added after it)."""
    parts = split_site(site)
    if parts is None:
        return []
    return list(range(parts[0] + 1 if parts[1] == "out" else parts[0]))


@contextmanager
def replayed(model, spec, blocks: list[int]):
    """Record the outputs of ``blocks`` in the first forward pass inside, then make every later
    pass return them without computing those blocks (the inputs must not change in between).

    Block ``i``'s ``forward`` is swapped for one returning its recorded output; forward hooks
    still run on it (a hook that adds the optimized vector to a block's output sees the recorded
    output). Whatever ``forward`` each block had (accelerate's device hook) comes back on exit."""
    recorded, saved = {}, {}
    mods = {i: model.get_submodule(spec.block(i)) for i in blocks}

    def keep(i):
        def hook(mod, _args, output):
            recorded[i] = output
            handles[i].remove()
            saved[i] = mod.__dict__.get("forward")
            mod.forward = lambda *a, **k: recorded[i]
        return hook

    handles = {i: m.register_forward_hook(keep(i)) for i, m in mods.items()}
    try:
        yield
    finally:
        for i, mod in mods.items():
            handles[i].remove()
            if i in saved:
                if saved[i] is None:
                    del mod.forward
                else:
                    mod.forward = saved[i]


def _value_rows(tok, request: EditRequest, hp, contexts: list[str], target: list[int]):
    """The token rows the value is optimized on: each context's rewrite prompt followed by the target
    (but its last token), then each KL prompt; the fact token's position in each; how many rewrites."""
    seqs, pos = [], []
    for text in (_render(c, request) for c in contexts):
        seqs.append(text_ids(tok, text) + target[:-1])
        pos.append(fact_position(tok, text, request.prompt, request.subject, hp.fact_token))
    for text in (fill(p, request.subject) for p in hp.kl_prompts):
        seqs.append(text_ids(tok, text))
        pos.append(fact_position(tok, text, "{}", request.subject, hp.fact_token) if hp.fact_token != "last"
                   else len(seqs[-1]) - 1)
    return seqs, pos, len(contexts)


def optimize_delta(model, tok, spec, request: EditRequest, site: str, hp, contexts: list[str],
                   replay: bool = True) -> dict:
    """Optimize the vector added to ``site``'s output at the fact token (see module docstring),
    each subject form (:func:`subject_forms`) weighing alike in the loss.

    The blocks before the site compute the same outputs at every step; with ``replay`` they run
    once and their outputs are reused (:func:`replayed`; the same result, bit for bit).

    Returns ``{"delta": [hidden] float64, "init_norm": float, "nll": [per step], "steps": int}``.
    The model's weights and its train/eval mode are left as they were."""
    mod = resolve_site(spec, site)[0]
    device = input_device(model)
    target = answer_ids(tok, request.target_new)
    seqs, pos, n_rw = _value_rows(tok, request, hp, contexts, target)
    # each subject form weighs alike in the loss (the bare prompt's form is one row of 1 + n)
    forms = subject_forms(tok, request, contexts, hp.fact_token)
    weight = None
    if len(forms) > 1:
        size = {c: len(f) for f in forms for c in f}
        weight = torch.tensor([1.0 / (len(forms) * size[c]) for c in contexts], device=device)
    # left-padded, so that every row ends at the last column: the loss reads logits only in the
    # last len(target) columns (a rewrite row's target positions; a KL prompt's last token), and
    # the unembedding runs there alone (a large share of the cost for a large vocabulary)
    ids, mask, positions, offsets = pad_ids_left(seqs, tok, device)
    rows = torch.arange(len(seqs), device=device)
    pos_t = torch.tensor([p + o for p, o in zip(pos, offsets)], device=device)
    tgt = torch.tensor(target, device=device)
    hi = ids.shape[1]
    lo = hi - len(target)
    kl_at = len(target) - 1

    def logits_at_end():
        return window_logits(model, ids, mask, lo, hi, position_ids=positions, use_cache=False)

    with held(model, trainable=()), replayed(model, spec, frozen_blocks(site) if replay else []):
        with Trace(model, mod, stop=False) as t:
            with torch.no_grad():
                base = logits_at_end()
        init = t.output[rows, pos_t].float()
        base_kl = torch.log_softmax(base[rows[n_rw:], kl_at].float(), -1) if hp.kl_prompts else None
        # the clamp's scale: the bare prompt's value norm (ROME's rule), but the median rewrite
        # row's when the subject has several forms or its fact token opens the bare prompt (no
        # key of its own there, and a far smaller value: 5.5 against a median of 23 for France
        # on SmolLM2, where the bare row's norm held the value too short for the other rows)
        typical = len(forms) == 1 and pos[0] > 0
        init_norm = (init[0].norm() if typical else init[:n_rw].norm(dim=-1).median()).item()
        delta = torch.zeros(init.shape[-1], device=device, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=hp.v_lr)

        def add(out, name):
            out = out.clone()
            out[rows, pos_t] = out[rows, pos_t] + delta.to(out.dtype)
            return out

        history = []
        for _ in range(hp.v_steps):
            with Trace(model, mod, edit_output=add, retain_output=False):
                logits = logits_at_end().float()
            logp = torch.log_softmax(logits, -1)
            token_lp = logp[rows[:n_rw, None], torch.arange(len(target), device=device)[None, :], tgt[None, :]]
            nll = -token_lp.mean() if weight is None else -(token_lp.mean(1) * weight).sum()
            loss = nll + hp.v_weight_decay * delta.norm() / max(init_norm, 1e-8)
            if base_kl is not None:
                cur = logp[rows[n_rw:], kl_at]
                loss = loss + hp.kl_factor * torch.nn.functional.kl_div(cur, base_kl, log_target=True,
                                                                        reduction="batchmean")
            history.append(round(nll.item(), 5))
            if nll.item() < hp.early_stop_loss:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                cap = hp.clamp_norm_factor * init_norm
                if delta.norm() > cap:
                    delta.mul_(cap / delta.norm())
    return {"delta": delta.detach().double().cpu(), "init_norm": init_norm, "nll": history, "steps": len(history)}

