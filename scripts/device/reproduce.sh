#!/usr/bin/env bash
# On the device machine (its host CPU: another vendor than the 2-core dev machine), certify a
# committed report there: `rhx run` fills a cache from scratch (resumable: a call that runs out
# of time leaves its cache for the next), then `rhx reproduce --use-cache` certifies every number
# of the report against it. Carries, while warm (the machine goes back after 30 s idle):
#   1: out/rx/rhx.xz out/mp00 out/mp01      2: out/mp02 out/mp03
#   3: out/mp04   (then: bash scripts/device/reproduce.sh reports/section3 experiments/section3.rhx)
# (out/rx/rhx.xz: `strip -o out/rx/rhx target/release/rhx && xz -k out/rx/rhx`; out/mp0*: see
# pack_tests.sh.) THREADS=n limits its threads (when a GPU run shares the machine). Writes $OUT/certificate.md and $OUT/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
report=$1 exp=$2 budget=${3:-560}
source scripts/device/setup.sh
export CUDA_VISIBLE_DEVICES=
lscpu | grep -E 'Model name|^CPU\(s\)' | tee $OUT/summary.txt
s=$(date +%s)
timeout $budget out/rx/rhx run "$exp" --cache .rhx/devcache -q --reports /tmp/devreports ${THREADS:+--threads $THREADS}; rc=$?
echo "run rc=$rc $(( $(date +%s) - s )) s" | tee -a $OUT/summary.txt
[ $rc -eq 0 ] || exit $rc
out/rx/rhx reproduce "$report" --use-cache --cache .rhx/devcache --certificate $OUT/certificate.md 2>&1 | tail -30 | tee -a $OUT/summary.txt
