//! Turning a child's failure record into a [`DriverError`] that names the step.

use execdriver_api::DriverError;

use crate::plan::Plan;
use crate::sys::child::{Msg, Step};

/// What failed, in words, for a failure record of `plan`'s launch.
pub(crate) fn describe(plan: &Plan, msg: &Msg) -> DriverError {
    let i = msg.arg as usize;
    let errno = msg.errno;
    let r = &plan.rootfs;
    let p = &plan.process;
    let nth = |v: Option<&String>| v.cloned().unwrap_or_else(|| format!("#{i}"));
    let Some(step) = Step::from_u32(msg.step) else {
        return DriverError::sys(format!("container setup step {}", msg.step), errno);
    };
    let op = match step {
        Step::Sync => "talk to the engine".to_owned(),
        Step::Stdio => format!("set up fd {i} from Pipes"),
        Step::CloseFds => "close inherited fds".to_owned(),
        Step::JoinNamespace => format!(
            "join {}",
            plan.ns.joins.get(i).map_or_else(|| format!("namespace #{i}"), |j| j.display.clone())
        ),
        Step::Unshare => "create namespaces".to_owned(),
        Step::Clone => "clone the container init".to_owned(),
        Step::UserNsRoot => {
            "become root in the new user namespace (uid and gid 0 must be mapped in linux.uidMappings/gidMappings)"
                .to_owned()
        }
        Step::UnshareCgroup => "create the cgroup namespace".to_owned(),
        Step::Setsid => "setsid".to_owned(),
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
        Step::Sysctl => format!(
            "set linux.sysctl.{}",
            plan.sysctls.get(i).map_or_else(|| format!("#{i}"), |s| s.key.clone())
        ),
        Step::MaskPath => format!(
            "mask linux.maskedPaths[{i}] {}",
            r.masked.get(i).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
        ),
        Step::ReadonlyPath => format!(
            "make linux.readonlyPaths[{i}] {} read-only",
            r.readonly.get(i).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
        ),
        Step::ReadonlyRoot => "make the root read-only (root.readonly)".to_owned(),
        Step::Rlimit => format!("set process.rlimits[{i}] {}", nth(p.rlimit_names.get(i))),
        Step::NoNewPrivs => "set process.noNewPrivileges".to_owned(),
        Step::Bounding => format!("drop capability {i} from the bounding set"),
        Step::Setgroups => "set process.user.additionalGids".to_owned(),
        Step::Setgid => format!("set process.user.gid {}", p.gid),
        Step::Setuid => format!("set process.user.uid {}", p.uid),
        Step::Capset => "set process.capabilities".to_owned(),
        Step::Ambient => "raise process.capabilities.ambient".to_owned(),
        Step::Cwd => format!("change to process.cwd {}", p.cwd_display),
        Step::CwdOutsideRoot => {
            return DriverError::invalid_spec(
                "process.cwd",
                format!("{} resolves outside the container's root", p.cwd_display),
            );
        }
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
            return DriverError::invalid_spec(
                "process.args[0]",
                format!("{:?} {why} {where_}", p.arg0),
            );
        }
        Step::Execve => format!("execve {}", p.arg0),
    };
    DriverError::sys(op, errno)
}
