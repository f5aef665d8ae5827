"""reports/generation.md from the rows of :mod:`benchmarks.real_models.generation` and
:mod:`benchmarks.speed.generation` (``python -m benchmarks real_models/generation --render``)."""

from __future__ import annotations

from collections import Counter

from benchmarks.common import REPORTS, load_json, md_table
from benchmarks.real_models.generation import BATCH_VERSION, CF, METHODS, MODES, model_dir, version_of

MODELS = ("smollm2", "gemma3-270m")
METRICS = (*CF, "relation_specificity")
MODE_TITLES = {"race": "race", "top1": "top-1", "gen": "generated", "chat": "chat"}
TITLE = {"efficacy": "efficacy", "paraphrase": "paraphrase", "neighborhood": "neighbourhood",
         "relation_specificity": "relation specificity"}


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def rows_of(model: str, current: bool = True) -> dict[str, list[dict]]:
    """Each method's rows at its current settings version (``current=False``: at an older one, from
    ``previous/`` or a file not yet rerun), over the edits every such method has measured (the same
    edits, in order)."""
    out = {}
    for method in METHODS:
        for where in (model_dir(model), model_dir(model) / "previous"):
            data = load_json(where / f"{method}.json", None)
            if data and data.get("rows") and (data["config"].get("version") == version_of(method)) == current:
                out.setdefault(method, data["rows"])
    common = min((len(rows) for rows in out.values()), default=0)
    return {method: rows[:common] for method, rows in out.items()}


def mode_table(runs: dict[str, list[dict]], modes, base: list[dict] | None = None) -> list[str]:
    cols = ["method", "n", "metric"] + [MODE_TITLES[m] for m in modes]
    body = []
    n = min(len(r) for r in runs.values())
    for method, rows in (({"unedited model": base[:n]} if base else {}) | runs).items():
        for metric in METRICS:
            body.append([method, len(rows), TITLE[metric]] + [_f(_mean([r.get(f"{metric}_{m}") for r in rows]))
                                                                for m in modes])
    return md_table(cols, body)


def disagreements(runs: dict[str, list[dict]]) -> tuple[list[str], list[str]]:
    """Per method: edits whose edit prompt the race counts a success and generation does not (and
    the other way), by relation; examples."""
    table, examples = [], []
    for method, rows in runs.items():
        over = [r for r in rows if r["efficacy_race"] == 1 and r["efficacy_gen"] == 0]
        under = [r for r in rows if r["efficacy_race"] == 0 and r["efficacy_gen"] == 1]
        rels = Counter(r["relation"] for r in over)
        table.append([method, len(rows), len(over), len(under),
                      ", ".join(f"{k} {v}" for k, v in rels.most_common(6)) or "-"])
        for r in over[:3]:
            examples.append(f"- {method}: \"{r['prompt']}\" -> {r['target_new']} (was {r['target_true']}); "
                            f"generated: \"{' '.join(r['texts'][0].split())}\"")
    return md_table(["method", "edits", "race yes, generated no", "race no, generated yes",
                     "relations of the first (count)"], table), examples


def gaps(runs: dict[str, list[dict]], modes) -> list[str]:
    """Per method and metric: how far each mode falls below the race (race minus mode), over the same edits."""
    body = []
    for method, rows in runs.items():
        for metric in METRICS:
            race = _mean([r.get(f"{metric}_race") for r in rows])
            cells = []
            for m in modes[1:]:
                pairs = [(r.get(f"{metric}_race"), r.get(f"{metric}_{m}")) for r in rows]
                pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                cells.append(_f(_mean([a - b for a, b in pairs])) + f" ({len(pairs)})" if pairs else "-")
            body.append([method, TITLE[metric], _f(race), *cells])
    return md_table(["method", "metric", "race"] + [f"race - {MODE_TITLES[m]} (edits)" for m in modes[1:]], body)


def order(runs: dict[str, list[dict]], modes) -> list[str]:
    """The editors ranked by each mode's efficacy and paraphrase (best first)."""
    out = []
    for metric in ("efficacy", "paraphrase"):
        cells = []
        for m in modes:
            scored = [(_mean([r.get(f"{metric}_{m}") for r in rows]), method) for method, rows in runs.items()]
            scored = [(v, k) for v, k in scored if v is not None]
            cells.append(" > ".join(f"{k} {v:.3f}" for v, k in sorted(scored, key=lambda x: -x[0])) or "-")
        out.append([TITLE[metric], *cells])
    return md_table(["metric"] + [MODE_TITLES[m] for m in modes], out)


def speed_lines() -> list[str]:
    lines = []
    for model in ("organism", *MODELS):
        d = load_json(REPORTS / "generation" / f"speed-{model}.json", None)
        if not d:
            continue
        for kind in ("completion", "chat"):
            s = d.get(kind)
            if s:
                lines.append([model, kind, s["prompts"], _f(s["teacher_forced_s"]) if s["teacher_forced_s"] else "-",
                              _f(s["ripple_s"]), _f(s["generate_s"]),
                              _f(s["ratio_to_teacher_forced"]) if s["ratio_to_teacher_forced"] else "-",
                              _f(s["ratio_to_generate"]), f"{s['agree']}/{s['prompts']}", d["code"]])
    if not lines:
        return []
    return md_table(["model", "prompts", "n", "teacher-forced s", "ripple s", "plain generate s",
                     "ripple / teacher-forced", "ripple / generate", "same judgement", "code"], lines)


LITERATURE = [
    "## Against the two studies", "",
    "Yang et al. (\"The Mirage of Model Editing\", ACL 2025, arXiv 2502.11177; ../shared/methods.md) find on "
    "QA-style edits of 7-8B models that single-edit success falls from the ~96.8% that teacher-forced evaluation "
    "reports to 38.5% when the edited model must generate its answer, mostly because teacher forcing leaks the "
    "answer's content and length. Pohl, Ploner and Akbik (\"Towards a Principled Evaluation of Knowledge Editors\", "
    "ACL 2025, arXiv 2507.05937) score the same edited models three ways, which map onto three of ripple's modes: "
    "argmax, each target token the greedy one given the gold prefix (zsRE's rule; ripple's top-1); multiple choice, "
    "the new object's sequence likelihood against the old one's (CounterFact's; ripple's race); and string match in "
    "generated text (MQuAKE's and RippleEdits'; ripple's generated mode, except that ripple counts an answer only "
    "at the start of the completion). They find that the choice of scoring method, and the edit batch size, "
    "reorder the editors, on the editing tasks and on general language understanding measured beside them, and a "
    "manual check finds string matching prone to false positives: the reason ripple's rule refuses an answer "
    "mentioned late (`ripple.answers.judge`'s doctests). Both studies edit 7-8B models; the tables above are "
    "ripple's own measurement on 135M and 270M models, CounterFact-style completion prompts of known facts (not "
    "QA pairs), greedy decoding. Their figures were read from the papers' public abstracts and summaries, not from "
    "their full tables.", ""]


def section(model: str, runs: dict[str, list[dict]], deeper: str) -> list[str]:
    """One set of a model's rows (current or previous editors) as tables; ``deeper``: "#" nests the
    headings one level down."""
    chat = any(r.get("efficacy_chat") is not None for rows in runs.values() for r in rows)
    modes = MODES if chat else MODES[:3]
    target = max(len(rows) for rows in runs.values())
    for where in (model_dir(model), model_dir(model) / "previous"):
        data = load_json(where / f"{next(iter(runs))}.json", None)
        if data and data.get("rows") and data["rows"][:1] == runs[next(iter(runs))][:1]:
            target = data["config"]["edits"]
    n = min(len(r) for r in runs.values())
    out = [f"Single edits of facts the model knows, every relation of the graph ({target} planned, seed 0). "
           + ("" if n >= target else f"**Still being measured: the first {n} edits, those every method has "
              f"done, are shown; the run is resumable.** ")
           + ("Chat: the relation's questions through the model's chat template." if chat else
              "No chat template: completion modes only."), ""]
    base = (load_json(model_dir(model) / "unedited.json", {}) or {}).get("rows")
    out += mode_table(runs, modes, base) + [""]
    versions = Counter(r["code"] for rows in runs.values() for r in rows)
    out += ["Code versions (`ripple.io.source_fingerprint`) of the rows shown: "
            + ", ".join(f"{v} ({k} rows)" for v, k in sorted(versions.items())) + ".", ""]
    if base:
        out += ["The first rows score the same prompts on the unedited model (`--part unedited`): against the new "
                "object for efficacy and paraphrase, so 0 there is expected; neighbourhood there is what the model "
                "said before any edit, the ceiling the edited rows are read against."
                + ("" if len(base) >= n else f" **Those rows are still being measured: the first {len(base)} of "
                   f"the {n} edits.**"), ""]
    table, examples = disagreements(runs)
    out += [f"###{deeper} Where the race and generation disagree on the edit prompt", ""] + table + [""]
    if examples:
        out += ["Examples (the edited model's greedy completion):", ""] + examples + [""]
    out += [f"###{deeper} How far each mode falls below the race", "",
            "Mean over edits of the race's figure minus the mode's, each edit with both (in brackets); relation "
            "specificity counts, per mode, the facts that mode found right before the edit.", ""]
    out += gaps(runs, modes) + [""]
    out += [f"###{deeper} The editors' order under each mode", ""] + order(runs, modes) + [""]
    current = not deeper
    for where in (model_dir(model), model_dir(model) / "previous"):
        batch = load_json(where / "batch.json", None)
        if not (batch and batch.get("rows")) or (batch["config"].get("version") == BATCH_VERSION) != current:
            continue
        out += [f"###{deeper} MEMIT, one batch of {batch['rows'][0]['n']}", ""]
        rows = []
        for b in batch["rows"]:
            m = b["metrics"]
            for metric in CF:
                rows.append([b["method"], TITLE[metric]] + [_f(m.get(metric if mm == "race" else f"{metric}_{mm}"))
                                                             for mm in modes])
        out += md_table(["method", "metric"] + [MODE_TITLES[m] for m in modes], rows) + [""]
        break
    return out


def render() -> None:
    out = ["# Teacher-forced against generated answers", "",
           "Made by `python -m benchmarks real_models/generation` (its docstring: the edits and what each mode "
           "measures); the timings by `python -m benchmarks speed/generation`. Rebuild this page with "
           "`python -m benchmarks real_models/generation --render`.", ""]
    for model in MODELS:
        runs, older = rows_of(model), rows_of(model, current=False)
        if not runs and not older:
            out += [f"## {model}", "", "Not measured yet.", ""]
            continue
        out += [f"## {model}", ""]
        if runs:
            out += section(model, runs, "")
        else:
            out += ["Not yet rerun at the current editors (the rows below are the previous ones).", ""]
        if older:
            out += [f"### {model}: the previous editors", "",
                    "Rows made before the editors wrote one key per tokenized form of the subject, with key statistics "
                    "from 256 sampled passages (settings version 1; `reports/generation/<model>/previous/`), kept "
                    "until the rerun at the current version is complete.", ""]
            out += section(model, older, "#")
    out += LITERATURE
    speed = speed_lines()
    if speed:
        out += ["## What generation costs", "",
                "Every probe item of the model's probe set (completion; chat: the first 200 items' questions), batch "
                "64, one thread, best of the runs; the same judgement: prompts that ripple's early-stopping decoding "
                "and a plain `model.generate` to the full bound judge the same.", ""] + speed + [""]
    (REPORTS / "generation.md").write_text("\n".join(out))
