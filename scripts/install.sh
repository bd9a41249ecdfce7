#!/usr/bin/env bash
# Builds the release CLI and installs it stripped, with its debug info split off beside it:
#   ./scripts/install.sh                 # /usr/local/bin/execdriver
#   PREFIX=/opt/execdriver ./scripts/install.sh
# The binary keeps a .gnu_debuglink to $PREFIX/lib/debug/execdriver/execdriver.debug, where
# gdb and perf find the line tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
command -v objcopy >/dev/null || { echo "install.sh: objcopy (binutils) is needed" >&2; exit 1; }
cargo build --release -q -p execdriver-cli
bin=target/release/execdriver
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
objcopy --only-keep-debug "$bin" "$tmp/execdriver.debug"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$tmp/execdriver.debug" "$bin" "$tmp/execdriver"
"$tmp/execdriver" --version >/dev/null
install -d "$PREFIX/bin" "$PREFIX/lib/debug/execdriver"
install -m 0755 "$tmp/execdriver" "$PREFIX/bin/execdriver"
install -m 0644 "$tmp/execdriver.debug" "$PREFIX/lib/debug/execdriver/execdriver.debug"
echo "installed $PREFIX/bin/execdriver ($(du -h "$PREFIX/bin/execdriver" | cut -f1); built $(du -h "$bin" | cut -f1) with line tables)"
