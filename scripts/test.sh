#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite offline: tests/ and the docstring examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RIPPLE_THREADS=${RIPPLE_THREADS:-1}
# one worker per core (pytest-xdist), each test file whole on one worker (its module fixtures
# load once); RIPPLE_TEST_WORKERS=0 runs in this process
exec .venv/bin/python -m pytest -n "${RIPPLE_TEST_WORKERS:-auto}" --dist loadfile "$@"   # testpaths: tests, ripple
