"""CounterFact metrics scored in one batch (ripple.editing.metrics.requests_metrics) equal each
request scored alone, and the races are what answer_logprobs says, on the organism's requests
(with neighbourhood answers, with only an old target, and with no old target)."""

from dataclasses import replace

from ripple.editing.metrics import request_metrics, requests_metrics
from ripple.editing.setup import load_setup
from ripple.editing.streams import edit_stream
from ripple.scoring import answer_logprobs


def test_batched_metrics_equal_each_alone_and_the_races_by_hand():
    s = load_setup("organism", context=False)
    reqs = edit_stream(s.world, 8, seed=3)  # neighbours race the old target
    assert all(r.paraphrase_prompts and r.neighborhood_prompts and not r.neighborhood_answers for r in reqs)
    # neighbours with answers of their own (another edit's old target for each)
    with_answers = replace(reqs[0], neighborhood_answers=tuple(reqs[1].target_true for _ in reqs[0].neighborhood_prompts))
    no_old = replace(reqs[2], target_true=None)  # top-1 only
    reqs = [with_answers, *reqs, no_old]
    together = requests_metrics(s.model, s.tok, reqs)
    assert together == [request_metrics(s.model, s.tok, r) for r in reqs]

    r, m = reqs[0], together[0]
    new = answer_logprobs(s.model, s.tok, [(p, r.target_new) for p in r.paraphrase_prompts])
    old = answer_logprobs(s.model, s.tok, [(p, r.target_true) for p in r.paraphrase_prompts])
    assert m["paraphrase"] == sum(a[0] > b[0] for a, b in zip(new, old)) / len(new)
    assert m["paraphrase_top1"] == sum(a[1] for a in new) / len(new)
    own = answer_logprobs(s.model, s.tok, list(zip(r.neighborhood_prompts, r.neighborhood_answers)))
    assert m["neighborhood_top1"] == sum(a[1] for a in own) / len(own)
    new = answer_logprobs(s.model, s.tok, [(p, r.target_new) for p in r.neighborhood_prompts])
    assert m["neighborhood"] == sum(a[0] > b[0] for a, b in zip(own, new)) / len(own)
    assert list(together[1]) == list(m)  # every metric, in the same order
    assert "neighborhood" not in together[-1] and together[-1]["efficacy"] == together[-1]["efficacy_top1"]
