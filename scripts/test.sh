#!/usr/bin/env bash
# The whole test suite. Installs its prerequisites (busybox-static; runc, containerd, the CNI
# plugins and the wasmtime CLI for the tests that run execdriver beside them) on a fresh
# machine; the native driver's integration tests and the escape suite (which builds its
# payloads with cc and makes a loop device) need root. Under CI=true a missing prerequisite
# fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

need() {
    if ! "$@"; then
        if [ "${CI:-}" = true ]; then
            echo "a test prerequisite is missing under CI=true: $*" >&2
            exit 1
        fi
        echo "WARNING: missing prerequisite ($*): the tests that need it will be skipped" >&2
    fi
}
need ensure_busybox
need ensure_package runc runc
need ensure_package crun crun
need ensure_package containerd containerd
need ensure_package cc gcc
need ensure_package losetup mount
# The CRI test: containerd's CRI plugin with a CNI bridge in a private network namespace.
need ensure_file /usr/lib/cni/bridge containernetworking-plugins
need ensure_package ip iproute2
# The WASI differential: the wasmtime CLI beside `execdriver run`.
need ensure_wasmtime_cli

cargo test --workspace --all-features --no-fail-fast "$@"
