"""ripple's benchmarks: the measurements behind reports/, one module each, run from the repo root.

    python -m benchmarks                      # list every benchmark with its one-line description
    python -m benchmarks --list               # the same
    python -m benchmarks NAME [ARGS...]       # run one: NAME's main(ARGS)
    python -m benchmarks NAME --help          # its options

Names. A benchmark is a module of a subject folder with a ``main(argv=None)`` (or a shell
script there, run with bash); its NAME is ``folder/module``, e.g. ``gie/recall`` for
benchmarks/gie/recall.py. Also accepted for the same benchmark: ``folder_module``
(``gie_recall``), the dotted module (``gie.recall``, ``benchmarks.gie.recall``), the path
(``benchmarks/gie/recall.py``), and the name of the flat script it was before the benchmarks
became a package (``edit_sweep``, ``benchmarks/edit_sweep.py``: see ``OLD_NAMES`` in
benchmarks/__main__.py). ``python -m benchmarks.gie.recall ARGS`` runs a module directly too.

Folders: audit/, editors/, gie/, sir/, stress/, real_models/, organism/, probes/, speed/, gpu/ (each
one's __init__ says what it holds). Shared helpers are in benchmarks/common.py (torch's thread
count, timing, Markdown tables, files of rows a stopped run goes on from, the facts a real model
knows); benchmarks/editors/common.py and editors/report.py are the organism editor benchmark's
own pieces. Nothing under benchmarks/ edits ``sys.path``: the package is imported from the repo
root (``python -m``; pyproject's pytest ``pythonpath`` for the tests).

No benchmark writes the package's data: tables the package ships are written to reports/ and
copied into ripple/data/ by an explicit step (``python -m benchmarks gie/recall --install``,
``python -m benchmarks real_models/english_tasks --install``).
"""
