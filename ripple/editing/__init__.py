"""Knowledge edits as values: requests to make, weight deltas that make them, and safe application.

- :mod:`ripple.editing.requests`: :class:`EditRequest` and loading CounterFact / ROME / EasyEdit files.
- :mod:`ripple.editing.delta`: :class:`EditDelta` (apply, restore bit-exactly, save, load) and
  :class:`WeightSnapshot`.
"""
