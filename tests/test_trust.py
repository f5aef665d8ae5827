"""Trust (issue 38): ripple never destroys a user's file and never accepts nonsense silently.

Table-driven, one class of fault per block (as tests/test_bad_input.py): each case exits 2 with one
line on stderr that names the problem, leaves every file in ``--out`` that ripple did not write as it
was (and creates no output directory), and leaves the inputs and the model files unchanged. Then the
behaviours that are not errors: duplicates merged, a pipe read, an edited model keeping its setup,
``--quiet`` silencing every bar, a full disk.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ripple.organism.paths import model_dir
from ripple.probes.sets import save_probe_set

from helpers import (
    assert_one_line_error,
    cli,
    edit_requests,
    fill,
    save_tiny_gpt2,
    stats_corpus,
    tiny_probe_items,
    tree_digest,
)

ROOT = Path(__file__).resolve().parents[1]
CHEAP = ["--set", "v_steps=2", "context_prefixes=0", "stats_samples=300", "layers=0", "fact_token=last"]
M, E, C, P = "{model}", "{edit}", "{corpus}", "{probes}"
TINY_EDIT = ["edit", "--model", M, "--method", "rome", "--edits", E, "--stats-corpus", C, *CHEAP]
TINY_AUDIT = ["audit", "--model", M, "--method", "rome", "--edit", E, "--stats-corpus", C, "--probes", P, "--quiet",
              *CHEAP]
TINY_GRAPH = ["graph", "--model", M, "--method", "rome", "--edit", E, "--stats-corpus", C, "--probes", P, *CHEAP]
TINY_STRESS = ["stress", "--model", M, "--method", "rome", "--edit-file", "{edits2}", "--stats-corpus", C, "--quiet",
               "--edits", "2", "--every", "1", *CHEAP]
TRACE = ["trace", "--model", M, "--prompt", "w10 w11 w12 w13", "--subject", "w11 w12", "--samples", "2"]
ORG = ["--model", "organism", "--method", "rome"]
ORG_AUDIT = ["audit", *ORG, "--prompt", "{} was born in", "--target", "Kraile", "--quiet"]
ORG_TRACE = ["trace", "--model", "organism", "--prompt", "{} was born in", "--samples", "1"]


def _user_file(name, text="the user's own"):
    def prepare(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return prepare


def _user_folder(name):
    def prepare(out):
        (out / name).mkdir(parents=True)
        (out / name / "keep.txt").write_text("the user's own")
    return prepare


def _saved_state(out, method):
    """A stress run's saved checkpoint of ``method`` in ``out`` (2. saved state is never thrown away)."""
    (out / ".ripple" / "resume").mkdir(parents=True)
    (out / ".ripple" / "resume" / f"{method}.json").write_text(json.dumps({"method": method, "key": {}}))


# (case id, argv with placeholders, a phrase the one-line error must contain, optional prepare(out))
FOREIGN = [  # 1. never touch what ripple did not write
    ("edit-user-config", TINY_EDIT, "config.json is a file ripple did not write", _user_file("config.json")),
    ("edit-user-tokenizer", TINY_EDIT, "tokenizer.json is a file ripple did not write",
     _user_file("tokenizer.json")),
    ("audit-user-report", TINY_AUDIT, "report.md is a file ripple did not write", _user_file("report.md")),
    ("audit-user-png", TINY_AUDIT, "ripple_graph.png is a file ripple did not write",
     _user_file("ripple_graph.png")),
    ("audit-batch-user-folder", [*TINY_AUDIT[:6], "{edits2}", *TINY_AUDIT[7:]],
     "edit-01 is a folder ripple did not write", _user_folder("edit-01")),
    ("graph-user-json", TINY_GRAPH, "graph.json is a file ripple did not write", _user_file("graph.json")),
    ("trace-user-json", TRACE, "trace.json is a file ripple did not write", _user_file("trace.json")),
    ("stress-user-md", TINY_STRESS, "stress.md is a file ripple did not write", _user_file("stress.md")),
    ("mitigate-user-json", ["mitigate", "--model", M, "--method", "memit", "--edit", E, "--stats-corpus", C,
                            "--probes", P, *CHEAP], "mitigation.json is a file ripple did not write",
     _user_file("mitigation.json")),
    ("organism-world-user-json", ["organism", "world"], "world.json is a file ripple did not write",
     _user_file("world.json")),
    ("organism-train-user-config", ["organism", "train", "--set", "steps=1"], "config.json is a file ripple did "
     "not write", _user_file("config.json")),
    ("rledit-user-meta", ["rledit", "train", "--model", M, "--edits", "{edits2}", "--stats-corpus", C, "--quiet"],
     "hypernet.json is a file ripple did not write", _user_file("hypernet.json")),
    ("plain-report-without-manifest", TINY_AUDIT, "report.json is a file ripple did not write",
     _user_file("report.json", "{}")),
    ("dot-ripple-is-a-file", TINY_AUDIT, "is not ripple's folder", _user_file(".ripple")),
    ("stress-partial-without-resume", TINY_STRESS, "holds a partial run of rome; pass --resume",
     lambda out: _saved_state(out, "rome")),
    ("stress-partial-other-method", [*TINY_STRESS[:4], "memit", *TINY_STRESS[5:], "--resume"],
     "is of rome, and --method/--compare now name memit", lambda out: _saved_state(out, "rome")),
    ("user-link-named-like-output", TINY_AUDIT, "report.html is a file ripple did not write",
     lambda out: (out.mkdir(parents=True), (out.parent / "elsewhere.html").write_text("the user's"),
                  (out / "report.html").symlink_to(out.parent / "elsewhere.html"))),
]

UNREADABLE = [  # 3. and 8. what the model cannot read is refused
    ("audit-lowercase-subject", [*ORG_AUDIT, "--subject", "lodro toudein"],
     "did you mean 'Lodro Toudein was born in'?", None),
    ("edit-lowercase-subject", ["edit", *ORG, "--edits", "{org_lower}"], "did you mean 'Lodro Toudein was born in'?",
     None),
    ("edit-unknown-paraphrase", ["edit", *ORG, "--edits", "{org_para}"], "paraphrase 'Lodro Toudein zzyzx born in'",
     None),
    ("edit-unknown-neighbour", ["edit", *ORG, "--edits", "{org_neigh}"], "neighbourhood prompt", None),
    ("trace-lowercase-subject", [*ORG_TRACE, "--subject", "lodro toudein"], "has words the model cannot read", None),
    ("trace-unknown-answer", [*ORG_TRACE, "--subject", "Lodro Toudein", "--answer", "kraile"],
     "answer 'kraile' has words the model cannot read ('kraile': they tokenize to the unknown token); did you mean "
     "'Kraile'?", None),
    ("audit-graph-probes-on-organism", [*ORG_AUDIT, "--subject", "Lodro Toudein", "--probes",
                                        str(ROOT / "probes" / "real_world.jsonl")], "items the model cannot read",
     None),
    ("graph-unknown-subject-tiny", [*TINY_GRAPH[:6], "{tiny_unknown}", *TINY_GRAPH[7:]], "cannot read", None),
    ("tiny-probes-unknown", [*TINY_AUDIT[:10], "{bad_probes}", *TINY_AUDIT[11:]], "1 of 7 items the model cannot "
     "read", None),
]

CONTRADICT = [  # 4. one subject and prompt, two targets, in one batch
    ("edit-two-targets-jsonl", [*TINY_EDIT[:6], "{contradict_jsonl}", *TINY_EDIT[7:]],
     "line 1 and line 3 both edit 'w10 w11 w20 w21', to 'w50' and to 'w55'", None),
    ("audit-two-targets-json", [*TINY_AUDIT[:6], "{contradict_json}", *TINY_AUDIT[7:]],
     "item 1 and item 2 both edit", None),
    ("edit-two-templates-one-prompt", [*TINY_EDIT[:6], "{contradict_rendered}", *TINY_EDIT[7:]],
     "line 1 and line 2 both edit 'w10 w11 w20 w21'", None),
    ("edit-sequential-chunk", [*TINY_EDIT[:6], "{contradict_jsonl}", *TINY_EDIT[7:], "--sequential", "--chunk", "3"],
     "(a chunk of --chunk 3): line 1 and line 3 both edit", None),
]

BOUNDS = [  # 6. every number bounded, every file fault a user fault
    ("train-steps-0", ["organism", "train", "--set", "steps=0"], "steps=0: must be a whole number from 1", None),
    ("train-steps-huge", ["organism", "train", "--set", "steps=10000000000"], "from 1 to 1000000", None),
    ("train-lr-nan", ["organism", "train", "--set", "lr=nan"], "lr=nan: must be a number from", None),
    ("train-lr-text", ["organism", "train", "--set", "lr=fast"], "lr=fast: must be a number", None),
    ("train-heads", ["organism", "train", "--set", "n_head=5"], "not a multiple of n_head=5", None),
    ("train-unknown-field", ["organism", "train", "--set", "layers=3"], "'layers' is not a TrainConfig field",
     None),
    ("train-unknown-part", ["organism", "train", "--set", "foo.bar=1"], "'foo.bar' is not a TrainConfig field", None),
    ("train-whole-world", ["organism", "train", "--set", "world=3"], "'world' is not a TrainConfig field", None),
    ("train-world-cannot-build", ["organism", "train", "--set", "world.n_persons=50", "world.first_names=1",
                                  "world.last_names=1", "world.name_tokens=1"], "cannot be built", None),
    ("rledit-sequences-huge", ["rledit", "train", "--model", "organism", "--set", "n_sequences=10000000000"],
     "n_sequences must be a whole number from 1 to 1000000", None),
    ("rledit-rank-0", ["rledit", "train", "--model", "organism", "--set", "rank=0"], "rank must be a whole number",
     None),
    ("rledit-lr-huge", ["rledit", "train", "--model", "organism", "--set", "meta_lr=50"], "at most 1", None),
    ("threads-huge", ["--threads", "100000", *TRACE], "is more than", None),
    ("threads-huge-env", TRACE, "is more than", None, {"RIPPLE_THREADS": "100000"}),
    ("stress-edits-huge", [*TINY_STRESS[:-len(CHEAP) - 4], "--edits", "1000000000000", "--every", "1"],
     "--edits: must be a whole number of at least 1 (and at most 1000000)", None),
    ("audit-seed-huge", [*TINY_AUDIT, "--seed", str(10**20)], "at most 4294967295", None),
    ("trace-seed-neg", [*TRACE, "--seed", "-4"], "--seed: must be a whole number of at least 0", None),
    ("trace-samples-huge", [*TRACE, "--samples", "1000000000"], "at most 1000000", None),
    ("edit-vsteps-huge", [*TINY_EDIT, "v_steps=1000000000000"], "v_steps must be at most 1e+09", None),
    ("edit-deep-json", [*TINY_EDIT[:6], "{deep_json}", *TINY_EDIT[7:]], "is nested too deeply", None),
    ("edit-deep-jsonl", [*TINY_EDIT[:6], "{deep_jsonl}", *TINY_EDIT[7:]], "line 1 is nested too deeply", None),
    ("edit-deep-hparams", [*TINY_EDIT, "--hparams", "{deep_json}"], "is nested too deeply", None),
    ("audit-deep-probes", [*TINY_AUDIT[:10], "{deep_jsonl}", *TINY_AUDIT[11:]], "is nested too deeply", None),
    ("audit-deep-policy", [*TINY_AUDIT, "--policy", "{deep_toml}"], "is nested too deeply", None),
    ("model-deep-config", [*TINY_EDIT[:2], "{deep_config_model}", *TINY_EDIT[3:]], "config.json is nested too "
     "deeply", None),
    ("model-deep-world", [*TINY_EDIT[:2], "{deep_world_model}", *TINY_EDIT[3:]], "world.json is nested too deeply",
     None),
    ("edit-loop-file", [*TINY_EDIT[:6], "{loop}", *TINY_EDIT[7:]], "is a symbolic link loop", None),
    ("audit-loop-probes", [*TINY_AUDIT[:10], "{loop}", *TINY_AUDIT[11:]], "is a symbolic link loop", None),
    ("edit-loop-corpus", [*TINY_EDIT[:8], "{loop}", *TINY_EDIT[9:]], "is a symbolic link loop", None),
    ("edit-loop-model", [*TINY_EDIT[:2], "{loop}", *TINY_EDIT[3:]], "is a symbolic link loop", None),
    ("gguf-cut-header", [*TRACE[:2], "{gguf_head}", *TRACE[3:]], "is corrupt or truncated", None),
    ("gguf-cut-tensors", [*TRACE[:2], "{gguf_tail}", *TRACE[3:]], "is corrupt or truncated", None),
]

POLICY = [  # 7. policies that cannot mean anything
    ("policy-efficacy-warn-5", [*TINY_AUDIT, "--policy", "{policy_warn5}"],
     "efficacy.warn = 5 can never be reached: efficacy is a share, from 0 to 1", None),
    ("policy-negative-probability", [*TINY_AUDIT, "--policy", "{policy_negative}"],
     "paraphrase.fail = -0.2 can never be reached", None),
    ("policy-negative-ratio", [*TINY_AUDIT, "--policy", "{policy_ratio}"],
     "perplexity_ratio.warn = -1.0 can never be reached", None),
    ("policy-negative-count", [*TINY_AUDIT, "--policy", "{policy_count}"],
     "unintended_changes.fail = -3 can never be reached", None),
]

WORDS = [  # 10. clear words
    ("out-dangling-link", [*TINY_EDIT, "--out", "{dangling}"], "is a symbolic link to", None),
    ("out-link-loop", [*TINY_EDIT, "--out", "{loop}"], "output path", None),
    *([] if __import__("torch").cuda.is_available() else [
        ("device-cuda-without-cuda", [*TRACE, "--device", "cuda"], "no CUDA GPU", None),
        ("device-unknown", [*TRACE, "--device", "tpu"], "is an unknown device", None)]),
]

CLASSES = {"foreign": FOREIGN, "unreadable": UNREADABLE, "contradict": CONTRADICT, "bounds": BOUNDS,
           "policy": POLICY, "words": WORDS}
CASES = [(cls, *case) for cls, cases in CLASSES.items() for case in cases]


def _tiny_gguf(path: Path) -> bytes:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("token_embd.weight", np.zeros((64, 64), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace: a tiny gpt2, edit files, probes, a corpus, policies, broken inputs."""
    root = tmp_path_factory.mktemp("trust")
    model = root / "gpt2"
    save_tiny_gpt2(model)
    reqs = [r.to_dict() for r in edit_requests()]
    org = {"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}
    files = {"edit": json.dumps(reqs[0]),
             "edits2.jsonl": "".join(json.dumps(r) + "\n" for r in reqs),
             "corpus.txt": "\n".join(stats_corpus()) + "\n",
             "org_lower.json": json.dumps({**org, "subject": "lodro toudein"}),
             "org_para.json": json.dumps({**org, "paraphrase_prompts": ["{} zzyzx born in"]}),
             "org_neigh.json": json.dumps({**org, "neighborhood_prompts": ["Xqwv was born in"]}),
             "tiny_unknown.json": json.dumps({**reqs[1], "subject": "w14 zz"}),
             "contradict_jsonl.jsonl": "".join(json.dumps(r) + "\n" for r in (
                 reqs[0], reqs[1], {**reqs[0], "target_new": "w55"})),
             "contradict_json.json": json.dumps([reqs[0], {**reqs[0], "target_new": "w55"}]),
             "contradict_rendered.jsonl": "".join(json.dumps(r) + "\n" for r in (
                 reqs[0], {**reqs[0], "prompt": "w10 {} w20 w21", "subject": "w11", "target_new": "w55",
                           "paraphrase_prompts": [], "neighborhood_prompts": []})),
             "deep_json.json": "[" * 100000 + "]" * 100000,
             "deep_jsonl.jsonl": "[" * 100000 + "]" * 100000 + "\n",
             "deep_toml.toml": "a = " + "[" * 100000 + "]" * 100000 + "\n",
             "policy_warn5.toml": "[efficacy]\nwarn = 5\nfail = 0.5\n",
             "policy_negative.toml": "[paraphrase]\nfail = -0.2\n",
             "policy_ratio.toml": "[perplexity_ratio]\nwarn = -1.0\nfail = 3.0\n",
             "policy_count.toml": "[unintended_changes]\nwarn = 1\nfail = -3\n"}
    paths = {}
    for name, text in files.items():
        key = name.rsplit(".", 1)[0] if "." in name else name
        path = root / (name if "." in name else f"{name}.json")
        path.write_text(text)
        paths[key] = path
    probes = root / "probes.jsonl"
    save_probe_set(tiny_probe_items(), probes)
    bad = tiny_probe_items()
    bad[-1] = type(bad[-1])(bad[-1].id, "w51 zz", bad[-1].relation, bad[-1].prompt, bad[-1].answer)
    bad_probes = root / "bad_probes.jsonl"
    save_probe_set(bad, bad_probes)
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "no-such-folder")
    deep = "[" * 100000 + "]" * 100000
    for name, file in (("deep_config_model", "config.json"), ("deep_world_model", "world.json")):
        shutil.copytree(model, root / name)
        (root / name / file).write_text(deep)
        paths[name] = root / name
    whole = _tiny_gguf(root / "whole.gguf")
    (root / "head.gguf").write_bytes(whole[:60])
    (root / "tail.gguf").write_bytes(whole[:-1000])
    return {"root": root, "model": model, "probes": probes, "bad_probes": bad_probes, "loop": root / "loop",
            "dangling": root / "dangling", "gguf_head": root / "head.gguf", "gguf_tail": root / "tail.gguf", **paths}


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c[0]}:{c[1]}", marks=[pytest.mark.slow] if "organism" in c[2]
                                               else []) for c in CASES])  # loading the organism: seconds
def test_refused_in_one_line_and_nothing_of_the_users_changes(case, ws, capfd, tmp_path, monkeypatch):
    cls, name, argv, needle, prepare, *env = case
    for key, value in (env[0] if env else {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RIPPLE_CACHE", str(ws["root"] / "cache"))
    out = tmp_path / "out"
    if prepare is not None:
        prepare(out)
    argv = fill(argv, ws, out)
    if "--out" not in argv:
        argv += ["--out", str(out)]
    user_before = tree_digest(tmp_path)  # the user's files in and around --out
    inputs = {k: tree_digest(ws[k]) for k in ("model", "probes", "edit", "edits2", "corpus")}
    organism = tree_digest(model_dir())
    code, _, err = cli(capfd, *argv)
    line = assert_one_line_error(code, err)
    assert needle in line, line
    assert tree_digest(tmp_path) == user_before  # nothing created, changed or removed there
    assert {k: tree_digest(ws[k]) for k in inputs} == inputs
    assert tree_digest(model_dir()) == organism
    assert not (ws["root"] / "no-such-folder").exists()  # a dangling --out's target is not made either


def test_every_class_has_cases():
    counts = {cls: len(cases) for cls, cases in CLASSES.items()}
    assert all(n >= 2 for n in counts.values()), counts
    assert len(CASES) >= 60, counts


# ---- what is not an error -----------------------------------------------------------------------------


def test_exact_duplicates_are_merged_with_a_note(ws, capfd, tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_CACHE", str(ws["root"] / "cache"))
    dup = tmp_path / "dup.jsonl"
    req = json.loads(ws["edit"].read_text())
    dup.write_text(json.dumps(req) + "\n" + json.dumps(req) + "\n")
    code, _, err = cli(capfd, *fill([*TINY_EDIT[:6], str(dup), *TINY_EDIT[7:]], ws, tmp_path / "out"), "--force",
                       "--out", tmp_path / "out")
    assert code == 0, err
    assert f"ripple: note: {dup}: line 2 repeats line 1 exactly; edited once" in err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_requests"] == 1


def test_edit_requests_read_from_a_pipe(ws, capfd, tmp_path, monkeypatch):
    """``--edits <(cmd)``: a pipe has no suffix; its text says whether it is JSON or JSON lines."""
    monkeypatch.setenv("RIPPLE_CACHE", str(ws["root"] / "cache"))
    read, write = os.pipe()
    text = ws["edits2"].read_text()

    def feed():
        with os.fdopen(write, "w") as f:
            f.write(text)

    threading.Thread(target=feed).start()
    try:
        code, _, err = cli(capfd, *fill(TINY_EDIT, ws, tmp_path), "--edits", f"/dev/fd/{read}", "--sequential",
                           "--force", "--out", tmp_path / "out")
    finally:
        os.close(read)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_requests"] == 2


def test_a_model_saved_by_edit_keeps_its_world_and_editor_settings(capfd, tmp_path, monkeypatch):
    """Auditing an edited organism audits it against its world at its layers, as its base."""
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}))
    code, _, err = cli(capfd, "edit", *ORG, "--edits", edit, "--out", tmp_path / "edited", "--quiet")
    assert code == 0, err
    for name in ("world.json", "ripple_hparams.json"):
        assert (tmp_path / "edited" / name).read_bytes() == (model_dir() / name).read_bytes()
    base = json.loads((tmp_path / "edited" / "ripple_base.json").read_text())
    assert base["base"] == "organism" and base["edit"]["method"] == "rome"
    from ripple.editing.setup import load_setup

    for where in ("organism", str(tmp_path / "edited")):
        setup = load_setup(where, "rome", context=False)
        assert len(setup.world.facts) == len(load_setup("organism", context=False).world.facts)
        assert setup.hp.layers == load_setup("organism", "rome", context=False).hp.layers


@pytest.mark.slow
def test_a_user_file_beside_the_outputs_survives_every_run(ws, capfd, tmp_path, monkeypatch):
    """Running twice into one --out that holds the user's own files: ripple's files are replaced,
    the user's never."""
    monkeypatch.setenv("RIPPLE_CACHE", str(ws["root"] / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    (out / "figure.png").write_bytes(b"mine")  # named like no output of an audit: never in the way
    (out / "data").mkdir()
    (out / "data" / "keep.json").write_text("{}")
    mine = {k: v for k, v in tree_digest(out).items()}
    for _ in range(2):
        code, _, err = cli(capfd, *fill(TINY_AUDIT, ws, out), "--out", out, "--force")
        assert code in (0, 1), err
    after = tree_digest(out)
    assert {k: after[k] for k in mine} == mine
    assert (out / "report.json").is_symlink()


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_silences_a_libraries_bar(ws, capfd, tmp_path, monkeypatch, quiet):
    """``--quiet``: a library's own bar (transformers' GGUF conversion draws one with tqdm) prints
    nothing, so the one-line error that follows is the only line; without it the bar shows. The
    conversion is a stand-in that draws a real tqdm bar and then fails, as a file transformers
    cannot read does."""
    import transformers
    from tqdm.auto import tqdm

    def converting(*args, **kwargs):
        for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
        raise ValueError("no tensors this model type knows")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", converting)
    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path / "cache"))  # a fresh cache: the conversion runs
    code, _, err = cli(capfd, "trace", "--model", ws["root"] / "whole.gguf", "--prompt", "{} is in", "--subject",
                       "France", "--out", tmp_path / "out", *(["--quiet"] if quiet else []))
    line = assert_one_line_error(code, err.splitlines()[-1] + "\n")
    assert "transformers cannot read" in line and "no tensors this model type knows" in line
    if quiet:
        assert err == line + "\n"
    else:
        assert "Converting and de-quantizing GGUF tensors" in err  # the bar the switch silences is real


def test_the_sampling_bar_follows_quiet(tmp_path, monkeypatch, capsys, tiny_model, tiny_tokenizer):
    import ripple.editing.corpora as corpora
    from ripple.progress import bars_silenced

    monkeypatch.setenv("RIPPLE_CACHE", str(tmp_path))
    monkeypatch.setattr(corpora, "BAR_BATCHES", 2)
    model = tiny_model("gpt2")
    with bars_silenced():
        quiet = corpora.model_samples(model, tiny_tokenizer, 6, seed=0, tokens=8, batch_size=4)
    assert capsys.readouterr().err == ""
    for f in (tmp_path / "corpora").glob("*.txt"):
        f.unlink()
    assert corpora.model_samples(model, tiny_tokenizer, 6, seed=0, tokens=8, batch_size=4) == quiet
    assert "sampling 6 passages" in capsys.readouterr().err


@pytest.mark.slow
def test_a_full_disk_is_a_user_fault(tmp_path):
    """A write past the file size limit (as a full disk) is exit 2, one line, and --out is not made."""
    import resource

    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"prompt": "{} was born in", "subject": "Lodro Toudein", "target_new": "Kraile"}))
    env = dict(os.environ, RIPPLE_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               RIPPLE_CACHE=str(tmp_path / "cache"))
    limit = 2_000_000  # bytes: the organism's weights (11 MB) cannot be written

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run([sys.executable, "-m", "ripple.cli", "edit", *ORG, "--edits", str(edit), "--out",
                          str(tmp_path / "out")], env=env, capture_output=True, text=True, preexec_fn=cap)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ripple: error: cannot write") and "free some space" in lines[0]
    assert not (tmp_path / "out").exists()
