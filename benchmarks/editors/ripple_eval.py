"""RippleEdits categories and MQuAKE-style multi-hop accuracy of every editor on the organism.

Each editor edits ``--n`` random facts (``sample_edits(world, n, seed=0, relations=...)``, by default
of every relation, so that every category can occur),
each alone on a fresh model with the organism's shipped hyperparameters, scored with
:func:`ripple.evaluate.ripple_scores.ripple_eval_many` (queries counted only where the model knew
their condition facts before the edit). Writes ``OUT/ripple_eval.md`` and ``.json``.

    python -m benchmarks editors/ripple_eval --n 50 --methods rome memit emmet alphaedit ft --out reports
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import md_row, md_table, set_threads, write_rows


def evaluate_method(setup, method: str, requests, log=print) -> dict:
    from ripple.editing.session import edited
    from ripple.evaluate.ripple_scores import ripple_eval_many

    hp = setup.hparams_for(method)
    t0 = time.perf_counter()
    out = ripple_eval_many(setup.model, setup.tok, setup.world, requests,
                           lambda req: edited(setup.ctx, method, [req], hp, force=True),
                           on_result=lambda r: log(f"{method} {r['case_id']} edit "
                                                   f"{r['categories']['edit']['accuracy']}"))
    out["seconds_per_edit"] = round((time.perf_counter() - t0) / max(1, len(requests)), 3)
    return out


def _cell(c: dict) -> str:
    return "-" if c["mean"] is None else f"{100 * c['mean']:.1f} (n={c['n']})"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def render(rows: dict, command: str, n: int) -> str:
    from ripple.evaluate.ripple_scores import RIPPLE_CATEGORIES

    cats = ("edit", *RIPPLE_CATEGORIES, "neighbourhood")
    lines = ["# Ripple effects of each editor on the organism", "", f"Reproduce: `{command}`", "",
             f"{n} random edits of all relations (`sample_edits(world, {n}, seed=0, relations=...)`), each applied "
             "alone with the organism's "
             "hyperparameters and undone. Cells: mean over edits of the per-edit accuracy (%), and the number of "
             "counted queries: a query counts only if the model knew its condition facts before the edit (and, for "
             "preservation, relation specificity and neighbourhood, answered it correctly before). Overall: mean "
             "of the six RippleEdits categories with data.", "",
             *md_table(["editor", *cats, "overall", "s/edit"])]
    for m, r in rows.items():
        lines.append(md_row([m, *(_cell(r["categories"][c]) for c in cats), _pct(r["overall"]), r["seconds_per_edit"]]))
    lines += ["", "## MQuAKE-style: edit-wise success vs multi-hop accuracy", "",
              "Edits of citizen_of / born_in / works_for with a counted two-hop question through the edited fact "
              "(a case is right if any phrasing of any of its two-hop questions gives the new answer).", "",
              *md_table(["editor", "cases", "edit-wise", "multi-hop", "multi-hop given edit"])]
    for m, r in rows.items():
        h = r["multihop"]
        lines.append(md_row([m, h["cases"], _pct(h["edit_wise"]), _pct(h["multihop"]), _pct(h["multihop_given_edit"])]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from ripple.editing.editor import EDITORS, get_editor
    from ripple.editing.from_world import sample_edits
    from ripple.editing.setup import load_setup
    from ripple.io import atomic_write_text, prepare_out_dir
    from ripple.world.schema import RELATIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--n", type=int, default=50, help="edits per editor")
    ap.add_argument("--methods", nargs="+", default=list(EDITORS.names()))
    ap.add_argument("--out", default="reports")
    ap.add_argument("--relations", nargs="+", default=sorted(RELATIONS),
                    help="relations to sample edits from (default: all, so every RippleEdits category can occur)")
    args = ap.parse_args(argv)
    for m in args.methods:
        get_editor(m)
    set_threads()
    setup = load_setup(args.model)
    requests = sample_edits(setup.world, args.n, seed=0, relations=tuple(args.relations))
    rows = {m: evaluate_method(setup, m, requests) for m in args.methods}
    out = prepare_out_dir(args.out)
    command = f"python -m benchmarks editors/ripple_eval --n {args.n} --methods {' '.join(args.methods)} --out {args.out}"
    write_rows(out / "ripple_eval.json", {"command": command, "n": args.n, "methods": rows})
    atomic_write_text(out / "ripple_eval.md", render(rows, command, args.n))


if __name__ == "__main__":
    main()
