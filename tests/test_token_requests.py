"""A target of several tokens when the fact sits at the prompt's last token: one request per token
(ripple.editing.compute.token_requests), and the editors then write every token, which a vector at
the prompt's last token alone could not (the organism's two-token names kept their first token and
lost the second on every edit)."""

import pytest
import torch

from ripple.arch import get_spec
from ripple.editing.compute import fact_keys, optimize_delta, token_requests
from ripple.editing.requests import EditRequest
from ripple.scoring import answer_logprobs
from ripple.tokens import answer_ids, text_ids

from helpers import MLP_OUT, context, hparams, make_tiny_model

REQ = EditRequest(prompt="{} w30 w31", subject="w10 w11", target_new="w40 w41 w42", target_true="w50",
                  paraphrase_prompts=("w32 {} w31",), neighborhood_prompts=("w12 w30 w31",))


def test_each_token_becomes_a_request_at_its_own_position(tiny_tokenizer):
    parts = token_requests(tiny_tokenizer, [REQ], "last")
    assert [(p.rendered, p.target_new) for p in parts] == [
        ("w10 w11 w30 w31", "w40"), ("w10 w11 w30 w31 w40", "w41"), ("w10 w11 w30 w31 w40 w41", "w42")]
    base, ids = text_ids(tiny_tokenizer, REQ.rendered), answer_ids(tiny_tokenizer, REQ.target_new)
    for j, p in enumerate(parts):  # token for token what the whole target's sequence holds
        assert text_ids(tiny_tokenizer, p.rendered) + answer_ids(tiny_tokenizer, p.target_new) == base + ids[:j + 1]
        assert p.subject == REQ.subject and p.target_true is None and not p.paraphrase_prompts


def test_one_token_targets_and_subject_fact_tokens_are_left_whole(tiny_tokenizer):
    one = EditRequest(prompt="{} w30", subject="w10", target_new="w40")
    assert token_requests(tiny_tokenizer, [one, REQ], "subject_last") == [one, REQ]
    assert token_requests(tiny_tokenizer, [one], "last") == [one]
    assert len(token_requests(tiny_tokenizer, [one, REQ], "last")) == 4


class SubwordTok:
    """Greedy longest-match over a few pieces: " abcd" is " ab" + "cd", and "cd" alone re-encodes
    as " cd", another token: the split would not reproduce the target."""

    vocab = {"P": 0, " ab": 1, "cd": 2, " cd": 3, " x": 4}
    bos_token_id = None

    def __call__(self, text, add_special_tokens=False):
        out, i = [], 0
        while i < len(text):
            piece = max((p for p in self.vocab if text.startswith(p, i)), key=len)
            out.append(self.vocab[piece])
            i += len(piece)
        return {"input_ids": out}

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv[i] for i in ids)


def test_a_target_that_does_not_round_trip_is_kept_whole():
    tok = SubwordTok()
    req = EditRequest(prompt="P {}", subject="x", target_new="abcd")
    assert answer_ids(tok, "abcd") == [1, 2]
    assert token_requests(tok, [req], "last") == [req]


def test_rome_writes_each_tokens_vector_at_that_tokens_key(tiny_tokenizer):
    """ROME on a three-token target with the fact at the last token: a rank-3 update that writes
    each token's optimized vector exactly at that token's key (the equality-constrained,
    least-C-norm solve; with one token it is ROME's rank-one update)."""
    from ripple.editing.editor import get_editor

    model = make_tiny_model("gpt2")
    hp = hparams("rome", "gpt2", "v_steps=5", "context_prefixes=0", "fact_token=last")
    parts = token_requests(tiny_tokenizer, [REQ], "last")
    module = MLP_OUT["gpt2"].format(0)
    want = [optimize_delta(model, tiny_tokenizer, get_spec(model), p, "blocks.0.mlp.out", hp, ["{}"])["delta"]
            for p in parts]
    keys = fact_keys(model, tiny_tokenizer, get_spec(model), 0, parts, ["{}"], "last")
    delta = get_editor("rome").compute(context(model, tiny_tokenizer), [REQ], hp)
    d_oi = delta.deltas[module + ".weight"].T.double()  # gpt2's Conv1D stores [in, out]
    assert torch.linalg.matrix_rank(d_oi, rtol=1e-4).item() == 3  # stored in float32
    for j in range(3):
        assert torch.allclose(d_oi @ keys[:, j], want[j], atol=1e-5)
        assert want[j].norm() > 1e-3


@pytest.fixture(scope="module")
def organism():
    from ripple.editing.setup import load_setup

    return load_setup("organism")


@pytest.mark.parametrize("method", ["rome", "memit"])
@pytest.mark.slow
def test_two_token_names_land_whole_on_the_organism(organism, method):
    """The organism's spouses are two-token names; before the split every edit got the first name
    and lost the surname (efficacy top-1 0 of 20 on married_to). Now the whole name is the greedy
    answer, and the edit is undone exactly."""
    from ripple.editing.from_world import sample_edits
    from ripple.editing.session import edited

    s = organism
    reqs = [r for r in sample_edits(s.world, 100, seed=0, relations=tuple(sorted(s.world.relations)))
            if "|married_to|" in r.case_id][:3]
    assert all(len(answer_ids(s.tok, r.target_new)) == 2 for r in reqs)
    hp = s.hparams_for(method)
    assert hp.fact_token == "last"
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    for r in reqs:
        with edited(s.ctx, method, [r], hp, force=True):
            assert answer_logprobs(s.model, s.tok, [(r.rendered, r.target_new)])[0][1], r.target_new
    assert all(torch.equal(before[k], v) for k, v in s.model.state_dict().items())
