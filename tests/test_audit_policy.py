"""Audit policy: thresholds, verdicts, TOML overrides and one-line errors.

Boundary convention: a value exactly at a threshold passes that threshold
(min rules fail only strictly below ``fail``, max rules only strictly above).
"""

import json
import math

import pytest

from ripple.auditing.policy import (
    CORE_METRICS,
    DEFAULT_POLICY,
    Basis,
    Finding,
    Policy,
    Rule,
    Verdict,
    judge,
    load_policy,
    policy_table_markdown,
)
from ripple.errors import RippleError

ALL_GOOD = {
    "efficacy": 1.0, "paraphrase": 0.9, "neighborhood": 0.95, "relation_specificity": 0.99,
    "unintended_changes": 0, "perplexity_ratio": 1.05, "update_norm_ratio": 0.1, "task_acc_drop": 0.0,
    "efficacy_gen": 1.0, "paraphrase_gen": 0.9,
}


def status_of(metric, value, policy=DEFAULT_POLICY):
    v = judge({**ALL_GOOD, metric: value}, policy)
    (f,) = [f for f in v.findings if f.metric == metric]
    return f.status


# ---- boundaries of every default rule -------------------------------------------------------

@pytest.mark.parametrize("metric,value,expected", [
    # efficacy min warn 0.9 fail 0.5
    ("efficacy", 0.9, "pass"), ("efficacy", 0.8999, "warn"), ("efficacy", 0.5, "warn"),
    ("efficacy", 0.4999, "fail"), ("efficacy", 0.0, "fail"),
    # paraphrase min warn 0.8 fail 0.5
    ("paraphrase", 0.8, "pass"), ("paraphrase", 0.7999, "warn"), ("paraphrase", 0.5, "warn"),
    ("paraphrase", 0.4999, "fail"),
    # neighborhood min warn 0.9 fail 0.7
    ("neighborhood", 0.9, "pass"), ("neighborhood", 0.8999, "warn"), ("neighborhood", 0.7, "warn"),
    ("neighborhood", 0.6999, "fail"),
    # relation_specificity min warn 0.95 fail 0.8
    ("relation_specificity", 0.95, "pass"), ("relation_specificity", 0.9499, "warn"),
    ("relation_specificity", 0.8, "warn"), ("relation_specificity", 0.7999, "fail"),
    # unintended_changes max warn 1 fail 5
    ("unintended_changes", 0, "pass"), ("unintended_changes", 1, "pass"),
    ("unintended_changes", 2, "warn"), ("unintended_changes", 5, "warn"),
    ("unintended_changes", 6, "fail"),
    # perplexity_ratio max warn 1.5 fail 3.0
    ("perplexity_ratio", 1.5, "pass"), ("perplexity_ratio", 1.5001, "warn"),
    ("perplexity_ratio", 3.0, "warn"), ("perplexity_ratio", 3.0001, "fail"),
    ("perplexity_ratio", math.inf, "fail"), ("perplexity_ratio", math.nan, "fail"),
    # update_norm_ratio max warn 1.0 fail 2.0
    ("update_norm_ratio", 1.0, "pass"), ("update_norm_ratio", 1.0001, "warn"),
    ("update_norm_ratio", 2.0, "warn"), ("update_norm_ratio", 2.0001, "fail"),
    # task_acc_drop max warn 0.05 fail 0.2
    ("task_acc_drop", 0.05, "pass"), ("task_acc_drop", 0.0501, "warn"), ("task_acc_drop", 0.2001, "fail"),
])
def test_default_boundaries(metric, value, expected):
    assert status_of(metric, value) == expected


def test_default_rules_documented():
    assert DEFAULT_POLICY.metrics == (
        "efficacy", "paraphrase", "efficacy_gen", "paraphrase_gen", "neighborhood", "relation_specificity",
        "unintended_changes", "perplexity_ratio", "task_acc_drop", "update_norm_ratio")
    for r in DEFAULT_POLICY.rules:
        assert r.description and len(r.description) > 20
    assert DEFAULT_POLICY.warn_exit_code == 0 and DEFAULT_POLICY.missing == "warn"
    assert DEFAULT_POLICY.rule("perplexity_ratio") == Rule("perplexity_ratio", "max", 1.5, 3.0,
                                                          DEFAULT_POLICY.rule("perplexity_ratio").description,
                                                          min_items=10)
    assert {r.metric for r in DEFAULT_POLICY.rules if r.required} == set(CORE_METRICS)


def test_threshold_reported():
    v = judge({**ALL_GOOD, "efficacy": 0.3, "perplexity_ratio": 2.0})
    f = {x.metric: x for x in v.findings}
    assert f["efficacy"] == Finding("efficacy", 0.3, "fail", 0.5, f["efficacy"].rule_description)
    assert (f["perplexity_ratio"].status, f["perplexity_ratio"].threshold) == ("warn", 1.5)
    assert (f["paraphrase"].status, f["paraphrase"].threshold) == ("pass", 0.8)


def test_single_threshold_rules():
    only_fail = Policy((Rule("x", "min", None, 0.5, "d"),))
    assert judge({"x": 0.5}, only_fail).status == "pass"
    assert judge({"x": 0.49}, only_fail).status == "fail"
    assert judge({"x": 0.49}, only_fail).findings[0].threshold == 0.5
    only_warn = Policy((Rule("y", "max", 2.0, None, "d"),))
    assert judge({"y": 2.0}, only_warn).status == "pass"
    assert judge({"y": 100.0}, only_warn).status == "warn"
    equal = Policy((Rule("z", "min", 0.5, 0.5, "d"),))
    assert [judge({"z": v}, equal).status for v in (0.5, 0.4)] == ["pass", "fail"]


# ---- aggregation and exit codes ------------------------------------------------------------

def test_all_pass():
    v = judge(ALL_GOOD)
    assert (v.status, v.exit_code) == ("pass", 0)
    assert len(v.findings) == len(DEFAULT_POLICY.rules) == 10 and all(f.status == "pass" for f in v.findings)


def test_worst_of_aggregation():
    one_warn = judge({**ALL_GOOD, "paraphrase": 0.6})
    assert (one_warn.status, one_warn.exit_code) == ("warn", 0)
    warn_and_fail = judge({**ALL_GOOD, "paraphrase": 0.6, "unintended_changes": 9})
    assert (warn_and_fail.status, warn_and_fail.exit_code) == ("fail", 1)
    many_warns = judge({**ALL_GOOD, "paraphrase": 0.6, "efficacy": 0.7, "perplexity_ratio": 2})
    assert many_warns.status == "warn"
    assert sorted(f.metric for f in many_warns.findings if f.status == "warn") == [
        "efficacy", "paraphrase", "perplexity_ratio"]


def test_warn_exit_code_one():
    strict = Policy(DEFAULT_POLICY.rules, warn_exit_code=1)
    assert judge({**ALL_GOOD, "paraphrase": 0.6}, strict).exit_code == 1
    assert judge(ALL_GOOD, strict).exit_code == 0
    assert judge({**ALL_GOOD, "efficacy": 0.1}, strict).exit_code == 1


def test_extra_metrics_ignored():
    v = judge({**ALL_GOOD, "ripple_overall": 0.01, "something": 7})
    assert v.status == "pass" and "ripple_overall" not in [f.metric for f in v.findings]


# ---- missing metrics ----------------------------------------------------------------------

@pytest.mark.parametrize("mode,status,exit_code", [
    ("skip", "pass", 0), ("warn", "warn", 0), ("fail", "fail", 1)])
def test_missing_modes(mode, status, exit_code):
    policy = Policy(DEFAULT_POLICY.rules, missing=mode)
    metrics = {**ALL_GOOD, "neighborhood": None}
    del metrics["update_norm_ratio"]
    v = judge(metrics, policy)
    assert (v.status, v.exit_code) == (status, exit_code)
    f = {x.metric: x for x in v.findings}
    assert (f["neighborhood"].value, f["neighborhood"].status, f["neighborhood"].threshold) == (None, mode, None)
    # an optional rule nobody asked for is skipped whatever the mode
    assert (f["update_norm_ratio"].status, f["update_norm_ratio"].note) == ("skip", "not measured (optional rule: skipped)")


def test_unmeasured_core_rule_turns_pass_into_warn_with_its_reason():
    metrics = {**ALL_GOOD, "paraphrase": None}
    v = judge(metrics, basis={"paraphrase": Basis(0, None, "no paraphrase prompts")})
    f = {x.metric: x for x in v.findings}["paraphrase"]
    assert (v.status, f.status, f.note) == ("warn", "warn", "not measured: no paraphrase prompts")
    assert judge(metrics, Policy(DEFAULT_POLICY.rules, missing="skip")).status == "pass"  # the old behaviour
    for metric in CORE_METRICS:
        assert judge({**ALL_GOOD, metric: None}).status == "warn", metric
    assert judge({**ALL_GOOD, "task_acc_drop": None}).status == "pass"  # optional: no --tasks


def test_a_rule_on_too_few_items_warns():
    basis = {"neighborhood": Basis(2, "model belief"), "efficacy": Basis(1, "the edit requests")}
    v = judge(ALL_GOOD, basis=basis)
    f = {x.metric: x for x in v.findings}
    assert v.status == "warn" and f["neighborhood"].status == "warn"
    assert f["neighborhood"].note == "rests on 2 items, fewer than the minimum of 3"
    assert (f["neighborhood"].n, f["neighborhood"].source) == (2, "model belief")
    assert f["efficacy"].status == "pass" and f["efficacy"].note is None
    # a failing rule on few items stays a failure
    assert judge({**ALL_GOOD, "neighborhood": 0.1}, basis=basis).status == "fail"


def test_min_items_from_a_policy_file(tmp_path):
    pol = load_policy(write(tmp_path, "[neighborhood]\nmin_items = 10\n"))
    assert pol.rule("neighborhood").min_items == 10 and pol.rule("neighborhood").warn == 0.9
    assert judge(ALL_GOOD, pol, {"neighborhood": Basis(5)}).status == "warn"
    with pytest.raises(RippleError, match="min_items must be a whole number"):
        load_policy(write(tmp_path, "[neighborhood]\nmin_items = -1\n"))
    # a section for an optional rule makes it required: unmeasured, it warns
    no_tasks = {**ALL_GOOD, "task_acc_drop": None}
    assert judge(no_tasks).status == "pass"
    assert judge(no_tasks, load_policy(write(tmp_path, "[task_acc_drop]\nwarn = 0.1\n"))).status == "warn"


def test_missing_skip_does_not_hide_failures():
    skip = Policy(DEFAULT_POLICY.rules, missing="skip")
    v = judge({"efficacy": 0.1}, skip)
    assert v.status == "fail" and sum(f.status == "skip" for f in v.findings) == 9
    assert judge({}, skip).status == "pass"
    assert judge({}).status == "warn"


def test_missing_warn_with_warn_exit_code():
    v = judge({}, Policy(DEFAULT_POLICY.rules, warn_exit_code=1, missing="warn"))
    assert (v.status, v.exit_code) == ("warn", 1)


# ---- to_dict / markdown -------------------------------------------------------------------

def test_to_dict_is_json():
    v = judge({**ALL_GOOD, "perplexity_ratio": math.nan, "efficacy": None})
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["status"] == "fail" and d["exit_code"] == 1
    f = {x["metric"]: x for x in d["findings"]}
    assert f["perplexity_ratio"]["value"] == "nan"
    assert f["efficacy"] == {"metric": "efficacy", "value": None, "status": "warn",
                             "threshold": None,
                             "rule_description": DEFAULT_POLICY.rule("efficacy").description,
                             "n": None, "source": None, "note": "not measured"}
    assert isinstance(v, Verdict)


def test_policy_table_markdown():
    md = policy_table_markdown(DEFAULT_POLICY)
    lines = md.splitlines()
    assert lines[0] == "| metric | direction | warn | fail | fewest items | if not measured | rationale |"
    assert "| `perplexity_ratio` | lower is better (max) | 1.5 | 3 |" in md
    assert "| `efficacy` | higher is better (min) | 0.9 | 0.5 |" in md
    assert sum(line.startswith("| `") for line in lines) == 10
    piped = Policy((Rule("x", "min", None, 0.5, "a|b"),))
    assert "| `x` | higher is better (min) | - | 0.5 | 1 | warn | a\\|b |" in policy_table_markdown(piped)


# ---- rule / policy validation -------------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (("x", "min", 0.5, 0.6, ""), "fail (0.6) must be <= warn (0.5)"),
    (("x", "max", 3.0, 2.0, ""), "warn (3.0) must be <= fail (2.0)"),
    (("x", "between", 0.5, 0.1, ""), "op must be"),
    (("x", "min", None, None, ""), "needs a warn or a fail"),
    (("x", "min", "high", None, ""), "must be a number"),
    (("x", "min", True, None, ""), "must be a number"),
    (("x", "min", math.nan, None, ""), "finite"),
])
def test_rule_validation(args, fragment):
    with pytest.raises(RippleError) as err:
        Rule(*args)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_policy_validation():
    with pytest.raises(RippleError, match="warn_exit_code must be 0 or 1"):
        Policy(DEFAULT_POLICY.rules, warn_exit_code=2)
    with pytest.raises(RippleError, match="missing must be one of"):
        Policy(DEFAULT_POLICY.rules, missing="ignore")
    with pytest.raises(RippleError, match="duplicate rules for efficacy"):
        Policy(DEFAULT_POLICY.rules + (DEFAULT_POLICY.rules[0],))


def test_judge_rejects_non_numbers():
    with pytest.raises(RippleError, match="metric efficacy must be a number"):
        judge({"efficacy": "0.9"})


# ---- TOML loading -------------------------------------------------------------------------

def write(tmp_path, text, name="policy.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_example_overrides(tmp_path):
    p = write(tmp_path, """
warn_exit_code = 1          # optional
missing = "warn"            # optional
[efficacy]
warn = 0.95
fail = 0.6
[perplexity_ratio]
fail = 2.5
""")
    pol = load_policy(p)
    assert (pol.warn_exit_code, pol.missing) == (1, "warn")
    eff = pol.rule("efficacy")
    assert (eff.op, eff.warn, eff.fail) == ("min", 0.95, 0.6)
    assert eff.description == DEFAULT_POLICY.rule("efficacy").description
    ppl = pol.rule("perplexity_ratio")
    assert (ppl.op, ppl.warn, ppl.fail) == ("max", 1.5, 2.5)
    assert pol.metrics == DEFAULT_POLICY.metrics
    assert pol.rule("neighborhood") == DEFAULT_POLICY.rule("neighborhood")
    # effects on verdicts
    assert status_of("efficacy", 0.94, pol) == "warn"      # passed under the default 0.9
    assert status_of("efficacy", 0.59, pol) == "fail"
    assert status_of("perplexity_ratio", 2.5, pol) == "warn"
    assert status_of("perplexity_ratio", 2.6, pol) == "fail"
    v = judge({**ALL_GOOD, "paraphrase": 0.7}, pol)
    assert (v.status, v.exit_code) == ("warn", 1)


def test_load_empty_file_is_default(tmp_path):
    assert load_policy(write(tmp_path, "")) == DEFAULT_POLICY


def test_load_new_metric_and_description(tmp_path):
    pol = load_policy(write(tmp_path, """
[ripple_overall]
op = "min"
warn = 0.5
fail = 0.2
description = "ripple-effect accuracy"
[unintended_changes]
op = "max"
warn = 0
description = "none tolerated"
"""))
    assert pol.metrics[-1] == "ripple_overall"
    assert pol.rule("ripple_overall") == Rule("ripple_overall", "min", 0.5, 0.2, "ripple-effect accuracy")
    assert pol.rule("unintended_changes") == Rule("unintended_changes", "max", 0, 5, "none tolerated", min_items=20)
    assert status_of("ripple_overall", 0.3, pol) == "warn"
    assert status_of("ripple_overall", 0.1, pol) == "fail"
    assert status_of("unintended_changes", 1, pol) == "warn"


def test_load_integer_thresholds(tmp_path):
    pol = load_policy(write(tmp_path, "[perplexity_ratio]\nwarn = 2\nfail = 4\n"))
    assert status_of("perplexity_ratio", 3.5, pol) == "warn"


@pytest.mark.parametrize("text,fragment", [
    ("warn_exit_code = 1\n[efficacy\n", "not valid TOML"),
    ("verbose = true\n", "unknown top-level key 'verbose'"),
    ("[efficacy]\nwarn = 0.9\nminimum = 0.5\n", "unknown key 'minimum' in [efficacy]"),
    ("[efficacy]\nwarn = \"high\"\n", "[efficacy].warn must be a finite number, got str"),
    ("[efficacy]\nfail = true\n", "[efficacy].fail must be a finite number, got bool"),
    ("[efficacy]\nfail = nan\n", "[efficacy].fail must be a finite number"),
    ("[efficacy]\nop = 1\n", "[efficacy].op must be a string"),
    ("[efficacy]\ndescription = 3\n", "[efficacy].description must be a string"),
    ("efficacy = 0.9\n", "efficacy must be a table"),
    ("[efficacy]\nfail = 0.95\n", "fail (0.95) must be <= warn (0.9)"),
    ("[perplexity_ratio]\nwarn = 4.0\n", "warn (4.0) must be <= fail (3.0)"),
    ("[efficacy]\nop = \"max\"\n", "cannot change the min rule"),
    ("[ripple_overall]\nwarn = 0.5\n", "[ripple_overall] has no default rule so it must give op"),
    ("[ripple_overall]\nop = \"above\"\nwarn = 0.5\n", "ripple_overall.op must be \"min\" or \"max\""),
    ("[ripple_overall]\nop = \"min\"\n", "needs a warn or a fail"),
    ("warn_exit_code = 2\n", "warn_exit_code must be 0 or 1, got 2"),
    ("warn_exit_code = \"1\"\n", "warn_exit_code must be 0 or 1"),
    ("warn_exit_code = true\n", "warn_exit_code must be 0 or 1"),
    ("warn_exit_code = 1.0\n", "warn_exit_code must be 0 or 1"),
    ("missing = \"ignore\"\n", "missing must be one of"),
    ("missing = 0\n", "missing must be one of"),
])
def test_load_errors_one_line_naming_file(tmp_path, text, fragment):
    p = write(tmp_path, text)
    with pytest.raises(RippleError) as err:
        load_policy(p)
    msg = str(err.value)
    assert fragment in msg, msg
    assert str(p) in msg and "\n" not in msg


def test_invalid_toml_names_line(tmp_path):
    p = write(tmp_path, "missing = \"warn\"\n\n[efficacy]\nwarn = = 0.9\n")
    with pytest.raises(RippleError) as err:
        load_policy(p)
    assert "line 4" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("make,fragment", [
    (lambda d: d / "nope.toml", "not found"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "bin.toml").write_bytes(b"\xff\xfe[x]") and d / "bin.toml", "not UTF-8"),
])
def test_load_file_errors(tmp_path, make, fragment):
    p = make(tmp_path)
    with pytest.raises(RippleError) as err:
        load_policy(p)
    msg = str(err.value)
    assert fragment in msg and str(p) in msg and "\n" not in msg


def test_british_spelling_of_neighbourhood_is_an_alias(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text("[neighbourhood]\nwarn = 0.95\n")
    assert load_policy(p).rule("neighborhood").warn == 0.95
    p.write_text("[neighbourhood]\nwarn = 0.95\n[neighborhood]\nfail = 0.6\n")
    with pytest.raises(RippleError, match=r"\[neighborhood\] is given twice"):
        load_policy(p)
