"""Scoring with the unembedding at the scored positions only (``ripple.scoring.selected_logits``,
commits e453975 and be896bb) against the code before it (read from git at 12e3a6e), on the
unedited model: the 40 general English sentences (``sentence_nlls``) and the real-world graph's
first 300 facts as (prompt, answer) pairs (``answer_logprobs``). Old and new run interleaved,
``reps`` times each; prints the median seconds and the largest difference of the results.

    python benchmarks/scoring_speed.py gemma3-270m
    python benchmarks/scoring_speed.py smollm2
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OLD = "12e3a6e"


def old_module(path: str, name: str):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location(name, tmp)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(model_name: str, reps: int = 3) -> None:
    from ripple import scoring
    from ripple.editing.setup import load_setup
    from ripple.evaluate import perplexity

    torch.set_num_threads(int(os.environ.get("RIPPLE_THREADS", "1")))
    setup = load_setup(model_name)
    m, tok = setup.model, setup.tok
    sentences = perplexity.english_sentences()
    facts = [json.loads(line) for line in (ROOT / "probes" / "real_world.jsonl").read_text().splitlines()][:300]
    pairs = [(f["prompt"].format(f["subject"]), f["answer"]) for f in facts]
    old_ppl = old_module("ripple/evaluate/perplexity.py", "old_perplexity")
    old_scoring = old_module("ripple/scoring.py", "old_scoring")
    cases = [("sentence_nlls (40 sentences)", old_ppl.sentence_nlls, perplexity.sentence_nlls, sentences,
              lambda a, b: max(abs(x - y) for x, y in zip(a, b))),
             ("answer_logprobs (300 pairs)", old_scoring.answer_logprobs, scoring.answer_logprobs, pairs,
              lambda a, b: max(max(abs(x[0] - y[0]) for x, y in zip(a, b)), sum(x[1] != y[1] for x, y in zip(a, b))))]
    print(f"{model_name}, {torch.get_num_threads()} thread(s), median of {reps}")
    print("| call | before (s) | after (s) | largest difference |\n|---|---|---|---|")
    for label, old, new, data, diff in cases:
        times = {"old": [], "new": []}
        for _ in range(reps):
            for key, fn in (("old", old), ("new", new)):
                t0 = time.perf_counter()
                out = fn(m, tok, data)
                times[key].append(time.perf_counter() - t0)
                if key == "old":
                    before = out
                else:
                    after = out
        print(f"| {label} | {statistics.median(times['old']):.2f} | {statistics.median(times['new']):.2f} "
              f"| {diff(before, after):.2g} |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
