"""The stress run's resume hash of the unedited weights reads every dtype a model loads in (numpy has
no bfloat16: ``ripple stress --dtype bfloat16`` stopped on it before the first checkpoint)."""

import hashlib

import pytest
import torch

from ripple.stress.resume import weights_hash


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_hash_reads_every_dtype_and_sees_one_changed_value(dtype):
    w = {"b": torch.arange(12, dtype=torch.float32).reshape(3, 4).to(dtype), "a": torch.ones(5, dtype=dtype)}
    same = {k: v.clone() for k, v in w.items()}
    assert weights_hash(w) == weights_hash(same)
    same["b"][2, 3] += 1
    assert weights_hash(w) != weights_hash(same)
    assert weights_hash({"a": w["a"].float()}) != weights_hash({"a": w["a"]}) or dtype == torch.float32


def test_float32_hashes_are_those_resumed_runs_recorded():
    """The bytes of a float32 tensor are numpy's, as before: a run stopped by older code resumes."""
    w = {"x": torch.linspace(-1, 1, 7), "y": torch.zeros(2, 2)}
    h = hashlib.sha256()
    for name in sorted(w):
        h.update(name.encode() + b"\0" + str(w[name].dtype).encode() + b"\0" + w[name].numpy().tobytes())
    assert weights_hash(w) == h.hexdigest()[:16]
