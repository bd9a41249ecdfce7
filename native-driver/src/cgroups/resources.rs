//! `linux.resources` as cgroup file writes, for v1 and v2.
//!
//! [`plan_v1`] and [`plan_v2`] are pure: they validate the resources (errors name the field)
//! and return the writes in order. [`Cgroup::apply`](super::Cgroup::apply) performs them.

use execdriver_api::DriverError;
use execdriver_api::oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, LinuxThrottleDevice,
};

/// One write to a cgroup control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    /// The controller whose directory holds the file (v1), or whose availability it needs (v2).
    pub controller: &'static str,
    pub file: String,
    pub value: String,
    /// The OCI field, for error messages.
    pub field: &'static str,
    /// A write the host may not support (the file may be missing): skipped with a warning.
    pub optional: bool,
}

fn w(
    controller: &'static str,
    file: impl Into<String>,
    value: impl ToString,
    field: &'static str,
) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
        field,
        optional: false,
    }
}

fn invalid(field: &str, why: impl Into<String>) -> DriverError {
    DriverError::invalid_spec(format!("linux.resources.{field}"), why)
}

fn unsupported(what: &str) -> DriverError {
    DriverError::unsupported(format!("linux.resources.{what}"), crate::NAME)
}

/// The devices every container may use whatever its rules say (appended after the spec's
/// rules, as runc does): the default nodes, ptys, and mknod of anything.
const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

fn check_cpuset(v: &str, field: &'static str) -> Result<(), DriverError> {
    if v.is_empty()
        || !v
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
    {
        return Err(invalid(
            field,
            format!("{v:?} is not a list like \"0-3,5\""),
        ));
    }
    Ok(())
}

fn check_device_num(n: i64, field: &str) -> Result<(), DriverError> {
    if !(0..=u32::MAX as i64).contains(&n) {
        return Err(invalid(field, format!("device number {n} is out of range")));
    }
    Ok(())
}

fn hugepage_size(size: &str) -> Result<(), DriverError> {
    let num = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[num.len()..];
    if num.is_empty()
        || !num.bytes().all(|b| b.is_ascii_digit())
        || !["KB", "MB", "GB"].contains(&unit)
    {
        return Err(invalid(
            "hugepageLimits.pageSize",
            format!("{size:?} is not a size like \"2MB\""),
        ));
    }
    Ok(())
}

/// Device cgroup rules as v1 lines ("c 1:3 rwm"): deny everything, then the spec's own rules,
/// then the defaults and the created nodes (appended after the spec's rules, as runc does, so
/// a spec can't take /dev/null away). The same list whether or not the spec has any rules: a
/// container never starts with the host's `a *:* rwm`.
pub(crate) fn device_rules(
    rules: &[LinuxDeviceCgroup],
    created: &[(char, u32, u32)],
) -> Result<Vec<(bool, String)>, DriverError> {
    let mut out = vec![(false, "a *:* rwm".to_owned())];
    for (i, r) in rules.iter().enumerate() {
        let at = |f: &str| format!("devices[{i}].{f}");
        let typ = match r.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::P) => {
                return Err(invalid(&at("type"), "\"p\" can't be a device cgroup rule"));
            }
        };
        let num = |n: Option<i64>, f: &str| -> Result<String, DriverError> {
            match n {
                None | Some(-1) => Ok("*".into()),
                Some(n) => check_device_num(n, &at(f)).map(|()| n.to_string()),
            }
        };
        // As runc: letters other than r, w, m are ignored (and a rule left with none grants
        // or denies nothing).
        let given = r.access().clone().unwrap_or_else(|| "rwm".into());
        let access: String = ['r', 'w', 'm']
            .into_iter()
            .filter(|c| given.contains(*c))
            .collect();
        if access.is_empty() {
            continue;
        }
        let line = if typ == 'a' {
            format!("a *:* {access}")
        } else {
            format!(
                "{typ} {}:{} {access}",
                num(r.major(), "major")?,
                num(r.minor(), "minor")?
            )
        };
        out.push((r.allow(), line));
    }
    for rule in DEFAULT_DEVICE_RULES {
        out.push((true, (*rule).to_owned()));
    }
    for (typ, major, minor) in created {
        out.push((true, format!("{typ} {major}:{minor} rwm")));
    }
    Ok(out)
}

/// Writes for a cgroup v1 host. `initial` is false for `update` (device rules are not updated).
pub(crate) fn plan_v1(
    r: &LinuxResources,
    devices: Option<&[(char, u32, u32)]>,
) -> Result<Vec<Write>, DriverError> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            if l < -1 || l == 0 {
                return Err(invalid(
                    "memory.limit",
                    format!("{l} is not a limit (bytes > 0, or -1)"),
                ));
            }
            out.push(w("memory", "memory.limit_in_bytes", l, "memory.limit"));
        }
        if let Some(s) = m.swap() {
            if s < -1 {
                return Err(invalid("memory.swap", format!("{s} is not a limit")));
            }
            if let (Some(l), true) = (m.limit(), s > 0)
                && l > 0
                && s < l
            {
                return Err(invalid(
                    "memory.swap",
                    format!("memory+swap {s} is below the memory limit {l}"),
                ));
            }
            if s != 0 {
                let mut wr = w("memory", "memory.memsw.limit_in_bytes", s, "memory.swap");
                wr.optional = true;
                out.push(wr);
            }
        }
        if let Some(res) = m.reservation() {
            out.push(w(
                "memory",
                "memory.soft_limit_in_bytes",
                res,
                "memory.reservation",
            ));
        }
        if let Some(sw) = m.swappiness() {
            if sw > 100 {
                return Err(invalid("memory.swappiness", format!("{sw} is above 100")));
            }
            out.push(w("memory", "memory.swappiness", sw, "memory.swappiness"));
        }
        if let Some(k) = m.kernel_tcp() {
            let mut wr = w(
                "memory",
                "memory.kmem.tcp.limit_in_bytes",
                k,
                "memory.kernelTCP",
            );
            wr.optional = true;
            out.push(wr);
        }
        if m.kernel().is_some() {
            tracing::warn!("linux.resources.memory.kernel is deprecated and ignored");
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w(
                "memory",
                "memory.oom_control",
                1,
                "memory.disableOOMKiller",
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            if !(2..=262_144).contains(&s) {
                return Err(invalid("cpu.shares", format!("{s} is outside 2..=262144")));
            }
            out.push(w("cpu", "cpu.shares", s, "cpu.shares"));
        }
        if let Some(p) = c.period() {
            if !(1000..=1_000_000).contains(&p) {
                return Err(invalid(
                    "cpu.period",
                    format!("{p} is outside 1000..=1000000 µs"),
                ));
            }
            out.push(w("cpu", "cpu.cfs_period_us", p, "cpu.period"));
        }
        if let Some(q) = c.quota() {
            if q != -1 && q < 1000 {
                return Err(invalid(
                    "cpu.quota",
                    format!("{q} is below 1000 µs (or -1 for none)"),
                ));
            }
            out.push(w("cpu", "cpu.cfs_quota_us", q, "cpu.quota"));
        }
        if let Some(b) = c.burst() {
            let mut wr = w("cpu", "cpu.cfs_burst_us", b, "cpu.burst");
            wr.optional = true;
            out.push(wr);
        }
        if let Some(p) = c.realtime_period() {
            out.push(w("cpu", "cpu.rt_period_us", p, "cpu.realtimePeriod"));
        }
        if let Some(rt) = c.realtime_runtime() {
            out.push(w("cpu", "cpu.rt_runtime_us", rt, "cpu.realtimeRuntime"));
        }
        if c.idle().is_some_and(|i| i != 0) {
            return Err(unsupported("cpu.idle (cgroup v1)"));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            check_cpuset(cpus, "cpu.cpus")?;
            out.push(w("cpuset", "cpuset.cpus", cpus, "cpu.cpus"));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            check_cpuset(mems, "cpu.mems")?;
            out.push(w("cpuset", "cpuset.mems", mems, "cpu.mems"));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w("pids", "pids.max", pids_value(p.limit()), "pids.limit"));
    }
    if let Some(b) = r.block_io() {
        if let Some(wt) = b.weight() {
            check_weight(wt, "blockIO.weight")?;
            out.push(w("blkio", "blkio.weight", wt, "blockIO.weight"));
        }
        if let Some(lw) = b.leaf_weight() {
            check_weight(lw, "blockIO.leafWeight")?;
            let mut wr = w("blkio", "blkio.leaf_weight", lw, "blockIO.leafWeight");
            wr.optional = true;
            out.push(wr);
        }
        for d in b.weight_device().iter().flatten() {
            check_device_num(d.major(), "blockIO.weightDevice.major")?;
            check_device_num(d.minor(), "blockIO.weightDevice.minor")?;
            if let Some(wt) = d.weight() {
                check_weight(wt, "blockIO.weightDevice.weight")?;
                out.push(w(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {wt}", d.major(), d.minor()),
                    "blockIO.weightDevice",
                ));
            }
        }
        for (list, file, field) in [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "blockIO.throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "blockIO.throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "blockIO.throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "blockIO.throttleWriteIOPSDevice",
            ),
        ] {
            for d in list.iter().flatten() {
                check_throttle(d, field)?;
                out.push(w(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                    field,
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        hugepage_size(h.page_size())?;
        out.push(w(
            "hugetlb",
            format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit(),
            "hugepageLimits",
        ));
    }
    if r.network().is_some() {
        return Err(unsupported("network (net_cls/net_prio)"));
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported("rdma"));
    }
    if r.unified().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(invalid(
            "unified",
            "needs a cgroup v2 host (this one is v1)",
        ));
    }
    let rules = r.devices().as_deref().unwrap_or(&[]);
    if let Some(created) = devices {
        for (allow, line) in device_rules(rules, created)? {
            let file = if allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            out.push(w("devices", file, line, "devices"));
        }
    }
    Ok(out)
}

fn pids_value(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    }
}

fn check_weight(wt: u16, field: &'static str) -> Result<(), DriverError> {
    if !(10..=1000).contains(&wt) {
        return Err(invalid(field, format!("{wt} is outside 10..=1000")));
    }
    Ok(())
}

fn check_throttle(d: &LinuxThrottleDevice, field: &'static str) -> Result<(), DriverError> {
    check_device_num(d.major(), field)?;
    check_device_num(d.minor(), field)
}

/// cgroup v2's `cpu.weight` for v1 `cpu.shares` (the conversion runc and crun use).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// cgroup v2's `io.weight` for a v1 blkio weight (10..=1000 → 1..=10000).
pub(crate) fn blkio_to_io_weight(weight: u16) -> u64 {
    1 + (u64::from(weight).saturating_sub(10) * 9999) / 990
}

/// Writes for a cgroup v2 host. Device rules are handled separately (an eBPF program).
pub(crate) fn plan_v2(r: &LinuxResources) -> Result<Vec<Write>, DriverError> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        let limit = m.limit();
        if let Some(l) = limit {
            if l < -1 || l == 0 {
                return Err(invalid(
                    "memory.limit",
                    format!("{l} is not a limit (bytes > 0, or -1)"),
                ));
            }
            out.push(w(
                "memory",
                "memory.max",
                if l == -1 { "max".into() } else { l.to_string() },
                "memory.limit",
            ));
        }
        match m.swap() {
            None | Some(0) => {}
            Some(-1) => out.push(w("memory", "memory.swap.max", "max", "memory.swap")),
            Some(s) if s < -1 => return Err(invalid("memory.swap", format!("{s} is not a limit"))),
            Some(s) => match limit {
                Some(l) if l > 0 => {
                    if s < l {
                        return Err(invalid(
                            "memory.swap",
                            format!("memory+swap {s} is below the memory limit {l}"),
                        ));
                    }
                    out.push(w("memory", "memory.swap.max", s - l, "memory.swap"));
                }
                _ => {
                    return Err(invalid(
                        "memory.swap",
                        "a swap limit needs a memory limit on cgroup v2",
                    ));
                }
            },
        }
        if let Some(res) = m.reservation() {
            out.push(w(
                "memory",
                "memory.low",
                if res <= 0 {
                    "0".into()
                } else {
                    res.to_string()
                },
                "memory.reservation",
            ));
        }
        if m.swappiness().is_some() {
            tracing::warn!(
                "linux.resources.memory.swappiness has no cgroup v2 equivalent and is ignored"
            );
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(unsupported("memory.disableOOMKiller (cgroup v2)"));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            if !(2..=262_144).contains(&s) {
                return Err(invalid("cpu.shares", format!("{s} is outside 2..=262144")));
            }
            out.push(w("cpu", "cpu.weight", shares_to_weight(s), "cpu.shares"));
        }
        if c.quota().is_some() || c.period().is_some() {
            let period = c.period().unwrap_or(100_000);
            if !(1000..=1_000_000).contains(&period) {
                return Err(invalid(
                    "cpu.period",
                    format!("{period} is outside 1000..=1000000 µs"),
                ));
            }
            let quota = match c.quota() {
                None | Some(-1) => "max".to_owned(),
                Some(q) if q < 1000 => {
                    return Err(invalid(
                        "cpu.quota",
                        format!("{q} is below 1000 µs (or -1 for none)"),
                    ));
                }
                Some(q) => q.to_string(),
            };
            out.push(w(
                "cpu",
                "cpu.max",
                format!("{quota} {period}"),
                "cpu.quota",
            ));
        }
        if let Some(b) = c.burst() {
            out.push(w("cpu", "cpu.max.burst", b, "cpu.burst"));
        }
        if let Some(i) = c.idle() {
            out.push(w("cpu", "cpu.idle", i, "cpu.idle"));
        }
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            return Err(unsupported(
                "cpu.realtimeRuntime/realtimePeriod (cgroup v2)",
            ));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            check_cpuset(cpus, "cpu.cpus")?;
            out.push(w("cpuset", "cpuset.cpus", cpus, "cpu.cpus"));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            check_cpuset(mems, "cpu.mems")?;
            out.push(w("cpuset", "cpuset.mems", mems, "cpu.mems"));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w("pids", "pids.max", pids_value(p.limit()), "pids.limit"));
    }
    if let Some(b) = r.block_io() {
        if let Some(wt) = b.weight() {
            check_weight(wt, "blockIO.weight")?;
            out.push(w(
                "io",
                "io.weight",
                blkio_to_io_weight(wt),
                "blockIO.weight",
            ));
        }
        for d in b.weight_device().iter().flatten() {
            check_device_num(d.major(), "blockIO.weightDevice.major")?;
            check_device_num(d.minor(), "blockIO.weightDevice.minor")?;
            if let Some(wt) = d.weight() {
                check_weight(wt, "blockIO.weightDevice.weight")?;
                out.push(w(
                    "io",
                    "io.weight",
                    format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(wt)),
                    "blockIO.weightDevice",
                ));
            }
        }
        for (list, key, field) in [
            (
                b.throttle_read_bps_device(),
                "rbps",
                "blockIO.throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "wbps",
                "blockIO.throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "riops",
                "blockIO.throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "wiops",
                "blockIO.throttleWriteIOPSDevice",
            ),
        ] {
            for d in list.iter().flatten() {
                check_throttle(d, field)?;
                out.push(w(
                    "io",
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                    field,
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        hugepage_size(h.page_size())?;
        let v = if h.limit() < 0 {
            "max".into()
        } else {
            h.limit().to_string()
        };
        out.push(w(
            "hugetlb",
            format!("hugetlb.{}.max", h.page_size()),
            v,
            "hugepageLimits",
        ));
    }
    if r.network().is_some() {
        return Err(unsupported(
            "network (net_cls/net_prio have no cgroup v2 equivalent)",
        ));
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported("rdma"));
    }
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        let Some((ctrl, _)) = k.split_once('.') else {
            return Err(invalid(
                "unified",
                format!("{k:?} is not a cgroup file name"),
            ));
        };
        if k.contains('/') || k.contains("..") || ctrl.is_empty() || ctrl == "cgroup" {
            return Err(invalid(
                "unified",
                format!("{k:?} is not a writable controller file"),
            ));
        }
        let controller = match ctrl {
            "memory" => "memory",
            "cpu" => "cpu",
            "cpuset" => "cpuset",
            "io" => "io",
            "pids" => "pids",
            "hugetlb" => "hugetlb",
            "rdma" => "rdma",
            "misc" => "misc",
            _ => {
                return Err(invalid(
                    "unified",
                    format!("{k:?}: unknown controller {ctrl:?}"),
                ));
            }
        };
        out.push(Write {
            controller,
            file: k.clone(),
            value: v.clone(),
            field: "unified",
            optional: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn files(ws: &[Write]) -> Vec<(String, String)> {
        ws.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    const FULL: &str = r#"{
        "memory": {"limit": 33554432, "reservation": 16777216, "swap": 67108864},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 8},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]
    }"#;

    #[test]
    fn v1_files_and_values() {
        let ws = plan_v1(&res(FULL), None).unwrap();
        assert_eq!(
            files(&ws),
            pairs(&[
                ("memory.limit_in_bytes", "33554432"),
                ("memory.memsw.limit_in_bytes", "67108864"),
                ("memory.soft_limit_in_bytes", "16777216"),
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
                ("pids.max", "8"),
                ("blkio.weight", "500"),
                ("blkio.throttle.read_bps_device", "8:0 1048576"),
                ("hugetlb.2MB.limit_in_bytes", "0"),
            ])
        );
    }

    #[test]
    fn v2_files_and_values() {
        let ws = plan_v2(&res(FULL)).unwrap();
        assert_eq!(
            files(&ws),
            pairs(&[
                ("memory.max", "33554432"),
                ("memory.swap.max", "33554432"),
                ("memory.low", "16777216"),
                ("cpu.weight", "39"),
                ("cpu.max", "50000 100000"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
                ("pids.max", "8"),
                ("io.weight", "4950"),
                ("io.max", "8:0 rbps=1048576"),
                ("hugetlb.2MB.max", "0"),
            ])
        );
        let unlimited = plan_v2(&res(
            r#"{"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1}, "pids": {"limit": 0}}"#,
        ))
        .unwrap();
        assert_eq!(
            files(&unlimited),
            pairs(&[
                ("memory.max", "max"),
                ("memory.swap.max", "max"),
                ("cpu.max", "max 100000"),
                ("pids.max", "max")
            ])
        );
        let u = plan_v2(&res(
            r#"{"unified": {"memory.high": "1000000", "pids.max": "5"}}"#,
        ))
        .unwrap();
        assert_eq!(
            files(&u),
            pairs(&[("memory.high", "1000000"), ("pids.max", "5")])
        );
    }

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
    }

    #[test]
    fn bad_values_name_the_field() {
        for (json, want) in [
            (
                r#"{"memory": {"limit": -5}}"#,
                "linux.resources.memory.limit: -5",
            ),
            (
                r#"{"memory": {"limit": 100, "swap": 50}}"#,
                "linux.resources.memory.swap: memory+swap 50 is below",
            ),
            (
                r#"{"memory": {"swappiness": 101}}"#,
                "linux.resources.memory.swappiness",
            ),
            (
                r#"{"cpu": {"shares": 1}}"#,
                "linux.resources.cpu.shares: 1 is outside",
            ),
            (
                r#"{"cpu": {"quota": 10}}"#,
                "linux.resources.cpu.quota: 10 is below",
            ),
            (r#"{"cpu": {"period": 10}}"#, "linux.resources.cpu.period"),
            (r#"{"cpu": {"cpus": "0-1;rm"}}"#, "linux.resources.cpu.cpus"),
            (
                r#"{"blockIO": {"weight": 5}}"#,
                "linux.resources.blockIO.weight: 5 is outside",
            ),
            (
                r#"{"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}"#,
                "hugepageLimits.pageSize",
            ),
            (
                r#"{"unified": {"memory.max": "1"}}"#,
                "needs a cgroup v2 host",
            ),
            (r#"{"network": {"classID": 1}}"#, "network"),
        ] {
            let err = plan_v1(&res(json), Some(&[])).unwrap_err().to_string();
            assert!(err.contains(want), "{json}\n{err}");
        }
        for (json, want) in [
            (r#"{"memory": {"swap": 100}}"#, "needs a memory limit"),
            (
                r#"{"memory": {"disableOOMKiller": true}}"#,
                "disableOOMKiller",
            ),
            (r#"{"cpu": {"realtimeRuntime": 5}}"#, "realtime"),
            (
                r#"{"unified": {"../x": "1"}}"#,
                "not a writable controller file",
            ),
            (r#"{"unified": {"nodot": "1"}}"#, "not a cgroup file name"),
            (
                r#"{"unified": {"cgroup.procs": "1"}}"#,
                "not a writable controller file",
            ),
            (r#"{"unified": {"bogus.x": "1"}}"#, "unknown controller"),
        ] {
            let err = plan_v2(&res(json)).unwrap_err().to_string();
            assert!(err.contains(want), "{json}\n{err}");
        }
    }

    #[test]
    fn device_rules_keep_the_spec_order_then_defaults() {
        let rules: Vec<LinuxDeviceCgroup> =
            serde_json::from_str(r#"[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}]"#).unwrap();
        let lines = device_rules(&rules, &[('c', 10, 200)]).unwrap();
        assert_eq!(lines[0], (false, "a *:* rwm".to_owned()));
        assert_eq!(lines[1], (false, "a *:* rwm".to_owned()));
        assert_eq!(lines[2], (true, "c 10:229 rw".to_owned()));
        assert!(lines.contains(&(true, "c 1:3 rwm".to_owned())));
        assert_eq!(lines.last().unwrap(), &(true, "c 10:200 rwm".to_owned()));
    }

    #[test]
    fn no_rules_is_deny_all_plus_the_defaults() {
        let lines = device_rules(&[], &[]).unwrap();
        assert_eq!(lines[0], (false, "a *:* rwm".to_owned()));
        let allowed: Vec<&str> = lines[1..]
            .iter()
            .map(|(a, l)| {
                assert!(a);
                l.as_str()
            })
            .collect();
        assert_eq!(allowed, DEFAULT_DEVICE_RULES);
        // Nothing beyond runc's list: no /dev/kmsg, no block device access.
        assert!(
            !allowed
                .iter()
                .any(|l| l.starts_with("c 1:11") || *l == "b *:* rwm")
        );
        let prog =
            crate::cgroups::devices_bpf::program(&crate::cgroups::devices_bpf::parse_rules(&lines));
        use crate::cgroups::devices_bpf::{ACC_MKNOD, ACC_READ, ACC_WRITE, eval};
        assert!(
            !eval(&prog, 1, ACC_READ | ACC_WRITE, 7, 0),
            "a loop device is denied"
        );
        assert!(!eval(&prog, 2, ACC_READ, 1, 11), "/dev/kmsg is denied");
        assert!(
            eval(&prog, 2, ACC_READ | ACC_WRITE, 1, 3),
            "/dev/null is allowed"
        );
        assert!(
            eval(&prog, 1, ACC_MKNOD, 7, 0),
            "mknod of anything, as runc"
        );
    }

    #[test]
    fn unknown_access_letters_are_ignored_as_runc_does() {
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwa"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "x"}]"#,
        )
        .unwrap();
        let out = device_rules(&rules, &[]).unwrap();
        assert_eq!(out[1], (true, "c 1:3 rw".to_owned()));
        // The rule left without letters is no rule.
        assert!(
            !out.iter()
                .any(|(allow, l)| !allow && l.starts_with("c 1:5 ")),
            "{out:?}"
        );
    }
}
