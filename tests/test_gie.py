"""GIE: drift, kNN edges, hops, profile buckets and counts on hand-built states (no model), the
files and figures, and one real ROME edit on a tiny gpt2 that must leave every weight as it was."""

import json
import math

import networkx as nx
import pytest
import torch

from ripple.arch import get_spec
from ripple.editing.context import EditContext
from ripple.editing.hparams import resolve_hparams
from ripple.errors import RippleError
from ripple.gie import (
    GraphOptions,
    ItemState,
    build_graph,
    find_edited_item,
    gie_for_edit,
    measure_items,
    ripple_profile,
    save_graph,
)
from ripple.gie.plots import plot_drift_by_hop, plot_drift_vs_similarity, plot_ripple_graph
from ripple.probes.record import plain_hidden_states
from ripple.probes.sets import ProbeItem, ProbeLink

from helpers import edit_requests, make_tiny_model, stats_corpus, tiny_probe_items, word_ids


def items_for(n, links=None):
    links = links or {}
    return [ProbeItem(f"i{j:03d}", f"s{j}", "r", "{} is", "a", links=tuple(ProbeLink(t, k) for t, k in
                                                                              links.get(f"i{j:03d}", ())))
            for j in range(n)]


def state(ids, reps, greedy=None, logp=None):
    n = len(ids)
    return ItemState(tuple(ids), reps, tuple(greedy or ["x"] * n),
                     torch.tensor(logp or [0.0] * n, dtype=torch.float64), (True,) * n)


def random_states(n, hidden=6, seed=0, changed=()):
    g = torch.Generator().manual_seed(seed)
    b = {0: torch.randn(n, hidden, generator=g), 1: torch.randn(n, hidden, generator=g)}
    a = {L: t + 0.1 * torch.randn(n, hidden, generator=g) for L, t in b.items()}
    ids = [f"i{j:03d}" for j in range(n)]
    after = ["y" if j in changed else "x" for j in range(n)]
    return state(ids, b), state(ids, a, after)


def cos(u, v):
    dot = sum(x * y for x, y in zip(u, v))
    return dot / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))


def test_drift_numbers_match_hand_computation():
    items = items_for(3)
    ids = [it.id for it in items]
    b0 = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 2]])
    a0 = torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 3]])
    b1 = torch.tensor([[3.0, 4, 0], [0, 1, 0], [1, 0, 0]])
    a1 = torch.tensor([[3.0, 4, 0], [0, 2, 0], [-1, 0, 0]])
    before = state(ids, {0: b0, 1: b1}, logp=[-1.0, -2.0, -3.0])
    after = state(ids, {0: a0, 1: a1}, greedy=["x", "z", "x"], logp=[-1.5, -2.0, -1.0])
    g = build_graph(items, before, after, "i000", k=1, layer=0)
    expect_cos = {0: [1.0, 1 - 1 / math.sqrt(2), 0.0], 1: [0.0, 0.0, 2.0]}
    expect_l2 = {0: [math.sqrt(2), 1 / math.sqrt(2), 0.5], 1: [0.0, 1.0, 2.0]}
    for j, node in enumerate(ids):
        d = g.nodes[node]
        for L in (0, 1):
            assert d[f"drift_cos_L{L}"] == pytest.approx(expect_cos[L][j], abs=1e-12)
            assert d[f"drift_l2_L{L}"] == pytest.approx(expect_l2[L][j], abs=1e-12)
        assert d["drift_cos"] == pytest.approx([expect_cos[0][j], expect_cos[1][j]], abs=1e-12)
        assert d["drift"] == pytest.approx(expect_cos[0][j], abs=1e-12)
    assert [g.nodes[n]["delta_logp"] for n in ids] == [-0.5, 0.0, 2.0]
    assert [g.nodes[n]["changed"] for n in ids] == [False, True, False]
    assert g.nodes["i001"]["sim_to_edited"] == pytest.approx(1 / math.sqrt(2))
    assert [g.nodes[n]["sim_rank"] for n in ids] == [0, 1, 2]
    assert g.nodes["i000"]["is_edited"] and not g.nodes["i001"]["is_edited"]
    # the default layer is the middle probed one: index 1 of (0, 1)
    assert build_graph(items, before, after, "i000", k=1).graph["layer"] == 1


def test_knn_edges_equal_brute_force_cosine_neighbours():
    n, k = 14, 3
    before, after = random_states(n)
    items = items_for(n)
    g = build_graph(items, before, after, "i000", k=k, layer=1)
    x = before.reps[1].tolist()
    expected = set()
    for i in range(n):
        sims = sorted(((cos(x[i], x[j]), j) for j in range(n) if j != i), reverse=True)
        expected |= {frozenset((f"i{i:03d}", f"i{j:03d}")) for _, j in sims[:k]}
    got = {frozenset((u, v)) for u, v, d in g.edges(data=True) if d["kind"] == "knn"}
    assert got == expected
    for u, v, d in g.edges(data=True):
        assert d["similarity"] == pytest.approx(cos(x[int(u[1:])], x[int(v[1:])]), abs=1e-9)
    ranks = sorted(range(1, n), key=lambda j: -cos(x[0], x[j]))
    assert [g.nodes[f"i{j:03d}"]["sim_rank"] for j in ranks] == list(range(1, n))


def chain():
    """i000 - i001 - i002 - i003 - i004 - i005 by links, i006 alone."""
    kinds = ["same_subject", "object_is_subject", "same_object", "inverse", "same_subject"]
    links = {f"i{j:03d}": [(f"i{j + 1:03d}", kinds[j])] for j in range(5)}
    links["i001"].append(("i000", "inverse"))  # a second link type on the same pair
    return items_for(7, links)


def test_hops_over_hand_drawn_links_and_profile_counts():
    items = chain()
    before, after = random_states(7, changed={0, 2, 5, 6})
    g = build_graph(items, before, after, "i000", k=0)
    assert [g.nodes[f"i{j:03d}"]["hops"] for j in range(7)] == [0, 1, 2, 3, 4, 5, None]
    assert g.edges["i000", "i001"]["kinds"] == ["same_subject", "inverse"]
    assert g.edges["i000", "i001"]["kind"] == "same_subject"
    assert g.edges["i002", "i003"]["kind"] == "same_object"
    p = ripple_profile(g, expected={"i002"})
    hop = {b: (s["n"], s["n_changed"]) for b, s in p["by_hop"].items()}
    assert hop == {"0": (1, 1), "1": (1, 0), "2": (1, 1), "3": (1, 0), "4+": (2, 1), "unreachable": (1, 1)}
    drift = [g.nodes[f"i{j:03d}"]["drift"] for j in range(7)]
    assert p["by_hop"]["4+"]["drift_mean"] == pytest.approx((drift[4] + drift[5]) / 2)
    assert p["by_hop"]["4+"]["share_changed"] == 0.5
    s = p["summary"]
    assert (s["n_items"], s["n_changed_total"], s["n_changed_unintended"]) == (7, 4, 2)
    assert s["unintended"] == ["i005", "i006"] and s["max_hop_changed"] == 5 and s["n_changed_unreachable"] == 1
    assert ripple_profile(g)["summary"]["n_changed_unintended"] == 3
    assert {t: v["n"] for t, v in p["by_link_type"].items()} == {"inverse": 1, "same_subject": 1}


def test_similarity_rank_buckets():
    n = 130
    changed = {j for j in range(n) if j % 3 == 0}
    before, after = random_states(n, changed=changed)
    g = build_graph(items_for(n), before, after, "i007", k=0, layer=0)
    x = before.reps[0].tolist()
    order = [7] + sorted((j for j in range(n) if j != 7), key=lambda j: -cos(x[7], x[j]))
    bounds = {"0": (0, 0), "1-5": (1, 5), "6-20": (6, 20), "21-100": (21, 100), "101+": (101, n - 1)}
    p = ripple_profile(g)
    for name, (lo, hi) in bounds.items():
        members = order[lo : hi + 1]
        assert p["by_sim_rank"][name]["n"] == len(members), name
        assert p["by_sim_rank"][name]["n_changed"] == sum(j in changed for j in members), name
    assert p["by_hop"]["unreachable"]["n"] == n - 1


def nan_to_none(v):
    if isinstance(v, list):
        return [nan_to_none(x) for x in v]
    return None if isinstance(v, float) and math.isnan(v) else v


def test_files_round_trip_and_are_deterministic(tmp_path):
    items = chain()
    before, after = random_states(7, changed={2})
    after.reps[0][3] = float("nan")  # a non-finite drift must still give valid JSON and GraphML
    g = build_graph(items, before, after, "i000", k=2)
    save_graph(g, tmp_path / "a")
    save_graph(build_graph(items, before, after, "i000", k=2), tmp_path / "b")
    for name in ("graph.json", "graph.graphml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    back = nx.node_link_graph(json.loads((tmp_path / "a" / "graph.json").read_text()), edges="edges")
    assert set(back.nodes) == set(g.nodes) and {frozenset(e) for e in back.edges} == {frozenset(e) for e in g.edges}
    assert all(back.nodes[n] == {k: nan_to_none(v) for k, v in g.nodes[n].items()} for n in g.nodes)
    assert all(back.edges[e] == g.edges[e] for e in g.edges)
    assert back.nodes["i002"]["changed"] is True
    assert back.nodes["i003"]["drift_cos"][0] is None
    assert back.nodes["i001"]["drift_cos"] == g.nodes["i001"]["drift_cos"]
    assert back.graph["edited_id"] == "i000"
    gml = nx.read_graphml(tmp_path / "a" / "graph.graphml")
    assert set(gml.nodes) == set(g.nodes)
    assert gml.nodes["i001"]["sim_rank"] == g.nodes["i001"]["sim_rank"]
    assert [float(v) for v in gml.nodes["i001"]["drift_cos"].split(",")] == g.nodes["i001"]["drift_cos"]
    save_graph(build_graph(items, before, after, "i000", k=0), tmp_path / "c")  # i006 unreachable
    back = nx.node_link_graph(json.loads((tmp_path / "c" / "graph.json").read_text()), edges="edges")
    assert back.nodes["i006"]["hops"] is None
    assert "hops" not in nx.read_graphml(tmp_path / "c" / "graph.graphml").nodes["i006"]


@pytest.mark.parametrize("n", [7, 130])
def test_plots_write_png_files(tmp_path, n):
    items = chain() if n == 7 else items_for(n)
    before, after = random_states(n, changed={1, 3})
    g = build_graph(items, before, after, "i000", k=3)
    paths = [tmp_path / "graph.png", tmp_path / "hops.png", tmp_path / "sim.png"]
    plot_ripple_graph(g, paths[0])
    plot_drift_by_hop(ripple_profile(g), paths[1])
    plot_drift_vs_similarity(g, paths[2])
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000, p


def test_bad_inputs_raise_one_line_errors():
    items = chain()
    before, after = random_states(7)
    for call in (lambda: build_graph(items, before, after, "nope"),
                 lambda: build_graph(items[:6], before, after, "i000"),
                 lambda: build_graph(items, before, after, "i000", layer=5),
                 lambda: find_edited_item(items, edit_requests()[0]),
                 lambda: find_edited_item(items, edit_requests()[0], edited_id="i001")):
        with pytest.raises(RippleError) as err:
            call()
        assert "\n" not in str(err.value)


# --- on a tiny model ----------------------------------------------------------------------------

def test_measure_items_matches_plain_forward(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    items = tiny_probe_items()
    st = measure_items(model, tiny_tokenizer, None, items, layers=[0])
    plain = plain_hidden_states(model, tiny_tokenizer, items, positions=("subject_last",))
    assert torch.allclose(st.reps[0], plain["blocks.0.out@subject_last"], atol=1e-6)
    for j, item in enumerate(items):
        with torch.no_grad():
            logits = model(input_ids=word_ids(item.rendered)).logits[0, -1].double()
        assert st.greedy[j] == f"w{int(logits.argmax()) - 3}"
        answer = int(item.answer[1:]) + 3
        assert st.logp[j].item() == pytest.approx(torch.log_softmax(logits, -1)[answer].item(), abs=1e-4)


def test_gie_for_edit_restores_every_weight_and_marks_the_edited_item(tiny_tokenizer):
    model = make_tiny_model("gpt2")
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    ctx = EditContext(model, tiny_tokenizer, get_spec(model), stats_corpus(), use_disk_cache=False)
    hp = resolve_hparams("rome", "gpt2", 2, overrides=["v_steps=3", "context_prefixes=0", "stats_samples=300",
                                                       "layers=(0,)", "fact_token=last"])
    g, profile = gie_for_edit(ctx, "rome", hp, tiny_probe_items(), edit_requests()[0], GraphOptions(k=2, force=True),
                              expected={"s2"})
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert g.graph["edited_id"] == "e" and g.nodes["e"]["is_edited"] and g.nodes["e"]["hops"] == 0
    # drift is read where the edit acts: its last layer (0) at the prompt's last token (fact_token=last)
    assert g.nodes["e"]["sim_rank"] == 0 and g.graph["layers"] == [0, 1] and g.graph["layer"] == 0
    assert g.graph["position"] == "last" and profile["position"] == "last"
    assert sum(g.nodes[n]["is_edited"] for n in g.nodes) == 1
    assert max(g.nodes[n]["drift_cos_L1"] for n in g.nodes) > 0  # measured on the edited model
    assert g.nodes["e"]["delta_logp"] != 0
    assert profile["summary"]["n_items"] == 7 and profile["edited_id"] == "e"


_PLOT_SCRIPT = """
import sys, networkx as nx
from ripple.gie.plots import plot_ripple_graph
g = nx.Graph(edited_id="n000", layer=1)
for i in range(200):
    g.add_node(f"n{i:03d}", drift=(i * 37 % 101) / 101, changed=i % 17 == 0)
for i in range(200):
    g.add_edge(f"n{i:03d}", f"n{(i * 7 + 3) % 200:03d}", kind="knn" if i % 3 else "same_subject")
    g.add_edge("n000", f"n{i:03d}", kind="knn") if i % 50 == 1 else None
plot_ripple_graph(g, sys.argv[1])
"""


@pytest.mark.slow
def test_ripple_graph_figure_is_the_same_in_every_process(tmp_path):
    """More nodes than are drawn (a subgraph): its layout must not follow Python's per-process
    string hashing, or the same audit gives a different report.html in each run."""
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"g{seed}.png"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-c", _PLOT_SCRIPT, str(out)], check=True, env=env)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
