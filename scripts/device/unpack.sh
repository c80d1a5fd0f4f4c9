#!/usr/bin/env bash
# On the device machine, after the first carry of scripts/device/pack_tests.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
(cd out && tar xJf devtests.tar.xz)
mkdir -p ../shared && tar xJf out/shared.tar.xz -C ..
ls out/devtests | wc -l
