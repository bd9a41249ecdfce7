//! Fixtures shared by the workspace tests and the benchmark harness: a busybox rootfs, OCI
//! bundles shaped like `runc spec` makes them, and the rule for missing prerequisites (a
//! failure under `CI=true`, a loud skip elsewhere).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use execdriver_api::oci_spec::runtime::Spec;
use execdriver_api::{Command, ContainerId, DriverError};

pub mod cgns;
pub mod http;
pub mod image;
pub mod leaks;
pub mod native;
pub mod oci;
pub mod peers;
pub mod seccomp_agent;
pub mod wasm;

/// Whether tests run under CI (`CI=true`), where missing prerequisites are failures.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Ends a test that can't run here: panics under CI, prints a loud skip line otherwise.
/// Returns normally only outside CI (the caller then returns).
pub fn missing(test: &str, why: &str) {
    if under_ci() {
        panic!("{test}: prerequisite missing under CI=true: {why}");
    }
    eprintln!("SKIP {test}: prerequisite missing: {why} (CI=true makes this a failure)");
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    euid() == 0
}

fn euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// Builds a freestanding static program (no libc) of the escape suite,
/// `tests/fixtures/escape/<name>.c`, into `out` with the machine's `cc`.
///
/// # Errors
/// `cc` is missing or fails; the message has its stderr.
pub fn freestanding_program(name: &str, out: &Path) -> Result<(), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/escape/{name}.c"));
    let o = std::process::Command::new("cc")
        .args([
            "-nostdlib",
            "-static",
            "-no-pie",
            "-fno-pie",
            "-Os",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-o",
        ])
        .arg(out)
        .arg(&src)
        .output()
        .map_err(|e| format!("run cc: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cc {name}.c: {}",
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// Whether the host has the program `bin` in one of the system's bin directories.
pub fn have(bin: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(bin).exists())
}

/// A static busybox binary on this machine (installed by the test command).
pub fn busybox() -> Option<PathBuf> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The applets linked into the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "hostname", "sleep", "id", "mount", "ps", "readlink", "true",
    "false", "printf", "grep", "wc", "stat", "mkdir", "touch", "tail", "head", "env", "pwd", "ip",
    "tty", "stty", "dd", "seq", "test", "kill", "nproc", "umask", "whoami", "uname", "yes", "rm",
    "chmod", "ln", "find", "sort", "expr", "cut", "tr", "od", "xargs", "dmesg", "nsenter",
    "unshare", "sed", "awk", "cp", "basename",
];

/// The directory all test fixtures live in: `$TMPDIR/edtest-fixtures`, shared by test processes
/// and reused across runs.
pub fn fixtures_dir() -> PathBuf {
    std::env::temp_dir().join("edtest-fixtures")
}

/// The shared busybox rootfs (built once, atomically, and reused across runs).
///
/// # Errors
/// When busybox is missing or the directory can't be built.
pub fn busybox_rootfs() -> Result<&'static Path, String> {
    static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let bb = busybox().ok_or("busybox-static is not installed (/usr/bin/busybox)")?;
            let base = fixtures_dir();
            let rootfs = base.join("busybox").join("rootfs");
            if rootfs.join("bin/busybox").is_file() && rootfs.join("bin/basename").exists() {
                return Ok(rootfs);
            }
            std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
            let tmp = tempfile::Builder::new()
                .prefix("busybox-building-")
                .tempdir_in(&base)
                .map_err(|e| e.to_string())?;
            build_rootfs(&bb, &tmp.path().join("rootfs"))?;
            let built = tmp.keep();
            let target = base.join("busybox");
            let _ = std::fs::remove_dir_all(&target);
            // Another test process may have won the race; either copy will do.
            if std::fs::rename(&built, &target).is_err() {
                let _ = std::fs::remove_dir_all(&built);
            }
            if rootfs.join("bin/busybox").is_file() {
                Ok(rootfs)
            } else {
                Err(format!("could not build {}", rootfs.display()))
            }
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// Builds a busybox rootfs at `rootfs`.
///
/// # Errors
/// I/O errors, as text.
pub fn build_rootfs(busybox: &Path, rootfs: &Path) -> Result<(), String> {
    let e = |e: std::io::Error| format!("build rootfs {}: {e}", rootfs.display());
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(e)?;
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).map_err(e)?;
    for a in APPLETS {
        let link = rootfs.join("bin").join(a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).map_err(e)?;
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .map_err(e)?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").map_err(e)?;
    Ok(())
}

/// The spec `runc spec` writes, for a rootfs at `root` and the given args.
pub fn runc_like_spec(root: &Path, args: &[&str]) -> Spec {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let json = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": []
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": root, "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    execdriver_api::parse_spec(json.to_string().as_bytes()).expect("the runc-like spec parses")
}

/// A fresh container id, unique across test processes.
pub fn unique_id(prefix: &str) -> ContainerId {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    ContainerId::new(format!("{prefix}-{}-{n}", std::process::id())).expect("valid id")
}

/// A command over the shared busybox rootfs with a runc-like spec, changed by `edit`.
///
/// # Errors
/// When the rootfs can't be built.
pub fn busybox_command(
    id: &ContainerId,
    args: &[&str],
    edit: impl FnOnce(&mut Spec),
) -> Result<Command, DriverError> {
    let rootfs = busybox_rootfs().map_err(|e| DriverError::Internal {
        context: "fixture".into(),
        message: e,
    })?;
    let mut spec = runc_like_spec(rootfs, args);
    edit(&mut spec);
    let bundle = rootfs.parent().unwrap_or(rootfs);
    Command::new(id.clone(), bundle, spec)
}
