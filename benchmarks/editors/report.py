"""The markdown and plots of benchmarks/editors/organism.py, rebuilt from every ``editors_<part>.json``."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import md_table
from benchmarks.editors.common import CF, HP_KEYS, PARTS, log


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if 0 < abs(v) < 0.01 else (f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}")
    return str(v)


def table(cols: list[str], rows: list[list]) -> list[str]:
    return md_table(cols, rows, fmt) + [""]


def line_panels(path: Path, panels: list[tuple[str, dict]], xlabel: str, logx: bool = False) -> None:
    """One PNG with a panel per (title, {label: (xs, ys)}), one line per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ripple.io import atomic_savefig

    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.2), dpi=110, squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        for label, (xs, ys) in lines.items():
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=label)
        ax.set(title=title, xlabel=xlabel, ylim=(-0.03, 1.03), xscale="log" if logx else "linear")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def population(r: dict) -> str:
    """Which relations a part's edits cover (older runs: the person relations)."""
    from ripple.editing.from_world import EDITABLE

    rels = r.get("relations") or list(EDITABLE)
    if set(rels) == set(EDITABLE):
        return f"person relations only ({', '.join(rels)})"
    return f"every relation of the world ({', '.join(rels)})"


def md_single(d: dict, out: Path) -> list[str]:
    r = d["results"]
    cols = [*CF, "relation_specificity", "fluency_before", "fluency_after", "seconds_per_edit", "guard_refusals"]
    lines = [f"**Population: {population(r)}.** {r['n_edits']} random edits (`sample_edits(world, n, seed=0, "
             "relations=...)`), each applied alone to the "
             "unedited model and undone. Efficacy, paraphrase and neighbourhood: CounterFact's probability races "
             "(`_top1`: the greedy answer), averaged per edit; relation specificity: share of the subject's other "
             "facts (ground truth, first template of each relation) answered correctly before the edit that still "
             "are after it; fluency: n-gram entropy of 20 greedy tokens after the subject and after the edit prompt; "
             "seconds: median per edit (the first edit of a method may include computing C); guard refusals: edits "
             "whose update the norm guard would have refused.", "",
             *table(["method", *cols], [[k, *(v.get(c) for c in cols)] for k, v in r["rows"].items()])]
    per = r.get("per_relation")
    if per:
        rels = sorted({rel for v in per.values() for rel in v})
        counts = r.get("edits_per_relation", {})
        lines += ["Per relation (efficacy / paraphrase / neighbourhood, races; edits per relation: "
                  + ", ".join(f"{rel} {counts.get(rel, 0)}" for rel in rels) + "):", "",
                  *table(["method", *rels], [[k, *("/".join(fmt(v[rel].get(c)) for c in ("efficacy", "paraphrase",
                                                                                        "neighborhood"))
                                                   if rel in v else "-" for rel in rels)] for k, v in per.items()])]
    return lines


def md_batch(d: dict, out: Path) -> list[str]:
    rows = d["results"]["rows"]
    cols = ["requested", "n", *CF, "relation_specificity", "seconds", "worst_norm_ratio", "guard_refuses"]
    capped = sorted({(r["requested"], r["n"], r["cap"]) for r in rows if r["n"] < r["requested"]})
    lines = [f"**Population: {population(d['results'])}.** "
             "One batch per size, metrics pooled over every prompt of the batch (neighbourhood prompts about "
             "facts edited in the same batch left out); relation specificity over the edited subjects' "
             "facts not edited in the batch.", ""]
    lines += [f"**Capped:** the world has {cap} distinct editable (subject, relation) facts, so the batch of "
              f"{req} is {n} edits.\n" for req, n, cap in capped]
    return lines + table(["method", *cols], [[r["method"], *(r.get(c) for c in cols)] for r in rows])


SEQ_METRICS = (("efficacy", "efficacy so far (race)"), ("efficacy_top1", "efficacy so far (top-1)"),
               ("paraphrase", "paraphrase so far (race, ≤200 prompts)"),
               ("neighborhood", "neighbourhood (race, ≤200 prompts)"),
               ("untouched_accuracy", "accuracy on untouched facts"), ("update_ratio", "‖ΔW‖/‖W‖ of the total update"))


def md_sequential(d: dict, out: Path) -> list[str]:
    r = d["results"]
    ms = r["methods"]
    png = "editors_sequential.png"
    line_panels(out / png, [(title, {k: ([p["edits"] for p in v["curve"]], [p[key] for p in v["curve"]])
                                     for k, v in ms.items()}) for key, title in
                            (SEQ_METRICS[0], SEQ_METRICS[3], SEQ_METRICS[4])], "edits applied")
    lines = [f"{r['n_edits']} edits applied one after another (distinct (subject, relation); the world has "
             f"{r['cap']}), measured every {r['every']} edits over all edits so far; untouched facts: "
             f"{r['n_untouched']} fixed single-hop facts no edit changes. Every step was forced past the norm "
             "guard; by default (no force) the guard refuses a step whose update has ‖Δ‖/‖W‖ over "
             "max_update_ratio, and the whole sequential run is rolled back.", "", f"![sequential editing]({png})", "",
             *table(["method", "guard would refuse at edit", "max step ratio", "max_update_ratio", "seconds/edit"],
                    [[k, v["guard_refuses_at"] or "never", v["max_step_ratio"], v["max_update_ratio"],
                      v["seconds_per_edit"]] for k, v in ms.items()])]
    edits = [p["edits"] for p in next(iter(ms.values()))["curve"]] if ms else []
    for key, title in SEQ_METRICS:
        lines += [f"**{title}**", "", *table(["edits", *ms], [[e, *(v["curve"][i][key] for v in ms.values())]
                                                               for i, e in enumerate(edits)])]
    return lines


def md_speed(d: dict, out: Path) -> list[str]:
    r = d["results"]
    rows = r["rows"]
    cols = ["first_edit_seconds", "seconds_per_edit", "editor_seconds", "keys_seconds", "values_seconds",
            "solve_seconds"]
    lines = ["Seconds per single edit: the first edit (fresh context, no disk cache: it computes C and the "
             "context prefixes) apart, then the median over the next edits; `editor` is the editor's own time, "
             "split into keys, values (target optimization) and solve (FT: no split).", "",
             *table(["method", *cols, "n"], [[k, *(v.get(c) for c in cols), v["n"]] for k, v in rows.items()])]
    if "rome" in rows:
        ro = rows["rome"]
        lines += [f"ROME's floor: one forward+backward of the batch its value optimization builds (contexts × "
                  f"prompt+target, plus the KL prompts), with the added vector hooked in and weights frozen, times "
                  f"the steps it took (median {ro['v_steps']}): {ro['floor_seconds']:.4f} s; ROME's editor time / "
                  f"floor = **{ro['floor_ratio']:.2f}x** (target ≤ 1.5x).", ""]
    if r["memit_batches"]:
        bc = ["requested", "n", "seconds", "values_seconds", "keys_seconds", "solve_seconds"]
        lines += ["MEMIT, one batch (capped at the distinct editable facts):", "",
                  *table(bc, [[x.get(c) for c in bc] for x in r["memit_batches"]])]
    return lines


def md_samples(d: dict, out: Path) -> list[str]:
    r = d["results"]
    png = "editors_samples.png"
    by = {}
    for row in r["rows"]:
        by.setdefault(row["method"], []).append(row)
    line_panels(out / png, [(title, {k: ([x["stats_samples"] for x in v], [x[key] for x in v]) for k, v in by.items()})
                            for key, title in (("efficacy", "efficacy (race)"), ("neighborhood", "neighbourhood (race)"))],
                "stats_samples (tokens)", logx=True)
    cols = ["stats_samples", "efficacy", "efficacy_top1", "neighborhood", "neighborhood_top1", "C_seconds", "n"]
    return [f"Second-moment statistics from the world corpus ({r['corpus_tokens']} tokens; sample counts above "
            "that are capped to it), computed fresh (no disk cache); single edits each applied alone.", "",
            f"![samples]({png})", "", *table(["method", *cols], [[x["method"], *(x.get(c) for c in cols)]
                                                                for x in r["rows"]])]


RENDER = {"single": ("Single edits", md_single), "batch": ("Batch editing", md_batch),
          "single_all": ("Single edits, every relation", md_single),
          "batch_all": ("Batch editing, every relation", md_batch),
          "sequential": ("Sequential editing", md_sequential), "speed": ("Speed", md_speed),
          "samples": ("How many samples for C", md_samples)}


def header(parts: dict) -> list[str]:
    first = next(iter(parts.values()))
    org = first["organism"]
    hps = {}
    for d in parts.values():
        hps = {**d["hparams"], **hps}  # the first part that ran a method tells its settings
    keys = ["layers", *(k for k in HP_KEYS if any(k in h for h in hps.values()))]
    return ["# The editors on the organism", "",
            "Quality and speed of ripple's editors (ROME, MEMIT, EMMET, AlphaEdit, FT-L, RECT as an option) on the "
            "model organism: single edits, batches, long sequences, timings, and how many samples the key "
            "statistics need. Every edit is a counterfactual fact of the organism's world: the single-edit and "
            "batch tables come twice, for the person relations only and for every relation (each says which).", "",
            f"Organism: `{org['path']}`" + (" (the bundled one: `ripple organism show --json`)" if org["bundled"]
                                            else "") + f"; ripple at commit {org['commit']}; {first['threads']} "
            f"thread(s), device {first['device']}.", "",
            "Commands (one per part; `--parts` takes several at once):", "",
            *[f"- {p}: `{d['command']}`" for p, d in parts.items()], "",
            "Hyperparameters (from each method's first delta; the organism's `ripple_hparams.json` and the "
            "architecture defaults, via `resolve_hparams`):", "",
            *table(["method", *keys], [[k, *(h.get(c) for c in keys)] for k, h in hps.items()]),
            "Training configuration of the organism:", "", "```json",
            json.dumps(org.get("train_config"), indent=1), "```", ""]


def write_markdown(out: Path) -> None:
    from ripple.io import atomic_write_text

    parts = {p: json.loads((out / f"editors_{p}.json").read_text()) for p in PARTS
             if (out / f"editors_{p}.json").exists()}
    if not parts:
        return
    lines = header(parts)
    for p, d in parts.items():
        title, render = RENDER[p]
        lines += [f"## {title}", "", f"Reproduce: `{d['command']}`", "", *render(d, out)]
    atomic_write_text(out / "editors.md", "\n".join(lines))
    log(f"wrote {out / 'editors.md'} from parts {', '.join(parts)}")
