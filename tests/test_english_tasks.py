"""The offline English suite: documents right by construction, deterministic, the group as measured,
and the lm-eval bridge's scores on it equal to ripple's own scoring (an independent oracle)."""

import json
import re

import numpy as np
import pytest

from ripple.evaluate import english_tasks as et
from ripple.world.real import real_world


@pytest.fixture(scope="module")
def docs():
    return et.english_docs()


def gold(d):
    return d["choices"][d["gold"]]


def test_documents_are_a_pure_function_of_the_seed(docs):
    assert json.dumps(et.english_docs(), sort_keys=True) == json.dumps(docs, sort_keys=True)
    assert json.dumps(et.english_docs(seed=1), sort_keys=True) != json.dumps(docs, sort_keys=True)
    assert {k: len(v) for k, v in docs.items() if k != "english_ppl"} == {k: 200 for k in et.CHANCE}


def test_every_choice_set_is_well_formed(docs):
    for name in et.CHANCE:
        for d in docs[name]:
            assert len(set(d["choices"])) == len(d["choices"]) == (2 if et.CHANCE[name] == 0.5 else 4), (name, d)
            assert 0 <= d["gold"] < len(d["choices"])


SINGULAR = {sg for sg, _ in et.NOUNS}
PLURAL = {pl for _, pl in et.NOUNS}
VERB_SG = {v for v, _, _ in et.PREDICATES}
VERB_PL = {v for _, v, _ in et.PREDICATES}


def test_agreement_gold_agrees_with_the_head_noun(docs):
    for name in ("english_agreement", "english_attractor"):
        for d in docs[name]:
            head = d["prompt"].split()[1]  # "The <head> [prep the <attractor>]"
            verb = gold(d).split()[0]
            assert (head in PLURAL and verb in VERB_PL) or (head in SINGULAR and verb in VERB_SG), d
            wrong = d["choices"][1 - d["gold"]].split()[0]
            assert wrong != verb and wrong in VERB_SG | VERB_PL
    for d in docs["english_attractor"]:  # the attractor has the head's other number
        head, attractor = d["prompt"].split()[1], d["prompt"].split()[-1]
        assert (head in PLURAL) != (attractor in PLURAL), d


def test_determiner_gold_agrees_with_the_determiner(docs):
    for d in docs["english_determiner"]:
        det, noun = d["prompt"].split()[-1], gold(d).rstrip(".")
        assert (det in ("these", "those")) == (noun in PLURAL) and noun in SINGULAR | PLURAL, d


def test_arithmetic_gold_is_the_result(docs):
    for d in docs["english_arithmetic"]:
        a, op, b = re.fullmatch(r"(\d+) ([+-]) (\d+) =", d["prompt"]).groups()
        assert int(gold(d)) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0


def test_sequence_gold_continues_the_sequence(docs):
    cycles = [et.WEEKDAYS, et.MONTHS, [chr(c) for c in range(65, 91)]]
    for d in docs["english_sequence"]:
        items = d["prompt"].rstrip(",").split(", ")
        if items[0].isdigit():
            step = int(items[1]) - int(items[0])
            assert all(int(b) - int(a) == step for a, b in zip(items, items[1:]))
            assert int(gold(d)) == int(items[-1]) + step
        else:
            cycle = next(c for c in cycles if items[0] in c)
            assert gold(d) == cycle[cycle.index(items[-1]) + 1]


def test_knowledge_gold_is_true_and_the_others_false():
    world = real_world()
    by_prompt = {}
    for f in world.facts:
        prompt = world.relations[f.relation].templates[0].replace("{}", world.name(f.subject))
        by_prompt.setdefault(prompt, set()).add(world.name(f.object))
    for d in et.english_docs()["english_knowledge"]:
        true = by_prompt[d["prompt"]]
        assert gold(d) in true and not (set(d["choices"]) - {gold(d)}) & true, d


def test_group_follows_the_measured_record(tmp_path, monkeypatch):
    record = tmp_path / "kept.json"
    record.write_text(json.dumps({"kept": ["english_ppl", "english_arithmetic"]}))
    monkeypatch.setattr(et, "KEPT_FILE", record)
    assert et.kept_tasks() == ["english_arithmetic", "english_ppl"]  # in the suite's order
    directory, group = et.write_english_tasks(root=tmp_path)
    assert group == ["english_arithmetic", "english_ppl"]
    text = (directory / "english.yaml").read_text()
    assert "  - english_arithmetic\n  - english_ppl\n" in text and "english_agreement" not in text
    assert all((directory / f"{t}.yaml").is_file() for t in et.CANDIDATES)  # every candidate loadable by name
    again, _ = et.write_english_tasks(root=tmp_path)
    assert again == directory


def test_shipped_record_keeps_only_tasks_clearly_above_chance():
    rec = json.loads(et.KEPT_FILE.read_text())
    smol = rec["models"]["smollm2"]
    for task in et.CHANCE:
        acc = smol["scores"][task]["acc"]
        assert (task in rec["kept"]) == (acc >= et.CHANCE[task] + 0.1 and _wilson_low(acc, smol["n"][task]) > et.CHANCE[task])
    assert "english_ppl" in rec["kept"]


def _wilson_low(p, n, z=1.96):
    return (p + z * z / (2 * n) - z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def test_bridge_scores_equal_ripples_own_scoring(tmp_path_factory):
    """On the organism (its tokenizer spells English): lm-eval's acc on the English tasks equals
    the argmax of ripple's own summed log-probabilities of each choice after the prompt."""
    import os

    from ripple.evaluate.lm_eval_bridge import LmEvalBridge
    from ripple.loading import load_model
    from ripple.scoring import answer_logprobs

    os.environ["RIPPLE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    model, tok, _ = load_model("organism")
    names = ["english_agreement", "english_arithmetic", "english_knowledge"]
    res = LmEvalBridge(model, tok, names, limit=20).evaluate()
    all_docs = et.english_docs()
    for name in names:
        hits = []
        for d in all_docs[name][:20]:
            lp = [x[0] for x in answer_logprobs(model, tok, [(d["prompt"], c) for c in d["choices"]])]
            hits.append(int(np.argmax(lp)) == d["gold"])
        assert res[name]["acc"] == pytest.approx(sum(hits) / len(hits)), name


@pytest.mark.slow
def test_stress_takes_the_english_suite(tmp_path):
    """`ripple stress --tasks english_...` runs the English tasks at every checkpoint (on the
    organism here: its tokenizer spells English; a real model is the suite's use)."""
    from ripple.cli import main

    out = tmp_path / "out"
    assert main(["stress", "--model", "organism", "--method", "rome", "--edits", "2", "--every", "2",
                 "--tasks", "english_arithmetic", "english_agreement", "--limit", "10", "--out", str(out),
                 "--quiet"]) == 0
    rows = json.loads((out / "stress.json").read_text())["curves"]["rome"]["checkpoints"]
    assert [r["edits"] for r in rows] == [0, 2]
    for r in rows:
        assert set(r["tasks"]) >= {"english_arithmetic", "english_agreement"}
        assert 0 <= r["tasks"]["english_agreement"]["acc"] <= 1
