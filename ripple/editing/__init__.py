"""Knowledge edits as values: requests to make, weight deltas that make them, and safe application.

- :mod:`ripple.editing.requests`: :class:`EditRequest` and loading CounterFact / ROME / EasyEdit files.
- :mod:`ripple.editing.delta`: :class:`EditDelta` (apply, restore bit-exactly, save, load) and
  :class:`WeightSnapshot`.
- :mod:`ripple.editing.editor`: the :class:`Editor` record and the registry :data:`EDITORS`.
- :mod:`ripple.editing.editors`: the built-in editors, one file each (ROME, MEMIT, EMMET, AlphaEdit, FT-L).
- :mod:`ripple.editing.hparams`: the shared hyperparameter fields and their resolution.
- :mod:`ripple.editing.context`: :class:`EditContext` (cached statistics, editors' running state).
- :mod:`ripple.editing.setup`: :func:`load_setup`, everything an editing job needs in one call.
- :mod:`ripple.editing.session`: batch and sequential runs, atomic, and the sandbox :func:`edited`.
- :mod:`ripple.editing.stats`: the MLP key second moment, cached on disk.
- :mod:`ripple.editing.compute`: keys and target values (what every locate-then-edit method computes first).
- :mod:`ripple.editing.solvers`: the closed forms (ROME, MEMIT, EMMET, AlphaEdit, RECT).
- :mod:`ripple.editing.metrics`: CounterFact-style efficacy, paraphrase, neighbourhood, fluency.
- :mod:`ripple.editing.from_world`: requests, neighbours and the statistics text from a world.
- :mod:`ripple.editing.streams`: streams of edits from a world (stress, RLEdit's training).

Typical use::

    from ripple.editing.request_files import load_requests
    from ripple.editing.session import edited
    from ripple.editing.setup import load_setup

    setup = load_setup("organism", "memit", load_requests("edits.jsonl"))
    with edited(setup.ctx, "memit", setup.requests, setup.hp, mode="batch") as run:
        ...                                  # the model is edited here
    ...                                      # and exactly as before here
"""
