#!/usr/bin/env bash
# The sample audits in reports/audit/ (a benign edit and a failing one), then the browser check.
#
# The sample audits in reports/audit/: one benign edit (ROME as the organism ships it: layer 5, last
# token) and one that should fail (the same edit written at the subject's last token of layer 0,
# which swaps the subject's identity), then the browser check and screenshots of both HTML reports.
#   bash benchmarks/audit/samples.sh            (needs chromium and playwright for the last step)
#   python -m benchmarks audit/samples          (the same)
set -u
cd "$(dirname "$0")/../.."
RIPPLE=${RIPPLE:-.venv/bin/ripple}
PY=${PY:-.venv/bin/python}
EDIT=(--prompt "{} was born in" --subject "Lodro Toudein" --target Kraile)
RUNS=${RUNS:-runs/audit_samples}
$RIPPLE audit --model organism --method rome "${EDIT[@]}" --tasks organism --out "$RUNS/benign" --quiet
echo "benign: exit $?"
$RIPPLE audit --model organism --method rome "${EDIT[@]}" --tasks organism --set layers=0 fact_token=subject_last \
    --out "$RUNS/failing" --quiet
echo "failing: exit $?"
# reports/ keeps plain files (an --out shows its run through links into .ripple/; see ripple/outputs.py)
$PY -c "import sys; from ripple.outputs import copy_run; [copy_run(f'$RUNS/{n}', f'reports/audit/{n}') for n in sys.argv[1:]]" \
    benign failing
$PY -m benchmarks audit/browser_check reports/audit/benign/report.html reports/audit/failing/report.html \
    --shots reports/audit --json reports/audit/browser_check.json
