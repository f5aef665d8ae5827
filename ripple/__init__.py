"""ripple: see what a knowledge edit to a language model breaks before you ship it.

The front door (:mod:`ripple.api`)::

    import ripple
    report = ripple.audit("organism", "rome", [ripple.EditRequest("{} was born in", "Lodro Toudein", "Kraile")])
    report.verdict, report.metrics["efficacy"], report.save("runs/audit")
    lab = ripple.load("smollm2")                  # one model for many jobs: edit, edited, audit, trace
    ripple.view(["runs/rome", "runs/memit"], "compare.html")   # one page comparing runs ripple wrote

Importing ``ripple`` is cheap and has no side effects: the names below load their modules (and
torch and transformers) on first use.
"""

__version__ = "0.1.0"

#: name -> the module that defines it, imported on first access (PEP 562)
_EXPORTS = {
    "load": "ripple.api", "audit": "ripple.api", "Lab": "ripple.api", "AuditReport": "ripple.results",
    "Finding": "ripple.results", "AuditOptions": "ripple.results", "EditRequest": "ripple.editing.requests", "EditDelta": "ripple.editing.delta",
    "Policy": "ripple.auditing.policy", "Rule": "ripple.auditing.policy", "RippleError": "ripple.errors",
    "GraphReport": "ripple.results", "Mitigated": "ripple.mitigation.run", "StressResult": "ripple.stress.run",
    "Variant": "ripple.editing.variant", "view": "ripple.viewing",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib  # lazy: start-up

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'ripple' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
