"""The pure helpers of benchmarks/gie_estimate.py and the ranker contract, against hand-computed answers."""

import importlib.util
import random
from pathlib import Path

import torch

from ripple.gie.rankers import Ranker

_spec = importlib.util.spec_from_file_location(
    "gie_estimate", Path(__file__).resolve().parents[1] / "benchmarks" / "gie_estimate.py")
ge = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ge)


def test_top_k_excludes_edited_and_breaks_ties_by_index():
    scores = [0.9, 1.0, 0.5, 0.9, 0.1]
    ranker = Ranker("fixed", lambda state, edited, layer, position: torch.tensor(scores))
    # without index 1: 0.9 (0), 0.9 (3), 0.5 (2), 0.1 (4)
    assert ranker.rank(None, 1, 0, "last")[:3] == [0, 3, 2]
    assert ranker.rank(None, 1, 0, "last")[:10] == [0, 3, 2, 4]


def test_recall_counts_by_hand():
    ranked = ["a", "b", "c", "d", "e"]
    changed = {"b", "e", "z"}
    # top1 {a}: 0; top2 {a,b}: 1; top5: b, e -> 2 ("z" never ranked)
    assert ge.recall_counts(ranked, changed, [1, 2, 5]) == {1: 0, 2: 1, 5: 2}


def test_pooled_recall():
    assert ge.pooled_recall(3, 4) == 0.75
    assert ge.pooled_recall(0, 0) is None


def test_random_found_extremes_and_expectation():
    ids = [str(i) for i in range(10)]
    changed = {"0", "1"}
    rng = random.Random(0)
    assert ge.random_found(ids, changed, 10, 5, rng) == 2.0  # all drawn: both found
    assert ge.random_found(ids, changed, 0, 5, rng) == 0.0
    # expectation k * |changed| / N = 5 * 2 / 10 = 1
    assert abs(ge.random_found(ids, changed, 5, 4000, random.Random(1)) - 1.0) < 0.05
