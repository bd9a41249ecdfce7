//! Turning a child's failure record into a [`DriverError`] that names the step.

use execdriver_api::DriverError;

use crate::plan::{Plan, ProcessPlan};
use crate::sys::child::{Msg, Step};

/// What failed, in words, for a failure record of a launch: `plan` for a container's init,
/// `None` for a process exec'd into a running container.
pub(crate) fn describe(plan: Option<&Plan>, p: &ProcessPlan, msg: &Msg) -> DriverError {
    let i = msg.arg as usize;
    let errno = msg.errno;
    let Some(step) = Step::from_u32(msg.step) else {
        return DriverError::sys(format!("container setup step {}", msg.step), errno);
    };
    if let Some(e) = process_step(p, step, i, errno) {
        return e;
    }
    let Some(plan) = plan else {
        return DriverError::sys(format!("exec setup ({step:?})"), errno);
    };
    let r = &plan.rootfs;
    let nth = |v: Option<&String>| v.cloned().unwrap_or_else(|| format!("#{i}"));
    let op = match step {
        Step::JoinNamespace => format!(
            "join {}",
            plan.ns.joins.get(i).map_or_else(|| format!("namespace #{i}"), |j| j.display.clone())
        ),
        Step::Unshare => "create namespaces".to_owned(),
        Step::UserNsRoot => {
            "become root in the new user namespace (uid and gid 0 must be mapped in linux.uidMappings/gidMappings)"
                .to_owned()
        }
        Step::UnshareCgroup => "create the cgroup namespace".to_owned(),
        Step::Hostname => "set hostname".to_owned(),
        Step::Domainname => "set domainname".to_owned(),
        Step::RootPropagation => "set the propagation of / (linux.rootfsPropagation)".to_owned(),
        Step::BindRootfs => format!("bind the rootfs {}", r.rootfs.to_string_lossy()),
        Step::OpenRootfs => format!("open the rootfs {}", r.rootfs.to_string_lossy()),
        Step::MountTarget if errno == libc::ENOENT => format!(
            "create the mount point of {} (a component is a dangling symlink inside the rootfs)",
            nth(r.op_names.get(i))
        ),
        Step::MountTarget => format!("create the mount point of {}", nth(r.op_names.get(i))),
        Step::Mount => format!("mount {}", nth(r.op_names.get(i))),
        Step::SpecialTarget if errno == libc::ELOOP || errno == libc::ENOTDIR => {
            // runc's wording: a symlinked /proc or /sys could redirect the mount (and its
            // masks) to a directory another container controls (CVE-2019-19921).
            return DriverError::invalid_spec(
                "mounts",
                format!(
                    "{} must be mounted on ordinary directory (a component of the target is a symlink)",
                    nth(r.op_names.get(i))
                ),
            );
        }
        Step::SpecialTarget => format!("open the mount point of {}", nth(r.op_names.get(i))),
        Step::SpecialVerify => format!(
            "verify {}: the target is not that filesystem after mounting (it was moved or replaced meanwhile)",
            nth(r.op_names.get(i))
        ),
        Step::MountRemount => format!("remount {}", nth(r.op_names.get(i))),
        Step::MountPropagation => format!("set propagation of {}", nth(r.op_names.get(i))),
        Step::Device => format!(
            "create device {}",
            r.devices.get(i).map_or_else(|| format!("#{i}"), |d| d.display.clone())
        ),
        Step::Link => format!(
            "create link {}",
            r.links.get(i).map_or_else(|| format!("#{i}"), |l| l.display.clone())
        ),
        Step::CreateCwd => format!("create process.cwd {}", p.cwd_display),
        Step::PivotRoot => "pivot_root into the rootfs".to_owned(),
        Step::DetachOldRoot => "detach the old root".to_owned(),
        Step::MoveRoot if r.host_ns => {
            "chroot into the rootfs (no mount namespace of its own)".to_owned()
        }
        Step::MoveRoot => match r.no_pivot.as_ref().and_then(|h| h.get(i)) {
            Some(p) => format!("detach the host's {} (no_pivot)", p.to_string_lossy()),
            None => "move the rootfs onto / and chroot (no_pivot)".to_owned(),
        },
        Step::Sysctl => format!(
            "set linux.sysctl.{}",
            plan.sysctls.get(i).map_or_else(|| format!("#{i}"), |s| s.key.clone())
        ),
        Step::MaskPath => format!(
            "mask linux.maskedPaths[{i}] {}",
            r.masked.get(i).map(|c| c.path.to_string_lossy().into_owned()).unwrap_or_default()
        ),
        Step::ReadonlyPath => format!(
            "make linux.readonlyPaths[{i}] {} read-only",
            r.readonly.get(i).map(|c| c.path.to_string_lossy().into_owned()).unwrap_or_default()
        ),
        Step::ReadonlyRoot => "make the root read-only (root.readonly)".to_owned(),
        Step::ReadonlyDev => "make /dev read-only (its mount's \"ro\" option)".to_owned(),
        Step::BindSource => match r.op_names.get(i) {
            Some(name) => format!("open the source of {name} on the host's side"),
            None => "open the bind sources on the host's side (user namespace)".to_owned(),
        },
        other => format!("container setup ({other:?})"),
    };
    DriverError::sys(op, errno)
}

/// Steps that only touch the process (common to an init and an exec'd process).
fn process_step(p: &ProcessPlan, step: Step, i: usize, errno: i32) -> Option<DriverError> {
    let op = match step {
        Step::Sync => "talk to the engine".to_owned(),
        Step::Stdio => format!("set up fd {i} from Pipes"),
        Step::CloseFds => "close inherited fds".to_owned(),
        Step::Clone => "clone the process".to_owned(),
        Step::Setsid => "setsid".to_owned(),
        Step::Dumpable => "make the process undumpable".to_owned(),
        Step::JoinContainer if i == 1 => {
            "enter the container's root (chroot: it has no mount namespace of its own)".to_owned()
        }
        Step::JoinContainer => {
            "join the container's namespaces (setns on its init's pidfd)".to_owned()
        }
        Step::Terminal => format!("set up the terminal (process.terminal), step {i}"),
        Step::Seccomp => format!("install seccomp filter #{i} (linux.seccomp)"),
        Step::SeccompAgent => {
            "report the seccomp listener to the engine (linux.seccomp.listenerPath)".to_owned()
        }
        Step::Rlimit => format!(
            "set process.rlimits[{i}] {}",
            p.rlimit_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("#{i}"))
        ),
        Step::NoNewPrivs => "set process.noNewPrivileges".to_owned(),
        Step::Bounding => format!("drop capability {i} from the bounding set"),
        Step::Setgroups => "set process.user.additionalGids".to_owned(),
        Step::Setgid => format!("set process.user.gid {}", p.gid),
        Step::Setuid => format!("set process.user.uid {}", p.uid),
        Step::Capset => "set process.capabilities".to_owned(),
        Step::Ambient => "raise process.capabilities.ambient".to_owned(),
        Step::Cwd => format!("change to process.cwd {}", p.cwd_display),
        Step::CwdOutsideRoot if i == 1 => {
            return Some(DriverError::invalid_spec(
                "process.cwd",
                format!("{} resolves outside the container's root", p.cwd_display),
            ));
        }
        // getcwd itself failed (a seccomp profile that refuses it, loaded before this check
        // when noNewPrivileges is off): the cwd could not be verified, as runc says it.
        Step::CwdOutsideRoot => format!(
            "verify that the current working directory {} is safe (getcwd)",
            p.cwd_display
        ),
        Step::ExecLookup => {
            let why = if errno == libc::EACCES {
                "found but not executable"
            } else {
                "not found"
            };
            let where_ = if p.arg0.contains('/') {
                "in the container".to_owned()
            } else {
                let dirs: Vec<_> = p
                    .candidates
                    .iter()
                    .filter_map(|c| c.to_str().ok())
                    .map(|c| c.rsplit_once('/').map_or(c, |(d, _)| d))
                    .collect();
                format!("in the container's PATH ({})", dirs.join(":"))
            };
            return Some(DriverError::invalid_spec(
                "process.args[0]",
                format!("{:?} {why} {where_}", p.arg0),
            ));
        }
        Step::Execve => format!("execve {}", p.arg0),
        _ => return None,
    };
    Some(DriverError::sys(op, errno))
}
