//! Seccomp: an OCI `linux.seccomp` profile compiled to BPF in the parent, installed by the
//! child as its last step before `execve`.
//!
//! The compiler is `seccompiler` (pure Rust, maintained by Firecracker) rather than libseccomp:
//! no C library to link or install, and the BPF is built before `clone` from plain data. A
//! seccompiler filter has one action for its rules and one for everything else, so a profile
//! becomes a small stack of filters — the kernel runs every installed filter and keeps the
//! most severe answer:
//! - the *default filter* allows the syscalls of allow-like rules (`SCMP_ACT_ALLOW`,
//!   `SCMP_ACT_LOG`) and answers the default action for everything else (absent when the
//!   default is allow);
//! - one filter per other action (`ERRNO(n)`, `TRAP`, `KILL_*`, `LOG`) answers that action for
//!   its rules and allows everything else; installed last, so an errno of a rule wins over the
//!   default errno.
//!
//! Where a profile sets a rule action that is *less* severe than the default for a syscall
//! (say `ERRNO` under a `KILL` default), the stricter default wins — never the other way round.
//! `SCMP_ACT_TRACE` and `SCMP_ACT_NOTIFY` are refused; only the native architecture is
//! filtered (calls of other ABIs fail the architecture check and are killed).

pub mod default;
pub(crate) mod syscalls;

use std::collections::BTreeMap;

use execdriver_api::DriverError;
use execdriver_api::oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Compiled filters, ready for the child.
#[derive(Debug)]
pub(crate) struct SeccompPlan {
    /// Programs in installation order.
    #[allow(dead_code)]
    programs: Vec<BpfProgram>,
    /// `struct sock_fprog` for each program, pointing into `programs`.
    pub fprogs: Vec<SockFprog>,
    /// `SECCOMP_FILTER_FLAG_*` for `seccomp(2)`.
    pub flags: u32,
}

/// The kernel's `struct sock_fprog`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SockFprog {
    pub len: u16,
    pub filter: *const seccompiler::sock_filter,
}

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

fn field(f: &str) -> String {
    format!("linux.seccomp.{f}")
}

fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    default_errno: u32,
    f: &str,
) -> Result<SeccompAction, DriverError> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActAllow => SeccompAction::Allow,
        A::ScmpActLog => SeccompAction::Log,
        A::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(default_errno)),
        A::ScmpActTrap => SeccompAction::Trap,
        A::ScmpActKill | A::ScmpActKillThread => SeccompAction::KillThread,
        A::ScmpActKillProcess => SeccompAction::KillProcess,
        A::ScmpActTrace | A::ScmpActNotify => {
            // The spec's own name for it (SCMP_ACT_NOTIFY), not Rust's.
            let name = serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{a:?}"));
            return Err(DriverError::unsupported(
                format!("{} {name}", field(f)),
                crate::NAME,
            ));
        }
    })
}

fn allow_like(a: &SeccompAction) -> bool {
    matches!(a, SeccompAction::Allow | SeccompAction::Log)
}

/// Compiles `profile`. `None` when it filters nothing (allow by default, no other rule).
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Option<SeccompPlan>, DriverError> {
    if profile.listener_path().is_some() {
        return Err(DriverError::unsupported(field("listenerPath"), crate::NAME));
    }
    let default_errno = profile.default_errno_ret().unwrap_or(libc::EPERM as u32);
    let default = action(
        profile.default_action(),
        None,
        default_errno,
        "defaultAction",
    )?;
    let mut flags = 0u32;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            // One thread at install time: nothing to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            other => {
                return Err(DriverError::unsupported(
                    format!("{} {other:?}", field("flags")),
                    crate::NAME,
                ));
            }
        };
    }

    // Rules by action, then by syscall number.
    type Rules = BTreeMap<i64, Vec<SeccompRule>>;
    let mut allow: Rules = BTreeMap::new();
    let mut by_action: Vec<(SeccompAction, Rules)> = Vec::new();
    for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
        let f = format!("syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), default_errno, &f)?;
        let mut conds = Vec::new();
        for (j, arg) in sc.args().iter().flatten().enumerate() {
            let af = field(&format!("{f}.args[{j}]"));
            let index = u8::try_from(arg.index())
                .ok()
                .filter(|i| *i < 6)
                .ok_or_else(|| {
                    DriverError::invalid_spec(&af, format!("index {} is not 0..=5", arg.index()))
                })?;
            let (op, value) = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
                LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
                LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
                LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
                LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
                LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
                LinuxSeccompOperator::ScmpCmpMaskedEq => (
                    SeccompCmpOp::MaskedEq(arg.value()),
                    arg.value_two().unwrap_or(0),
                ),
            };
            conds.push(
                SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
                    .map_err(|e| DriverError::invalid_spec(&af, e.to_string()))?,
            );
        }
        let rule = if conds.is_empty() {
            None
        } else {
            Some(
                SeccompRule::new(conds)
                    .map_err(|e| DriverError::invalid_spec(field(&f), e.to_string()))?,
            )
        };
        for name in sc.names() {
            let Some(nr) = syscalls::number(name) else {
                // As libseccomp does: a name this architecture does not have is skipped.
                tracing::debug!(syscall = %name, "seccomp: no such system call on this architecture; rule skipped");
                continue;
            };
            let target = if allow_like(&act) {
                &mut allow
            } else {
                if let Some(pos) = by_action.iter().position(|(a, _)| *a == act) {
                    &mut by_action[pos].1
                } else {
                    by_action.push((act.clone(), BTreeMap::new()));
                    &mut by_action.last_mut().expect("just pushed").1
                }
            };
            add_rule(target, nr, rule.clone());
            if act == SeccompAction::Log {
                let pos = by_action
                    .iter()
                    .position(|(a, _)| *a == SeccompAction::Log)
                    .unwrap_or_else(|| {
                        by_action.push((SeccompAction::Log, BTreeMap::new()));
                        by_action.len() - 1
                    });
                add_rule(&mut by_action[pos].1, nr, rule.clone());
            }
        }
    }
    let mut programs = Vec::new();
    let build = |rules: Rules,
                 mismatch: SeccompAction,
                 matched: SeccompAction|
     -> Result<BpfProgram, DriverError> {
        let filter = SeccompFilter::new(rules, mismatch, matched, ARCH)
            .map_err(|e| DriverError::invalid_spec(field("syscalls"), e.to_string()))?;
        BpfProgram::try_from(filter)
            .map_err(|e| DriverError::invalid_spec(field("syscalls"), e.to_string()))
    };
    if default != SeccompAction::Allow {
        programs.push(build(allow, default.clone(), SeccompAction::Allow)?);
    }
    for (act, rules) in by_action {
        if act != default && !rules.is_empty() {
            programs.push(build(rules, SeccompAction::Allow, act)?);
        }
    }
    if programs.is_empty() {
        return Ok(None);
    }
    for p in &programs {
        if p.len() > u16::MAX as usize {
            return Err(DriverError::invalid_spec(
                field("syscalls"),
                "the compiled filter is too large",
            ));
        }
    }
    let fprogs = programs
        .iter()
        .map(|p| SockFprog {
            len: p.len() as u16,
            filter: p.as_ptr(),
        })
        .collect();
    Ok(Some(SeccompPlan {
        programs,
        fprogs,
        flags,
    }))
}

/// Adds a rule (or, with `None`, an unconditional match) for `nr`. An unconditional match
/// absorbs conditional ones.
fn add_rule(rules: &mut BTreeMap<i64, Vec<SeccompRule>>, nr: i64, rule: Option<SeccompRule>) {
    match (rules.get_mut(&nr), rule) {
        (Some(existing), Some(r)) => {
            if !existing.is_empty() {
                existing.push(r);
            }
        }
        (Some(existing), None) => existing.clear(),
        (None, Some(r)) => {
            rules.insert(nr, vec![r]);
        }
        (None, None) => {
            rules.insert(nr, Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use execdriver_api::oci_spec::runtime::Capability;

    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_denylist_is_one_filter_and_an_allowlist_has_a_default_filter() {
        let deny = compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#))
            .unwrap()
            .unwrap();
        assert_eq!(deny.fprogs.len(), 1);
        let allow = compile(&profile(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}, {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#))
            .unwrap()
            .unwrap();
        assert_eq!(allow.fprogs.len(), 2);
        assert!(
            compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn unknown_names_are_skipped_and_bad_profiles_name_the_field() {
        assert!(compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]}"#)).unwrap().is_none());
        for (json, want) in [
            (
                r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
                "linux.seccomp.defaultAction",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_TRACE"}]}"#,
                "linux.seccomp.syscalls[0]",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "linux.seccomp.syscalls[0].args[0]: index 9",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x"}"#,
                "linux.seccomp.listenerPath",
            ),
        ] {
            let e = compile(&profile(json)).unwrap_err().to_string();
            assert!(e.contains(want), "{json}\n{e}");
        }
    }

    #[test]
    fn the_default_profile_compiles() {
        let p = default::profile(&[]);
        let plan = compile(&p).unwrap().unwrap();
        assert_eq!(
            plan.fprogs.len(),
            2,
            "default filter + the clone3 ENOSYS filter"
        );
        // The default filter checks the architecture, then ~300 allowed calls.
        assert!(plan.fprogs[0].len > 300, "{}", plan.fprogs[0].len);
        assert!(plan.fprogs[1].len > 3);
        // With CAP_SYS_ADMIN there is no clone3 special case.
        let admin = compile(&default::profile(&[Capability::SysAdmin]))
            .unwrap()
            .unwrap();
        assert_eq!(admin.fprogs.len(), 1);
    }
}
