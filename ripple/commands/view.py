"""``ripple view``: one page that compares runs ripple wrote (:mod:`ripple.viewing`).

    ripple view runs/rome runs/memit --out compare.html
    ripple view runs/france-sir/plain runs/france-sir --out sir.html

Exit code 0 with the page written; 2 on bad input (a directory that is not a ripple run, runs of
different kinds, an ``--out`` ripple view did not write), with one line saying why.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("view", help="one self-contained page comparing runs (audits, graphs, mitigations, stress)")
    p.add_argument("runs", nargs="+", help="directories written by ripple audit, graph, mitigate or stress")
    p.add_argument("--out", required=True, help="the page to write (an HTML file; replaced only if ripple view "
                   "wrote it)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ripple.viewing import view  # lazy: start-up

    out = view(args.runs, args.out)
    print(f"ripple view: {len(args.runs)} run(s) compared; page: {out}")
    return 0
