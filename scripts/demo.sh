#!/usr/bin/env bash
# The main job: build execdriver and run a container on the embedded default driver.
# As root: a busybox container with the native driver (namespaces + cgroups); otherwise a
# WebAssembly module with the wasm driver.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

cargo build -q -p execdriver-cli --bin execdriver
bin=$PWD/target/debug/execdriver
demo=$PWD/target/demo

if [ "$(id -u)" != 0 ]; then
    # Without root: the same CLI runs a WebAssembly module on the wasm driver.
    rm -rf "$demo/wasm-bundle"
    mkdir -p "$demo/wasm-bundle/rootfs"
    cp wasm-driver/tests/fixtures/hello.wat "$demo/wasm-bundle/rootfs/"
    cat > "$demo/wasm-bundle/config.json" <<'JSON'
{"ociVersion": "1.0.2", "process": {"args": ["/hello.wat"], "cwd": "/", "user": {"uid": 0, "gid": 0}}, "root": {"path": "rootfs"}}
JSON
    echo "+ execdriver run --bundle $demo/wasm-bundle demo (not root: the wasm driver)" >&2
    exec "$bin" run --bundle "$demo/wasm-bundle" "demo-$$"
fi
ensure_busybox
bb=$(command -v busybox)
rm -rf "$demo/bundle"
mkdir -p "$demo/bundle/rootfs/bin"
cp "$bb" "$demo/bundle/rootfs/bin/busybox"
for applet in sh echo hostname id ls cat ps uname; do
    ln -s busybox "$demo/bundle/rootfs/bin/$applet"
done
cat > "$demo/bundle/config.json" <<'JSON'
{
  "ociVersion": "1.0.2",
  "process": {
    "args": ["sh", "-c", "echo \"hello from $(hostname): pid $$, $(id)\"; echo 'the root filesystem:'; ls /; ps"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "user": {"uid": 0, "gid": 0}
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "demo",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}],
    "maskedPaths": ["/proc/kcore"],
    "readonlyPaths": ["/proc/sys"]
  }
}
JSON
echo "+ execdriver run --bundle $demo/bundle demo" >&2
exec "$bin" run --bundle "$demo/bundle" "demo-$$"
