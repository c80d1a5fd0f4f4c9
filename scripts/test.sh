#!/usr/bin/env bash
# Runs the whole test suite (sets up first if needed). CI calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-run
cargo test --release --locked ${CI:+--quiet}
