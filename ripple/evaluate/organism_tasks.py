"""The organism's offline lm-eval task suite, written from its world as local JSONL + YAML tasks.

Four tasks and a group, ``organism``:

* ``organism_mc``: knowledge multiple choice; a fact's first core prompt with the true object
  and three other objects of the same type (acc, acc_norm);
* ``organism_cloze``: the fact's held-out paraphrase, scored as a cloze: is the true object the
  greedy continuation (acc) and its perplexity;
* ``organism_ppl``: held-out world text (sentences in held-out phrasings), rolling
  log-likelihood (word_perplexity, byte_perplexity, bits_per_byte);
* ``organism_skill``: the general skill that is not a fact lookup, single-digit addition and
  counting, as a cloze (acc).

The files are a pure function of the world and the sizes (same world, same bytes), written to
``$RIPPLE_CACHE/lm_eval_tasks/<hash>/`` with absolute ``data_files`` paths (lm-eval resolves
relative ones against the working directory).

::

    directory, names = write_organism_tasks(world)   # names: organism_mc, organism_cloze, ...
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from ripple.io import atomic_write_text, cache_dir
from ripple.tokens import fill
from ripple.world.generate import World
from ripple.world.schema import RELATIONS

TASKS = ("organism_mc", "organism_cloze", "organism_ppl", "organism_skill")
GROUP = "organism"

_YAML = {
    "organism_mc": """output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
  - metric: acc_norm
""",
    "organism_cloze": """output_type: loglikelihood
doc_to_text: "{{{{prompt}}}}"
doc_to_target: " {{{{answer}}}}"
metric_list:
  - metric: acc
  - metric: perplexity
""",
    "organism_ppl": """output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
""",
    "organism_skill": """output_type: loglikelihood
doc_to_text: "{{{{prompt}}}}"
doc_to_target: " {{{{answer}}}}"
metric_list:
  - metric: acc
""",
}


def _docs(world: World, n_facts: int, n_text: int, seed: int) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    facts = [f for f in world.facts if len(world.objects(f.subject, f.relation)) == 1]
    facts = rng.sample(facts, min(n_facts, len(facts)))
    by_type: dict[str, list[str]] = {}
    for e in sorted(world.entities.values(), key=lambda e: e.id):
        by_type.setdefault(e.type, []).append(e.id)
    mc, cloze = [], []
    for f in facts:
        rel = RELATIONS[f.relation]
        name, obj = world.name(f.subject), world.entities[f.object]
        others = [o for o in by_type[obj.type] if o != f.object]
        choices = [f.object] + rng.sample(others, min(3, len(others)))
        rng.shuffle(choices)
        mc.append({"prompt": fill(rel.templates[0], name), "choices": [world.name(c) for c in choices],
                   "gold": choices.index(f.object)})
        cloze.append({"prompt": fill(rng.choice(rel.heldout_templates or rel.templates), name),
                      "answer": world.name(f.object)})
    texts = []
    for f in rng.sample(world.facts, min(n_text, len(world.facts))):
        rel = RELATIONS[f.relation]
        texts.append({"text": fill(rng.choice(rel.heldout_templates or rel.templates), world.name(f.subject))
                      + " " + world.name(f.object) + " ."})
    skill = [{"prompt": f"{a} plus {b} equals", "answer": str(a + b)} for a in range(10) for b in range(10)]
    for _ in range(50):
        start, length = rng.randrange(0, 40), rng.randrange(4, 8)
        seq = [str(start + i) for i in range(length)]
        skill.append({"prompt": "Count : " + " ".join(seq), "answer": str(start + length)})
    return {"organism_mc": mc, "organism_cloze": cloze, "organism_ppl": texts, "organism_skill": skill}


def write_task_files(root: Path | None, label: str, docs: dict[str, list[dict]], yamls: dict[str, str],
                     group: str, members: list[str], key=None, aggregate: bool = True) -> Path:
    """Write local lm-eval tasks (one JSONL + YAML per entry of ``docs``, ``yamls`` giving each
    one's output type and metrics) and a group of ``members`` into
    ``<root or cache>/lm_eval_tasks/<label><hash of key (default docs)>/``; idempotent."""
    blob = json.dumps(docs if key is None else key, sort_keys=True).encode()
    directory = Path(root or cache_dir()) / "lm_eval_tasks" / (label + hashlib.sha256(blob).hexdigest()[:16])
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in docs.items():
        data = directory / f"{name}.jsonl"
        if not data.is_file():
            atomic_write_text(data, "".join(json.dumps(d) + "\n" for d in rows))
        yaml = (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data.resolve()}\n"
                f"test_split: test\nnum_fewshot: 0\n" + yamls[name].format())
        atomic_write_text(directory / f"{name}.yaml", yaml)
    atomic_write_text(directory / f"{group}.yaml", f"group: {group}\ntask:\n" + "".join(f"  - {t}\n" for t in members)
                      + ("aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n" if aggregate else ""))
    return directory


def write_organism_tasks(world: World, n_facts: int = 200, n_text: int = 100, seed: int = 0,
                         root: Path | None = None) -> tuple[Path, list[str]]:
    """Write the suite for ``world`` (idempotent); returns its directory and the task names."""
    docs = _docs(world, n_facts, n_text, seed)
    return write_task_files(root, "", {t: docs[t] for t in TASKS}, _YAML, GROUP, list(TASKS)), list(TASKS)
