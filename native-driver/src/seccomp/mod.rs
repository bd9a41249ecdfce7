//! Seccomp: an OCI `linux.seccomp` profile compiled to BPF in the parent, installed by the
//! child as its last step before `execve`.
//!
//! The compiler is our own (`bpf`), not libseccomp: no C library to link or install, and the
//! BPF is built before `clone` from plain data. Like libseccomp it dispatches on the ABI of
//! each call: the native one, and i386 / x32 when the profile's `architectures` list them
//! (each with its own call numbers); a call of an unlisted ABI — an x32 call under an
//! x86_64-only profile included — is killed. A program has one action for its rules and one
//! for everything else, so a profile becomes a small stack of filters — the kernel runs every
//! installed filter and keeps the most severe answer:
//! - the *default filter* lets the calls of every rule whose action is not the default one
//!   through (it allows them) and answers the default action for everything else (absent when
//!   the default is allow);
//! - one filter per other action (`ERRNO(n)`, `TRAP`, `KILL_*`, `LOG`) answers that action for
//!   its rules and allows everything else; installed last, so an errno of a rule wins over the
//!   default errno.
//!
//! So a rule's action answers its calls whatever the default, as with libseccomp (an `ERRNO`
//! rule under a `KILL` default returns the errno). Where rules of two actions match one call,
//! the more severe answer wins (the kernel keeps it).
//!
//! `SCMP_ACT_NOTIFY` rules are allowed by the default filter and answered by a filter of their
//! own, installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER`: its listener fd goes to the agent at
//! `listenerPath` with the container's state (OCI `ContainerProcessState`), as runc does. A
//! stricter rule of another action for the same call still wins (the kernel keeps the most
//! severe answer, and `USER_NOTIF` is below `ERRNO`). `SCMP_ACT_TRACE` is refused.

pub(crate) mod agent;
pub(crate) mod bpf;
mod compat_syscalls;
pub mod default;
pub(crate) mod syscalls;

use execdriver_api::DriverError;
use execdriver_api::oci_spec::runtime::{
    Arch as OciArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use bpf::{Action, Arch, Cond, Op, Rule, Rules, SockFilter};

/// Compiled filters, ready for the child.
#[derive(Debug)]
pub(crate) struct SeccompPlan {
    /// Programs in installation order.
    #[allow(dead_code)]
    programs: Vec<Vec<SockFilter>>,
    /// `struct sock_fprog` for each program, pointing into `programs`.
    pub fprogs: Vec<SockFprog>,
    /// `SECCOMP_FILTER_FLAG_*` for `seccomp(2)`.
    pub flags: u32,
    /// The program (index into `fprogs`) that answers `SCMP_ACT_NOTIFY`, installed with a new
    /// listener, and the agent that gets the listener.
    pub notify: Option<(usize, Listener)>,
}

/// Where a container's seccomp listener fd goes: `linux.seccomp.listenerPath` and
/// `listenerMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    /// A filesystem path, or an abstract socket name after `@`.
    pub path: String,
    pub metadata: String,
}

/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub(crate) const FLAG_NEW_LISTENER: u32 = 8;

impl SeccompPlan {
    /// The flags program `index` is installed with: a new listener for the notify program
    /// when `with_listener` (a hook's copy of the filter has none: its notified calls get
    /// ENOSYS, as when the agent is gone).
    pub fn flags_of(&self, index: usize, with_listener: bool) -> u32 {
        match &self.notify {
            Some((i, _)) if *i == index && with_listener => self.flags | FLAG_NEW_LISTENER,
            _ => self.flags,
        }
    }
}

pub(crate) use crate::sys::SockFprog;

fn field(f: &str) -> String {
    format!("linux.seccomp.{f}")
}

fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    default_errno: u32,
    f: &str,
) -> Result<Action, DriverError> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActAllow => Action::Allow,
        A::ScmpActLog => Action::Log,
        A::ScmpActErrno => {
            let e = errno.unwrap_or(default_errno);
            Action::Errno(u16::try_from(e).map_err(|_| {
                DriverError::invalid_spec(
                    field(&format!("{f}.errnoRet")),
                    format!("{e} is not an errno"),
                )
            })?)
        }
        A::ScmpActTrap => Action::Trap,
        A::ScmpActKill | A::ScmpActKillThread => Action::KillThread,
        A::ScmpActKillProcess => Action::KillProcess,
        A::ScmpActNotify => Action::Notify,
        A::ScmpActTrace => {
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

/// Actions the default filter lets through, so that their own filter decides: allow and log,
/// and notify (the listener answers).
fn allow_like(a: &Action) -> bool {
    matches!(a, Action::Allow | Action::Log | Action::Notify)
}

/// The ABIs besides the native one that the profile's `architectures` ask to filter. Others
/// (say MIPS on x86_64) can never make a call here; ARM on aarch64 is not filtered (no table),
/// so its calls are killed as a foreign ABI.
fn arches(profile: &LinuxSeccomp) -> Vec<Arch> {
    let mut out = Vec::new();
    for a in profile.architectures().iter().flatten() {
        let arch = match a {
            OciArch::ScmpArchX86 if cfg!(target_arch = "x86_64") => Arch::I386,
            OciArch::ScmpArchX32 if cfg!(target_arch = "x86_64") => Arch::X32,
            _ => continue,
        };
        if !out.contains(&arch) {
            out.push(arch);
        }
    }
    out
}

/// The ABIs `profile` lists by name (the native one included), for runc's ENOSYS stub, which
/// only covers those.
fn listed_arches(profile: &LinuxSeccomp) -> Vec<Arch> {
    let mut out = arches(profile);
    let native = profile.architectures().iter().flatten().any(|a| {
        matches!(
            (a, Arch::NATIVE),
            (OciArch::ScmpArchNative, _)
                | (OciArch::ScmpArchX86_64, Arch::X86_64)
                | (OciArch::ScmpArchAarch64, Arch::Aarch64)
        )
    });
    if native {
        out.push(Arch::NATIVE);
    }
    out
}

/// Compiles `profile`. `None` when it filters nothing (allow by default, no other rule).
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Option<SeccompPlan>, DriverError> {
    let default_errno = profile.default_errno_ret().unwrap_or(libc::EPERM as u32);
    let default = action(
        profile.default_action(),
        None,
        default_errno,
        "defaultAction",
    )?;
    if default == Action::Notify {
        // Every call of the engine's init after loading would wait for the agent, which only
        // gets the listener through such calls.
        return Err(DriverError::invalid_spec(
            field("defaultAction"),
            "SCMP_ACT_NOTIFY cannot be used as default action",
        ));
    }
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

    // Rules by action, then by syscall name.
    let mut allow: Rules = Rules::new();
    let mut by_action: Vec<(Action, Rules)> = Vec::new();
    for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
        let f = format!("syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), default_errno, &f)?;
        if act == Action::Notify && sc.names().iter().any(|n| n == "write") {
            // The init reports the listener to the engine with a write (as runc's does).
            return Err(DriverError::invalid_spec(
                field(&f),
                "SCMP_ACT_NOTIFY cannot be used for the write syscall",
            ));
        }
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
                LinuxSeccompOperator::ScmpCmpNe => (Op::Ne, arg.value()),
                LinuxSeccompOperator::ScmpCmpLt => (Op::Lt, arg.value()),
                LinuxSeccompOperator::ScmpCmpLe => (Op::Le, arg.value()),
                LinuxSeccompOperator::ScmpCmpEq => (Op::Eq, arg.value()),
                LinuxSeccompOperator::ScmpCmpGe => (Op::Ge, arg.value()),
                LinuxSeccompOperator::ScmpCmpGt => (Op::Gt, arg.value()),
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    (Op::MaskedEq(arg.value()), arg.value_two().unwrap_or(0))
                }
            };
            conds.push(Cond {
                arg: index,
                op,
                value,
            });
        }
        let rules = rules_of(conds);
        for name in sc.names() {
            if !known(name) {
                // As libseccomp does: a name no filtered ABI has is skipped.
                tracing::debug!(syscall = %name, "seccomp: no such system call on this architecture; rule skipped");
                continue;
            }
            let target = if allow_like(&act) {
                &mut allow
            } else {
                if let Some(pos) = by_action.iter().position(|(a, _)| *a == act) {
                    &mut by_action[pos].1
                } else {
                    by_action.push((act, Rules::new()));
                    &mut by_action.last_mut().expect("just pushed").1
                }
            };
            for rule in &rules {
                add_rule(target, name, rule.clone());
            }
            // The default filter lets every rule's calls through to the filter of the rule's
            // own action, so that the rule answers them, not the default (libseccomp's
            // meaning: an ERRNO rule under a KILL default returns its errno).
            if !allow_like(&act) && act != default {
                for rule in &rules {
                    add_rule(&mut allow, name, rule.clone());
                }
            }
            if matches!(act, Action::Log | Action::Notify) {
                let pos = by_action
                    .iter()
                    .position(|(a, _)| *a == act)
                    .unwrap_or_else(|| {
                        by_action.push((act, Rules::new()));
                        by_action.len() - 1
                    });
                for rule in &rules {
                    add_rule(&mut by_action[pos].1, name, rule.clone());
                }
            }
        }
    }
    let arches = arches(profile);
    // A call of an ABI the profile does not list is killed, as libseccomp's default
    // bad-architecture action does.
    let bad_arch = Action::KillProcess;
    let exempt = trampoline_calls()?;
    let build = |rules: &Rules, mismatch: Action, matched: Action, enosys: &[(Arch, u32)]| {
        bpf::program_with(&arches, rules, &exempt, matched, mismatch, bad_arch, enosys)
            .map_err(|e| DriverError::invalid_spec(field("syscalls"), e))
    };
    // Above the highest call the profile names (whatever its action), per ABI it lists, a call
    // is newer than the profile and gets ENOSYS instead of the default action, as runc does —
    // unless the default lets calls run anyway.
    let enosys: Vec<(Arch, u32)> = if matches!(default, Action::Allow | Action::Log) {
        Vec::new()
    } else {
        let named = || {
            allow
                .keys()
                .chain(by_action.iter().flat_map(|(_, rules)| rules.keys()))
        };
        listed_arches(profile)
            .into_iter()
            .filter_map(|a| Some((a, named().filter_map(|n| a.number(n)).max()?)))
            .collect()
    };
    let mut programs = Vec::new();
    if default != Action::Allow {
        programs.push(build(&allow, default, Action::Allow, &enosys)?);
    }
    let mut notify_program = None;
    for (act, rules) in &by_action {
        if *act != default && !rules.is_empty() {
            if *act == Action::Notify {
                notify_program = Some(programs.len());
            }
            programs.push(build(rules, Action::Allow, *act, &[])?);
        }
    }
    let notify = match notify_program {
        Some(i) => Some((i, listener(profile)?)),
        // A listener path without notify rules is not connected to (as runc).
        None => None,
    };
    if programs.is_empty() {
        return Ok(None);
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
        notify,
    }))
}

/// The agent of a profile with notify rules: `listenerPath` is required, absolute or an
/// abstract name (`@name`).
fn listener(profile: &LinuxSeccomp) -> Result<Listener, DriverError> {
    let path = profile
        .listener_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.is_empty() {
        return Err(DriverError::invalid_spec(
            field("listenerPath"),
            "SCMP_ACT_NOTIFY rules need a seccomp agent: listenerPath is empty",
        ));
    }
    if !(path.starts_with('/') || path.len() > 1 && path.starts_with('@')) {
        return Err(DriverError::invalid_spec(
            field("listenerPath"),
            format!("{path:?} is neither an absolute path nor an abstract socket name (@name)"),
        ));
    }
    Ok(Listener {
        path,
        metadata: profile.listener_metadata().clone().unwrap_or_default(),
    })
}

/// The two calls the exec trampoline makes after the filter is installed, allowed by every
/// filter (runc execs the program itself right after loading the profile; we exec through the
/// sealed trampoline, so a profile that allows `execve` but not `execveat` must still run):
/// `execveat` of the trampoline's own fd with `AT_EMPTY_PATH`, and `fcntl(_, F_SETFD,
/// FD_CLOEXEC)`. Neither gives a program anything: the trampoline's fd is closed on its exec,
/// and marking an fd close-on-exec is harmless.
fn trampoline_calls() -> Result<Rules, DriverError> {
    let fd = crate::trampoline::fd()?;
    let eq = |arg, value| Cond {
        arg,
        op: Op::Eq,
        value,
    };
    let mut r = Rules::new();
    r.insert(
        "execveat".to_owned(),
        vec![vec![eq(0, fd as u64), eq(4, libc::AT_EMPTY_PATH as u64)]],
    );
    r.insert(
        "fcntl".to_owned(),
        vec![vec![
            eq(1, libc::F_SETFD as u64),
            eq(2, libc::FD_CLOEXEC as u64),
        ]],
    );
    Ok(r)
}

/// The rules one syscall entry's conditions make, as runc builds them with libseccomp: no
/// condition is one unconditional match (`None`); conditions on distinct arguments are one rule
/// (all must hold); but when an argument has two or more conditions, each condition is a rule
/// of its own (any one matching is enough).
fn rules_of(conds: Vec<Cond>) -> Vec<Option<Rule>> {
    if conds.is_empty() {
        return vec![None];
    }
    let repeated = (0..6u8).any(|i| conds.iter().filter(|c| c.arg == i).count() > 1);
    if repeated {
        conds.into_iter().map(|c| Some(vec![c])).collect()
    } else {
        vec![Some(conds)]
    }
}

/// Whether any ABI we filter has a call `name`.
fn known(name: &str) -> bool {
    [Arch::NATIVE, Arch::X32, Arch::I386]
        .into_iter()
        .any(|a| a.number(name).is_some())
}

/// Adds a rule (or, with `None`, an unconditional match) for `name`. An unconditional match
/// absorbs conditional ones.
fn add_rule(rules: &mut Rules, name: &str, rule: Option<Rule>) {
    match (rules.get_mut(name), rule) {
        (Some(existing), Some(r)) => {
            if !existing.is_empty() {
                existing.push(r);
            }
        }
        (Some(existing), None) => existing.clear(),
        (None, Some(r)) => {
            rules.insert(name.to_owned(), vec![r]);
        }
        (None, None) => {
            rules.insert(name.to_owned(), Vec::new());
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
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.listenerPath: SCMP_ACT_NOTIFY rules need a seccomp agent",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "run/x", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.listenerPath: \"run/x\" is neither",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x", "syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.syscalls[0]: SCMP_ACT_NOTIFY cannot be used for the write syscall",
            ),
        ] {
            let e = compile(&profile(json)).unwrap_err().to_string();
            assert!(e.contains(want), "{json}\n{e}");
        }
    }

    /// What the kernel answers for call `nr` (x86_64, zero arguments) under `plan`'s filters.
    fn verdict_of(plan: &SeccompPlan, nr: u32) -> u32 {
        const X86_64: u32 = 0xc000_003e;
        // As the kernel combines filters: the most restrictive action wins, and among equal
        // actions the most recently installed filter's (the last one).
        let action = |r: u32| (r & 0xffff_0000) as i32;
        plan.programs
            .iter()
            .rev()
            .fold(Action::Allow.ret(), |ret, p| {
                let cur = bpf::run(p, X86_64, nr, [0; 6]);
                if action(cur) < action(ret) { cur } else { ret }
            })
    }

    #[test]
    fn notify_rules_reach_the_listener_under_any_default_but_a_stricter_rule_wins() {
        let nr = |n: &str| Arch::NATIVE.number(n).unwrap();
        let plan = compile(&profile(r#"{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock", "listenerMetadata": "bar",
            "syscalls": [{"names": ["read", "write", "exit_group", "mkdir", "chmod"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["mkdir", "chmod", "rmdir"], "action": "SCMP_ACT_NOTIFY"},
                         {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123}]}"#))
            .unwrap()
            .unwrap();
        let (index, listener) = plan.notify.clone().unwrap();
        assert_eq!(
            listener,
            Listener {
                path: "/run/agent.sock".into(),
                metadata: "bar".into()
            }
        );
        assert_eq!(plan.flags_of(index, true), FLAG_NEW_LISTENER);
        assert_eq!(plan.flags_of(index, false), 0);
        assert_eq!(plan.flags_of(0, true), 0);
        assert_eq!(verdict_of(&plan, nr("mkdir")), Action::Notify.ret());
        // Only a notify rule names it: the default filter lets it through to the agent.
        assert_eq!(verdict_of(&plan, nr("rmdir")), Action::Notify.ret());
        assert_eq!(verdict_of(&plan, nr("chmod")), Action::Errno(123).ret());
        assert_eq!(verdict_of(&plan, nr("read")), Action::Allow.ret());
        assert_eq!(verdict_of(&plan, nr("getpid")), Action::Errno(1).ret());

        // A listener path without notify rules: no listener (runc does not connect).
        let plain = compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#))
            .unwrap()
            .unwrap();
        assert!(plain.notify.is_none());
        let abstract_name = compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "@agent", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#))
            .unwrap()
            .unwrap();
        assert_eq!(abstract_name.notify.unwrap().1.path, "@agent");
    }

    #[test]
    fn calls_newer_than_the_profile_get_enosys_as_in_runc() {
        let verdict =
            |json: &str, nr: u32| verdict_of(&compile(&profile(json)).unwrap().unwrap(), nr);
        let allowlist = r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}, {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]}"#;
        assert_eq!(verdict(allowlist, 0), Action::Allow.ret(), "read");
        // getpid (39) is below the highest named call (getppid, 110): the default, EPERM.
        assert_eq!(verdict(allowlist, 39), Action::Errno(1).ret());
        assert_eq!(verdict(allowlist, 110), Action::Errno(5).ret());
        // Above it: a call the profile can't know of.
        assert_eq!(verdict(allowlist, 111), Action::Errno(38).ret());
        assert_eq!(verdict(allowlist, 1000), Action::Errno(38).ret());
        // runc's stub covers the ABIs the profile lists: none listed, none covered.
        let unlisted = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#;
        assert_eq!(verdict(unlisted, 1000), Action::Errno(1).ret());
        // A default that lets calls run needs no stub.
        let denylist = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#;
        assert_eq!(verdict(denylist, 1000), Action::Allow.ret());
    }

    #[test]
    fn conditions_on_one_argument_are_alternatives_as_in_runc() {
        let c = |arg, value| Cond {
            arg,
            op: Op::Eq,
            value,
        };
        assert_eq!(rules_of(vec![]), vec![None]);
        // Distinct arguments: one rule, all must hold.
        assert_eq!(
            rules_of(vec![c(0, 1), c(1, 2)]),
            vec![Some(vec![c(0, 1), c(1, 2)])]
        );
        // Argument 1 twice: every condition alone.
        assert_eq!(
            rules_of(vec![c(0, 1), c(1, 0), c(1, 10)]),
            vec![
                Some(vec![c(0, 1)]),
                Some(vec![c(1, 0)]),
                Some(vec![c(1, 10)])
            ]
        );
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
