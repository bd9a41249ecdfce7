//! The process plan: argv/env as C arrays, PATH candidates, user, capabilities, rlimits.

use std::ffi::CString;

use execdriver_api::DriverError;
use execdriver_api::oci_spec::runtime::{Capability, Process};

use super::paths::cstring;

/// The five capability sets as bit masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// One resource limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimit {
    pub resource: libc::c_int,
    pub soft: u64,
    pub hard: u64,
}

/// Everything about the process, ready for the child.
#[derive(Debug)]
pub(crate) struct ProcessPlan {
    /// Keeps the strings `argv_ptrs` points into alive.
    #[allow(dead_code)]
    argv: Vec<CString>,
    pub argv_ptrs: crate::sys::CPtrs,
    #[allow(dead_code)]
    envp: Vec<CString>,
    pub envp_ptrs: crate::sys::CPtrs,
    /// Paths to try for `args[0]`, in order (PATH lookup inside the container).
    pub candidates: Vec<CString>,
    /// `args[0]` as given, for messages.
    pub arg0: String,
    pub cwd: CString,
    pub cwd_display: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub umask: Option<libc::mode_t>,
    /// The capability sets; all empty when the spec has none (as runc does).
    pub caps: CapSets,
    pub last_cap: u32,
    pub rlimits: Vec<Rlimit>,
    pub rlimit_names: Vec<String>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    /// The compiled `linux.seccomp` profile.
    pub seccomp: Option<crate::seccomp::SeccompPlan>,
    /// Install the filter before dropping capabilities: without `noNewPrivileges` the kernel
    /// only lets a process with CAP_SYS_ADMIN install one, and the process may not keep it.
    pub seccomp_early: bool,
    /// `process.terminal`: a pty, with `consoleSize` (rows, columns) when given.
    pub terminal: Option<Option<(u16, u16)>>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ProcessPlan {
    /// Validates and converts `process`. `last_cap` is the kernel's highest capability number;
    /// `seccomp` is the container's profile.
    pub fn build(
        process: &Process,
        last_cap: u32,
        seccomp: Option<&execdriver_api::oci_spec::runtime::LinuxSeccomp>,
    ) -> Result<Self, DriverError> {
        let args = process.args().as_deref().unwrap_or(&[]);
        if args.is_empty() {
            return Err(DriverError::invalid_spec(
                "process.args",
                "must not be empty",
            ));
        }
        if args[0].is_empty() {
            return Err(DriverError::invalid_spec(
                "process.args[0]",
                "must not be empty",
            ));
        }
        let argv = args
            .iter()
            .enumerate()
            .map(|(i, a)| cstring(a, &format!("process.args[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let env = process.env().as_deref().unwrap_or(&[]);
        let mut path_var = None;
        let envp = env
            .iter()
            .enumerate()
            .map(|(i, kv)| {
                let field = format!("process.env[{i}]");
                match kv.split_once('=') {
                    Some((k, _)) if !k.is_empty() => {}
                    _ => {
                        return Err(DriverError::invalid_spec(
                            field,
                            format!("{kv:?} is not KEY=VALUE"),
                        ));
                    }
                }
                if let Some(p) = kv.strip_prefix("PATH=") {
                    path_var = Some(p);
                }
                cstring(kv, &field)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let arg0 = &args[0];
        let candidates = if arg0.contains('/') {
            vec![cstring(arg0, "process.args[0]")?]
        } else {
            path_var
                .unwrap_or(DEFAULT_PATH)
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| {
                    cstring(
                        &format!("{}/{arg0}", d.trim_end_matches('/')),
                        "process.env PATH",
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        if candidates.is_empty() {
            return Err(DriverError::invalid_spec(
                "process.env",
                format!("PATH is empty, so {arg0:?} can't be found"),
            ));
        }

        let cwd = process.cwd();
        if !cwd.is_absolute() {
            return Err(DriverError::invalid_spec(
                "process.cwd",
                format!("{} is not an absolute path", cwd.display()),
            ));
        }
        let cwd_display = cwd.display().to_string();

        let user = process.user();
        let groups = user.additional_gids().clone().unwrap_or_default();
        if groups.len() > 65536 {
            return Err(DriverError::invalid_spec(
                "process.user.additionalGids",
                "more than 65536 groups",
            ));
        }

        let caps = match process.capabilities() {
            None => CapSets::default(),
            Some(c) => {
                let set = |s: &Option<std::collections::HashSet<Capability>>| -> u64 {
                    s.iter()
                        .flatten()
                        .map(|c| cap_number(*c))
                        .filter(|n| *n <= last_cap)
                        .fold(0u64, |m, n| m | (1 << n))
                };
                let sets = CapSets {
                    bounding: set(c.bounding()),
                    effective: set(c.effective()),
                    permitted: set(c.permitted()),
                    inheritable: set(c.inheritable()),
                    ambient: set(c.ambient()),
                };
                if sets.effective & !sets.permitted != 0 {
                    return Err(DriverError::invalid_spec(
                        "process.capabilities.effective",
                        "must be a subset of permitted",
                    ));
                }
                let mut sets = sets;
                let unraisable = sets.ambient & !(sets.permitted & sets.inheritable);
                if unraisable != 0 {
                    // The kernel raises an ambient capability only when it is permitted and
                    // inheritable. `runc spec` writes ambient without inheritable, and runc
                    // skips those; so do we, and say so.
                    tracing::debug!(
                        mask = format_args!("{unraisable:#x}"),
                        "process.capabilities.ambient: capabilities not in both permitted and \
                         inheritable are not raised"
                    );
                    sets.ambient &= sets.permitted & sets.inheritable;
                }
                sets
            }
        };

        let mut rlimits = Vec::new();
        let mut rlimit_names = Vec::new();
        for (i, r) in process.rlimits().iter().flatten().enumerate() {
            let field = format!("process.rlimits[{i}]");
            let name = serde_json::to_value(r.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", r.typ()));
            let resource = rlimit_resource(&name).ok_or_else(|| {
                DriverError::invalid_spec(format!("{field}.type"), format!("unknown rlimit {name}"))
            })?;
            if r.soft() > r.hard() {
                return Err(DriverError::invalid_spec(
                    field,
                    format!(
                        "{name}: soft limit {} is above hard limit {}",
                        r.soft(),
                        r.hard()
                    ),
                ));
            }
            if rlimits.iter().any(|x: &Rlimit| x.resource == resource) {
                return Err(DriverError::invalid_spec(
                    field,
                    format!("{name} is given twice"),
                ));
            }
            rlimits.push(Rlimit {
                resource,
                soft: r.soft(),
                hard: r.hard(),
            });
            rlimit_names.push(name);
        }

        if let Some(adj) = process.oom_score_adj()
            && !(-1000..=1000).contains(&adj)
        {
            return Err(DriverError::invalid_spec(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..=1000"),
            ));
        }
        if process
            .apparmor_profile()
            .as_deref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(DriverError::unsupported(
                "process.apparmorProfile (AppArmor)",
                crate::NAME,
            ));
        }
        if process
            .selinux_label()
            .as_deref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(DriverError::unsupported(
                "process.selinuxLabel (SELinux)",
                crate::NAME,
            ));
        }
        if process.io_priority().is_some() {
            return Err(DriverError::unsupported("process.ioPriority", crate::NAME));
        }
        if process.scheduler().is_some() {
            return Err(DriverError::unsupported("process.scheduler", crate::NAME));
        }
        if process.exec_cpu_affinity().is_some() {
            return Err(DriverError::unsupported(
                "process.execCPUAffinity",
                crate::NAME,
            ));
        }

        let seccomp = seccomp.map(crate::seccomp::compile).transpose()?.flatten();
        let no_new_privs = process.no_new_privileges().unwrap_or(false);
        let keeps_sys_admin = caps.effective & (1 << 21) != 0;
        let terminal = (process.terminal() == Some(true)).then(|| {
            process.console_size().as_ref().map(|b| {
                (
                    b.height().min(u64::from(u16::MAX)) as u16,
                    b.width().min(u64::from(u16::MAX)) as u16,
                )
            })
        });

        let argv_ptrs = crate::sys::CPtrs::to(&argv);
        let envp_ptrs = crate::sys::CPtrs::to(&envp);

        Ok(Self {
            argv,
            argv_ptrs,
            envp,
            envp_ptrs,
            candidates,
            arg0: arg0.clone(),
            cwd: cstring(&cwd_display, "process.cwd")?,
            cwd_display,
            uid: user.uid(),
            gid: user.gid(),
            groups,
            umask: user.umask().map(|m| m as libc::mode_t),
            caps,
            last_cap,
            rlimits,
            rlimit_names,
            no_new_privs,
            oom_score_adj: process.oom_score_adj(),
            seccomp_early: seccomp.is_some() && !no_new_privs && !keeps_sys_admin,
            seccomp,
            terminal,
        })
    }
}

/// The kernel's number of a capability.
pub(crate) fn cap_number(c: Capability) -> u32 {
    use Capability as C;
    match c {
        C::Chown => 0,
        C::DacOverride => 1,
        C::DacReadSearch => 2,
        C::Fowner => 3,
        C::Fsetid => 4,
        C::Kill => 5,
        C::Setgid => 6,
        C::Setuid => 7,
        C::Setpcap => 8,
        C::LinuxImmutable => 9,
        C::NetBindService => 10,
        C::NetBroadcast => 11,
        C::NetAdmin => 12,
        C::NetRaw => 13,
        C::IpcLock => 14,
        C::IpcOwner => 15,
        C::SysModule => 16,
        C::SysRawio => 17,
        C::SysChroot => 18,
        C::SysPtrace => 19,
        C::SysPacct => 20,
        C::SysAdmin => 21,
        C::SysBoot => 22,
        C::SysNice => 23,
        C::SysResource => 24,
        C::SysTime => 25,
        C::SysTtyConfig => 26,
        C::Mknod => 27,
        C::Lease => 28,
        C::AuditWrite => 29,
        C::AuditControl => 30,
        C::Setfcap => 31,
        C::MacOverride => 32,
        C::MacAdmin => 33,
        C::Syslog => 34,
        C::WakeAlarm => 35,
        C::BlockSuspend => 36,
        C::AuditRead => 37,
        C::Perfmon => 38,
        C::Bpf => 39,
        C::CheckpointRestore => 40,
    }
}

fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    } as libc::c_int)
}

/// The kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`), 40 if unreadable.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn path_lookup_candidates_follow_the_container_path() {
        let p = ProcessPlan::build(
            &process(r#"{"cwd":"/","args":["sh","-c","x"],"env":["PATH=/bin:/usr/bin/"],"user":{"uid":1,"gid":2}}"#),
            40,
            None,
        )
        .unwrap();
        let c: Vec<_> = p.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(c, ["/bin/sh", "/usr/bin/sh"]);
        assert_eq!(p.argv_ptrs.len(), 4);
        assert!(p.argv_ptrs[3].is_null());
        assert!(p.envp_ptrs[1].is_null());
        let abs = ProcessPlan::build(
            &process(r#"{"cwd":"/","args":["/x/y"],"user":{"uid":0,"gid":0}}"#),
            40,
            None,
        )
        .unwrap();
        assert_eq!(abs.candidates, [c"/x/y".to_owned()]);
    }

    #[test]
    fn bad_processes_name_the_field() {
        for (json, want) in [
            (
                r#"{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}"#,
                "process.args: must not be empty",
            ),
            (
                r#"{"cwd":"/","args":[""],"user":{"uid":0,"gid":0}}"#,
                "process.args[0]: must not be empty",
            ),
            (
                r#"{"cwd":"rel","args":["a"],"user":{"uid":0,"gid":0}}"#,
                "process.cwd: rel is not an absolute path",
            ),
            (
                r#"{"cwd":"/","args":["a"],"env":["NOEQ"],"user":{"uid":0,"gid":0}}"#,
                "process.env[0]",
            ),
            (
                r#"{"cwd":"/","args":["a"],"env":["=x"],"user":{"uid":0,"gid":0}}"#,
                "process.env[0]",
            ),
            (
                r#"{"cwd":"/","args":["a"],"env":["PATH="],"user":{"uid":0,"gid":0}}"#,
                "PATH is empty",
            ),
            (
                r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]}"#,
                "process.rlimits[0]: RLIMIT_NOFILE: soft limit 10 is above hard limit 5",
            ),
            (
                r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_NOFILE","soft":1,"hard":5},{"type":"RLIMIT_NOFILE","soft":1,"hard":5}]}"#,
                "given twice",
            ),
            (
                r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"oomScoreAdj":5000}"#,
                "process.oomScoreAdj",
            ),
            (
                r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"capabilities":{"effective":["CAP_KILL"],"permitted":[]}}"#,
                "subset of permitted",
            ),
            (
                r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"apparmorProfile":"x"}"#,
                "AppArmor",
            ),
        ] {
            let err = ProcessPlan::build(&process(json), 40, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{json}\n{err}");
        }
    }

    #[test]
    fn ambient_capabilities_that_cannot_be_raised_are_dropped_as_runc_does() {
        // `runc spec` writes ambient capabilities without inheritable ones.
        let p = ProcessPlan::build(
            &process(
                r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"capabilities":{"ambient":["CAP_KILL","CAP_CHOWN"],"permitted":["CAP_KILL","CAP_CHOWN"],"inheritable":["CAP_KILL"]}}"#,
            ),
            40,
            None,
        )
        .unwrap();
        assert_eq!(p.caps.ambient, 1 << 5);
    }

    #[test]
    fn capability_sets_are_masks() {
        let p = ProcessPlan::build(
            &process(r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"],"inheritable":["CAP_KILL"],"ambient":["CAP_KILL"]}}"#),
            40,
            None,
        )
        .unwrap();
        let c = p.caps;
        assert_eq!(c.bounding, 0b100001);
        assert_eq!(c.effective, 1 << 5);
        assert_eq!(c.ambient, 1 << 5);
        // Capabilities the kernel does not know are left out.
        let old = ProcessPlan::build(
            &process(r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_BPF","CAP_KILL"]}}"#),
            37,
            None,
        )
        .unwrap();
        assert_eq!(old.caps.bounding, 1 << 5);
        // No capabilities in the spec: none at all, as runc does.
        let none = ProcessPlan::build(
            &process(r#"{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0}}"#),
            40,
            None,
        )
        .unwrap();
        assert_eq!(none.caps, CapSets::default());
    }
}
