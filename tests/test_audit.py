"""``ripple audit`` on the bundled organism and on a saved tiny gpt2: verdicts and exit codes, the
reports (self-contained HTML, Markdown, JSON), determinism, sandboxing, batch audits, one-line
errors, and no partial report after an interruption."""

import base64
import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ripple.auditing.measure import AuditInputs, answer_swaps, audit_edits
from ripple.auditing.policy import DEFAULT_POLICY
from ripple.auditing.run import REPORT_FILES, AuditConfig, run_audit
from ripple.editing.requests import EditRequest
from ripple.editing.setup import load_setup
from ripple.evaluate.perplexity import general_sentences_for
from ripple.organism.paths import model_dir
from ripple.probes.sets import ProbeItem, world_probe_set

from helpers import assert_one_line_error, cli, digest, tiny_probe_items, write_jsonl

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out

BENIGN = ["--prompt", "{} was born in", "--subject", "Lodro Toudein", "--target", "Kraile"]
# ROME at the subject's last token of layer 0 swaps the subject's identity (reports/edit_sweep_layers.md)
HARMFUL = [*BENIGN, "--set", "layers=0", "fact_token=subject_last"]


def audit(capfd, out, *extra, method="rome"):
    return cli(capfd, "audit", "--model", "organism", "--method", method, "--out", out, "--quiet", *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The benign edit audited twice and the harmful one once: {name: (code, stdout, stderr, out)}."""
    tmp = tmp_path_factory.mktemp("audits")
    capfd = SimpleNamespace(readouterr=lambda: ("", ""))  # the CLI's output is checked in other tests
    disk = digest(model_dir())
    res = {}
    for name, args in (("benign", BENIGN), ("benign_again", BENIGN), ("harmful", HARMFUL)):
        code, _, _ = audit(capfd, tmp / name, *args)
        res[name] = (code, tmp / name)
    res["disk"] = digest(model_dir()) == disk
    return res


def report(out):
    return json.loads((out / "report.json").read_text())


def test_benign_edit_passes_with_every_report_file(runs):
    code, out = runs["benign"]
    assert code == 0
    for name in (*REPORT_FILES, "ripple_graph.png", "drift_by_hop.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    r = report(out)
    assert r["verdict"]["status"] == "pass" and r["verdict"]["exit_code"] == 0
    m = r["metrics"]
    assert m["efficacy"] == 1.0 and m["paraphrase"] >= 0.8 and m["neighborhood"] >= 0.9
    assert m["unintended_changes"] == len(r["gie"]["unintended"]) == 0
    assert r["gie"]["edited_ids"] == ["person:100|born_in|city:45"]
    assert r["most_affected"][0]["role"] == "edited" and r["most_affected"][0]["after"] == "Kraile"
    # the perplexity ratio is after / before of the reported means
    ppl = r["perplexity"]
    assert ppl["source"] == "world" and ppl["ratio"] == pytest.approx(ppl["after"] / ppl["before"])
    assert not list(out.glob(".audit-staging-*"))
    assert runs["disk"]  # the model on disk was never written


def test_same_inputs_same_report_bytes(runs):
    a, b = runs["benign"][1], runs["benign_again"][1]
    for name in (*REPORT_FILES, "graph.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_identity_swapping_edit_fails(runs):
    code, out = runs["harmful"]
    r = report(out)
    assert code == 1 and r["verdict"]["status"] == "fail"
    status = {f["metric"]: f["status"] for f in r["verdict"]["findings"]}
    assert status["relation_specificity"] == "fail"
    cat = r["ripple"]["categories"]["relation_specificity"]
    assert r["metrics"]["relation_specificity"] == pytest.approx(cat["correct"] / cat["n"])
    assert r["metrics"]["relation_specificity"] < 0.8
    # the damage the verdict names is to the edited subject's own other facts
    unintended = [row for row in r["most_affected"] if row["role"] == "unintended"]
    assert unintended and all(row["prompt"].startswith("Lodro Toudein") for row in unintended)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src, self.href = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.src.append(a["src"])
        if "href" in a:
            self.href.append(a["href"])


def test_html_report_is_self_contained(runs):
    _, out = runs["harmful"]
    page = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert len(parser.src) == 2
    for src in parser.src:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "FAIL" in page and "relation_specificity" in page


def test_warn_exit_code_from_policy_and_json_stdout(capfd, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text("warn_exit_code = 1\n[update_norm_ratio]\nwarn = 0.0\n")  # any edit's update > 0: a warning
    out = tmp_path / "run"
    code, stdout, err = audit(capfd, out, *BENIGN, "--policy", policy, "--json")
    assert code == 1, err
    printed = json.loads(stdout)
    assert printed == report(out) and printed["verdict"]["status"] == "warn"
    assert {f["metric"]: f["status"] for f in printed["verdict"]["findings"]}["update_norm_ratio"] == "warn"


def test_batch_audits_each_alone_and_together(capfd, tmp_path):
    edits = tmp_path / "edits.jsonl"
    write_jsonl(edits, [{"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"},
                        {"prompt": "{} works for", "subject": "Baita Vazux", "target_new": "Setresco"}])
    out = tmp_path / "batch"
    code, stdout, err = audit(capfd, out, "--edit", edits, method="memit")
    summary = report(out)
    assert [row["name"] for row in summary["batch"]] == ["edit-01", "edit-02", "together"]
    names = [row["name"] for row in summary["batch"]]
    parts = {name: report(out / name) for name in names}
    assert [len(parts[n]["edits"]) for n in names] == [1, 1, 2]
    assert parts["together"]["mode"] == "batch" and parts[names[0]]["mode"] == "single"
    assert code == max(p["verdict"]["exit_code"] for p in parts.values()) == summary["verdict"]["exit_code"]
    assert [row["status"] for row in summary["batch"]] == [parts[n]["verdict"]["status"] for n in names]
    assert (out / "report.html").is_file() and 'href="together/report.html"' in (out / "report.html").read_text()


def test_sandbox_restores_weights_and_interruption_leaves_no_report(tmp_path, monkeypatch):
    request = EditRequest("{} was born in", "Lodro Toudein", "Kraile")
    setup = load_setup("organism", "rome", [request])
    weights = {k: v.clone() for k, v in setup.model.state_dict().items()}
    items = [dataclasses.replace(it, links=()) for it in world_probe_set(setup.world)[:60]]
    sentences = general_sentences_for(setup.world)[:5]
    result = audit_edits(AuditInputs(setup, items, sentences), setup.requests)
    assert result.metrics["efficacy"] == 1.0
    assert all(torch.equal(v, setup.model.state_dict()[k]) for k, v in weights.items())

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("previous report\n")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("ripple.auditing.measure.score_ripples", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_audit(AuditInputs(setup, items, sentences), setup.requests, AuditConfig(DEFAULT_POLICY, "organism"), out)
    assert all(torch.equal(v, setup.model.state_dict()[k]) for k, v in weights.items())
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert (out / "report.json").read_text() == "previous report\n"


def test_answer_swaps_between_right_answers_are_not_damage():
    items = [ProbeItem("a1", "X", "language", "{} speaks", "L1"), ProbeItem("a2", "X", "language", "{} speaks", "L2"),
             ProbeItem("b", "Y", "born_in", "{} was born in", "C1")]
    before = SimpleNamespace(greedy=("L1", "L1", "C1"), correct=(True, False, True))
    swapped = SimpleNamespace(greedy=("L2", "L2", "C2"), correct=(False, True, False))
    assert answer_swaps(items, before, swapped) == {"a1", "a2"}  # L1 -> L2: both right; C1 -> C2 is not
    wrong = SimpleNamespace(greedy=("L9", "L9", "C1"), correct=(False, False, True))
    assert answer_swaps(items, before, wrong) == set()


CHEAP = ["--set", "v_steps=2", "context_prefixes=0", "stats_samples=300", "layers=0", "fact_token=last", "--force"]


def test_model_without_world_uses_probe_file_and_english_sentences(capfd, tiny_inputs, tmp_path):  # noqa: F811
    path, edit, probes, corpus = tiny_inputs
    out = tmp_path / "run"
    code, stdout, err = cli(capfd, "audit", "--model", path, "--method", "rome", "--edit", edit, "--out", out,
                            "--probes", probes, "--stats-corpus", corpus, "--k", 2, "--quiet", *CHEAP)
    assert code in (0, 1), err
    r = report(out)
    assert r["ripple"] is None and r["perplexity"]["source"] == "english"
    spec = {f["metric"]: f for f in r["verdict"]["findings"]}["relation_specificity"]
    assert spec["status"] == "warn" and spec["note"].startswith("not measured: no other relation")
    assert r["gie"]["n_probes"] == len(tiny_probe_items()) and r["gie"]["edited_ids"] == ["e"]
    assert code == r["verdict"]["exit_code"] and r["verdict"]["status"].upper() in stdout


@pytest.mark.parametrize("case", ["unknown_model", "unknown_method", "bad_json", "prompt_without_subject",
                                  "target_not_in_vocabulary", "out_is_a_file", "policy_unknown_key",
                                  "no_target", "edit_and_prompt"])
def test_bad_input_exits_2_with_one_line_and_no_report(capfd, tmp_path, case):
    args, method, out = list(BENIGN), "rome", tmp_path / "out"
    needle = {"unknown_model": "does not exist", "unknown_method": "unknown editing method 'romee'",
              "bad_json": "not valid JSON", "prompt_without_subject": "'{}'",
              "target_not_in_vocabulary": "outside the model's vocabulary", "out_is_a_file": "is a file",
              "policy_unknown_key": "unknown key 'warm'", "no_target": "missing --target",
              "edit_and_prompt": "not both"}[case]
    model = "organism"
    if case == "unknown_model":
        model = str(tmp_path / "no-such-model")
    elif case == "unknown_method":
        method = "romee"
    elif case == "bad_json":
        bad = tmp_path / "e.json"
        bad.write_text("{not json")
        args = ["--edit", bad]
    elif case == "prompt_without_subject":
        args[1] = "somebody was born in"
    elif case == "target_not_in_vocabulary":
        args[5] = "Qwertyville"
    elif case == "out_is_a_file":
        out.write_text("x")
    elif case == "policy_unknown_key":
        policy = tmp_path / "p.toml"
        policy.write_text("[efficacy]\nwarm = 0.5\n")
        args += ["--policy", policy]
    elif case == "no_target":
        args = args[:4]
    else:
        edit = tmp_path / "e.json"
        edit.write_text(json.dumps({"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}))
        args += ["--edit", edit]
    code, _, err = cli(capfd, "audit", "--model", model, "--method", method, "--out", out, "--quiet", *args)
    line = assert_one_line_error(code, err)
    assert needle in line, line
    assert not (out.is_dir() and any(out.glob("report.*")))


def test_lm_eval_tasks_before_and_after(capfd, tmp_path):
    out = tmp_path / "tasks"
    code, _, err = audit(capfd, out, *BENIGN, "--tasks", "organism_skill", "organism_mc", "--limit", "20")
    assert code == 0, err
    r = report(out)
    lm = r["lm_eval"]
    assert lm["tasks"] == ["organism_skill", "organism_mc"]
    drops = [lm["before"][t]["acc"] - lm["after"][t]["acc"] for t in lm["tasks"]]
    assert r["metrics"]["task_acc_drop"] == pytest.approx(max(drops))
    finding = {f["metric"]: f for f in r["verdict"]["findings"]}["task_acc_drop"]
    assert finding["status"] == "pass" and finding["value"] == pytest.approx(max(drops))
    assert "lm-eval tasks" in (out / "report.md").read_text()


def browser_or_skip():
    """Debian's chromium and playwright, or a skip (a failure where RIPPLE_REQUIRE_BROWSER=1, as .ci/run sets)."""
    import importlib.util
    import os
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = [name for name, ok in (("chromium (apt-get install chromium)", chromium),
                                     ("playwright (pip install -e '.[test]')",
                                      importlib.util.find_spec("playwright"))) if not ok]
    if missing:
        if os.environ.get("RIPPLE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser check needs {', '.join(missing)}")
        pytest.skip(f"no {', '.join(missing)}")
    return chromium


def test_reports_render_in_headless_chromium(runs, tmp_path):
    """The passing and the failing report open in a real browser: a title, every image decoded (all
    inline), no console or page error, no request leaving the file."""
    from benchmarks.audit import browser_check as check

    chromium = browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=check.CHROMIUM_ARGS)
        try:
            results = [check.check_report(browser, runs[name][1] / "report.html", tmp_path / f"{name}.png")
                       for name in ("benign", "harmful")]
        finally:
            browser.close()
    for r in results:
        assert r["ok"], r
        assert r["images"] >= 1 and (tmp_path / Path(r["screenshot"]).name).stat().st_size > 10_000
        # the interactive graph: every graph.json node drawn, hover shows the item, each filter hides its items
        g = r["graph"]
        assert g["drawn"] == g["nodes"] == len(json.loads((runs["benign"][1] / "graph.json").read_text())["nodes"])
        assert len(g["hover"]) == 3 and all(h["ok"] for h in g["hover"]), g["hover"]
        assert {"edited", "kept", "hops<=1"} <= set(g["filters"]) and all(g["filters"].values()), g["filters"]
    harmful = json.loads((runs["harmful"][1] / "graph.json").read_text())
    assert {n["role"] for n in harmful["nodes"]} >= {"edited", "unintended"}  # the failing edit's damage is drawn


def test_view_compares_two_audits_in_one_page(runs, tmp_path, capfd):
    """ripple view: both verdicts and every metric side by side, the differing cells marked, each
    run's graph drawn (the second when opened), in a real browser with no error; the same runs give
    the same bytes; a different edit is not compared item by item, the same edit is."""
    import html

    from benchmarks.audit.browser_check import opened

    benign, harmful = runs["benign"][1], runs["harmful"][1]
    code, stdout, _ = cli(capfd, "view", benign, harmful, "--out", tmp_path / "v.html")
    assert code == 0 and "2 run(s) compared" in stdout
    page = (tmp_path / "v.html").read_text()
    assert '<td class="pass">pass</td>' in page and '<td class="diff fail">fail</td>' in page
    spec = report(harmful)["metrics"]["relation_specificity"]
    assert f'<td class="diff">{spec:.4g}</td>' in page
    # the same edit with other settings: the items whose role or answer differs are listed
    a, b = ({n["id"]: (n["role"], n["answer_after"]) for n in json.loads((d / "graph.json").read_text())["nodes"]}
            for d in (benign, harmful))
    differ = sorted(i for i in a if a[i] != b[i])
    assert differ and f"Probe items whose status differs ({len(differ)} of {len(a)})" in page
    assert all(f"<td>{html.escape(i)}</td>" in page for i in differ)
    cli(capfd, "view", benign, harmful, "--out", tmp_path / "v.html")  # its own page is replaced
    assert (tmp_path / "v.html").read_text() == page
    code, _, _ = cli(capfd, "view", benign, runs["benign_again"][1], "--out", tmp_path / "same.html")
    same = (tmp_path / "same.html").read_text()
    assert code == 0 and "Probe items whose status differs (0 of 936)" in same
    with opened(browser_or_skip(), tmp_path / "v.html") as (pg, errors):
        verdicts = pg.evaluate("Array.from(document.querySelectorAll('td.pass, td.fail')).slice(0, 2).map(c => c.innerText)")
        assert verdicts == ["pass", "fail"]
        n = len(json.loads((harmful / "graph.json").read_text())["nodes"])
        assert pg.evaluate("ripple.graphs.rg1.visibleIds().length") == n
        assert pg.evaluate("ripple.graphs.rg2 === undefined")
        pg.click("details:nth-of-type(2) summary")
        pg.wait_for_function("ripple.graphs.rg2 !== undefined")  # the toggle event comes after the click
        assert pg.evaluate("ripple.graphs.rg2.visibleIds().length") == n
        assert not errors, errors
    assert html.escape(str(benign)) in page


def test_view_refuses_what_it_cannot_compare(runs, tmp_path, capfd):
    from helpers import assert_one_line_error

    benign = runs["benign"][1]
    stress = tmp_path / "stress"
    stress.mkdir()
    (stress / "stress.json").write_text(json.dumps({"config": {}, "curves": {}}))
    theirs = tmp_path / "notes.html"
    theirs.write_text("<p>mine</p>")
    for args, says in (([tmp_path], "is not a ripple run"), ([tmp_path / "nope"], "does not exist"),
                       ([benign, stress], "runs of different kinds cannot be compared"),
                       ([benign, "--out", theirs], "ripple view did not write it"),
                       ([benign, "--out", benign / "report.html"], "ripple view did not write it"),
                       ([benign, "--out", tmp_path], "is a directory")):
        out = [] if "--out" in args else ["--out", tmp_path / "v.html"]
        code, _, err = cli(capfd, "view", *args, *out)
        assert says in assert_one_line_error(code, err), err
    assert theirs.read_text() == "<p>mine</p>" and not (tmp_path / "v.html").exists()


def test_a_budgeted_report_charts_the_benchmarks_recall_against_cost(runs):
    """With a budget, report.html shows every ranker's measured recall against the budget (the
    benchmark's table shipped in ripple/data/gie_recall.json), this audit's budget marked."""
    import re

    from ripple.auditing.render import report_html
    from ripple.auditing.run import budget_estimate
    from ripple.gie.budget import RECALL_TABLE

    r = report(runs["benign"][1])
    r["estimate"] = budget_estimate({"budget": 0.2, "ranker": "key_norm", "n_evaluated": 188, "n_items": 936},
                                    "organism", "rome")
    table = json.loads(RECALL_TABLE.read_text())["organism_rome"]["recall_at_budget"]
    page = report_html(r, {})
    data = json.loads(re.search(r'id="gie-recall-data">(.*?)</script>', page, re.S).group(1))
    assert [s["name"] for s in data["series"]] == sorted(table)
    assert data["series"][0]["points"] == sorted([float(b), v] for b, v in table[sorted(table)[0]].items())
    assert data["marks"] == [{"x": 0.2, "label": "this audit (key_norm)"}] and data["x_log"] is True
    assert "gie-recall" not in report_html(report(runs["benign"][1]), {})  # no budget, no chart


def test_budgeted_audit_equals_the_full_one_at_budget_one_and_says_it_is_an_estimate(capfd, tiny_inputs, tmp_path):
    path, edit, probes, corpus = tiny_inputs
    base = ["audit", "--model", path, "--method", "rome", "--edit", edit, "--probes", probes, "--stats-corpus",
            corpus, "--k", 2, "--quiet", *CHEAP]
    reports = {}
    for name, extra in (("full", []), ("one", ["--budget", "1"]), ("part", ["--budget", "0.2"])):
        code, stdout, err = cli(capfd, *base, "--out", tmp_path / name, *extra)
        assert code in (0, 1), err
        reports[name] = (report(tmp_path / name), stdout, (tmp_path / name / "report.md").read_text())
    full, one, part = (reports[k][0] for k in ("full", "one", "part"))
    assert {k: v for k, v in one.items() if k != "estimate"} == full
    assert one["estimate"]["n_evaluated"] == one["estimate"]["n_items"] == len(tiny_probe_items())
    assert part["estimate"]["n_evaluated"] == 3 and part["estimate"]["budget"] == 0.2
    assert "estimate: 3 of 7 probe items evaluated" in reports["part"][1]
    assert part["estimate"]["note"] in reports["part"][2]
