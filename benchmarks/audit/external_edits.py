"""Edits made elsewhere, audited on SmolLM2: the same edit audited in process and through --edited
gives the same figures; a LoRA adapter trained with peft on a few facts, against the same facts
edited by ROME and by MEMIT.

1. identity: ROME moves the capital of France to Rome (benchmarks/audit/france_rome.json); audited
   in process (``Lab.audit``), from ripple's delta file, and from a checkpoint written by plain
   transformers code (the base plus the delta, ``save_pretrained``): every metric compared;
2. LoRA vs ROME vs MEMIT: five counterfactual edits of facts SmolLM2 knows (drawn with seed 0 from
   the real-world graph); a LoRA adapter (peft, r=8, MLP down projections of every block) trained on
   the five rewrite prompts until they are greedy answers (at most 200 Adam steps), saved, and
   audited with --edited's code path; ROME (one solve per fact, in sequence) and MEMIT (one batch)
   computed by ripple and audited the same way (one audit of the five together, each).

    python -m benchmarks audit/external_edits [--threads 1]

Writes reports/audit_any_edit/external_edits.json (resumable per part).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "reports" / "audit_any_edit" / "external_edits.json"
FRANCE = ROOT / "benchmarks" / "audit" / "france_rome.json"
KEYS = ("efficacy", "paraphrase", "neighborhood", "relation_specificity", "unintended_changes", "perplexity_ratio",
        "update_norm_ratio", "ripple_overall")


def _save(obj: dict) -> None:
    from ripple.io import atomic_write_json

    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, obj)


def _summary(report, seconds: float) -> dict:
    r = report.report
    return {"verdict": report.verdict, "metrics": {k: r["metrics"].get(k) for k in KEYS},
            "all_metrics": r["metrics"], "n_changed": r["gie"]["n_changed"], "unintended": r["gie"]["unintended"],
            "tensors_changed": (r.get("source") or {}).get("changed"),
            "norms": (r.get("source") or {}).get("norms"), "seconds": round(seconds, 1)}


def identity(lab) -> dict:
    import copy

    import torch

    request = json.loads(FRANCE.read_text())
    rows = {}
    t0 = time.perf_counter()
    rows["in_process"] = _summary(lab.audit("rome", [request], quiet=True), time.perf_counter() - t0)
    delta = lab.edit("rome", [request])
    with tempfile.TemporaryDirectory() as tmp:
        delta.save(Path(tmp) / "delta.safetensors")
        t0 = time.perf_counter()
        rows["delta_file"] = _summary(lab.audit_edited(Path(tmp) / "delta.safetensors", [request], quiet=True),
                                      time.perf_counter() - t0)
        edited = copy.deepcopy(lab.model)  # plain transformers code: base + delta, save_pretrained
        with torch.no_grad():
            params = dict(edited.named_parameters())
            for name, d in delta.deltas.items():
                params[name].add_(d.to(params[name].dtype))
        edited.save_pretrained(Path(tmp) / "ckpt", safe_serialization=True)
        del edited
        t0 = time.perf_counter()
        rows["transformers_checkpoint"] = _summary(lab.audit_edited(Path(tmp) / "ckpt", [request], quiet=True),
                                                   time.perf_counter() - t0)
    base = rows["in_process"]["all_metrics"]
    for name in ("delta_file", "transformers_checkpoint"):
        got = rows[name]["all_metrics"]
        rows[name]["differs"] = {k: [base[k], got[k]] for k in base if base[k] != got[k]}
    return {"request": request, "rows": rows}


def counterfactuals(lab, n: int = 5, seed: int = 0) -> list[dict]:
    """``n`` facts the model knows, each moved to another object of its type (one per relation where
    possible)."""
    from benchmarks.common import known_facts

    world = lab.world
    rng = random.Random(seed)
    facts = sorted(known_facts(lab.setup))
    rng.shuffle(facts)
    chosen, seen = [], set()
    for s, r in facts:
        if r in seen or r in ("capital_of",) or not world.relations[r].templates[0].startswith(("{}", "The")):
            continue
        true = {world.name(o) for o in world.objects(s, r)}
        others = sorted(e.name for e in world.of_type(world.relations[r].object_type) if e.name not in true)
        chosen.append({"prompt": world.relations[r].templates[0], "subject": world.name(s),
                       "target_new": rng.choice(others)})
        seen.add(r)
        if len(chosen) == n:
            break
    return chosen


def train_lora(lab, requests, out: Path, steps: int = 200, r: int = 8, lr: float = 2e-3, seed: int = 0) -> dict:
    """A LoRA adapter on every block's MLP down projection, trained on the rewrite prompts."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    from ripple.tokens import answer_ids, text_ids

    torch.manual_seed(seed)
    tok = lab.tokenizer
    model = get_peft_model(copy.deepcopy(lab.model), LoraConfig(r=r, lora_alpha=2 * r, target_modules=["down_proj"],
                                                               lora_dropout=0.0))
    pairs = [(text_ids(tok, q.rendered), answer_ids(tok, q.target_new)) for q in requests]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    t0, done = time.perf_counter(), 0
    for step in range(steps):
        loss, greedy = 0.0, True
        for p, a in pairs:
            ids = torch.tensor([p + a])
            logits = model(input_ids=ids).logits[0, len(p) - 1:len(p) + len(a) - 1]
            target = torch.tensor(a)
            loss = loss + torch.nn.functional.cross_entropy(logits, target)
            greedy &= bool((logits.argmax(-1) == target).all())
        done = step + 1
        if greedy:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out)
    return {"steps": done, "loss": round(float(loss), 4), "seconds": round(time.perf_counter() - t0, 1), "r": r,
            "target_modules": ["down_proj"], "lr": lr}


def compare(lab) -> dict:
    requests = lab.requests(counterfactuals(lab))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        training = train_lora(lab, requests, Path(tmp) / "lora")
        t0 = time.perf_counter()
        rows["lora (peft)"] = _summary(lab.audit_edited(Path(tmp) / "lora", requests, quiet=True),
                                       time.perf_counter() - t0)
    for method, mode in (("rome", "sequential"), ("memit", "batch")):
        delta = lab.edit(method, requests, mode=mode)
        t0 = time.perf_counter()
        rows[method] = _summary(lab.audit_edited(delta, requests, quiet=True), time.perf_counter() - t0)
    return {"requests": [q.to_dict() for q in requests], "lora_training": training, "rows": rows}


def main(argv=None) -> int:
    from benchmarks.common import load_json, set_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=("identity", "compare"), default=None)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    import ripple

    state = load_json(OUT, {})
    if state.get("model") != args.model:
        state = {"model": args.model}
    lab = ripple.load(args.model)
    if args.only in (None, "identity") and "identity" not in state:
        state["identity"] = identity(lab)
        _save(state)
        print("identity:", {k: v.get("differs") for k, v in state["identity"]["rows"].items()}, flush=True)
    if args.only in (None, "compare") and "compare" not in state:
        state["compare"] = compare(lab)
        _save(state)
        print("compare:", {k: (v["verdict"], v["metrics"]) for k, v in state["compare"]["rows"].items()}, flush=True)
    state["command"] = f"python -m benchmarks audit/external_edits --model {args.model}"
    _save(state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
