"""RLEdit in lifelong editing against MEMIT, AlphaEdit and ROME, on held-out facts.

The facts are split once into a training and an evaluation half (ripple.rledit.train.fact_split);
the hypernetwork is trained on the first (``ripple rledit train``'s defaults for the model, or
``--hypernet DIR``), and every method then applies the same stream of ``--batches`` x ``--batch``
edits of the evaluation half, batch after batch, without resetting the model (ROME, one fact per
solve, goes through each batch one edit at a time). Past the half's supply of facts the stream goes
round again to new objects, as ``ripple stress`` does. Every ``--every`` batches a checkpoint
measures, over the latest edit of every fact edited so far, efficacy, paraphrase and
neighbourhood (CounterFact's, P(new) > P(old)), and the perplexity ratio, untouched facts and the
lm-eval task score (``--tasks``). Time per edit is the editing time alone (checkpoints excluded).

Each method's curve is written to ``reports/rledit_<model>.json`` when it finishes (a stopped run
goes on with the methods it lacks); ``--render`` writes reports/rledit.md and its plot.

    python -m benchmarks editors/rledit --model organism                  # 50 batches x 20 edits
    python -m benchmarks editors/rledit --model smollm2 --batches 10 --batch 10 --every 5 --tasks
    python -m benchmarks editors/rledit --render
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import REPORTS, md_row, md_table, resumable, set_threads

METHODS = ("rledit", "memit", "alphaedit", "rome")


def hypernet_for(setup, given, log=print) -> tuple[str, dict]:
    """The hypernetwork's directory (``given``, the shipped or cached one, else trained now and
    cached) and its training record."""
    from ripple.errors import RippleError
    from ripple.outputs import output_unit
    from ripple.rledit.hypernet import Hypernetwork, model_identity
    from ripple.rledit.store import cache_dir_for, find_hypernet
    from ripple.rledit.train import train

    try:
        where = find_hypernet(setup.model, setup.spec, given)
    except RippleError:
        hp = setup.hparams_for("rledit")
        log(f"training the hypernetwork ({hp.n_sequences} sequences of {hp.seq_batches} x {hp.batch_edits} edits)")
        hn = train(setup.ctx, setup.world, hp, log=log)
        where = cache_dir_for(model_identity(setup.model, setup.spec))
        with output_unit(where) as stage:
            hn.save(stage)
    hn = Hypernetwork.load(where)
    hn.check_model(setup.model, setup.spec, str(where))
    return str(where), hn.meta


def ship() -> None:
    """Train the organism's hypernetwork (its ripple_hparams.json settings) into the package as plain
    files, replacing the shipped one as a whole."""
    import shutil
    import tempfile

    from ripple.editing.setup import load_setup
    from ripple.rledit.store import shipped_dir
    from ripple.rledit.train import train

    setup = load_setup("organism")
    hn = train(setup.ctx, setup.world, setup.hparams_for("rledit"))
    dest = shipped_dir()
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".rledit-"))
    hn.save(tmp)
    old = dest.with_name(".rledit-old")
    if dest.exists():
        dest.rename(old)
    tmp.chmod(0o755)
    for f in tmp.iterdir():
        f.chmod(0o644)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    size = sum(p.stat().st_size for p in dest.iterdir())
    print(f"wrote {dest} ({size / 1e6:.1f} MB) in {hn.meta['training']['seconds']:.0f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--every", type=int, default=5, help="a checkpoint every this many batches")
    ap.add_argument("--tasks", nargs="*", default=["organism"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hypernet", default=None)
    ap.add_argument("--name", default=None, help="reports/rledit_NAME.json (default: the model's name)")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--ship", action="store_true", help="only train the organism's hypernetwork with its defaults "
                    "and write it into the package (ripple/organism/data/rledit)")
    args = ap.parse_args(argv)
    if args.render:
        render()
        return
    set_threads()
    if args.ship:
        ship()
        return
    from ripple.editing.setup import load_setup
    from ripple.editing.streams import edit_stream
    from ripple.io import atomic_write_json, source_fingerprint
    from ripple.rledit.train import editable_relations, fact_split
    from ripple.stress.run import StressOptions, run_stress

    setup = load_setup(args.model)
    world = setup.world
    pairs = [p for p in fact_split(world)["eval"] if p[1] in editable_relations(world)]
    stream = setup.complete(edit_stream(world, args.batches * args.batch, seed=args.seed,
                                        relations=editable_relations(world), pairs=pairs))
    name = args.name or Path(args.model).stem.replace(".", "_")
    path = REPORTS / f"rledit_{name}.json"
    config = {"version": 1, "model": args.model, "batches": args.batches, "batch": args.batch, "every": args.every,
              "tasks": args.tasks, "seed": args.seed, "eval_facts": len(pairs)}
    data = resumable(path, config, curves={}, timing={})
    todo = [m for m in args.methods if m not in data["curves"]]
    code = source_fingerprint()  # the code this process runs, read before a long run (the tree may change meanwhile)
    hn_dir = None
    if "rledit" in todo or "hypernet" not in data:
        # the hypernetwork is trained (or found) only when its curve is still to be measured: the
        # other editors' curves resume without it
        hn_dir, hn_meta = hypernet_for(setup, args.hypernet)
        data["hypernet"] = {"training": hn_meta.get("training"), "hparams": hn_meta.get("hparams"),
                            "layers": hn_meta.get("layers"), "rank": hn_meta.get("rank")}
    for method in todo:
        t0 = time.perf_counter()

        def progress(n, row):
            cf = row.get("counterfact") or {}
            print(f"{n}: {row['edits']} edits, efficacy {cf.get('efficacy')}, paraphrase {cf.get('paraphrase')}, "
                  f"neighbourhood {cf.get('neighborhood')}, perplexity x{row['perplexity_ratio']:.3g}", flush=True)

        opts = StressOptions(every=args.every * args.batch, tasks=tuple(args.tasks or ()), chunk=args.batch,
                             counterfact=True, method_overrides={"rledit": [f"hypernet={hn_dir}"]} if hn_dir else {})
        result = run_stress(setup, [method], stream, opts, world=world, on_checkpoint=progress)
        data["curves"][method] = result.curves[method] | {"code": code}
        data["timing"][method] = result.timing[method] | {"wall": time.perf_counter() - t0}
        atomic_write_json(path, data)
    render()


# ---------------------------------------------------------------- report


def _cf(row, key):
    cf = row.get("counterfact") or {}
    return cf.get(key)


def _fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}g}"


def _format(data: dict) -> int:
    """The hypernetwork format a run used: format 2 (issue 43) added ``lr_lr`` to the saved settings."""
    return 2 if "lr_lr" in ((data.get("hypernet") or {}).get("hparams") or {}) else 1


def _training_table(variants: dict, n_edits: int) -> list[str]:
    """RLEdit on the same stream with hypernetworks trained for different budgets."""
    out = ["### RLEdit with other training budgets (the same stream)", "",
           "Each row is a hypernetwork trained with `ripple rledit train --set n_sequences=S seq_batches=B` "
           "(its other settings the shipped one's) and run on the stream above "
           "(`python -m benchmarks editors/rledit --methods rledit --hypernet DIR --name NAME_trainSxB`).", "",
           *md_table(["training", "format", "sequences x batches x edits", "wall s", "CPU s", "efficacy at 100", "efficacy",
                      "paraphrase", "neighbourhood", "untouched facts", "perplexity ratio"])]
    for label, data in variants.items():
        curve = data["curves"].get("rledit")
        if curve is None:
            continue
        t = (data.get("hypernet") or {}).get("training") or {}
        h = (data.get("hypernet") or {}).get("hparams") or {}
        pts = curve["checkpoints"]
        at100 = next((r for r in pts if r["edits"] >= 100), pts[-1])
        last = pts[-1]
        cpu = t.get("cpu_seconds")
        out.append(md_row([label, _format(data), f"{h.get('n_sequences')} x {h.get('seq_batches')} x {h.get('batch_edits')}",
                           f"{t.get('seconds', 0):.0f}", "-" if cpu is None else f"{cpu:.0f}",
                           _fmt(_cf(at100, "efficacy")), _fmt(_cf(last, "efficacy")), _fmt(_cf(last, "paraphrase")),
                           _fmt(_cf(last, "neighborhood")), _fmt(last.get("untouched_accuracy")),
                           _fmt(last["perplexity_ratio"])]))
    return out + ["", f"Efficacy at 100 edits; the other figures at {n_edits}.", ""]


def render() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ripple.io import atomic_savefig, atomic_write_text
    from ripple.stress.report import task_score

    every = {p.stem.removeprefix("rledit_"): json.loads(p.read_text()) for p in sorted(REPORTS.glob("rledit_*.json"))}
    every = {k: v for k, v in every.items() if "curves" in v}  # not editors/rledit_sequential's rows
    runs = {k: v for k, v in every.items() if "_train" not in k}  # NAME_trainSxB: the same stream, another hypernetwork
    lines = ["# RLEdit: lifelong editing on held-out facts", "",
             "Generated by `benchmarks/editors/rledit.py` from `reports/rledit_<model>.json`; see its docstring for the setup. "
             "What the figures mean and how they compare with the paper: [rledit_notes.md](rledit_notes.md).", ""]
    for name, data in runs.items():
        cfg, curves, timing = data["config"], data["curves"], data["timing"]
        n_edits = cfg["batches"] * cfg["batch"]
        train = (data.get("hypernet") or {}).get("training") or {}
        lines += [f"## {name}: {cfg['batches']} batches x {cfg['batch']} edits ({n_edits} edits) on "
                  f"{cfg['eval_facts']} held-out facts", "",
                  f"Reproduce: `python -m benchmarks editors/rledit --model {cfg['model']} --batches {cfg['batches']} "
                  f"--batch {cfg['batch']} --every {cfg['every']} --tasks{''.join(' ' + t for t in cfg['tasks'])}`.",
                  "", f"Hypernetwork training (apart from the editing times below): {train.get('seconds', 0):.0f} s wall"
                  + (f", {train['cpu_seconds']:.0f} CPU s" if "cpu_seconds" in train else "")
                  + f", {len(train.get('sequences', []))} sequences, on {train.get('device', '?')}; hypernetwork "
                  f"format {_format(data)} (format 1: before the fixes in rledit_notes.md).", "",
                  *md_table(["method", "efficacy", "paraphrase", "neighbourhood", "edit success (top-1)",
                             "untouched facts", "perplexity ratio", "task score", "edit s / edit", "vs MEMIT",
                             "vs AlphaEdit"])]
        per_edit = {m: (t["seconds"] - t["measure_seconds"]) / n_edits for m, t in timing.items()}
        for m, c in curves.items():
            first, last = c["checkpoints"][0], c["checkpoints"][-1]
            ratio = lambda other: _fmt(per_edit[m] / per_edit[other]) if other in per_edit and other != m else "-"  # noqa: E731
            lines.append(md_row([m, _fmt(_cf(last, "efficacy")), _fmt(_cf(last, "paraphrase")),
                                 _fmt(_cf(last, "neighborhood")), _fmt(last.get("edit_success_top1")),
                                 f"{_fmt(first.get('untouched_accuracy'))} → {_fmt(last.get('untouched_accuracy'))}",
                                 _fmt(last["perplexity_ratio"]), f"{_fmt(task_score(first))} → {_fmt(task_score(last))}",
                                 f"{per_edit[m]:.3g}", ratio("memit"), ratio("alphaedit")]))
        lines += ["", f"Figures at {n_edits} edits, over the latest edit of every fact edited so far.", "",
                  f"![lifelong curves](rledit_{name}.png)", ""]
        variants = {"shipped/default": data} | {k.split("_train", 1)[1]: v for k, v in every.items()
                                               if k.startswith(name + "_train") and v["config"] == cfg}
        if len(variants) > 1:
            lines += _training_table(variants, n_edits)
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
        for m, c in curves.items():
            xs = [r["edits"] for r in c["checkpoints"]]
            for ax, key in zip(axes[:3], ("efficacy", "paraphrase", "neighborhood")):
                ax.plot(xs, [_cf(r, key) for r in c["checkpoints"]], marker="o", label=m)
                ax.set_title(key)
            axes[3].plot(xs, [task_score(r) for r in c["checkpoints"]], marker="o", label=m)
            axes[3].set_title("task score")
        for ax in axes:
            ax.set_xlabel("edits")
            ax.set_ylim(0, 1.02)
        axes[0].legend()
        fig.tight_layout()
        atomic_savefig(fig, REPORTS / f"rledit_{name}.png", dpi=110)
        plt.close(fig)
    atomic_write_text(REPORTS / "rledit.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
