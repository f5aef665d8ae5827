"""Knowledge edits as values: requests to make, weight deltas that make them, and safe application.

- :mod:`ripple.editing.requests`: :class:`EditRequest` and loading CounterFact / ROME / EasyEdit files.
- :mod:`ripple.editing.delta`: :class:`EditDelta` (apply, restore bit-exactly, save, load) and
  :class:`WeightSnapshot`.
- :mod:`ripple.editing.hparams`: typed hyperparameters, per-architecture defaults, overrides.
- :mod:`ripple.editing.stats`: the MLP key second moment, cached on disk.
- :mod:`ripple.editing.compute`: keys and target values (what every method computes first).
- :mod:`ripple.editing.solvers`: the closed forms (ROME, MEMIT, EMMET, AlphaEdit, RECT).
- :mod:`ripple.editing.methods`: the editors, registered by name (:func:`get_editor`).
- :mod:`ripple.editing.session`: batch and sequential runs, atomic (a failure restores the weights).
- :mod:`ripple.editing.metrics`: CounterFact-style efficacy, paraphrase, neighbourhood, fluency.

Typical use::

    from ripple.loading import load_model
    from ripple.editing.requests import load_requests
    from ripple.editing.hparams import resolve_hparams
    from ripple.editing.methods import EditContext
    from ripple.editing.session import run_edits

    model, tok, spec = load_model("organism")
    requests = load_requests("edits.jsonl")
    hp = resolve_hparams("memit", spec.model_type, spec.n_layers(model), model_dir=model.name_or_path)
    ctx = EditContext(model, tok, spec, corpus=open("general.txt").read().splitlines())
    run = run_edits(ctx, "memit", requests, hp, mode="batch")
    ...                                      # the model is edited here
    run.restore(ctx)                         # and exactly as before here
"""
