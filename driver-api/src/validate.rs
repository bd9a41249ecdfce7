//! One validator of OCI runtime specs, run by every driver before it creates anything: a
//! configuration that is invalid by the OCI runtime spec is refused by every driver alike,
//! with [`DriverError::InvalidSpec`] naming the field — whether or not the driver would use
//! the field. What a driver can't honour in a valid spec is its own business
//! ([`DriverError::Unsupported`], or documented as ignored).
//!
//! Checked here: `process` (args, cwd, env, rlimits, oomScoreAdj), `mounts` (destinations), `linux.namespaces` (duplicates), `linux.cgroupsPath`, `linux.maskedPaths` /
//! `readonlyPaths`, and `linux.resources` values (memory, cpu, cpusets) — what
//! needs no host state. Kernel- and host-dependent checks (a namespace path, a bind source, a
//! limit above what the caller holds, a mount's filesystem type — a module's filesystem is
//! missing from `/proc/filesystems` until it is loaded) stay with the drivers.

use std::collections::HashSet;
use std::path::{Component, Path};

use oci_spec::runtime::{LinuxResources, Spec};

use crate::{DriverError, Result};

fn bad(field: impl Into<String>, reason: impl Into<String>) -> DriverError {
    DriverError::invalid_spec(field, reason)
}

/// `p` is absolute and has no `..` component, or the error says which it is not.
fn path_ok(field: &str, p: &Path) -> Result<()> {
    if !p.is_absolute() {
        return Err(bad(
            field,
            format!("{} is not an absolute path", p.display()),
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(bad(field, format!("{} contains '..'", p.display())));
    }
    Ok(())
}

/// An absolute path without `..` components (and no NUL).
fn absolute_clean(p: &Path) -> bool {
    p.is_absolute()
        && !p.components().any(|c| c == Component::ParentDir)
        && !p.as_os_str().as_encoded_bytes().contains(&0)
}

/// Validates `spec`; the first problem found.
///
/// # Errors
/// [`DriverError::InvalidSpec`] naming the field.
pub fn validate_spec(spec: &Spec) -> Result<()> {
    process(spec)?;
    mounts(spec)?;
    linux(spec)
}

fn process(spec: &Spec) -> Result<()> {
    let Some(p) = spec.process() else {
        return Err(bad("process", "missing"));
    };
    let args = p.args().as_deref().unwrap_or(&[]);
    match args.first() {
        None => return Err(bad("process.args", "must not be empty")),
        Some(a) if a.is_empty() => return Err(bad("process.args[0]", "must not be empty")),
        Some(_) => {}
    }
    for (i, a) in args.iter().enumerate() {
        if a.contains('\0') {
            return Err(bad(format!("process.args[{i}]"), "contains a NUL byte"));
        }
    }
    path_ok("process.cwd", p.cwd())?;
    for (i, e) in p.env().iter().flatten().enumerate() {
        if !e.contains('=') || e.starts_with('=') {
            return Err(bad(
                format!("process.env[{i}]"),
                format!("{e:?} is not NAME=value"),
            ));
        }
        if e.contains('\0') {
            return Err(bad(format!("process.env[{i}]"), "contains a NUL byte"));
        }
    }
    // (An unknown rlimit type can't get here: parsing the spec refuses it.)
    let mut seen = Vec::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let field = format!("process.rlimits[{i}]");
        if r.soft() > r.hard() {
            return Err(bad(
                field,
                format!(
                    "soft limit {} is above hard limit {} ({})",
                    r.soft(),
                    r.hard(),
                    r.typ()
                ),
            ));
        }
        if seen.contains(&r.typ()) {
            return Err(bad(field, format!("{} is given twice", r.typ())));
        }
        seen.push(r.typ());
    }
    if let Some(adj) = p.oom_score_adj()
        && !(-1000..=1000).contains(&adj)
    {
        return Err(bad(
            "process.oomScoreAdj",
            format!("{adj} is outside -1000..=1000"),
        ));
    }
    Ok(())
}

fn mounts(spec: &Spec) -> Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination();
        if dest.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(bad(field, "the destination contains a NUL byte"));
        }
        if dest.as_os_str().is_empty() {
            return Err(bad(format!("{field}.destination"), "must not be empty"));
        }
        path_ok(&format!("{field}.destination"), dest)?;
    }
    Ok(())
}

fn linux(spec: &Spec) -> Result<()> {
    let Some(l) = spec.linux() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    for (i, n) in l.namespaces().iter().flatten().enumerate() {
        if !seen.insert(n.typ()) {
            return Err(bad(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} is given twice", n.typ()),
            ));
        }
    }
    if let Some(p) = l.cgroups_path() {
        let s = p.to_string_lossy();
        if p.components().any(|c| c == Component::ParentDir) || s.contains('\0') {
            return Err(bad(
                "linux.cgroupsPath",
                format!("{s:?} must not contain '..'"),
            ));
        }
        if !s.is_empty() && s.trim_matches('/').is_empty() {
            return Err(bad("linux.cgroupsPath", "is the hierarchy root"));
        }
    }
    for (what, list) in [
        ("maskedPaths", l.masked_paths()),
        ("readonlyPaths", l.readonly_paths()),
    ] {
        for (i, p) in list.iter().flatten().enumerate() {
            if !absolute_clean(Path::new(p)) {
                return Err(bad(
                    format!("linux.{what}[{i}]"),
                    format!("{p:?} must be an absolute path without '..'"),
                ));
            }
        }
    }
    if let Some(r) = l.resources() {
        resources(r)?;
    }
    Ok(())
}

/// A cpuset list: `0-3,5,7-8`.
fn cpuset_ok(s: &str) -> bool {
    s.split(',').all(|part| {
        let mut it = part.splitn(2, '-');
        let a = it.next().map(|x| x.trim().parse::<u32>());
        match (a, it.next().map(|x| x.trim().parse::<u32>())) {
            (Some(Ok(_)), None) => true,
            (Some(Ok(a)), Some(Ok(b))) => a <= b,
            _ => false,
        }
    })
}

fn resources(r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        for (name, v) in [
            ("limit", m.limit()),
            ("reservation", m.reservation()),
            ("swap", m.swap()),
        ] {
            if let Some(v) = v
                && v < -1
            {
                return Err(bad(
                    format!("linux.resources.memory.{name}"),
                    format!("{v} is not a limit (bytes, or -1)"),
                ));
            }
        }
        if let (Some(limit), Some(swap)) = (m.limit(), m.swap())
            && limit > 0
            && swap > 0
            && swap < limit
        {
            return Err(bad(
                "linux.resources.memory",
                format!("swap {swap} (memory + swap) is below the memory limit {limit}"),
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(p) = c.period()
            && !(1000..=1_000_000).contains(&p)
        {
            return Err(bad(
                "linux.resources.cpu.period",
                format!("{p} is outside 1000..=1000000 µs"),
            ));
        }
        if let Some(q) = c.quota()
            && q != -1
            && q < 1000
        {
            return Err(bad(
                "linux.resources.cpu.quota",
                format!("{q} is below 1000 µs"),
            ));
        }
        for (name, v) in [("cpus", c.cpus()), ("mems", c.mems())] {
            if let Some(v) = v
                && !v.is_empty()
                && !cpuset_ok(v)
            {
                return Err(bad(
                    format!("linux.resources.cpu.{name}"),
                    format!("{v:?} is not a list like 0-3,5"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(edit: impl FnOnce(&mut serde_json::Value)) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"cwd": "/", "args": ["sh"], "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
        });
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn field(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        match validate_spec(&spec(edit)) {
            Err(DriverError::InvalidSpec { field, .. }) => field,
            r => panic!("expected InvalidSpec, got {r:?}"),
        }
    }

    #[test]
    fn a_valid_spec_passes() {
        validate_spec(&spec(|_| {})).unwrap();
    }

    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

    #[test]
    fn each_invalid_field_is_named() {
        use serde_json::json;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| v["process"]["args"] = json!([])),
                "process.args",
            ),
            (
                Box::new(|v| v["process"]["args"] = json!([""])),
                "process.args[0]",
            ),
            (
                Box::new(|v| v["process"]["args"] = json!(["sh", "a\u{0}b"])),
                "process.args[1]",
            ),
            (
                Box::new(|v| v["process"]["cwd"] = json!("tmp")),
                "process.cwd",
            ),
            (
                Box::new(|v| v["process"]["env"] = json!(["NOEQ"])),
                "process.env[0]",
            ),
            (
                Box::new(|v| {
                    v["process"]["rlimits"] =
                        json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}])
                }),
                "process.rlimits[0]",
            ),
            (
                Box::new(
                    |v| v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 5, "hard": 5}, {"type": "RLIMIT_NOFILE", "soft": 5, "hard": 5}]),
                ),
                "process.rlimits[1]",
            ),
            (
                Box::new(|v| v["process"]["oomScoreAdj"] = json!(1001)),
                "process.oomScoreAdj",
            ),
            (
                Box::new(|v| v["mounts"][0]["destination"] = json!("proc")),
                "mounts[0].destination",
            ),
            (
                Box::new(|v| v["mounts"][0]["destination"] = json!("/../../etc")),
                "mounts[0].destination",
            ),
            (
                Box::new(|v| v["mounts"][0]["destination"] = json!("")),
                "mounts[0].destination",
            ),
            (
                Box::new(|v| v["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "pid"}])),
                "linux.namespaces[1]",
            ),
            (
                Box::new(|v| v["linux"]["cgroupsPath"] = json!("../escape")),
                "linux.cgroupsPath",
            ),
            (
                Box::new(|v| v["linux"]["cgroupsPath"] = json!("/")),
                "linux.cgroupsPath",
            ),
            (
                Box::new(|v| v["linux"]["maskedPaths"] = json!(["proc/kcore"])),
                "linux.maskedPaths[0]",
            ),
            (
                Box::new(|v| v["linux"]["readonlyPaths"] = json!(["/a/../b"])),
                "linux.readonlyPaths[0]",
            ),
            (
                Box::new(|v| v["linux"]["resources"] = json!({"memory": {"limit": -5}})),
                "linux.resources.memory.limit",
            ),
            (
                Box::new(|v| {
                    v["linux"]["resources"] =
                        json!({"memory": {"limit": 67_108_864, "swap": 1_048_576}})
                }),
                "linux.resources.memory",
            ),
            (
                Box::new(|v| v["linux"]["resources"] = json!({"cpu": {"cpus": "abc"}})),
                "linux.resources.cpu.cpus",
            ),
            (
                Box::new(|v| v["linux"]["resources"] = json!({"cpu": {"mems": "3-1"}})),
                "linux.resources.cpu.mems",
            ),
            (
                Box::new(|v| {
                    v["linux"]["resources"] = json!({"cpu": {"quota": 50_000, "period": 10}})
                }),
                "linux.resources.cpu.period",
            ),
        ];
        for (edit, want) in cases {
            assert_eq!(field(edit), want);
        }
    }

    #[test]
    fn cpuset_lists() {
        for ok in ["0", "0-3", "0-3,5,7-8", "1, 2"] {
            assert!(cpuset_ok(ok), "{ok}");
        }
        for bad in ["abc", "3-1", "1-", "-1", "1,,2", ""] {
            assert!(!cpuset_ok(bad), "{bad}");
        }
    }
}
