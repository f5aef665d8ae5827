"""benchmarks/common.py: the helpers every benchmark shares (rows per code version, tables, resuming)."""

from benchmarks.common import md_table, source_versions


def test_source_versions_counts_rows_per_version():
    assert source_versions([{"code": "abc"}, {"code": "abc"}]) == "Source version: abc."
    text = source_versions([{"code": "abc"}, {}, {"code": "def"}])
    assert "abc (1 rows)" in text and "def (1 rows)" in text and "unrecorded (1 rows)" in text


def test_the_benchmark_listing_names_every_module():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("gie/recall", "sir/compare", "editors/sweep", "real_models/tracing", "audit/samples"):
        assert name in done.stdout
    assert "torch" not in done.stderr


def test_md_table_writes_a_header_rule_and_rows():
    assert md_table(["a", "b"], [[1, 2.5]]) == ["| a | b |", "|---|---|", "| 1 | 2.5 |"]
    assert md_table(["x"], [[0.123456]], fmt=lambda v: f"{v:.2f}")[-1] == "| 0.12 |"
