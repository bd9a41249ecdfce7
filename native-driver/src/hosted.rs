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

use crate::cgroups::{Cgroup, CgroupError, Layout, Placement, RealFs};

/// A container's cgroup that a process of the caller's has joined.
#[derive(Debug, Clone)]
pub struct HostedCgroup {
    cgroup: Cgroup,
}

fn err(id: &ContainerId, e: CgroupError) -> DriverError {
    match e.raw_os_error() {
        Some(errno) => DriverError::sys(format!("container {id}: {e}"), errno),
        None => DriverError::Internal {
            context: format!("container {id}: cgroups"),
            message: e.to_string(),
        },
    }
}

fn plan(id: &ContainerId, spec: &Spec, parent: &str) -> Result<Cgroup, DriverError> {
    let layout = Layout::detect().map_err(|e| err(id, e))?;
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let placement = Placement::new(parent, path.as_deref().map(Path::new), id.as_str())
        .map_err(|e| DriverError::invalid_spec("linux.cgroupsPath", e.to_string()))?;
    Cgroup::plan(&layout, &placement).map_err(|e| err(id, e))
}

impl HostedCgroup {
    /// Creates the cgroup of container `id` (placed by `spec` under `parent` as the native
    /// driver would with the same `cgroup_parent` option), applies its resources and device
    /// rules and moves `pid` into it. On failure nothing is left.
    ///
    /// # Errors
    /// `InvalidSpec` for a bad `linux.cgroupsPath` or resource value; `Sys` for a refused write
    /// (an existing leaf is `EEXIST`).
    pub fn join(
        id: &ContainerId,
        spec: &Spec,
        parent: &str,
        pid: u32,
    ) -> Result<Self, DriverError> {
        let cgroup = plan(id, spec, parent)?;
        cgroup.create(&RealFs).map_err(|e| err(id, e))?;
        let none = LinuxResources::default();
        let res = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .unwrap_or(&none);
        let joined = cgroup.apply(&RealFs, res, Some(&[])).and_then(|()| {
            cgroup
                .add(&RealFs, pid.cast_signed())
                .map_err(|e| err(id, e))
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
        cgroup.remove(&RealFs, None).map_err(|e| err(id, e))
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
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use crate::sys;

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
    let cstr = |p: &[u8], field: &str| {
        CString::new(p).map_err(|_| DriverError::invalid_spec(field, "contains a NUL byte"))
    };
    sys::unshare(libc::CLONE_NEWNS)
        .map_err(|e| DriverError::sys("unshare(CLONE_NEWNS) for the container's mounts", e))?;
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| DriverError::sys("make the private mount namespace private", e))?;
    let root = sys::open(
        &cstr(root_path.as_os_str().as_bytes(), "root.path")?,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map(sys::own_fd)
    .map_err(|e| DriverError::sys(format!("open {}", root_path.display()), e))?;
    let in_root = |rel: &CString, extra: i32| {
        sys::openat2(
            std::os::fd::AsRawFd::as_raw_fd(&root),
            rel,
            (libc::O_PATH | libc::O_CLOEXEC | extra) as u64,
            libc::RESOLVE_IN_ROOT,
        )
        .map(sys::own_fd)
    };
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
        let rel: Vec<_> = dest
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(Ok(n)),
                std::path::Component::RootDir => None,
                _ => Some(Err(())),
            })
            .collect::<Result<_, ()>>()
            .map_err(|()| {
                DriverError::invalid_spec(
                    format!("{field}.destination"),
                    format!("{} must be absolute, without '..'", dest.display()),
                )
            })?;
        if !dest.is_absolute() || rel.is_empty() {
            return Err(DriverError::invalid_spec(
                format!("{field}.destination"),
                format!("{} must be an absolute path below /", dest.display()),
            ));
        }
        // Each directory on the way, then the target, created where missing.
        let mut so_far = std::path::PathBuf::new();
        let mut parent = sys::openat(
            std::os::fd::AsRawFd::as_raw_fd(&root),
            c".",
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map(sys::own_fd)
        .map_err(|e| DriverError::sys("reopen the rootfs", e))?;
        let last = rel.len() - 1;
        for (k, name) in rel.iter().enumerate() {
            so_far.push(name);
            let rel_c = cstr(
                so_far.as_os_str().as_bytes(),
                &format!("{field}.destination"),
            )?;
            let name_c = cstr(name.as_bytes(), &format!("{field}.destination"))?;
            let want_dir = k < last || src_dir;
            let at = |what: &str, e| {
                DriverError::sys(
                    format!("{field}: {what} {} in the rootfs", so_far.display()),
                    e,
                )
            };
            let opened = match in_root(&rel_c, 0) {
                Ok(fd) => fd,
                Err(libc::ENOENT) => {
                    // An O_PATH fd serves as the dirfd of *at calls.
                    let d = std::os::fd::AsRawFd::as_raw_fd(&parent);
                    if want_dir {
                        match sys::mkdirat(d, &name_c, 0o755) {
                            Ok(()) | Err(libc::EEXIST) => {}
                            Err(e) => return Err(at("mkdir", e)),
                        }
                    } else {
                        match sys::openat(
                            d,
                            &name_c,
                            libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_WRONLY
                                | libc::O_CLOEXEC
                                | libc::O_NOFOLLOW,
                            0o644,
                        ) {
                            Ok(fd) => drop(sys::own_fd(fd)),
                            Err(libc::EEXIST) => {}
                            Err(e) => return Err(at("create", e)),
                        }
                    }
                    in_root(&rel_c, 0).map_err(|e| at("open", e))?
                }
                Err(e) => return Err(at("open", e)),
            };
            parent = opened;
        }
        let mut st = sys::zeroed_stat();
        sys::fstatat(
            std::os::fd::AsRawFd::as_raw_fd(&parent),
            c"",
            &mut st,
            libc::AT_EMPTY_PATH,
        )
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
        let target = sys::proc_fd_path(&mut buf, std::os::fd::AsRawFd::as_raw_fd(&parent));
        let recursive = if opts.iter().any(|o| o == "rbind") {
            libc::MS_REC
        } else {
            0
        };
        let src_c = cstr(src.as_os_str().as_bytes(), &format!("{field}.source"))?;
        sys::mount(Some(&src_c), target, None, libc::MS_BIND | recursive, None).map_err(|e| {
            DriverError::sys(
                format!("{field}: bind {} at {}", src.display(), dest.display()),
                e,
            )
        })?;
        if opts.iter().any(|o| o == "ro") {
            // The new mount, not the directory it covers.
            let rel_c = cstr(
                so_far.as_os_str().as_bytes(),
                &format!("{field}.destination"),
            )?;
            let mounted = in_root(&rel_c, 0)
                .map_err(|e| DriverError::sys(format!("{field}: reopen {}", dest.display()), e))?;
            let mut buf = [0u8; 32];
            let t = sys::proc_fd_path(&mut buf, std::os::fd::AsRawFd::as_raw_fd(&mounted));
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
