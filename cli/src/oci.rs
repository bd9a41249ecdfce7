//! The documents of runc's command line: OCI state, `events` stats, `spec`, `features`, and the
//! value formats of its flags (durations, sizes).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use execdriver::{ContainerId, ResourceStats, Status};
use serde::Serialize;

/// The runtime-spec version our state documents follow.
pub const OCI_VERSION: &str = "1.2.0";

/// `execdriver state`: the OCI state, with runc's `rootfs`, `created` and `owner`.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: String,
    /// 0 once stopped, as runc reports.
    pub pid: u32,
    pub status: String,
    pub bundle: String,
    pub rootfs: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The driver that runs it (not in runc's document; readers ignore unknown keys).
    pub driver: String,
}

impl State {
    /// The state of a container; `rootfs` is read from the bundle's config.json.
    pub fn new(
        id: &ContainerId,
        status: Status,
        pid: u32,
        bundle: &Path,
        created: SystemTime,
        annotations: BTreeMap<String, String>,
        driver: &str,
    ) -> Self {
        Self {
            oci_version: OCI_VERSION,
            id: id.to_string(),
            pid: if status == Status::Stopped { 0 } else { pid },
            status: status.to_string(),
            bundle: bundle.display().to_string(),
            rootfs: rootfs_of(bundle).display().to_string(),
            created: rfc3339(created),
            owner: String::new(),
            annotations,
            driver: driver.to_owned(),
        }
    }
}

/// The absolute rootfs of a bundle (runc's `rootfs` in `state`), best effort.
pub fn rootfs_of(bundle: &Path) -> std::path::PathBuf {
    execdriver::load_spec(&bundle.join("config.json"))
        .ok()
        .and_then(|s| s.root().as_ref().map(|r| r.path().clone()))
        .map(|p| if p.is_absolute() { p } else { bundle.join(p) })
        .unwrap_or_else(|| bundle.join("rootfs"))
}

/// `2026-11-23T10:01:02.123456789Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One line of `execdriver events`: `{"type": "stats"|"oom", "id": ..., "data": ...}`.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Stats in the shape of runc's `events --stats` (`types.Stats`), which tools parse.
pub fn runc_stats(s: &ResourceStats) -> serde_json::Value {
    let mut v = serde_json::json!({
        "cpu": {
            "usage": {
                "total": s.cpu.total_ns,
                "kernel": s.cpu.system_ns,
                "user": s.cpu.user_ns,
            },
            "throttling": {
                "periods": s.cpu.periods,
                "throttledPeriods": s.cpu.throttled_periods,
                "throttledTime": s.cpu.throttled_ns,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": {
                "limit": s.memory.limit,
                "usage": s.memory.usage,
                "max": s.memory.max_usage,
                "failcnt": s.memory.failcnt,
            },
            "swap": { "usage": s.memory.swap },
            "raw": { "rss": s.memory.rss, "cache": s.memory.cache },
        },
        "pids": {
            "current": s.pids.current,
            "limit": s.pids.limit.unwrap_or(0),
        },
        "blkio": {
            "ioServiceBytesRecursive": [
                {"op": "Read", "value": s.block_io.read_bytes},
                {"op": "Write", "value": s.block_io.write_bytes},
            ],
            "ioServicedRecursive": [
                {"op": "Read", "value": s.block_io.read_ops},
                {"op": "Write", "value": s.block_io.write_ops},
            ],
        },
    });
    if let Some(n) = &s.network {
        v["network_interfaces"] = serde_json::json!([{
            "name": "all",
            "rx_bytes": n.rx_bytes,
            "tx_bytes": n.tx_bytes,
            "rx_packets": n.rx_packets,
            "tx_packets": n.tx_packets,
        }]);
    }
    if let Some(h) = &s.http {
        // Ours (runc has no such field; parsers skip what they don't know).
        v["http"] = serde_json::json!({"requests": h.requests, "inFlight": h.in_flight});
    }
    v
}

/// A Go-style duration: `5s`, `100ms`, `1m30s`, `2h`, `250us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: expected a duration such as 5s, 100ms or 1m30s");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[u_end..];
        total += Duration::try_from_secs_f64(n * unit).map_err(|_| bad())?;
    }
    Ok(total)
}

/// A size in bytes as runc's flags take it: `1048576`, `512k`, `64m`, `1g`, `1.5GiB`; `-1`
/// means unlimited.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let bad = || format!("{s:?}: expected a size such as 67108864, 512k, 64m or 1g");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..split].parse().map_err(|_| bad())?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

/// `execdriver spec`: a default `config.json` for a busybox-like rootfs, as `runc spec` makes;
/// `rootless` adds a user namespace mapping the caller to root and drops what needs real root.
pub fn default_spec(rootless: bool, uid: u32, gid: u32) -> serde_json::Value {
    const CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let mut spec = serde_json::json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": CAPS,
                "effective": CAPS,
                "permitted": CAPS,
                "ambient": CAPS,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "execdriver",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    // As runc 1.1: on a cgroup-v2-only host the example has a cgroup namespace too.
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces is an array")
            .push(serde_json::json!({"type": "cgroup"}));
    }
    if rootless {
        let linux = &mut spec["linux"];
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        linux["namespaces"]
            .as_array_mut()
            .expect("namespaces is an array")
            .push(serde_json::json!({"type": "user"}));
        // No cgroup writes without root: no device rules; sysfs and cgroupfs bound read-only
        // from the host instead of mounted; devpts without a gid that may not be mapped.
        linux["resources"] = serde_json::json!({});
        let mounts = spec["mounts"].as_array_mut().expect("mounts is an array");
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                *m = serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
            if m["destination"] == "/dev/pts"
                && let Some(opts) = m["options"].as_array_mut()
            {
                opts.retain(|o| o != "gid=5");
            }
        }
    }
    spec
}

/// `execdriver features`: what this runtime supports, in the shape of runc's `features`
/// document, with the drivers and their capabilities under `annotations`.
pub fn features(drivers: &[(String, String)]) -> serde_json::Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "org.execdriver.drivers".into(),
        drivers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(",")
            .into(),
    );
    for (name, caps) in drivers {
        annotations.insert(format!("org.execdriver.driver.{name}"), caps.clone().into());
    }
    annotations.insert(
        "org.execdriver.version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "sync", "unbindable",
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capability_names(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": [native_arch()],
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": annotations,
    })
}

fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390x" => "SCMP_ARCH_S390X",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        other => other,
    }
}

fn capability_names() -> Vec<String> {
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    NAMES.iter().map(|n| format!("CAP_{n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29 12:34:56.5 UTC (a leap day).
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_500);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.500000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "5", "s", "5x", "-1s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_size("-1").unwrap(), -1);
        for bad in ["", "x", "1q", "-2", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_spec_parses_and_rootless_maps_the_caller() {
        let spec = default_spec(false, 0, 0);
        let parsed = execdriver::parse_spec(spec.to_string().as_bytes()).unwrap();
        assert_eq!(
            parsed.process().as_ref().unwrap().args().as_ref().unwrap(),
            &vec!["sh".to_owned()]
        );
        let spec = default_spec(true, 1000, 100);
        execdriver::parse_spec(spec.to_string().as_bytes()).unwrap();
        assert_eq!(spec["linux"]["uidMappings"][0]["hostID"], 1000);
        assert_eq!(spec["linux"]["gidMappings"][0]["hostID"], 100);
        assert!(
            spec["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!({"type": "user"}))
        );
    }

    #[test]
    fn state_of_a_stopped_container_has_pid_zero() {
        let id = ContainerId::new("c").unwrap();
        let s = State::new(
            &id,
            Status::Stopped,
            42,
            Path::new("/b"),
            UNIX_EPOCH,
            BTreeMap::new(),
            "native",
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["pid"], 0);
        assert_eq!(v["status"], "stopped");
        assert!(v.get("annotations").is_none());
        assert_eq!(v["ociVersion"], OCI_VERSION);
    }
}
