#!/usr/bin/env bash
# On the device machine (Hopper): the two kernel options not yet measured — the wide steps'
# tensor-core GEMM (`wgemm`, RHX_WGEMM) and RoPE in the q|k|v GEMV (RHX_ROPE_GEMV) — their CUDA
# tests (tests/kernels.rs), then the bench with both on against the defaults in the same call
# (batch 1 at 4k shows RoPE in the GEMV, the sweep shows wgemm: neither acts where the other
# does), then a kernel timeline of the wgemm sweep. One carry: out/rx/rhx.xz and out/dt/kernels.xz, made here by
#   cargo build --release --locked && strip -o out/rx/rhx target/release/rhx && rm -f out/rx/rhx.xz && xz -k -T2 out/rx/rhx
#   cargo test --release --locked --no-run --test kernels   # then strip + xz the printed binary:
#   mkdir -p out/dt && strip -o out/dt/kernels target/release/deps/kernels-<hash> && rm -f out/dt/kernels.xz && xz -k -T2 out/dt/kernels
# then: bash scripts/device/wgemm_check.sh [batch sizes, default 16,64] [batch context, default 4096]
# Writes $OUT/tests.log, $OUT/cublas.md, $OUT/wgemm.md, $OUT/tl.sweep.csv and $OUT/timeline.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
BS=${1:-16,64}
CTX=${2:-4096}
export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
[ -x out/rx/rhx ] || xz -dc out/rx/rhx.xz > out/rx/rhx && chmod +x out/rx/rhx
[ -x out/dt/kernels ] || xz -dc out/dt/kernels.xz > out/dt/kernels && chmod +x out/dt/kernels
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
s=$(date +%s)
RHX_TEST_DEVICE=cuda RHX_TEST_ROOT=$PWD timeout 300 out/dt/kernels --test-threads 1 cuda > $OUT/tests.log 2>&1
echo "kernels CUDA tests rc=$? in $(( $(date +%s) - s )) s: $(grep -E '^test result' $OUT/tests.log)"
grep -E "^test |panicked|off by|equal in only|argmax positions" $OUT/tests.log | head -20
bench() {
  out/rx/rhx bench --shape llama-3.1-8b --dtype bf16 --no-hf --no-torch-ref --modes graph --contexts 4096 \
    --niah-context 128 --long-context 0 --batch-context $CTX --batch-sizes $BS --out "$@"
}
s=$(date +%s); bench $OUT/cublas.md > $OUT/cublas.log 2>&1; echo "defaults bench rc=$? $(( $(date +%s) - s )) s"
s=$(date +%s); RHX_WGEMM=128 RHX_ROPE_GEMV=1 bench $OUT/wgemm.md > $OUT/wgemm.log 2>&1; echo "wgemm + RoPE-in-GEMV bench rc=$? $(( $(date +%s) - s )) s"
grep -E "^\| (batch|[0-9])" $OUT/cublas.md | head -12; echo; grep -E "^\| (batch|[0-9])" $OUT/wgemm.md | head -12
# The timeline build (~1.4 % slower) apart, at the last of the batch sizes only.
s=$(date +%s); RHX_WGEMM=128 RHX_TIMELINE=$OUT/tl.csv BS=${BS##*,} bench $OUT/timeline.md > $OUT/timeline.log 2>&1; echo "timeline bench rc=$? $(( $(date +%s) - s )) s"
[ -s $OUT/tl.sweep.csv ] && /opt/torch/.venv/bin/python scripts/bench/timeline.py $OUT/tl.sweep.csv > $OUT/timeline.txt 2>&1; tail -20 $OUT/timeline.txt
rm -f $OUT/tl.csv
