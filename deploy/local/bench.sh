#!/usr/bin/env bash
# The main job for now: build Sluice and run the storage benchmark (raw disk,
# batch codec, partition log). Extra arguments go to bench_storage, e.g.
#   deploy/local/bench.sh --quick
#   deploy/local/bench.sh --runs 5
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bash deploy/install-deps.sh
[ -f build/build.ninja ] || meson setup build
meson compile -C build
build/tests/bench/bench_storage --dir data/bench "$@"
