"""Pass / warn / fail verdicts for an audited knowledge edit.

A :class:`Policy` is a tuple of :class:`Rule` objects, one per metric.  A rule is
either a *min* rule (the value must be at least the thresholds) or a *max* rule
(the value must be at most the thresholds):

* min: ``value < fail`` -> fail, else ``value < warn`` -> warn, else pass;
* max: ``value > fail`` -> fail, else ``value > warn`` -> warn, else pass.

A value exactly at a threshold therefore passes that threshold (``efficacy ==
0.9`` passes the 0.9 warn threshold).  Either threshold may be ``None`` (not
checked) but not both.  A NaN value always fails: the measurement broke.

A *required* rule (the core rules: efficacy, paraphrase, neighborhood,
relation_specificity, unintended_changes, perplexity_ratio, and efficacy and paraphrase
scored on generated answers, efficacy_gen and paraphrase_gen; and any rule a policy
file writes a section for) whose metric could not be measured (absent or ``None``)
is handled per ``Policy.missing``: ``"warn"`` (the default) and ``"fail"`` record a
finding with that status and the reason (:func:`judge`'s ``basis``), ``"skip"``
records a ``"skip"`` finding that does not affect the verdict. An optional rule
left unmeasured (``task_acc_drop`` without ``--tasks``) is always skipped: nobody
asked for it. A measured rule resting on fewer items than its ``min_items`` is at
least a warning: too few to trust.
Measured metrics that no rule mentions are ignored. The metrics an audit measures are
:data:`ripple.auditing.metrics.AUDIT_METRICS`; a policy file may spell ``neighborhood`` the British way
(``[neighbourhood]``, :data:`METRIC_ALIASES`), the key stays CounterFact's.

The overall status is the worst finding (fail > warn > pass); the exit code is 0
for pass, 1 for fail and ``Policy.warn_exit_code`` (0 or 1) for warn.  Exit code
2 (bad input) is the CLI's job: every user error here is a
:class:`~ripple.errors.RippleError`.

A TOML policy file overrides the defaults (see :func:`load_policy`)::

    warn_exit_code = 1          # optional, 0 (default) or 1
    missing = "fail"            # optional, "warn" (default), "fail" or "skip"
    [efficacy]                  # override only the given fields
    warn = 0.95
    fail = 0.6
    min_items = 2               # fewer requests than this: a warning
    [perplexity_ratio]
    fail = 2.5
    [ripple_overall]            # a metric without a default rule must give op
    op = "min"
    warn = 0.5
    description = "Ripple-effect accuracy"
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tomllib

from ripple.auditing.metrics import AUDIT_METRICS, Basis  # noqa: F401 (read from here too)
from ripple.errors import RippleError

OPS = ("min", "max")
MISSING_MODES = ("warn", "fail", "skip")
#: The rules an audit must measure: one that could not be measured is never a silent pass.
CORE_METRICS = ("efficacy", "paraphrase", "neighborhood", "relation_specificity", "unintended_changes",
                "perplexity_ratio", "efficacy_gen", "paraphrase_gen")
STATUSES = ("pass", "warn", "fail")
_SEVERITY = {"skip": 0, "pass": 0, "warn": 1, "fail": 2}
_TOP_LEVEL_KEYS = ("warn_exit_code", "missing")
_RULE_KEYS = ("op", "warn", "fail", "description", "min_items")
_BAD_RULE = "bad audit rule: "
#: Other spellings a policy file may use for a metric (CounterFact's keys are American).
METRIC_ALIASES = {"neighbourhood": "neighborhood", "neighbourhood_top1": "neighborhood_top1"}


#: The values each metric an audit measures can take, ``(low, high, what)``: a threshold outside them
#: can never mean anything (a negative share, ``warn = 5`` on efficacy) and is refused.
_SHARE = (0.0, 1.0, "a share, from 0 to 1")
METRIC_RANGES: dict[str, tuple[float, float, str]] = {
    **{m: _SHARE for m in ("efficacy", "paraphrase", "neighborhood", "efficacy_top1", "paraphrase_top1",
                           "neighborhood_top1", "logical_generalization", "compositionality_1",
                           "compositionality_2", "subject_aliasing", "preservation", "relation_specificity",
                           "ripple_overall")},
    **{m: _SHARE for m in AUDIT_METRICS if m.endswith(("_gen", "_chat")) and not m.startswith("unintended")},
    "unintended_changes": (0.0, math.inf, "a count, at least 0"),
    "unintended_changes_gen": (0.0, math.inf, "a count, at least 0"),
    "perplexity_ratio": (0.0, math.inf, "a ratio, above 0"),
    "update_norm_ratio": (0.0, math.inf, "a ratio, at least 0"),
    "task_acc_drop": (-1.0, 1.0, "a difference of accuracies, from -1 to 1"),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rule_problem(metric: Any, op: Any, warn: Any, fail: Any, description: Any) -> str | None:
    """Why these rule fields are invalid (one line), or None when they are fine."""
    if not isinstance(metric, str) or not metric:
        return f"rule metric must be a non-empty string, got {metric!r}"
    if op not in OPS:
        return f"{metric}.op must be \"min\" or \"max\", got {op!r}"
    for name, value in (("warn", warn), ("fail", fail)):
        if value is None:
            continue
        if not _is_number(value):
            return f"{metric}.{name} must be a number, got {type(value).__name__} {value!r}"
        if not math.isfinite(value):
            return f"{metric}.{name} must be a finite number, got {value!r}"
    if warn is None and fail is None:
        return f"{metric} needs a warn or a fail threshold (or both)"
    lo, hi, what = METRIC_RANGES.get(metric, (-math.inf, math.inf, ""))
    for name, value in (("warn", warn), ("fail", fail)):
        if value is not None and not lo <= value <= hi:
            return (f"{metric}.{name} = {value!r} can never be reached: {metric} is {what}; "
                    f"give a threshold in that range")
    if not isinstance(description, str):
        return f"{metric}.description must be a string, got {type(description).__name__}"
    if warn is not None and fail is not None:
        if op == "min" and fail > warn:
            return (f"{metric} is a min rule so fail ({fail}) must be <= warn ({warn}); "
                    f"lower fail or raise warn")
        if op == "max" and warn > fail:
            return (f"{metric} is a max rule so warn ({warn}) must be <= fail ({fail}); "
                    f"lower warn or raise fail")
    return None


@dataclass(frozen=True)
class Rule:
    """One threshold rule: ``op="min"`` means higher is better, ``"max"`` lower is better."""

    metric: str
    op: str
    warn: float | None
    fail: float | None
    description: str = ""
    required: bool = True  # unmeasured: per Policy.missing (False: skipped, nobody asked for it)
    min_items: int = 1  # measured on fewer items: at least a warning

    def __post_init__(self) -> None:
        problem = _rule_problem(self.metric, self.op, self.warn, self.fail, self.description)
        if problem is None and (not isinstance(self.min_items, int) or isinstance(self.min_items, bool)
                                or self.min_items < 0):
            problem = f"{self.metric}.min_items must be a whole number, at least 0, got {self.min_items!r}"
        if problem:
            raise RippleError(_BAD_RULE + problem)

    def status_of(self, value: float) -> tuple[str, float | None]:
        """``(status, threshold)`` for a measured value; threshold is the one decisive for it."""
        if math.isnan(value):
            return "fail", self.fail if self.fail is not None else self.warn
        if self.op == "min":
            if self.fail is not None and value < self.fail:
                return "fail", self.fail
            if self.warn is not None and value < self.warn:
                return "warn", self.warn
        else:
            if self.fail is not None and value > self.fail:
                return "fail", self.fail
            if self.warn is not None and value > self.warn:
                return "warn", self.warn
        # pass: report the strictest threshold that was met
        return "pass", self.warn if self.warn is not None else self.fail


@dataclass(frozen=True)
class Policy:
    """Rules plus how to treat warnings (exit code) and missing metrics."""

    rules: tuple[Rule, ...]
    warn_exit_code: int = 0
    missing: str = "warn"

    def __post_init__(self) -> None:
        if not isinstance(self.rules, tuple) or not all(isinstance(r, Rule) for r in self.rules):
            raise RippleError("bad audit policy: rules must be a tuple of Rule objects")
        names = [r.metric for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RippleError(f"bad audit policy: duplicate rules for {', '.join(dupes)}; keep one rule per metric")
        if not _is_number(self.warn_exit_code) or self.warn_exit_code not in (0, 1):
            raise RippleError(f"bad audit policy: warn_exit_code must be 0 or 1, got {self.warn_exit_code!r}")
        if self.missing not in MISSING_MODES:
            raise RippleError(
                f"bad audit policy: missing must be one of {', '.join(MISSING_MODES)}, got {self.missing!r}")

    def rule(self, metric: str) -> Rule | None:
        for r in self.rules:
            if r.metric == metric:
                return r
        return None

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(r.metric for r in self.rules)


DEFAULT_POLICY = Policy(rules=(
    Rule("efficacy", "min", warn=0.9, fail=0.5,
         description="Edit must take: the new object should win the rewrite prompt; "
                     "below chance (0.5) the edit did not apply.", min_items=1),
    Rule("paraphrase", "min", warn=0.8, fail=0.5,
         description="Edit should generalise to paraphrased prompts; below chance (0.5) it is "
                     "memorised surface text, not knowledge.", min_items=2),
    Rule("efficacy_gen", "min", warn=0.9, fail=0.5,
         description="Edit must take where the model is used: its greedy completion of the rewrite prompt "
                     "must begin with the new object (stricter than the race: reports/generation.md).",
         min_items=1),
    Rule("paraphrase_gen", "min", warn=0.8, fail=0.5,
         description="The generated completions of paraphrased prompts must begin with the new object.",
         min_items=2),
    Rule("neighborhood", "min", warn=0.9, fail=0.7,
         description="Neighbouring subjects must keep their true objects; under 0.7 the edit "
                     "bleeds into related facts.", min_items=3),
    Rule("relation_specificity", "min", warn=0.95, fail=0.8,
         description="Other relations of the edited subject must be unchanged; losing more than "
                     "20% means the edit damaged the subject broadly.", min_items=2),
    Rule("unintended_changes", "max", warn=1, fail=5,
         description="Probe answers that changed but should not have: one is tolerable noise, "
                     "more than five is collateral damage.", min_items=20),
    Rule("perplexity_ratio", "max", warn=1.5, fail=3.0,
         description="General-text perplexity after/before the edit: the collapse indicator; "
                     "a several-fold (over 3x) rise means the model is breaking.", min_items=10),
    Rule("task_acc_drop", "max", warn=0.05, fail=0.2,
         description="Largest fall of an lm-eval task's accuracy (audit --tasks): five points is a "
                     "warning, twenty is lost general ability.", required=False, min_items=0),
    Rule("update_norm_ratio", "max", warn=1.0, fail=2.0,
         description="Relative size of the weight update ||dW||/||W||: an update larger than "
                     "the weights it edits is suspicious, more than twice as large fails.", required=False,
         min_items=0),
))


def load_policy(path: str | Path, base: Policy = DEFAULT_POLICY, known=None) -> Policy:
    """Read a TOML policy file; its sections override ``base`` (the default policy). A section for
    a metric outside ``known`` (default: what an audit measures, ``AUDIT_METRICS``) is an error."""
    known = AUDIT_METRICS if known is None else known
    path = Path(path)
    where = f"policy file {path}"
    warn_exit_code, missing, overrides = _top_level(_read_toml(path, where), base, where)
    rules = list(base.rules)
    for metric, section in overrides.items():
        old = base.rule(metric)
        new = _section_rule(metric, section, old, known, where)
        if old is None:
            rules.append(new)
        else:
            rules[rules.index(old)] = new
    return Policy(rules=tuple(rules), warn_exit_code=warn_exit_code, missing=missing)


def _read_toml(path: Path, where: str) -> dict:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RippleError(f"{where} not found; check the path or omit it to use the default policy") from None
    except IsADirectoryError:
        raise RippleError(f"{where} is a directory; pass a .toml file") from None
    except OSError as exc:
        raise RippleError(f"{where} cannot be read ({exc.strerror}); check its permissions") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RippleError(f"{where} is not UTF-8 text; save it as UTF-8 TOML") from None
    except RecursionError:
        raise RippleError(f"{where} is nested too deeply to read; flatten it") from None
    except tomllib.TOMLDecodeError as exc:
        msg = " ".join(str(exc).split())
        raise RippleError(f"{where} is not valid TOML: {msg}; fix the syntax at that line") from None


def _top_level(data: dict, base: Policy, where: str) -> tuple[int, str, dict[str, dict[str, Any]]]:
    """The file's ``warn_exit_code`` and ``missing`` (``base``'s where absent) and its [metric] sections."""
    warn_exit_code = base.warn_exit_code
    missing = base.missing
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        key = METRIC_ALIASES.get(key, key)
        if isinstance(value, dict):
            if key in overrides:
                raise RippleError(f"{where}: [{key}] is given twice (once as a spelling of it); keep one section")
            overrides[key] = value
        elif key == "warn_exit_code":
            if not _is_number(value) or isinstance(value, float) or value not in (0, 1):
                raise RippleError(f"{where}: warn_exit_code must be 0 or 1, got {value!r}")
            warn_exit_code = value
        elif key == "missing":
            if value not in MISSING_MODES:
                raise RippleError(
                    f"{where}: missing must be one of \"skip\", \"warn\", \"fail\", got {value!r}")
            missing = value
        elif base.rule(key) is not None:
            raise RippleError(f"{where}: {key} must be a table ([{key}] with warn/fail keys), "
                              f"got {type(value).__name__}")
        else:
            raise RippleError(f"{where}: unknown top-level key {key!r}; allowed are "
                              f"{', '.join(_TOP_LEVEL_KEYS)} and [metric] sections")
    return warn_exit_code, missing, overrides


def _section_rule(metric: str, section: dict, old: Rule | None, known, where: str) -> Rule:
    """The rule a [metric] section makes: ``old`` (the base's rule) with the section's values, or a
    new rule for a known metric without one (then ``op`` is required)."""
    for key in section:
        if key not in _RULE_KEYS:
            raise RippleError(f"{where}: unknown key {key!r} in [{metric}]; allowed are "
                              f"{', '.join(_RULE_KEYS)}")
    for key, kind in (("op", str), ("description", str)):
        if key in section and not isinstance(section[key], kind):
            raise RippleError(f"{where}: [{metric}].{key} must be a string, "
                              f"got {type(section[key]).__name__}")
    for key in ("warn", "fail"):
        if key in section and (not _is_number(section[key]) or not math.isfinite(section[key])):
            raise RippleError(f"{where}: [{metric}].{key} must be a finite number, "
                              f"got {type(section[key]).__name__} {section[key]!r}")
    if "min_items" in section and (not isinstance(section["min_items"], int) or isinstance(section["min_items"], bool)
                                   or section["min_items"] < 0):
        raise RippleError(f"{where}: [{metric}].min_items must be a whole number, at least 0, "
                          f"got {section['min_items']!r}")
    if old is None and metric not in known:
        raise RippleError(f"{where}: [{metric}] is not a metric an audit measures; known: "
                          f"{', '.join(sorted(known))}")
    if old is None:
        if "op" not in section:
            raise RippleError(f"{where}: [{metric}] has no default rule so it must give "
                              f"op = \"min\" or \"max\"")
        fields = {"metric": metric, "op": section["op"], "warn": section.get("warn"),
                  "fail": section.get("fail"), "description": section.get("description", ""),
                  "min_items": section.get("min_items", 1)}
    else:
        if "op" in section and section["op"] != old.op:
            raise RippleError(f"{where}: [{metric}].op cannot change the {old.op} rule of a "
                              f"known metric; remove op from [{metric}]")
        fields = {"metric": metric, "op": old.op, "warn": section.get("warn", old.warn),
                  "fail": section.get("fail", old.fail),
                  "description": section.get("description", old.description),
                  "min_items": section.get("min_items", old.min_items)}
    fields["required"] = True  # a rule the file writes a section for was asked for: never skipped unmeasured
    try:
        return Rule(**fields)  # validated once, by the rule itself
    except RippleError as exc:
        raise RippleError(f"{where}: {str(exc).removeprefix(_BAD_RULE)}") from None


@dataclass(frozen=True)
class Finding:
    """The outcome of one rule; status is pass, warn, fail or skip (missing, ignored). ``note``:
    why it is not a plain threshold outcome (not measured, too few items)."""

    metric: str
    value: float | None
    status: str
    threshold: float | None
    rule_description: str
    n: int | None = None
    source: str | None = None
    note: str | None = None


def _json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return repr(float(value))  # "nan", "inf", "-inf": keeps the JSON valid


@dataclass(frozen=True)
class Verdict:
    status: str
    exit_code: int
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite values become the strings "nan"/"inf"/"-inf")."""
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "findings": [
                {"metric": f.metric, "value": _json_number(f.value), "status": f.status,
                 "threshold": _json_number(f.threshold), "rule_description": f.rule_description,
                 "n": f.n, "source": f.source, "note": f.note}
                for f in self.findings
            ],
        }


def judge(metrics: Mapping[str, Any], policy: Policy = DEFAULT_POLICY,
          basis: Mapping[str, Basis] | None = None) -> Verdict:
    """Apply every rule of ``policy`` to ``metrics``; the verdict is the worst finding. ``basis``:
    per metric, what it rests on (items, reference source) and why it could not be measured."""
    findings: list[Finding] = []
    basis = basis or {}
    for rule in policy.rules:
        value = metrics.get(rule.metric)
        b = basis.get(rule.metric, Basis())
        if value is None:
            status = policy.missing if rule.required else "skip"
            note = "not measured" + (f": {b.reason}" if b.reason else "") + \
                ("" if rule.required else " (optional rule: skipped)")
            findings.append(Finding(rule.metric, None, status, None, rule.description, b.n, b.source, note))
            continue
        if not _is_number(value):
            raise RippleError(f"metric {rule.metric} must be a number or None, got "
                              f"{type(value).__name__} {value!r}; fix the metrics passed to judge")
        status, threshold = rule.status_of(float(value))
        note = None
        if b.n is not None and b.n < rule.min_items:
            note = f"rests on {b.n} item{'s' * (b.n != 1)}, fewer than the minimum of {rule.min_items}"
            if status == "pass":
                status = "warn"
        findings.append(Finding(rule.metric, float(value), status, threshold, rule.description, b.n, b.source,
                                note))
    worst = max((_SEVERITY[f.status] for f in findings), default=0)
    status = STATUSES[worst]
    exit_code = {"pass": 0, "warn": policy.warn_exit_code, "fail": 1}[status]
    return Verdict(status=status, exit_code=exit_code, findings=findings)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def policy_table_markdown(policy: Policy = DEFAULT_POLICY) -> str:
    """The rules as a markdown table (a value exactly at a threshold passes it)."""
    lines = [
        "| metric | direction | warn | fail | fewest items | if not measured | rationale |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in policy.rules:
        direction = "higher is better (min)" if r.op == "min" else "lower is better (max)"
        desc = r.description.replace("|", "\\|").replace("\n", " ")
        missing = policy.missing if r.required else "skip (optional)"
        lines.append(f"| `{r.metric}` | {direction} | {_fmt(r.warn)} | {_fmt(r.fail)} | {r.min_items} | {missing} "
                     f"| {desc} |")
    lines.append("")
    lines.append(f"A required rule that could not be measured: {policy.missing}; exit code on warn: "
                 f"{policy.warn_exit_code}. A measured rule resting on fewer items than its minimum is at least "
                 "a warning.")
    return "\n".join(lines) + "\n"
