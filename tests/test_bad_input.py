"""Bad input across every subcommand, table-driven: each case exits 2 (or its documented code) with
one line on stderr that names the problem, creates or changes no output directory, and leaves the
model files as they were."""

import json
import shutil
from pathlib import Path

import pytest

from ripple.organism.paths import model_dir
from ripple.probes.sets import save_probe_set

from helpers import cli, edit_requests, fill, save_tiny_gpt2, stats_corpus, tiny_probe_items, tree_digest

CHEAP = ["--set", "v_steps=2", "context_prefixes=0", "stats_samples=300", "layers=0", "fact_token=last"]
ORGANISM_EDIT = ["--prompt", "{} was born in", "--subject", "Lodro Toudein", "--target", "Kraile"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace: a tiny gpt2 and broken copies of it, edit files, probes, corpora, policies."""
    root = tmp_path_factory.mktemp("bad_input")
    model = root / "gpt2"
    save_tiny_gpt2(model)
    broken = {}
    for name, damage in {"truncated": lambda d: (d / "model.safetensors").write_bytes(
                             (d / "model.safetensors").read_bytes()[:3000]),
                         "empty_weights": lambda d: (d / "model.safetensors").write_bytes(b""),
                         "bad_config": lambda d: (d / "config.json").write_text("{not json"),
                         "unknown_type": lambda d: (d / "config.json").write_text(
                             json.dumps({**json.loads((d / "config.json").read_text()), "model_type": "bert"})),
                         "bin_only": lambda d: ((d / "model.safetensors").unlink(),
                                                (d / "pytorch_model.bin").write_bytes(b"x"))}.items():
        shutil.copytree(model, root / name)
        damage(root / name)
        broken[name] = root / name
    req = edit_requests()[0].to_dict()
    files = {"edit": root / "edit.json", "edits2": root / "edits2.jsonl", "probes": root / "probes.jsonl",
             "corpus": root / "corpus.txt", "empty_corpus": root / "empty.txt", "binary": root / "binary.jsonl",
             "bad_json": root / "bad.json", "empty_edits": root / "empty.jsonl", "txt": root / "edits.txt",
             "long": root / "long.json", "hp_dir": root / "hp_dir", "hp_five": root / "hp_five.json",
             "hp_float": root / "hp_float.json", "hp_list": root / "hp_list.json", "hp_binary": root / "hp_bin.json",
             "policy_unknown": root / "unknown.toml", "policy_bad": root / "bad.toml", "a_file": root / "a_file"}
    files["edit"].write_text(json.dumps(req))
    files["edits2"].write_text("".join(json.dumps(r.to_dict()) + "\n" for r in edit_requests()))
    save_probe_set(tiny_probe_items(), files["probes"])
    files["corpus"].write_text("\n".join(stats_corpus()) + "\n")
    files["empty_corpus"].write_text("\n\n")
    files["binary"].write_bytes(b"\x9f\x00\xff binary \x01")
    files["bad_json"].write_text('{"prompt": "{} w20", ')
    files["empty_edits"].write_text("")
    files["txt"].write_text(json.dumps(req))
    files["long"].write_text(json.dumps({**req, "prompt": "{} " + " ".join(["w20"] * 70)}))
    files["hp_dir"].mkdir()
    files["hp_five"].write_text(json.dumps({"layers": "five"}))
    files["hp_float"].write_text(json.dumps({"v_steps": 2.5}))
    files["hp_list"].write_text("[1, 2]")
    files["hp_binary"].write_bytes(b"\x9f\x92")
    files["policy_unknown"].write_text("[efficacy_of_everything]\nop = \"min\"\nwarn = 0.5\n")
    files["policy_bad"].write_text("[efficacy\nwarn = 0.5\n")
    files["a_file"].write_text("not a directory")
    prev = root / "previous_out"  # an existing --out holding a complete earlier run and a user file
    code, _, err = cli(_NoCapture(), "edit", "--model", model, "--method", "rome", "--edits", files["edit"],
                       "--out", prev, "--stats-corpus", files["corpus"], *CHEAP, "--force")
    assert code == 0, err
    (prev / "notes.txt").write_text("mine")
    return {"root": root, "model": model, "prev": prev, **broken, **files}


class _NoCapture:
    def readouterr(self):
        return "", ""


E, M, C, P = "{edit}", "{model}", "{corpus}", "{probes}"
TINY_EDIT = ["edit", "--model", M, "--method", "rome", "--edits", E, "--stats-corpus", C, *CHEAP]
TINY_AUDIT = ["audit", "--model", M, "--method", "rome", "--edit", E, "--stats-corpus", C, "--probes", P, "--quiet",
              *CHEAP]
TINY_GRAPH = ["graph", "--model", M, "--method", "rome", "--edit", E, "--stats-corpus", C, "--probes", P, *CHEAP]
TRACE = ["trace", "--model", M, "--prompt", "w10 w11 w12 w13", "--subject", "w11 w12", "--samples", "2"]
STRESS = ["stress", "--model", M, "--method", "rome", "--edit-file", "{edits2}", "--stats-corpus", C, "--quiet",
          *CHEAP]
ORG_STRESS = ["stress", "--model", "organism", "--method", "rome", "--quiet"]

# (case id, argv with placeholders, a phrase the one-line error must contain[, exit code])
CASES = [
    # ---- edit: options and hyperparameters
    ("edit-chunk-0", [*TINY_EDIT, "--sequential", "--chunk", "0"], "--chunk: must be a whole number of at least 1"),
    ("edit-chunk-neg", [*TINY_EDIT, "--chunk", "-3"], "--chunk: must be a whole number of at least 1"),
    ("edit-chunk-text", [*TINY_EDIT, "--chunk", "two"], "--chunk: must be a whole number"),
    ("edit-rect-big", [*TINY_EDIT, "--rect", "1.5"], "--rect: must be a share in (0, 1]"),
    ("edit-rect-nan", [*TINY_EDIT, "--rect", "nan"], "--rect: must be a finite number"),
    ("edit-rect-neg", [*TINY_EDIT, "--rect", "-0.5"], "--rect: must be a share in (0, 1]"),
    ("edit-rect-zero", [*TINY_EDIT, "--rect", "0"], "--rect: must be a share in (0, 1]"),
    ("edit-vlr-nan", [*TINY_EDIT, "v_lr=nan"], "v_lr must be a finite number"),
    ("edit-vlr-neg", [*TINY_EDIT, "v_lr=-1"], "v_lr must be a finite number above 0"),
    ("edit-vsteps-neg", [*TINY_EDIT, "v_steps=-1"], "v_steps must be a whole number of at least 1"),
    ("edit-vsteps-float", [*TINY_EDIT, "v_steps=2.5"], "bad value '2.5' for hyperparameter 'v_steps'"),
    ("edit-set-rect", [*TINY_EDIT, "rect=2"], "rect must be a share in (0, 1]"),
    ("edit-set-unknown", [*TINY_EDIT, "bogus=1"], "unknown hyperparameter 'bogus'"),
    ("edit-set-no-eq", [*TINY_EDIT, "v_steps"], "write NAME=VALUE"),
    ("edit-fact-token", [*TINY_EDIT, "fact_token=middle"], "unknown fact_token 'middle'"),
    ("edit-layer-range", [*TINY_EDIT, "layers=(5,)"], "layer 5 is out of range for a 2-layer model"),
    ("edit-layer-frac", [*TINY_EDIT, "layer_fracs=1.5"], "layer_fracs must be a number in [0, 1]"),
    ("edit-kl-prompt", [*TINY_EDIT, "kl_prompts=w20 w21"], "has no {} for the subject"),
    ("edit-stats-samples", [*TINY_EDIT, "stats_samples=0"], "stats_samples must be a whole number of at least 1"),
    ("edit-hp-five", [*TINY_EDIT, "--hparams", "{hp_five}"], "layers must be a list of whole numbers, got 'five'"),
    ("edit-hp-float", [*TINY_EDIT, "--hparams", "{hp_float}"], "v_steps must be a whole number, got 2.5"),
    ("edit-hp-dir", [*TINY_EDIT, "--hparams", "{hp_dir}"], "is a directory; pass a JSON file"),
    ("edit-hp-missing", [*TINY_EDIT, "--hparams", "{root}/nope.json"], "does not exist"),
    ("edit-hp-list", [*TINY_EDIT, "--hparams", "{hp_list}"], "must hold a JSON object"),
    ("edit-hp-binary", [*TINY_EDIT, "--hparams", "{hp_binary}"], "is not UTF-8 text (byte 0x9f"),
    # ---- edit: request files
    ("edit-binary", ["edit", "--model", M, "--method", "rome", "--edits", "{binary}", "--out", "{out}"],
     "is not UTF-8 text (byte 0x9f"),
    ("edit-missing-file", ["edit", "--model", M, "--method", "rome", "--edits", "{root}/nope.jsonl"], "does not exist"),
    ("edit-dir-file", ["edit", "--model", M, "--method", "rome", "--edits", "{hp_dir}"], "is a directory"),
    ("edit-txt-suffix", ["edit", "--model", M, "--method", "rome", "--edits", "{txt}"], "must end in .json"),
    ("edit-empty-file", ["edit", "--model", M, "--method", "rome", "--edits", "{empty_edits}"], "no edit requests"),
    ("edit-bad-json", ["edit", "--model", M, "--method", "rome", "--edits", "{bad_json}"], "line 1"),
    ("edit-rome-batch", ["edit", "--model", M, "--method", "rome", "--edits", "{edits2}"],
     "pass --sequential for 2 requests"),
    ("edit-unknown-method", ["edit", "--model", M, "--method", "romee", "--edits", E], "unknown editing method 'romee'"),
    ("edit-too-long", [*TINY_EDIT[:6], "{long}", *TINY_EDIT[7:]], "more than the model's context of 64"),
    ("edit-corpus-missing", [*TINY_EDIT[:8], "{root}/nope.txt", *TINY_EDIT[9:]], "statistics corpus"),
    ("edit-corpus-empty", [*TINY_EDIT[:8], "{empty_corpus}", *TINY_EDIT[9:]], "is empty"),
    ("corpus-bad-count", ["edit", "--model", M, "--method", "rome", "--edits", E, "--stats-corpus", "samples:0",
                          *CHEAP], "at least 1"),
    ("corpus-world-not-organism", ["edit", "--model", M, "--method", "rome", "--edits", E, "--stats-corpus", "world",
                                   *CHEAP], "needs a model trained on a world"),
    ("corpus-missing-file", ["edit", "--model", M, "--method", "rome", "--edits", E, "--stats-corpus", "nothing.txt",
                             *CHEAP], "does not exist"),
    # ---- edit: where the outputs go
    ("edit-out-is-model", [*TINY_EDIT, "--out", M], "is the model directory itself"),
    ("edit-out-is-file", [*TINY_EDIT, "--out", "{a_file}"], "is a file, not a directory"),
    ("edit-out-under-file", [*TINY_EDIT, "--out", "{a_file}/sub"], "which is a file"),
    ("edit-out-holds-input", ["edit", "--model", M, "--method", "rome", "--edits", "{prev}/metrics.json",
                              "--stats-corpus", C, "--out", "{prev}"], "is inside --out"),
    ("edit-out-empty", [*TINY_EDIT, "--out", ""], "--out: must not be empty"),
    # ---- models
    ("model-truncated", [*TINY_EDIT[:2], "{truncated}", *TINY_EDIT[3:]], "is corrupt or truncated"),
    ("model-empty-weights", [*TINY_EDIT[:2], "{empty_weights}", *TINY_EDIT[3:]], "is corrupt or truncated"),
    ("model-bad-config", [*TINY_EDIT[:2], "{bad_config}", *TINY_EDIT[3:]], "config.json is not valid JSON (line 1"),
    ("model-unknown-type", [*TINY_EDIT[:2], "{unknown_type}", *TINY_EDIT[3:]], "bert"),
    ("model-bin-only", [*TINY_EDIT[:2], "{bin_only}", *TINY_EDIT[3:]], "safetensors only"),
    ("model-missing", [*TINY_EDIT[:2], "{root}/no_model", *TINY_EDIT[3:]], "does not exist"),
    ("model-hub-offline", [*TINY_EDIT[:2], "gpt2-nonexistent", *TINY_EDIT[3:]], "hub is offline"),
    ("threads-zero", ["--threads", "0", *TINY_EDIT], "thread count '0'"),
    ("threads-env", [*TINY_EDIT], "thread count 'abc'", 2, {"RIPPLE_THREADS": "abc"}),
    # ---- audit
    ("audit-k-neg", [*TINY_AUDIT, "--k", "-1"], "--k: must be a whole number of at least 0"),
    ("audit-k-huge", [*TINY_AUDIT, "--k", "1000000"], "more neighbours than the 7-item probe set"),
    ("audit-tasks-empty", [*TINY_AUDIT, "--tasks"], "--tasks needs at least one task name"),
    ("audit-limit-0", [*TINY_AUDIT, "--limit", "0"], "--limit: must be a whole number of at least 1"),
    ("audit-seed-neg", [*TINY_AUDIT, "--seed", "-1"], "--seed: must be a whole number of at least 0"),
    ("audit-rect-0", [*TINY_AUDIT, "--rect", "0"], "--rect: must be a share in (0, 1]"),
    ("audit-policy-unknown", [*TINY_AUDIT, "--policy", "{policy_unknown}"],
     "[efficacy_of_everything] is not a metric an audit measures; known:"),
    ("audit-policy-bad", [*TINY_AUDIT, "--policy", "{policy_bad}"], "is not valid TOML"),
    ("audit-policy-missing", [*TINY_AUDIT, "--policy", "{root}/nope.toml"], "not found"),
    ("audit-probes-missing", [*TINY_AUDIT[:10], "{root}/nope.jsonl", *TINY_AUDIT[11:]], "does not exist"),
    ("audit-edit-and-prompt", [*TINY_AUDIT, "--prompt", "{} w20", "--subject", "w10", "--target", "w30"], "not both"),
    ("audit-no-target", ["audit", "--model", M, "--method", "rome", "--prompt", "{} w20", "--subject", "w10"],
     "missing --target"),
    ("audit-out-is-model", [*TINY_AUDIT, "--out", M], "is the model directory itself"),
    ("audit-policy-in-out", [*TINY_AUDIT, "--policy", "{prev}/notes.txt", "--out", "{prev}"], "is inside --out"),
    ("audit-organism-oov", ["audit", "--model", "organism", "--method", "rome", *ORGANISM_EDIT[:4], "--target",
                            "Zzyzx"], "outside the model's vocabulary"),
    ("audit-organism-wrong-type", ["audit", "--model", "organism", "--method", "rome", *ORGANISM_EDIT[:4],
                                   "--target", "Ledroia"], "target 'Ledroia' is a country, but '{} was born in' asks"),
    # ---- graph
    ("graph-k-neg", [*TINY_GRAPH, "--k", "-2"], "--k: must be a whole number of at least 0"),
    ("graph-two-requests", [*TINY_GRAPH[:6], "{edits2}", *TINY_GRAPH[7:]], "ripple graph takes exactly one"),
    ("graph-k-huge", [*TINY_GRAPH, "--k", "50"], "more neighbours than the 7-item probe set"),
    ("graph-out-is-model", [*TINY_GRAPH, "--out", M], "is the model directory itself"),
    # ---- trace
    ("trace-samples-0", [*TRACE, "--samples", "0"], "--samples: must be a whole number of at least 1"),
    ("trace-noise-0", [*TRACE, "--noise", "0"], "--noise: must be a finite number above 0"),
    ("trace-noise-neg", [*TRACE, "--noise", "-1"], "--noise: must be a finite number above 0"),
    ("trace-window-0", [*TRACE, "--window", "0"], "--window: must be a whole number of at least 1"),
    ("trace-too-long", ["trace", "--model", M, "--prompt", "{} " + " ".join(["w20"] * 70), "--subject", "w11"],
     "more than the model's context of 64"),
    ("trace-empty-subject", ["trace", "--model", M, "--prompt", "w10 {}", "--subject", ""], "--subject: must not be"),
    ("trace-subject-absent", ["trace", "--model", M, "--prompt", "w10 w13", "--subject", "w11"], "does not occur"),
    ("trace-out-is-file", [*TRACE, "--out", "{a_file}"], "is a file, not a directory"),
    # ---- stress
    ("stress-edits-0", [*STRESS, "--edits", "0", "--every", "1"], "--edits: must be a whole number of at least 1"),
    ("stress-every-0", [*STRESS, "--edits", "2", "--every", "0"], "--every: must be a whole number of at least 1"),
    ("stress-short-file", [*STRESS, "--edits", "5", "--every", "1"], "holds 2 edit request(s), fewer than the 5"),
    ("stress-tasks-empty", [*STRESS, "--edits", "2", "--every", "1", "--tasks"], "--tasks needs at least one"),
    ("stress-ratio-1", [*STRESS, "--edits", "2", "--every", "1", "--collapse-ratio", "1"], "must be above 1"),
    ("stress-floor-0", [*STRESS, "--edits", "2", "--every", "1", "--task-floor", "0"], "must be between 0 and 1"),
    ("stress-method-option", [*STRESS[:4], "rome+foo", *STRESS[5:], "--edits", "2", "--every", "1"],
     "unknown method option"),
    # without a world.json, edits are sampled from the real-world graph: the tiny model cannot spell them
    ("stress-graph-words-unknown", ["stress", "--model", M, "--method", "rome", "--edits", "2", "--every", "1"],
     "use words the model knows"),
    ("stress-organism-twice", [*ORG_STRESS, "--compare", "rome", "--edits", "2", "--every", "1"], "named twice"),
    # ---- organism, and argparse itself
    ("organism-world-file", ["organism", "world", "--out", "{a_file}"], "is a file, not a directory"),
    ("organism-train-set", ["organism", "train", "--out", "{out}", "--set", "n_layer"], "bad --set override"),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("missing-required", ["edit", "--model", M], "the following arguments are required"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, ws, capfd, tmp_path, monkeypatch):
    name, argv, needle, *rest = case
    code_expected = rest[0] if rest else 2
    for key, value in (rest[1] if len(rest) > 1 else {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RIPPLE_CACHE", str(ws["root"] / "cache"))
    out = tmp_path / "out"
    argv = fill(argv, ws, out)
    if "--out" not in argv:
        argv += ["--out", str(out)]
    out_arg = Path(argv[argv.index("--out") + 1]) if argv[argv.index("--out") + 1] else None
    out_existed = out_arg is not None and out_arg.exists()
    watched = {key: tree_digest(ws[key]) for key in ("model", "prev", "truncated", "bad_config")}
    organism = tree_digest(model_dir())
    before_out = tree_digest(out)
    code, stdout, err = cli(capfd, *argv)
    lines = err.strip().splitlines()
    assert code == code_expected, (code, err)
    assert len(lines) == 1 and lines[0].startswith("ripple: error: "), err
    assert needle in lines[0], lines[0]
    assert tree_digest(out) == before_out  # no output directory created or changed
    for key, digest in watched.items():
        assert tree_digest(ws[key]) == digest, key  # the inputs and the earlier run are untouched
    assert tree_digest(model_dir()) == organism
    if out_arg is not None and not out_existed:
        assert not out_arg.exists(), out_arg  # a failed run leaves no new directory behind


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60
