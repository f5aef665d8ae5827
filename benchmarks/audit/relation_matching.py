"""Relation matching of the open world: how often an edit prompt is matched to the right relation of
ripple's relation library (ripple/data/relations.json), measured two ways; no model needed.

1. calibration, leave-one-out on the library itself: each of its 188 held-out phrasings matched
   against the library without that phrasing (the threshold MATCH_MIN was chosen on this);
2. prompts written by hand by someone who had not seen the library
   (benchmarks/real_models/open_world_edits.jsonl, 60 edits labelled with a relation of their
   own vocabulary): right relation, no match (generic rewrites, honest), wrong relation (the
   harmful case: paraphrases of another relation).

    python -m benchmarks audit/relation_matching     # writes reports/audit_any_edit/relation_matching.json
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDITS = ROOT / "benchmarks" / "real_models" / "open_world_edits.jsonl"
OUT = ROOT / "reports" / "audit_any_edit" / "relation_matching.json"
#: The hand-written file's labels that the library names otherwise (declared before measuring: the
#: library has one relation per subject type where the file has one label).
EQUIVALENT = {"genre": {"music_genre", "work_genre"}, "continent_of_city": {"located_on_continent", "continent"},
              "position_played": {"plays_position"}}


def calibration(thresholds=(0.3, 0.4, 0.5, 0.6, 0.7)) -> dict:
    import ripple.editing.open_world as ow

    lib = ow.relation_library()
    rows = []
    for r in lib.values():
        for p in r.heldout:
            scores = ow._Matcher(lib, exclude=p).scores(p)
            best = max(scores, key=lambda n: (scores[n], n))
            rows.append({"relation": r.name, "phrasing": p, "best": best, "score": round(scores[best], 4)})
    table = []
    for t in thresholds:
        accepted = [r for r in rows if r["score"] >= t]
        right = sum(r["best"] == r["relation"] for r in accepted)
        table.append({"threshold": t, "accepted": len(accepted), "right": right, "wrong": len(accepted) - right,
                      "no_match": len(rows) - len(accepted)})
    return {"n": len(rows), "top1_right": sum(r["best"] == r["relation"] for r in rows), "by_threshold": table,
            "chosen": ow.MATCH_MIN}


def hand_written() -> dict:
    from ripple.editing.open_world import match_relation, relation_library

    lib = relation_library()
    rows = []
    for line in EDITS.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        want = EQUIVALENT.get(e["relation"], {e["relation"]} if e["relation"] in lib else set())
        m = match_relation(e["prompt"])
        outcome = ("right" if m.relation in want else "no relation expected, none matched" if not want and
                   m.relation is None else "no match" if m.relation is None else "wrong relation")
        rows.append({"prompt": e["prompt"], "label": e["relation"], "matched": m.relation, "how": m.how,
                     "score": m.score, "outcome": outcome})
    counts = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    return {"n": len(rows), "counts": counts, "rows": rows}


def main(argv=None) -> int:
    from benchmarks.common import set_threads

    set_threads(1)
    result = {"calibration": calibration(), "hand_written": hand_written(),
              "command": "python -m benchmarks audit/relation_matching"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    c, h = result["calibration"], result["hand_written"]
    print(f"calibration: {c['top1_right']}/{c['n']} held-out phrasings top-1 right; hand-written: {h['counts']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
