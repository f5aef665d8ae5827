"""``ripple graph`` in-process: one ROME edit on the bundled organism (files, the edited item, drift
now read where the edit acts), one on a saved tiny gpt2 with a tiny probe file, and one-line errors."""

import contextlib
import io
import json
import re

import networkx as nx
import pytest

from ripple.cli import main
from ripple.editing.from_world import request_for
from ripple.organism.evaluate import load_world
from ripple.organism.paths import model_dir
from ripple.probes.sets import world_probe_set

from helpers import assert_one_line_error, cli, digest, edit_requests, tiny_probe_items, write_jsonl

pytestmark = pytest.mark.slow  # see pyproject.toml's markers: the quick run leaves these out

FILES = ("graph.html", "graph.json", "graph.graphml", "ripple_graph.png", "drift_by_hop.png", "drift_vs_similarity.png",
         "summary.json")
CHEAP = ["--set", "v_steps=2", "context_prefixes=0", "stats_samples=300", "layers=(0,)", "fact_token=last",
         "--force"]


def node_link(path):
    return nx.node_link_graph(json.loads(path.read_text()), edges="edges")


@pytest.fixture(scope="module")
def organism_run(tmp_path_factory):
    """One ROME edit of the organism (its hparams: layer 5, fact_token=last): (code, stdout, out dir,
    world, request, the model files' digests before)."""
    tmp = tmp_path_factory.mktemp("organism_graph")
    world = load_world()
    person = world.persons[0].id
    old = world.objects(person, "citizen_of")[0]
    new = next(e for e in sorted(world.entities) if e.startswith("country:") and e != old)
    request = request_for(world, person, "citizen_of", new)
    edit = tmp / "edit.json"
    edit.write_text(json.dumps({"case_id": request.case_id, "prompt": request.prompt, "subject": request.subject,
                                "target_new": request.target_new, "target_true": request.target_true}))
    disk = digest(model_dir())
    out = tmp / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["graph", "--model", "organism", "--method", "rome", "--edit", str(edit), "--out", str(out)])
    return code, stdout.getvalue(), out, world, request, disk


def test_organism_graph_writes_every_file_and_marks_the_edited_item(organism_run):
    code, stdout, out, world, request, disk = organism_run
    assert code == 0
    assert str(out) in stdout and len(stdout.strip().splitlines()) == 1
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    subject, relation, _ = request.case_id.split("|")
    edited = f"{subject}|{relation}|{world.objects(subject, relation)[0]}"
    assert summary["edited_id"] == edited == summary["profile"]["edited_id"]
    assert summary["method"] == "rome" and summary["edit"]["case_id"] == request.case_id
    assert summary["hparams"]["fact_token"] == "last" and summary["hparams"]["layers"] == [5]
    assert edited in summary["expected"]  # ground truth: the edited fact must change
    assert edited not in summary["profile"]["summary"]["unintended"]
    g = node_link(out / "graph.json")
    assert g.number_of_nodes() == summary["n_probes"] == len(world_probe_set(world))
    assert [n for n in g.nodes if g.nodes[n]["is_edited"]] == [edited]
    # generated answers per node: the edited fact's old answer is no longer generated, nothing else is lost
    assert g.nodes[edited]["gen_before"] is True and g.nodes[edited]["gen_after"] is False
    lost = [n for n, d in g.nodes(data=True) if d["gen_before"] and not d["gen_after"]]
    assert g.graph["generated_lost_unintended"] == len(set(lost) - set(summary["expected"]) - {edited})
    assert "chat_question" not in g.graph  # the organism has no chat template
    # graph.html: the interactive graph holds every node, the edited item marked, the prompt of each
    page = (out / "graph.html").read_text()
    data = json.loads(re.search(r'id="rg-data">(.*?)</script>', page, re.S).group(1))
    assert [n["id"] for n in data["nodes"]] == sorted(g.nodes) and len(data["edges"]) == g.number_of_edges()
    assert [n["id"] for n in data["nodes"] if n["role"] == "edited"] == [edited]
    assert all(n["prompt"] == g.nodes[n["id"]]["prompt"] for n in data["nodes"])
    assert "<noscript><img" in page and "https://" not in page.split("<script>")[0]
    assert digest(model_dir()) == disk  # the model on disk is untouched


def test_organism_drift_is_read_where_the_edit_acts(organism_run):
    """ROME writes layer 5 at the prompt's last token: drift there is > 0 (it was exactly 0 at the
    subject's last token of the middle probed layer, upstream of the edit)."""
    _, _, out, *_ = organism_run
    g = node_link(out / "graph.json")
    assert (g.graph["layer"], g.graph["position"]) == (5, "last")
    edited = g.graph["edited_id"]
    assert g.nodes[edited]["drift"] > 0
    assert sum(g.nodes[n]["drift"] > 0 for n in g.nodes) > 1
    assert all(g.nodes[n]["drift"] == g.nodes[n]["drift_cos_L5"] for n in g.nodes)


def graph_argv(model, edit, out, probes=None, corpus=None, method="rome"):
    return ["graph", "--model", model, "--method", method, "--edit", edit, "--out", out, "--k", 2,
            *(["--probes", probes] if probes else []), *(["--stats-corpus", corpus] if corpus else []), *CHEAP]


def test_tiny_model_with_a_probe_file(capfd, tiny_inputs, tmp_path):
    path, edit, probes, corpus = tiny_inputs
    disk = digest(path)
    out = tmp_path / "run"
    code, stdout, err = cli(capfd, *graph_argv(path, edit, out, probes, corpus))
    assert code == 0, err
    assert str(out) in stdout
    for name in FILES:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["edited_id"] == "e" and summary["expected"] == [] and summary["hparams"]["v_steps"] == 2
    g = node_link(out / "graph.json")
    assert g.number_of_nodes() == len(tiny_probe_items()) and g.nodes["e"]["is_edited"]
    assert (g.graph["layer"], g.graph["position"]) == (0, "last")
    assert digest(path) == disk


@pytest.mark.parametrize("case", ["two_requests", "unknown_method", "probes_missing"])
def test_bad_inputs_exit_2_with_one_line(capfd, tiny_inputs, tmp_path, case):
    path, edit, probes, corpus = tiny_inputs
    method = "rome"
    if case == "two_requests":
        edit = tmp_path / "edits.jsonl"
        write_jsonl(edit, [r.to_dict() for r in edit_requests()])
        needle = "holds 2 requests; ripple graph takes exactly one"
    elif case == "unknown_method":
        method, needle = "romee", "unknown editing method 'romee'"
    else:
        probes, needle = tmp_path / "nope.jsonl", "does not exist; pass a probe set JSONL with --probes"
    out = tmp_path / "run"
    code, _, err = cli(capfd, *graph_argv(path, edit, out, probes, corpus, method))
    assert needle in assert_one_line_error(code, err)
    assert not (out / "summary.json").exists()


def test_budget_one_is_the_full_evaluation_and_a_smaller_one_marks_what_it_evaluated(capfd, tiny_inputs, tmp_path):
    path, edit, probes, corpus = tiny_inputs
    runs = {}
    for name, extra in (("full", []), ("one", ["--budget", "1.0"]), ("part", ["--budget", "0.3"])):
        code, stdout, err = cli(capfd, *graph_argv(path, edit, tmp_path / name, probes, corpus), *extra)
        assert code == 0, err
        runs[name] = (json.loads((tmp_path / name / "graph.json").read_text()),
                      json.loads((tmp_path / name / "summary.json").read_text()), stdout)
    (full, s_full, _), (one, s_one, out_one), (part, s_part, out_part) = runs["full"], runs["one"], runs["part"]
    assert one["nodes"] == full["nodes"] and one["edges"] == full["edges"]
    assert s_one["profile"]["by_hop"] == s_full["profile"]["by_hop"]
    assert all(n["evaluated"] for n in full["nodes"])
    assert "estimate" not in s_full and s_one["estimate"]["n_evaluated"] == len(full["nodes"])
    # 0.3 of the 6 items besides the edited one: 2, plus the edited item
    seen = [n["id"] for n in part["nodes"] if n["evaluated"]]
    assert len(seen) == 3 and "e" in seen and s_part["estimate"]["n_evaluated"] == 3
    assert part["graph"]["budget"] == 0.3 and part["graph"]["budget_ranker"] == "key_sqrt_margin"
    assert all(not n["changed"] and n["drift"] == 0 for n in part["nodes"] if not n["evaluated"])
    by_id = {n["id"]: n for n in full["nodes"]}
    assert all(n == by_id[n["id"]] | {"evaluated": True} for n in part["nodes"] if n["evaluated"])
    assert "estimate: 3 of 7 probe items evaluated" in out_part and "estimate" in out_one


@pytest.mark.parametrize("budget", ["0", "1.5", "lots"])
def test_a_budget_outside_zero_to_one_is_a_one_line_error(capfd, tiny_inputs, tmp_path, budget):
    path, edit, probes, corpus = tiny_inputs
    code, _, err = cli(capfd, *graph_argv(path, edit, tmp_path / "run", probes, corpus), "--budget", budget)
    assert "--budget" in assert_one_line_error(code, err)


def test_budget_with_a_gradient_ranker_and_ranker_without_budget(capfd, tiny_inputs, tmp_path):
    path, edit, probes, corpus = tiny_inputs
    code, stdout, err = cli(capfd, *graph_argv(path, edit, tmp_path / "run", probes, corpus), "--budget", "0.3",
                            "--ranker", "combined")
    assert code == 0, err
    g = json.loads((tmp_path / "run" / "graph.json").read_text())
    assert g["graph"]["budget_ranker"] == "combined" and sum(n["evaluated"] for n in g["nodes"]) == 3
    code, _, err = cli(capfd, *graph_argv(path, edit, tmp_path / "run2", probes, corpus), "--ranker", "taylor")
    assert "pass --budget F with it" in assert_one_line_error(code, err)
    code, _, err = cli(capfd, *graph_argv(path, edit, tmp_path / "run3", probes, corpus), "--budget", "0.3",
                       "--ranker", "tayl")
    assert "tayl" in assert_one_line_error(code, err)
