"""The offline English suite on the unedited real models: which tasks make the ``english`` group.

The offline English suite (ripple.evaluate.english_tasks) on the unedited real models: which
candidate tasks SmolLM2-135M does clearly above chance (those make the ``english`` group).

Every candidate is evaluated through the lm-eval bridge (the same path `ripple audit --tasks` and
`ripple stress --tasks` take) on SmolLM2-135M-Instruct and Gemma-3-270M. A task is kept when
SmolLM2's accuracy is at least 10 points above chance and the lower end of its 95% Wilson
interval is above chance; the perplexity task is always kept (it has no chance level).
Writes ``reports/english_tasks.json`` (the scores and the kept list) and ``reports/english_tasks.md``.
The group reads the kept list from ``ripple/data/english_tasks.json``, which no run writes:
``--install`` copies the record there, a step of its own.

    python -m benchmarks real_models/english_tasks                 # both models
    python -m benchmarks real_models/english_tasks --render
    python -m benchmarks real_models/english_tasks --install       # reports/english_tasks.json -> ripple/data/
"""

from __future__ import annotations

import argparse
import json
import math
import time

from benchmarks.common import REPORTS, md_row, md_table, set_threads

RECORD = REPORTS / "english_tasks.json"  # written by a measuring run; --install copies it into the package
MODELS = ("smollm2", "gemma3-270m")
MARGIN = 0.10


def wilson_low(acc: float, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval for a proportion."""
    if n == 0:
        return 0.0
    centre = acc + z * z / (2 * n)
    spread = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def measure(model_name: str) -> dict:
    from ripple.editing.setup import load_setup
    from ripple.evaluate.english_tasks import CANDIDATES, english_docs
    from ripple.evaluate.lm_eval_bridge import LmEvalBridge

    setup = load_setup(model_name, context=False)
    t0 = time.perf_counter()
    scores = LmEvalBridge(setup.model, setup.tok, list(CANDIDATES)).evaluate()
    sizes = {k: len(v) for k, v in english_docs().items()}
    return {"scores": {t: scores[t] for t in CANDIDATES}, "n": sizes, "seconds": time.perf_counter() - t0}


def kept(result: dict) -> list[str]:
    from ripple.evaluate.english_tasks import CANDIDATES, CHANCE

    out = []
    for task in CANDIDATES:
        if task not in CHANCE:
            out.append(task)
            continue
        acc, n = result["scores"][task]["acc"], result["n"][task]
        if acc >= CHANCE[task] + MARGIN and wilson_low(acc, n) > CHANCE[task]:
            out.append(task)
    return out


def render() -> None:
    from ripple.evaluate.english_tasks import CANDIDATES, CHANCE
    from ripple.io import atomic_write_text

    data = json.loads(RECORD.read_text())
    lines = ["# The offline English suite on the unedited real models", "",
             "Generated tasks (`ripple/evaluate/english_tasks.py`; no hub), scored through the lm-eval bridge as "
             "`ripple audit --tasks english` and `ripple stress --tasks english` score them. A task is kept in the "
             f"`english` group when SmolLM2's accuracy is at least {MARGIN * 100:.0f} points above chance and the "
             "lower end of its 95% Wilson interval is above chance. Made by `python -m benchmarks real_models/english_tasks`.",
             "", *md_table(["task", "documents", "chance", *(f"{m} acc (95% low)" for m in data["models"]), "kept"])]
    for task in CANDIDATES:
        if task not in CHANCE:
            continue
        cells = []
        for m in data["models"]:
            r = data["models"][m]
            acc, n = r["scores"][task]["acc"], r["n"][task]
            cells.append(f"{acc:.3f} ({wilson_low(acc, n):.3f})")
        n = data["models"][next(iter(data["models"]))]["n"][task]
        lines.append(md_row([task, n, CHANCE[task], *cells, "yes" if task in data["kept"] else "no"]))
    ppl = [f"{m}: word perplexity {r['scores']['english_ppl']['word_perplexity']:.1f}, bits per byte "
           f"{r['scores']['english_ppl']['bits_per_byte']:.3f}" for m, r in data["models"].items()]
    lines += ["", f"english_ppl ({data['models'][next(iter(data['models']))]['n']['english_ppl']} general sentences, "
              "rolling log-likelihood; always kept): " + "; ".join(ppl) + ".", "",
              "Knowledge multiple choice covers every relation of the real-world graph (200 facts drawn, seed 0); "
              "its three wrong choices are answers of the same relation for other subjects, so it asks more than "
              "the type of the answer. The agreement, determiner and sequence tasks are near the ceiling on "
              "both models: they register a collapse of grammar or of pattern completion, not a small loss; "
              "arithmetic and knowledge have room both ways.", "",
              "Seconds to evaluate every candidate (CPU, one thread): "
              + ", ".join(f"{m} {r['seconds']:.0f} s" for m, r in data["models"].items()) + ".", ""]
    atomic_write_text(REPORTS / "english_tasks.md", "\n".join(lines))


def install() -> None:
    """Copy the record a measuring run wrote (reports/english_tasks.json) into the package
    (ripple/data/english_tasks.json, the kept list the ``english`` group reads), as it is."""
    from ripple.evaluate.english_tasks import KEPT_FILE
    from ripple.io import atomic_write_bytes

    if not RECORD.is_file():
        raise SystemExit(f"no {RECORD}: measure first (python -m benchmarks real_models/english_tasks)")
    atomic_write_bytes(KEPT_FILE, RECORD.read_bytes())
    print(f"{RECORD} -> {KEPT_FILE}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--install", action="store_true", help="only copy reports/english_tasks.json into the package "
                    "(ripple/data/english_tasks.json)")
    args = ap.parse_args(argv)
    if args.install:
        install()
        return
    if not args.render:
        from ripple.io import atomic_write_json

        set_threads()
        results = {m: measure(m) for m in args.models}
        if "smollm2" not in results:
            raise SystemExit("the kept list is decided on smollm2; include it in --models")
        atomic_write_json(RECORD, {"rule": f"SmolLM2 accuracy >= chance + {MARGIN} and its 95% Wilson lower "
                                      "bound > chance; english_ppl always", "kept": kept(results["smollm2"]),
                                      "models": results})
    render()


if __name__ == "__main__":
    main()
