#!/usr/bin/env bash
# The native driver's integration tests on a cgroup-v2-only kernel: Debian's kernel booted
# under qemu (software emulation; KVM is not needed) with cgroup_no_v1=all and a small init of
# ours. The host's root is shared read-only over 9p; the VM gets its own /tmp, /run, /dev and
# cgroup2 at /sys/fs/cgroup, and runs the test binaries built here. Prints the VM's lines
# (the first is `cgroup: v2 only, controllers: …`) and the runner's result lines; exits
# non-zero on any failure or when the VM times out. Needs root (qemu's 9p passthrough).
#   ./scripts/test-cgroup-v2.sh            # build (or reuse) the tests and run them in the VM
#   EDV2_TIMEOUT=1500 ./scripts/test-cgroup-v2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

WORK=$PWD
OUT=target/cgroup-v2
TIMEOUT=${EDV2_TIMEOUT:-1500}
mkdir -p "$OUT"

ensure_busybox
ensure_package qemu-system-x86_64 qemu-system-x86
ensure_package cpio cpio
ensure_package runc runc

# The kernel: Debian's linux-image-amd64, unpacked here (the host's /boot is left alone).
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -1
}
if ! ls "$OUT"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
    pkg=$(kernel_pkg)
    if [ -z "$pkg" ]; then
        apt-get update -q >/dev/null
        pkg=$(kernel_pkg)
    fi
    [ -n "$pkg" ] || { echo "no linux-image-amd64 package found" >&2; exit 1; }
    echo "unpacking $pkg ..." >&2
    rm -rf "$OUT/deb" && mkdir -p "$OUT/deb"
    (cd "$OUT/deb" && apt-get download "$pkg" >/dev/null 2>&1)
    rm -rf "$OUT/kernel.tmp" && dpkg-deb -x "$OUT"/deb/*.deb "$OUT/kernel.tmp"
    rm -rf "$OUT/kernel" && mv "$OUT/kernel.tmp" "$OUT/kernel" && rm -rf "$OUT/deb"
fi
VMLINUZ=$(ls "$OUT"/kernel/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$OUT/kernel/lib/modules/$KVER

# The test binaries (the same build the suite uses), as absolute paths.
TESTS=(
    "-p execdriver-tests --test native_lifecycle"
    "-p execdriver-tests --test native_resources"
    "-p execdriver-tests --test native_conformance"
    "-p execdriver-tests --test native_recovery"
    "-p execdriver-tests --test native_security"
    "-p execdriver-tests --test native_cross_process"
    "-p execdriver-tests --test native_leaks"
    "-p execdriver-tests --test cgroup_v2_device_filter"
    "-p execdriver-tests --test cgroup_v2_resources"
    "-p execdriver-tests --test cgroup_v2_delegation"
    "-p execdriver-tests --test churn"
    "-p execdriver-tests --test oci_conformance"
    "-p execdriver-tests --test oci_driver"
    "-p execdriver-cli --test cli"
    "-p execdriver-cli --test runc_cli"
    "-p execdriver-cli --test runc_lifecycle"
    "-p execdriver-cli --test escape"
)
args=()
for t in "${TESTS[@]}"; do
    # shellcheck disable=SC2206
    args+=($t)
done
cargo build -q -p execdriver-cli
cargo test --all-features --no-run --message-format=json "${args[@]}" 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
' >"$OUT/tests.list"
[ -s "$OUT/tests.list" ] || { echo "no test binaries were built" >&2; exit 1; }

# Modules for the 9p share, with their dependencies first (from each module's depends=).
modules=()
add_module() {
    local name=$1 f dep
    for m in "${modules[@]:-}"; do [ "$m" = "$name" ] && return 0; done
    f=$(find "$MODDIR/kernel" -name "$name.ko" | head -1)
    [ -n "$f" ] || return 0 # built in
    for dep in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep"
    done
    for m in "${modules[@]:-}"; do [ "$m" = "$name" ] && return 0; done
    modules+=("$name")
}
for m in virtio_pci 9pnet_virtio 9p loop; do add_module "$m"; done

# The initramfs: busybox, the modules, our init.
INITRD=$OUT/initrd
rm -rf "$INITRD" && mkdir -p "$INITRD"/{bin,dev,proc,sys,host,modules}
cp "$(command -v busybox)" "$INITRD/bin/busybox"
for m in "${modules[@]}"; do
    cp "$(find "$MODDIR/kernel" -name "$m.ko" | head -1)" "$INITRD/modules/"
done
printf '%s\n' "${modules[@]}" >"$INITRD/modules/order"
cp "$OUT/tests.list" "$INITRD/tests.list"
cat >"$INITRD/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in \$(cat /modules/order); do insmod /modules/\$m.ko || echo "insmod \$m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose host /host ||
    { echo "VM-RESULT: 9p mount failed"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
mount -t tmpfs tmpfs /host/root
mount -t tmpfs tmpfs /host/var/tmp 2>/dev/null
# The VM's own cgroup root: the tests run in it (the one cgroup v2 lets hold processes and
# delegate), with every controller enabled for the cgroups they create below it.
for c in \$(cat /host/sys/fs/cgroup/cgroup.controllers); do
    echo "+\$c" >/host/sys/fs/cgroup/cgroup.subtree_control
done
echo
echo "cgroup: v2 only, controllers: \$(cat /host/sys/fs/cgroup/cgroup.controllers)"
cp /tests.list /host/tmp/tests.list
cat >/host/tmp/vm-run.sh <<'RUN'
cd $WORK
export CI=true HOME=/root TMPDIR=/tmp PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export RUST_TEST_THREADS=2 RUST_BACKTRACE=1 EXECDRIVER_CHURN=60
failed=0
while read -r t; do
    echo "VM-RUN: \${t##*/}"
    "\$t" --color never 2>&1 || failed=\$((failed + 1))
done </tmp/tests.list
echo "VM-RESULT: \$failed failed"
sync
echo o >/proc/sysrq-trigger
# The power-off is asynchronous: pid 1 must not exit before it.
sleep 30
RUN
# The host's root becomes the VM's (a chroot would refuse user namespaces).
exec switch_root /host /bin/sh /tmp/vm-run.sh
EOF
chmod +x "$INITRD/init"
(cd "$INITRD" && find . | cpio -o -H newc --quiet) | gzip -1 >"$OUT/initrd.cpio.gz"

# One boot. A guest kernel that locks up (seen once in five runs: runc tasks spinning in the
# emulated kernel, "soft lockup" + RCU stall) panics at once (softlockup_panic) instead of
# sitting out the timeout.
boot() {
    echo "booting $KVER under qemu (TCG, cgroup_no_v1=all) ..." >&2
    set +e
    timeout --foreground "$TIMEOUT" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp 2 -m 3072 -nographic -no-reboot -nic none \
        -kernel "$VMLINUZ" -initrd "$OUT/initrd.cpio.gz" \
        -append "console=ttyS0 panic=-1 softlockup_panic=1 quiet cgroup_no_v1=all" \
        -virtfs local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap \
        </dev/null 2>&1 | tee "$log" | grep --line-buffered -E '^(cgroup:|VM-|test result:|test .* FAILED|failures:|    [a-z_:]+$|thread .* panicked|SKIP)'
    rc=${PIPESTATUS[0]}
    set -e
}
log=$OUT/vm.log
boot
if grep -aq "soft lockup" "$log"; then
    # The emulated machine failed, not a test: say so loudly and boot once more.
    echo "WARNING: the guest kernel locked up ($(grep -a -m1 'soft lockup' "$log" | tr -d '\r' | sed 's/.*BUG: //')); booting again" >&2
    cp "$log" "$OUT/vm-lockup.log"
    boot
fi
if [ "$rc" = 124 ]; then
    echo "the VM timed out after ${TIMEOUT}s (log: $log)" >&2
    exit 1
fi
result=$(sed -n 's/.*VM-RESULT: //p' "$log" | tr -d '\r' | tail -1)
if [ "$result" != "0 failed" ]; then
    echo "cgroup v2 tests: ${result:-no result} (log: $log)" >&2
    exit 1
fi
echo "cgroup v2 tests: all passed"
