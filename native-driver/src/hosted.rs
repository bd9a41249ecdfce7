//! The cgroup of a container whose processes are not the native driver's: the CLI's hosting
//! process of a wasm (or any in-process) container joins it, so that what reads the cgroup of
//! the container's pid — containerd's shim for `ContainerStats`, the OOM monitor, kubelet —
//! sees the container's own numbers and the kernel enforces its limits.
//!
//! Placement, resources and device rules are exactly a native container's with the same spec
//! (`linux.cgroupsPath`, `linux.resources`, deny-all + the spec's rules + runc's defaults).

use std::path::Path;

use execdriver_api::oci_spec::runtime::{LinuxResources, Spec};
use execdriver_api::{ContainerId, DriverError};

use crate::cgroups::{Cgroup, Layout, Placement, RealFs};
use crate::driver::cgroup_error;

/// A container's cgroup that a process of the caller's has joined.
#[derive(Debug, Clone)]
pub struct HostedCgroup {
    cgroup: Cgroup,
}

fn plan(id: &ContainerId, spec: &Spec, parent: &str) -> Result<Cgroup, DriverError> {
    let layout = Layout::detect().map_err(|e| cgroup_error(id, e))?;
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let placement = Placement::new(parent, path.as_deref().map(Path::new), id.as_str())
        .map_err(|e| DriverError::invalid_spec("linux.cgroupsPath", e.to_string()))?;
    Cgroup::plan(&layout, &placement).map_err(|e| cgroup_error(id, e))
}

impl HostedCgroup {
    /// Creates the cgroup of container `id` (placed by `spec` under `parent` as the native
    /// driver would with the same `cgroup_parent` option), applies its resources and device
    /// rules and moves `pid` into it. On failure nothing is left.
    ///
    /// # Errors
    /// `InvalidSpec` for a bad `linux.cgroupsPath` (a frozen existing one too) or resource
    /// value; `Sys` for a refused write.
    pub fn join(
        id: &ContainerId,
        spec: &Spec,
        parent: &str,
        pid: u32,
    ) -> Result<Self, DriverError> {
        let mut cgroup = plan(id, spec, parent)?;
        cgroup.create_for(&RealFs, id)?;
        let none = LinuxResources::default();
        let res = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .unwrap_or(&none);
        let joined = cgroup.apply(&RealFs, res, Some(&[])).and_then(|()| {
            cgroup
                .add(&RealFs, pid.cast_signed())
                .map_err(|e| cgroup_error(id, e))
        });
        if let Err(e) = joined {
            let _ = cgroup.remove(&RealFs, None);
            return Err(e);
        }
        Ok(Self { cgroup })
    }

    /// Applies updated resources (`update`).
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub fn update(&self, res: &LinuxResources) -> Result<(), DriverError> {
        self.cgroup.apply(&RealFs, res, None)
    }

    /// Removes the cgroup of container `id` once its processes are gone (`delete`); missing
    /// directories are fine.
    ///
    /// # Errors
    /// `Sys` when a directory can't be removed (processes still in it).
    pub fn remove(id: &ContainerId, spec: &Spec, parent: &str) -> Result<(), DriverError> {
        let cgroup = plan(id, spec, parent)?;
        cgroup
            .remove(&RealFs, None)
            .map_err(|e| cgroup_error(id, e))
    }
}

/// The bind mounts of `cmd`'s spec, made inside the caller's rootfs in a private mount
/// namespace of the calling process, so that a driver which can only see one directory tree
/// (the wasm driver's preopens) sees every CRI mount — files included (`/etc/hosts`,
/// `/etc/resolv.conf`, `/dev/termination-log`) — at its destination.
///
/// The calling process enters a new mount namespace (propagation private: nothing reaches the
/// host). Each bind mount's target is resolved *inside* the rootfs (`openat2` with
/// `RESOLVE_IN_ROOT`: an image's symlink can't point it elsewhere), created when missing (a
/// directory or an empty file, like the source), and the source is bound there through the
/// target's fd (recursively for `rbind`), read-only with `ro`. Returns the spec without those
/// mounts (they are now part of the rootfs tree); other mounts are left as they were.
///
/// # Errors
/// `InvalidSpec` naming `mounts[i]` for a missing source or a bad destination; `Sys` for a
/// refused namespace or mount (`EPERM` without CAP_SYS_ADMIN).
pub fn bind_mounts_into_rootfs(cmd: &execdriver_api::Command) -> Result<Spec, DriverError> {
    use std::os::fd::AsRawFd;

    use crate::plan::mounts::Create;
    use crate::plan::paths::{InRootPath, cpath};
    use crate::sys;
    use crate::sys::child::{Step, resolve_create};

    let mut spec = cmd.spec.clone();
    let mounts = spec.mounts().clone().unwrap_or_default();
    let is_bind = |m: &execdriver_api::oci_spec::runtime::Mount| {
        let opts = m.options().as_deref().unwrap_or(&[]);
        m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind")
    };
    if !mounts.iter().any(is_bind) {
        return Ok(spec);
    }
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| DriverError::invalid_spec("root.path", "missing"))?;
    let root_path = if root_path.is_absolute() {
        root_path
    } else {
        cmd.bundle.join(root_path)
    };
    sys::unshare(libc::CLONE_NEWNS)
        .map_err(|e| DriverError::sys("unshare(CLONE_NEWNS) for the container's mounts", e))?;
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| DriverError::sys("make the private mount namespace private", e))?;
    let root = sys::open(
        &cpath(&root_path, "root.path")?,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map(sys::own_fd)
    .map_err(|e| DriverError::sys(format!("open {}", root_path.display()), e))?;
    let mut kept = Vec::new();
    for (i, m) in mounts.into_iter().enumerate() {
        if !is_bind(&m) {
            kept.push(m);
            continue;
        }
        let field = format!("mounts[{i}]");
        let opts = m.options().clone().unwrap_or_default();
        let src = m.source().clone().ok_or_else(|| {
            DriverError::invalid_spec(format!("{field}.source"), "a bind mount needs a source")
        })?;
        let src = if src.is_absolute() {
            src
        } else {
            cmd.bundle.join(src)
        };
        let src_dir = std::fs::metadata(&src)
            .map_err(|e| {
                DriverError::invalid_spec(
                    format!("{field}.source"),
                    format!("{}: {e}", src.display()),
                )
            })?
            .is_dir();
        let dest = m.destination();
        let in_rootfs = InRootPath::parse(dest, &format!("{field}.destination"))?;
        if in_rootfs.is_root() {
            return Err(DriverError::invalid_spec(
                format!("{field}.destination"),
                format!("{} must be a path below /", dest.display()),
            ));
        }
        // The target resolved inside the rootfs (as the container would see it) and created
        // where missing — the same walk the native driver's init does for its mounts.
        let create = if src_dir { Create::Dir } else { Create::File };
        let parent = resolve_create(root.as_raw_fd(), &in_rootfs, create, Step::MountTarget, i)
            .map(sys::own_fd)
            .map_err(|f| {
                DriverError::sys(
                    format!("{field}: open {} in the rootfs", in_rootfs.display),
                    f.errno,
                )
            })?;
        let mut st = sys::zeroed_stat();
        sys::fstatat(parent.as_raw_fd(), c"", &mut st, libc::AT_EMPTY_PATH)
            .map_err(|e| DriverError::sys(format!("{field}: stat the target"), e))?;
        let target_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if target_dir != src_dir {
            return Err(DriverError::invalid_spec(
                format!("{field}.destination"),
                format!(
                    "{} is a {} in the rootfs but the source is a {}",
                    dest.display(),
                    if target_dir { "directory" } else { "file" },
                    if src_dir { "directory" } else { "file" }
                ),
            ));
        }
        let mut buf = [0u8; 32];
        let target = sys::proc_fd_path(&mut buf, parent.as_raw_fd());
        let recursive = if opts.iter().any(|o| o == "rbind") {
            libc::MS_REC
        } else {
            0
        };
        let src_c = cpath(&src, &format!("{field}.source"))?;
        sys::mount(Some(&src_c), target, None, libc::MS_BIND | recursive, None).map_err(|e| {
            DriverError::sys(
                format!("{field}: bind {} at {}", src.display(), dest.display()),
                e,
            )
        })?;
        if opts.iter().any(|o| o == "ro") {
            // The new mount, not the directory it covers.
            let mounted =
                resolve_create(root.as_raw_fd(), &in_rootfs, create, Step::MountTarget, i)
                    .map(sys::own_fd)
                    .map_err(|f| {
                        DriverError::sys(format!("{field}: reopen {}", dest.display()), f.errno)
                    })?;
            let mut buf = [0u8; 32];
            let t = sys::proc_fd_path(&mut buf, mounted.as_raw_fd());
            sys::mount(
                None,
                t,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | recursive,
                None,
            )
            .map_err(|e| {
                DriverError::sys(format!("{field}: make {} read-only", dest.display()), e)
            })?;
        }
    }
    spec.set_mounts(Some(kept));
    Ok(spec)
}
