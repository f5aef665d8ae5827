"""ripple.io's source fingerprint and the benchmarks' account of which code made their rows."""

import re

import ripple
from ripple.io import source_fingerprint


def test_source_fingerprint_is_stable_and_follows_the_sources(tmp_path, monkeypatch):
    first = source_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert source_fingerprint() == first
    # the same hash over a copy of the package with one source changed differs
    import shutil
    from pathlib import Path

    import ripple.io as rio

    root = Path(ripple.__file__).parent
    copy = tmp_path / "ripple"

    def not_python(folder, names):  # only the sources count; the shipped weights need not be copied
        return [n for n in names if n == "__pycache__" or (not n.endswith(".py") and not (Path(folder) / n).is_dir())]

    shutil.copytree(root, copy, ignore=not_python)
    monkeypatch.setattr(rio, "__file__", str(copy / "io.py"))
    assert rio.source_fingerprint() == first
    (copy / "errors.py").write_text((copy / "errors.py").read_text() + "\n# changed\n")
    assert rio.source_fingerprint() != first
