"""Helpers the test modules share (fixtures live in conftest.py)."""

import hashlib
import json

import torch

from ripple.cli import main
from ripple.probes.sets import ProbeItem, ProbeLink


def cli(capfd, *argv):
    capfd.readouterr()  # drop what fixtures printed (save_pretrained's progress bar)
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_line_error(code, err):
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ripple: error:"), err
    return lines[0]


def state(model) -> dict[str, torch.Tensor]:
    """Every entry of the state dict (gpt2's tied lm_head.weight included), cloned."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_state(model, expected):
    now = model.state_dict()
    assert now.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(now[k], v), k


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tiny_probe_items():
    """The first edit request's fact ("w10 w11" + "{} w20 w21") and six more over the same words."""
    spec = [("e", "w10 w11", "{} w20 w21", "w51", [("s2", "same_subject")]),
            ("s2", "w10 w11", "{} w22", "w52", [("e", "same_subject")]),
            ("n1", "w12 w13", "{} w20 w21", "w53", [("e", "same_object")]),
            ("n2", "w14", "{} w20 w21", "w54", []), ("n3", "w15 w16", "{} w23", "w55", [("n2", "inverse")]),
            ("n4", "w30", "w31 {} w32", "w56", []), ("n5", "w51", "{} w24", "w57", [])]
    return [ProbeItem(i, s, "r", p, a, links=tuple(ProbeLink(t, k) for t, k in links)) for i, s, p, a, links in spec]


def digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def tree_digest(root) -> dict | None:
    """Every file under ``root`` (links followed) -> sha256; None when ``root`` does not exist."""
    from pathlib import Path

    root = Path(root)
    if not root.exists():
        return None
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fill(argv, ws, out):
    """The argv with ``{name}`` placeholders of the workspace filled in (a prompt's ``{}`` stays)."""
    values = {**{k: str(v) for k, v in ws.items()}, "out": str(out)}
    filled = []
    for a in map(str, argv):
        for key, value in values.items():
            a = a.replace("{" + key + "}", value)
        filled.append(a)
    return filled
