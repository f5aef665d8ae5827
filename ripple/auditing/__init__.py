"""Audit a proposed knowledge edit: metric thresholds, TOML policies and pass/warn/fail verdicts."""
