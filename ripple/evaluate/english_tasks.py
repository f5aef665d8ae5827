"""An offline lm-eval suite of general English ability for real models, generated, needing no hub.

Candidate tasks (every document a pure function of the seed and the word lists below):

* ``english_agreement``: subject-verb agreement minimal pairs in BLiMP's manner: the same
  subject, then the verb agreeing or not ("The children" -> "are here." / "is here.");
* ``english_attractor``: the same across a noun of the other number ("The key to the cabinets"
  -> "is lost." / "are lost.");
* ``english_determiner``: determiner-noun agreement ("Anna bought these" -> "books." / "book.");
* ``english_arithmetic``: small sums and differences, four choices ("7 + 5 =" -> 12, 11, 13, 14);
* ``english_sequence``: continuing a sequence (numbers by a step, weekdays, months, letters), four
  choices;
* ``english_knowledge``: knowledge multiple choice from the real-world graph
  (:mod:`ripple.world.real`): a fact's prompt, its answer and three answers of the same relation
  for other subjects;
* ``english_ppl``: rolling perplexity on general sentences (``ripple/data/general_sentences.txt``).

Minimal pairs are scored as lm-eval scores BLiMP: which whole continuation the model finds more
likely (acc); chance is 0.5 for pairs and 0.25 for four choices. The ``english`` group holds the
tasks that SmolLM2-135M scored clearly above chance (``benchmarks/real_models/english_tasks.py``
measured them: ``reports/english_tasks.json``, ``reports/english_tasks.md``; its ``--install`` step
copies the record to ``ripple/data/english_tasks.json``); each candidate stays loadable by its own
name.

::

    directory, names = write_english_tasks()   # names: the tasks of the ``english`` group
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ripple.evaluate.organism_tasks import _YAML as ORGANISM_YAML
from ripple.evaluate.organism_tasks import write_task_files
from ripple.tokens import fill
from ripple.world.real import real_world

GROUP = "english"
CANDIDATES = ("english_agreement", "english_attractor", "english_determiner", "english_arithmetic",
              "english_sequence", "english_knowledge", "english_ppl")
CHANCE = {"english_agreement": 0.5, "english_attractor": 0.5, "english_determiner": 0.5, "english_arithmetic": 0.25,
          "english_sequence": 0.25, "english_knowledge": 0.25}
KEPT_FILE = Path(__file__).resolve().parent.parent / "data" / "english_tasks.json"
SENTENCES_FILE = Path(__file__).resolve().parent.parent / "data" / "general_sentences.txt"

#: (singular, plural) nouns, regular and irregular
NOUNS = [("dog", "dogs"), ("cat", "cats"), ("teacher", "teachers"), ("child", "children"), ("man", "men"),
         ("woman", "women"), ("box", "boxes"), ("city", "cities"), ("car", "cars"), ("bird", "birds"),
         ("student", "students"), ("doctor", "doctors"), ("house", "houses"), ("tree", "trees"),
         ("book", "books"), ("girl", "girls"), ("boy", "boys"), ("baby", "babies"), ("mouse", "mice"),
         ("person", "people"), ("friend", "friends"), ("farmer", "farmers"), ("horse", "horses"),
         ("window", "windows"), ("song", "songs"), ("king", "kings"), ("leaf", "leaves"), ("knife", "knives"),
         ("wolf", "wolves"), ("foot", "feet"), ("tooth", "teeth"), ("church", "churches"), ("bus", "buses"),
         ("glass", "glasses"), ("story", "stories"), ("lady", "ladies"), ("dish", "dishes"), ("key", "keys"),
         ("letter", "letters"), ("painting", "paintings"), ("picture", "pictures"), ("chair", "chairs"),
         ("table", "tables"), ("door", "doors"), ("road", "roads"), ("bridge", "bridges"), ("shoe", "shoes"),
         ("apple", "apples"), ("flower", "flowers"), ("river", "rivers")]
#: (singular verb, plural verb, the rest of the sentence), fitting any noun above
PREDICATES = [("is", "are", "here."), ("was", "were", "there."), ("is", "are", "not ready."),
              ("was", "were", "lost."), ("has", "have", "gone."), ("seems", "seem", "fine."),
              ("looks", "look", "different."), ("remains", "remain", "the same."), ("is", "are", "very old."),
              ("was", "were", "found yesterday."), ("has", "have", "been moved."), ("appears", "appear", "clean.")]
NAMES = ["Anna", "David", "Maria", "John", "Sarah", "Peter", "Laura", "James", "Emma", "Michael"]
VERBS_PAST = ["saw", "bought", "found", "liked", "cleaned", "moved", "painted", "noticed", "wanted", "lost"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

_MC = """output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
"""
_YAML = {name: _MC for name in CHANCE} | {  # knowledge MC and perplexity score as the organism's do
    "english_knowledge": ORGANISM_YAML["organism_mc"], "english_ppl": ORGANISM_YAML["organism_ppl"]}


def _pair(rng, prompt: str, good: str, bad: str) -> dict:
    choices = [good, bad]
    rng.shuffle(choices)
    return {"prompt": prompt, "choices": choices, "gold": choices.index(good)}


def _four(rng, prompt: str, answer: str, others: list[str]) -> dict:
    choices = [answer, *rng.sample(sorted(set(others) - {answer}), 3)]
    rng.shuffle(choices)
    return {"prompt": prompt, "choices": choices, "gold": choices.index(answer)}


def _agreement(rng, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        noun, (v_sg, v_pl, rest) = rng.choice(NOUNS), rng.choice(PREDICATES)
        plural = rng.random() < 0.5
        good, bad = (v_pl, v_sg) if plural else (v_sg, v_pl)
        out.append(_pair(rng, f"The {noun[plural]}", f"{good} {rest}", f"{bad} {rest}"))
    return out


def _attractor(rng, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        head, other = rng.sample(NOUNS, 2)
        (v_sg, v_pl, rest), prep = rng.choice(PREDICATES), rng.choice(["near", "behind", "next to", "beside"])
        plural = rng.random() < 0.5  # the head's number; the attractor has the other
        good, bad = (v_pl, v_sg) if plural else (v_sg, v_pl)
        out.append(_pair(rng, f"The {head[plural]} {prep} the {other[not plural]}", f"{good} {rest}",
                         f"{bad} {rest}"))
    return out


def _determiner(rng, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        noun, plural = rng.choice(NOUNS), rng.random() < 0.5
        det = rng.choice(["these", "those"] if plural else ["this", "that"])
        prompt = f"{rng.choice(NAMES)} {rng.choice(VERBS_PAST)} {det}"
        out.append(_pair(rng, prompt, f"{noun[plural]}.", f"{noun[not plural]}."))
    return out


def _arithmetic(rng, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        a, b = rng.randrange(0, 20), rng.randrange(0, 20)
        if rng.random() < 0.5:
            prompt, answer = f"{a} + {b} =", a + b
        else:
            a, b = max(a, b), min(a, b)
            prompt, answer = f"{a} - {b} =", a - b
        near = [answer + d for d in (-3, -2, -1, 1, 2, 3) if answer + d >= 0]
        out.append(_four(rng, prompt, str(answer), [str(x) for x in near]))
    return out


def _sequence(rng, n: int) -> list[dict]:
    out = []
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for _ in range(n):
        kind = rng.choice(["step", "step", "weekday", "month", "letter"])
        if kind == "step":
            step, start = rng.choice([1, 2, 3, 5, 10]), rng.randrange(0, 30)
            seq = [start + step * i for i in range(5)]
            family = [str(seq[-1] + step * d) for d in (-1, 1, 2, 3)]
            items, answer = [str(x) for x in seq[:4]], str(seq[4])
        else:
            cycle = {"weekday": WEEKDAYS, "month": MONTHS, "letter": letters}[kind]
            start = rng.randrange(0, len(cycle) - 4)
            items, answer, family = cycle[start:start + 4], cycle[start + 4], cycle
        out.append(_four(rng, ", ".join(items) + ",", answer, family))
    return out


def _knowledge(rng, n: int) -> list[dict]:

    world = real_world()
    keys = sorted({(f.subject, f.relation) for f in world.facts})
    by_rel: dict[str, set[str]] = {}
    for s, r in keys:
        by_rel.setdefault(r, set()).update(world.name(o) for o in world.objects(s, r))
    out = []
    for s, r in rng.sample(keys, min(n, len(keys))):
        true = sorted(world.name(o) for o in world.objects(s, r))
        others = sorted(by_rel[r] - set(true))
        if len(others) < 3:
            continue
        doc = _four(rng, fill(world.relations[r].templates[0], world.name(s)), true[0], others)
        out.append(doc)
    return out


def _sentences() -> list[dict]:
    lines = SENTENCES_FILE.read_text(encoding="utf-8").splitlines()
    return [{"text": t.strip()} for t in lines if t.strip() and not t.startswith("#")]


def english_docs(n: int = 200, seed: int = 0) -> dict[str, list[dict]]:
    """Every candidate task's documents (``n`` per generated task)."""
    make = {"english_agreement": _agreement, "english_attractor": _attractor, "english_determiner": _determiner,
            "english_arithmetic": _arithmetic, "english_sequence": _sequence, "english_knowledge": _knowledge}
    docs = {name: fn(random.Random(f"{seed}:{name}"), n) for name, fn in make.items()}
    docs["english_ppl"] = _sentences()
    return docs


def kept_tasks() -> list[str]:
    """The ``english`` group: the candidates SmolLM2 scored clearly above chance (and the
    perplexity task), as ``benchmarks/real_models/english_tasks.py`` recorded them; all candidates before it
    has."""
    if not KEPT_FILE.is_file():
        return list(CANDIDATES)
    kept = json.loads(KEPT_FILE.read_text())["kept"]
    return [t for t in CANDIDATES if t in kept]


def write_english_tasks(n: int = 200, seed: int = 0, root: Path | None = None,
                        group: list[str] | None = None) -> tuple[Path, list[str]]:
    """Write every candidate task and the ``english`` group (``group``: its tasks, default
    :func:`kept_tasks`) as local JSONL + YAML (idempotent); returns the directory and the group's tasks."""
    docs = english_docs(n, seed)
    group = kept_tasks() if group is None else list(group)
    directory = write_task_files(root, "english-", {t: docs[t] for t in CANDIDATES}, _YAML, GROUP, group,
                                 key=[docs, group], aggregate=any(t in CHANCE for t in group))
    return directory, group
