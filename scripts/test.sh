#!/usr/bin/env bash
# The whole test suite. Installs its prerequisites (busybox-static) on a fresh machine; the
# native driver's integration tests need root. Under CI=true a missing prerequisite fails the
# run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

if ! ensure_busybox; then
    if [ "${CI:-}" = true ]; then
        echo "busybox-static is required under CI=true" >&2
        exit 1
    fi
    echo "WARNING: busybox-static missing: the native driver's tests will be skipped" >&2
fi

cargo test --workspace --all-features --no-fail-fast "$@"
