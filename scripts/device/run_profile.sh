#!/usr/bin/env bash
# On the device machine, after the carries of reproduce.sh (the stripped rhx and the model):
# runs an experiment's profile on the GPU and records its wall time per node. Resumable: the
# cache stays on the machine while it is warm, so a call that runs out of its budget leaves its
# finished nodes for the next call (which reports only the time it spent itself).
#   bash scripts/device/run_profile.sh experiments/section4.rhx full [budget_s]
# Writes $OUT/profile_<name>_<profile>.txt (device, wall time, `rhx run`'s log) and, when the
# run finishes, the report's report.md and report.json as $OUT/<report>.md / .json (a call
# returns at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/../.."
exp=$1 profile=$2 budget=${3:-560}
source scripts/device/setup.sh
log=$OUT/profile_$(basename "$exp" .rhx)_$profile.txt
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; lscpu | grep -E 'Model name|^CPU\(s\)'; } | tee "$log"
s=$(date +%s)
RUST_BACKTRACE=1 timeout "$budget" out/rx/rhx run "$exp" --profile "$profile" --set lm.device=cuda --cache .rhx/gpucache --reports /tmp/gpureports 2>&1 \
  | stdbuf -oL tr '\r' '\n' | tee /tmp/run_full.log | grep --line-buffered -E '^\[|computed|error|report' \
  | while IFS= read -r l; do printf '%6d s  %s\n' $(( $(date +%s) - s )) "$l"; done | tail -80 | tee -a "$log"
rc=${PIPESTATUS[0]}
echo "rc=$rc wall $(( $(date +%s) - s )) s (this call)" | tee -a "$log"
# What the filter above hides (a panic's message, warnings), without the progress-bar lines.
[ "$rc" -eq 0 ] || grep -v -e 'prompts \[' -e '^\s*$' /tmp/run_full.log | tail -60 >> "$log"
if [ "$rc" -eq 0 ]; then
  for d in /tmp/gpureports/*/; do r=$(basename "$d"); cp "$d/report.md" "$OUT/${r}_$profile.md"; cp "$d/report.json" "$OUT/${r}_$profile.json"; done
fi
exit 0
