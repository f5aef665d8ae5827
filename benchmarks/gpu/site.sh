#!/usr/bin/env bash
# The Python packages ripple needs that a GPU machine's image lacks, packed for a machine with no
# network. The device tool's CUDA image holds torch, transformers, accelerate, peft, networkx,
# scikit-learn, matplotlib, pytest, pandas and pyarrow, not these. Writes .gpu/site.tar.xz (git-ignored):
#
#     bash benchmarks/gpu/site.sh [PYTHON_VERSION]    # here, once (default 3.12, the GPU image's Python)
#     python3 -m benchmarks gpu/check --site .gpu/site.tar.xz --out $OUT     # there (carry .gpu)
#
# lm-eval's own task folders are left out: ripple's organism and English suites are local YAML,
# and every other task needs the hub. Unpacked, the site is 23 MB and its wheels 15 MB, where the
# device tool carries 64 MiB in all, the repository included; packed with xz it is about 5 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYV=${1:-3.12}
PY=${PYTHON:-python3}
SITE=$(mktemp -d)
trap 'rm -rf "$SITE" "$SITE.log"' EXIT
"$PY" -m pip install -q --disable-pip-version-check --no-deps --no-compile --only-binary=:all: \
    --python-version "$PYV" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --target "$SITE" \
    igraph==1.0.0 texttable==1.7.3 lm-eval==0.4.13 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
    >"$SITE.log" 2>&1 || { cat "$SITE.log"; echo "site.sh: pip could not fetch the packages (above)" >&2; exit 1; }
find "$SITE/lm_eval/tasks" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
rm -rf "$SITE/bin" "$SITE"/lm_eval-*.dist-info/RECORD
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
mkdir -p .gpu
tar cJf .gpu/site.tar.xz.tmp -C "$SITE" . && mv .gpu/site.tar.xz.tmp .gpu/site.tar.xz
echo "$(du -b .gpu/site.tar.xz | cut -f1) bytes: .gpu/site.tar.xz (Python $PYV)"
