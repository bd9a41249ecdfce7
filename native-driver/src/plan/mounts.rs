//! The rootfs plan: `spec.mounts` in order (plus default `/dev`, `/dev/pts`, `/dev/shm`),
//! devices, `/dev` links, masked and read-only paths.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use execdriver_api::DriverError;
use execdriver_api::oci_spec::runtime::{LinuxDeviceType, Mount, Spec};
use libc::c_ulong;

use super::paths::{InRootPath, cpath, cstring};

/// What to create at a mount destination that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    Dir,
    File,
}

/// One step of the rootfs setup before `pivot_root`.
#[derive(Debug)]
pub(crate) enum MountOp {
    /// `mount(source, dest, fstype, flags, data)`, then an optional bind remount and propagation.
    Mount {
        source: Option<CString>,
        dest: InRootPath,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
        create: Create,
        /// Flags for `MS_BIND | MS_REMOUNT` after a bind mount (ro, nosuid, ...); 0 = none.
        remount: c_ulong,
        /// Propagation flags applied afterwards (MS_SHARED, MS_SLAVE, ...); 0 = none.
        propagation: c_ulong,
        /// `MOUNT_ATTR_*` (set, clear) applied afterwards to the mount and every submount
        /// (`mount_setattr(AT_RECURSIVE)`: "rro", "rnosuid", ...); (0, 0) = none.
        rec_attr: (u64, u64),
        /// procfs or sysfs: the target must be a real directory (no symlink anywhere on the
        /// way) and, once mounted, must have this filesystem magic (`fstatfs`).
        verify: Option<i64>,
    },
    /// Remount an earlier mount with new flags (a read-only tmpfs after filling it).
    Remount { dest: InRootPath, flags: c_ulong },
}

impl MountOp {
    fn dest(&self) -> &InRootPath {
        match self {
            Self::Mount { dest, .. } | Self::Remount { dest, .. } => dest,
        }
    }
}

/// A device node to create (or bind from the host when mknod is not allowed).
#[derive(Debug)]
pub(crate) struct DeviceOp {
    pub parent: InRootPath,
    pub name: CString,
    pub mode: libc::mode_t,
    pub dev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
    /// The host node to bind-mount instead, when it exists.
    pub host: Option<CString>,
    pub display: String,
}

/// A symlink to create.
#[derive(Debug)]
pub(crate) struct LinkOp {
    pub parent: InRootPath,
    pub name: CString,
    pub target: CString,
    pub display: String,
}

/// `PROC_SUPER_MAGIC` and `SYSFS_MAGIC` of `statfs(2)`.
pub(crate) const PROC_MAGIC: i64 = 0x9fa0;
pub(crate) const SYSFS_MAGIC: i64 = 0x6265_6572;

/// At most this many procfs/sysfs mounts per container (the child keeps their fds in a
/// fixed array).
pub(crate) const MAX_VERIFIED: usize = 8;

/// A path reached through a file descriptor beneath a verified procfs/sysfs mount (masks,
/// read-only paths, sysctls), never by resolving the container path again after
/// `pivot_root`.
#[derive(Debug)]
pub(crate) struct Beneath {
    /// The container path ("/proc/kcore"), for messages.
    pub path: CString,
    /// The index in `ops` of the procfs/sysfs mount the path lies in, or `None` for a path of
    /// the rootfs itself (then resolved inside the rootfs, symlinks included).
    pub base: Option<usize>,
    /// The path below that mount ("kcore"), or below the rootfs ("etc/secret").
    pub rel: CString,
}

/// Where `p` lies: beneath the last mount whose destination contains it, when that mount is
/// procfs/sysfs.
pub(crate) fn beneath(
    ops: &[MountOp],
    p: &InRootPath,
    field: &str,
) -> Result<Beneath, DriverError> {
    let path = cstring(&p.display, field)?;
    let comps: Vec<&CString> = p.names.iter().collect();
    for (j, op) in ops.iter().enumerate().rev() {
        let d = op.dest();
        if d.names.len() <= comps.len() && d.names.iter().zip(&comps).all(|(a, b)| a == *b) {
            if let MountOp::Mount {
                verify: Some(_), ..
            } = op
            {
                let rest: Vec<&str> = comps[d.names.len()..]
                    .iter()
                    .filter_map(|c| c.to_str().ok())
                    .collect();
                let rel = if rest.is_empty() {
                    ".".to_owned()
                } else {
                    rest.join("/")
                };
                return Ok(Beneath {
                    path,
                    base: Some(j),
                    rel: cstring(&rel, field)?,
                });
            }
            break;
        }
    }
    let rel = p
        .prefixes
        .last()
        .cloned()
        .unwrap_or_else(|| c".".to_owned());
    Ok(Beneath {
        path,
        base: None,
        rel,
    })
}

/// Everything about the container's filesystem view.
#[derive(Debug)]
pub(crate) struct RootfsPlan {
    /// The rootfs directory (canonical host path).
    pub rootfs: CString,
    /// Propagation of `/` in the container's mount namespace (default `MS_REC | MS_PRIVATE`).
    pub root_propagation: c_ulong,
    pub ops: Vec<MountOp>,
    /// For error messages, parallel to `ops`: "mounts[2] proc on /proc".
    pub op_names: Vec<String>,
    pub devices: Vec<DeviceOp>,
    pub links: Vec<LinkOp>,
    pub masked: Vec<Beneath>,
    pub readonly: Vec<Beneath>,
    pub readonly_root: bool,
    /// The spec mounts `/dev` read-only (not a bind): it is mounted writable, and made
    /// read-only once its devices, links and `/dev/pts` are in place, as runc does.
    pub readonly_dev: bool,
    /// With a shared `root_propagation`: the mount point holding the rootfs, made private
    /// again before the rootfs is bound (pivot_root refuses a new root whose parent mount is
    /// shared), as runc does.
    pub private_parent: Option<CString>,
    /// `None`: enter the rootfs with `pivot_root`. `Some(hide)`: with `MS_MOVE` + `chroot`
    /// (`NativeOptions::no_pivot`), after detaching the host's procfs/sysfs mounts in `hide`.
    pub no_pivot: Option<Vec<CString>>,
    /// With a new user namespace: per op, the fd number (reserved by the engine, filled in
    /// before the init is cloned) that holds the op's bind source, opened with the host's
    /// credentials inside the container's mount namespace — the mapped root may not be able to
    /// reach it (runc opens bind sources on the host's side too). -1 for ops that are no bind;
    /// empty without a user namespace.
    pub source_fds: Vec<std::os::fd::RawFd>,
    /// No mount namespace of its own: the rootfs is bound by the engine (not the init), `/`'s
    /// propagation is left alone, and the init enters the rootfs with `chroot`.
    pub host_ns: bool,
}

impl RootfsPlan {
    /// Per op, whether it binds a host path (what [`source_fds`](Self::source_fds) covers).
    pub fn binds(&self) -> impl Iterator<Item = bool> + '_ {
        self.ops.iter().map(|op| {
            matches!(op, MountOp::Mount { source: Some(_), fstype: None, flags, .. }
                if flags & libc::MS_BIND != 0)
        })
    }
}

/// The mount point holding `path` (the longest mount point that is a prefix of it), from a
/// mountinfo text.
pub(crate) fn mount_point_of(mountinfo: &str, path: &std::path::Path) -> Option<CString> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape_mountinfo))
        .filter(|point| path.starts_with(point))
        .max_by_key(|point| std::path::Path::new(point).components().count())
        .and_then(|p| CString::new(p).ok())
}

/// The host's procfs and sysfs mount points outside `rootfs`, from a mountinfo text: what a
/// `--no-pivot` container must not find below its moved root. Deepest first, so that detaching
/// one never hides another.
pub(crate) fn kernel_fs_outside(mountinfo: &str, rootfs: &std::path::Path) -> Vec<CString> {
    let mut found: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let point = left.split_whitespace().nth(4)?;
            ((fstype == "proc" || fstype == "sysfs")
                && !std::path::Path::new(point).starts_with(rootfs))
            .then(|| unescape_mountinfo(point))
        })
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    found.dedup();
    found
        .into_iter()
        .filter_map(|p| CString::new(p).ok())
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Parsed OCI mount options.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MountFlags {
    pub flags: c_ulong,
    pub clear: c_ulong,
    pub propagation: c_ulong,
    pub bind: bool,
    /// Recursive `MOUNT_ATTR_*` to set and to clear ("rro", "rrw", ...).
    pub rec_set: u64,
    pub rec_clr: u64,
    pub data: Vec<String>,
}

/// Turns OCI mount options into flags; unknown options are filesystem data.
pub(crate) fn parse_options(options: &[String], field: &str) -> Result<MountFlags, DriverError> {
    let mut m = MountFlags::default();
    for opt in options {
        let (set, clear): (c_ulong, c_ulong) = match opt.as_str() {
            "defaults" => (0, 0),
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "suid" => (0, libc::MS_NOSUID),
            "nosuid" => (libc::MS_NOSUID, 0),
            "dev" => (0, libc::MS_NODEV),
            "nodev" => (libc::MS_NODEV, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "noexec" => (libc::MS_NOEXEC, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "lazytime" => (libc::MS_LAZYTIME, 0),
            "nolazytime" => (0, libc::MS_LAZYTIME),
            "nosymfollow" => (libc::MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, libc::MS_NOSYMFOLLOW),
            "bind" => {
                m.bind = true;
                (0, 0)
            }
            "rbind" => {
                m.bind = true;
                (libc::MS_REC, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                m.propagation |= propagation(opt).unwrap_or(0);
                (0, 0)
            }
            r if rec_attr(r).is_some() => {
                let (attr, set) = rec_attr(r).unwrap_or((0, false));
                if set {
                    m.rec_set |= attr;
                    m.rec_clr &= !attr;
                } else {
                    m.rec_clr |= attr;
                    m.rec_set &= !attr;
                }
                (0, 0)
            }
            "ratime" | "rnoatime" | "rrelatime" | "rnorelatime" | "rstrictatime"
            | "rnostrictatime" | "rdiratime" | "rnodiratime" => {
                return Err(DriverError::unsupported(
                    format!("mount option {opt:?} ({field})"),
                    crate::NAME,
                ));
            }
            "remount" => {
                return Err(DriverError::invalid_spec(
                    field,
                    "option \"remount\" is not valid in a container mount",
                ));
            }
            "idmap" | "ridmap" | "tmpcopyup" => {
                return Err(DriverError::unsupported(
                    format!("mount option {opt:?} ({field})"),
                    crate::NAME,
                ));
            }
            other => {
                if other.contains(',') {
                    return Err(DriverError::invalid_spec(
                        field,
                        format!("option {other:?} contains ','; give one option per entry"),
                    ));
                }
                m.data.push(other.to_owned());
                (0, 0)
            }
        };
        m.flags = (m.flags | set) & !clear;
        m.clear = (m.clear | clear) & !set;
    }
    Ok(m)
}

/// A recursive mount attribute option (runc 1.1): its `MOUNT_ATTR_*` bit and whether it sets
/// it (`rro`) or clears it (`rrw`).
fn rec_attr(opt: &str) -> Option<(u64, bool)> {
    const RDONLY: u64 = 0x1;
    const NOSUID: u64 = 0x2;
    const NODEV: u64 = 0x4;
    const NOEXEC: u64 = 0x8;
    const NOSYMFOLLOW: u64 = 0x0020_0000;
    Some(match opt {
        "rro" => (RDONLY, true),
        "rrw" => (RDONLY, false),
        "rnosuid" => (NOSUID, true),
        "rsuid" => (NOSUID, false),
        "rnodev" => (NODEV, true),
        "rdev" => (NODEV, false),
        "rnoexec" => (NOEXEC, true),
        "rexec" => (NOEXEC, false),
        "rnosymfollow" => (NOSYMFOLLOW, true),
        "rsymfollow" => (NOSYMFOLLOW, false),
        _ => return None,
    })
}

/// Propagation flags of an option name or of `linux.rootfsPropagation`.
pub(crate) fn propagation(name: &str) -> Option<c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Flags that a bind mount only gets through a remount.
const BIND_REMOUNT_FLAGS: c_ulong = libc::MS_RDONLY
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME
    | libc::MS_NOSYMFOLLOW;

/// Inputs of [`build`] beyond the spec.
pub(crate) struct RootfsInputs<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    /// The container's cgroup directories, by hierarchy name ("memory", "" for v2), for mounts
    /// of type `cgroup`.
    pub cgroup_dirs: &'a [(String, PathBuf)],
    /// A new user namespace: device nodes are bound from the host, devpts gets no gid option.
    pub userns: bool,
}

/// Builds the rootfs plan.
pub(crate) fn build(input: &RootfsInputs<'_>) -> Result<RootfsPlan, DriverError> {
    let spec = input.spec;
    let linux = spec.linux().as_ref();
    let mounts: &[Mount] = spec.mounts().as_deref().unwrap_or(&[]);

    let mut ops = Vec::with_capacity(mounts.len() + 4);
    let mut names = Vec::with_capacity(mounts.len() + 4);

    let has = |dest: &str| {
        mounts.iter().any(|m| {
            Path::new(m.destination())
                .components()
                .eq(Path::new(dest).components())
        })
    };
    // The container gets /dev (tmpfs), /dev/pts and /dev/shm unless the spec mounts /dev itself.
    let default_dev = !has("/dev");
    if default_dev {
        for (i, (dest, fstype, flags, data)) in
            default_dev_mounts(input.userns).into_iter().enumerate()
        {
            if i > 0 && has(dest) {
                continue;
            }
            ops.push(MountOp::Mount {
                source: Some(cstring(fstype, "mounts")?),
                dest: InRootPath::parse(Path::new(dest), "mounts")?,
                fstype: Some(cstring(fstype, "mounts")?),
                flags,
                data: Some(cstring(&data, "mounts")?),
                create: Create::Dir,
                remount: 0,
                propagation: 0,
                rec_attr: (0, 0),
                verify: None,
            });
            names.push(format!("default {fstype} on {dest}"));
        }
    }

    let mut dev_is_bind = false;
    let mut readonly_dev = false;
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = InRootPath::parse(m.destination(), &format!("{field}.destination"))?;
        if dest.is_root() {
            return Err(DriverError::invalid_spec(
                format!("{field}.destination"),
                "can't mount over the container's root; use root.path",
            ));
        }
        let options = m.options().as_deref().unwrap_or(&[]);
        let opts = parse_options(options, &format!("{field}.options"))?;
        let typ = m.typ().as_deref().unwrap_or("");
        let label = format!(
            "{field} {} on {}",
            if typ.is_empty() { "bind" } else { typ },
            dest.display
        );
        if typ == "cgroup" || typ == "cgroup2" {
            push_cgroup_mount(
                &mut ops,
                &mut names,
                &dest,
                &opts,
                input.cgroup_dirs,
                &field,
            )?;
            continue;
        }
        if opts.bind || typ == "bind" {
            let source = bind_source(m.source().as_deref(), input.bundle, &field)?;
            let create = if source.is_dir() {
                Create::Dir
            } else {
                Create::File
            };
            if dest.display == "/dev" {
                dev_is_bind = true;
                readonly_dev = false;
            }
            ops.push(MountOp::Mount {
                source: Some(cpath(&source, &format!("{field}.source"))?),
                dest,
                fstype: None,
                flags: libc::MS_BIND | (opts.flags & libc::MS_REC),
                data: None,
                create,
                remount: opts.flags & BIND_REMOUNT_FLAGS,
                propagation: opts.propagation,
                rec_attr: (opts.rec_set, opts.rec_clr),
                verify: None,
            });
        } else {
            if typ.is_empty() {
                return Err(DriverError::invalid_spec(
                    format!("{field}.type"),
                    "missing (and the options do not say bind)",
                ));
            }
            let source = m
                .source()
                .as_deref()
                .map_or_else(|| typ.to_owned(), |s| s.display().to_string());
            let mut flags = opts.flags & !libc::MS_REC;
            if dest.display == "/dev" {
                // A later /dev mount replaces an earlier one: the last one decides.
                readonly_dev = flags & libc::MS_RDONLY != 0;
                flags &= !libc::MS_RDONLY;
            }
            ops.push(MountOp::Mount {
                source: Some(cstring(&source, &format!("{field}.source"))?),
                dest,
                fstype: Some(cstring(typ, &format!("{field}.type"))?),
                flags,
                data: data_cstring(&opts.data, &field)?,
                create: Create::Dir,
                remount: 0,
                propagation: opts.propagation,
                rec_attr: (opts.rec_set, opts.rec_clr),
                verify: match typ {
                    "proc" => Some(PROC_MAGIC),
                    "sysfs" => Some(SYSFS_MAGIC),
                    _ => None,
                },
            });
        }
        names.push(label);
    }

    let mut devices = Vec::new();
    let mut links = Vec::new();
    if !dev_is_bind {
        for (name, major, minor) in DEFAULT_DEVICES {
            devices.push(device(
                &format!("/dev/{name}"),
                libc::S_IFCHR | 0o666,
                *major,
                *minor,
                0,
                0,
                "default device",
            )?);
        }
        for (i, d) in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = format!("linux.devices[{i}]");
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
                LinuxDeviceType::B => libc::S_IFBLK,
                LinuxDeviceType::P => libc::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(DriverError::invalid_spec(
                        format!("{field}.type"),
                        "\"a\" is a cgroup rule type, not a device node type",
                    ));
                }
            };
            let perm = d.file_mode().unwrap_or(0o666) & 0o7777;
            let major = u32::try_from(d.major()).map_err(|_| {
                DriverError::invalid_spec(format!("{field}.major"), "must not be negative")
            })?;
            let minor = u32::try_from(d.minor()).map_err(|_| {
                DriverError::invalid_spec(format!("{field}.minor"), "must not be negative")
            })?;
            let path = d.path();
            if !path.starts_with("/dev/") {
                return Err(DriverError::invalid_spec(
                    format!("{field}.path"),
                    format!("{} is not under /dev", path.display()),
                ));
            }
            devices.push(device(
                &path.to_string_lossy(),
                kind | perm,
                major,
                minor,
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
                &field,
            )?);
        }
        let dev = InRootPath::parse(Path::new("/dev"), "dev")?;
        let has_pts = ops.iter().any(|op| op.dest().display == "/dev/pts");
        let mut link_list = vec![
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ];
        if has_pts {
            link_list.push(("ptmx", "pts/ptmx"));
        }
        for (name, target) in link_list {
            links.push(LinkOp {
                parent: dev.clone(),
                name: cstring(name, "dev")?,
                target: cstring(target, "dev")?,
                display: format!("/dev/{name} -> {target}"),
            });
        }
    }

    let verified = ops
        .iter()
        .filter(|op| {
            matches!(
                op,
                MountOp::Mount {
                    verify: Some(_),
                    ..
                }
            )
        })
        .count();
    if verified > MAX_VERIFIED {
        return Err(DriverError::invalid_spec(
            "mounts",
            format!("{verified} proc/sysfs mounts (at most {MAX_VERIFIED})"),
        ));
    }
    let mut masked = Vec::new();
    let mut readonly = Vec::new();
    if let Some(l) = linux {
        for (i, p) in l.masked_paths().iter().flatten().enumerate() {
            let field = format!("linux.maskedPaths[{i}]");
            masked.push(beneath(
                &ops,
                &InRootPath::parse(Path::new(p), &field)?,
                &field,
            )?);
        }
        for (i, p) in l.readonly_paths().iter().flatten().enumerate() {
            let field = format!("linux.readonlyPaths[{i}]");
            readonly.push(beneath(
                &ops,
                &InRootPath::parse(Path::new(p), &field)?,
                &field,
            )?);
        }
    }

    let root_propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => libc::MS_PRIVATE | libc::MS_REC,
        Some(p) => propagation(p).ok_or_else(|| {
            DriverError::invalid_spec(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            )
        })?,
    };

    Ok(RootfsPlan {
        rootfs: cpath(input.rootfs, "root.path")?,
        root_propagation,
        ops,
        op_names: names,
        devices,
        links,
        masked,
        readonly,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        readonly_dev,
        private_parent: None,
        no_pivot: None,
        source_fds: Vec::new(),
        host_ns: false,
    })
}

fn default_dev_mounts(userns: bool) -> [(&'static str, &'static str, c_ulong, String); 3] {
    let pts_data = if userns {
        "newinstance,ptmxmode=0666,mode=0620".to_owned()
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5".to_owned()
    };
    [
        (
            "/dev",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            "mode=755,size=65536k".to_owned(),
        ),
        (
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            pts_data,
        ),
        (
            "/dev/shm",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "mode=1777,size=65536k".to_owned(),
        ),
    ]
}

fn data_cstring(data: &[String], field: &str) -> Result<Option<CString>, DriverError> {
    if data.is_empty() {
        Ok(None)
    } else {
        cstring(&data.join(","), &format!("{field}.options")).map(Some)
    }
}

fn bind_source(source: Option<&Path>, bundle: &Path, field: &str) -> Result<PathBuf, DriverError> {
    let src = source
        .filter(|s| !s.as_os_str().is_empty())
        .ok_or_else(|| {
            DriverError::invalid_spec(format!("{field}.source"), "a bind mount needs a source")
        })?;
    let path = if src.is_absolute() {
        src.to_path_buf()
    } else {
        bundle.join(src)
    };
    match std::fs::metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) => Err(DriverError::invalid_spec(
            format!("{field}.source"),
            format!("{}: {e}", path.display()),
        )),
    }
}

fn device(
    path: &str,
    mode: libc::mode_t,
    major: u32,
    minor: u32,
    uid: u32,
    gid: u32,
    field: &str,
) -> Result<DeviceOp, DriverError> {
    let p = InRootPath::parse(Path::new(path), field)?;
    let (parent, name) = split_last(&p, field)?;
    let host_path = Path::new(path);
    let host = match std::fs::metadata(host_path) {
        Ok(_) => Some(cpath(host_path, field)?),
        Err(_) => None,
    };
    Ok(DeviceOp {
        parent,
        name,
        mode,
        dev: libc::makedev(major, minor),
        uid,
        gid,
        host,
        display: format!("{path} ({field})"),
    })
}

fn split_last(p: &InRootPath, field: &str) -> Result<(InRootPath, CString), DriverError> {
    let name = p
        .names
        .last()
        .cloned()
        .ok_or_else(|| DriverError::invalid_spec(field, "is the root directory"))?;
    let parent = Path::new(&p.display)
        .parent()
        .ok_or_else(|| DriverError::invalid_spec(field, "has no parent"))?;
    Ok((InRootPath::parse(parent, field)?, name))
}

/// A `cgroup` mount: a tmpfs with the container's own cgroup directory of every hierarchy bound
/// into it (cgroup v1), or that one directory bound at the destination (v2). Read-only when
/// the mount says `ro`.
fn push_cgroup_mount(
    ops: &mut Vec<MountOp>,
    names: &mut Vec<String>,
    dest: &InRootPath,
    opts: &MountFlags,
    dirs: &[(String, PathBuf)],
    field: &str,
) -> Result<(), DriverError> {
    let ro = opts.flags & libc::MS_RDONLY;
    let common = opts.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    if let [(name, dir)] = dirs
        && name.is_empty()
    {
        ops.push(MountOp::Mount {
            source: Some(cpath(dir, field)?),
            dest: dest.clone(),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            create: Create::Dir,
            remount: ro | common,
            propagation: 0,
            rec_attr: (0, 0),
            verify: None,
        });
        names.push(format!("{field} cgroup2 on {}", dest.display));
        return Ok(());
    }
    ops.push(MountOp::Mount {
        source: Some(c"tmpfs".to_owned()),
        dest: dest.clone(),
        fstype: Some(c"tmpfs".to_owned()),
        flags: common,
        data: Some(c"mode=755".to_owned()),
        create: Create::Dir,
        remount: 0,
        propagation: 0,
        rec_attr: (0, 0),
        verify: None,
    });
    names.push(format!("{field} cgroup tmpfs on {}", dest.display));
    for (name, dir) in dirs {
        let sub = dest.join(name, field)?;
        names.push(format!("{field} cgroup {name} on {}", sub.display));
        ops.push(MountOp::Mount {
            source: Some(cpath(dir, field)?),
            dest: sub,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            create: Create::Dir,
            remount: ro | common,
            propagation: 0,
            rec_attr: (0, 0),
            verify: None,
        });
    }
    if ro != 0 {
        ops.push(MountOp::Remount {
            dest: dest.clone(),
            flags: libc::MS_RDONLY | common,
        });
        names.push(format!(
            "{field} read-only cgroup tmpfs on {}",
            dest.display
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_attribute_options_set_and_clear_mount_attrs() {
        let o = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
            parse_options(&v, "mounts[0].options")
        };
        let m = o(&["rbind", "rro", "rnosuid", "rnoexec", "rexec"]).unwrap();
        assert_eq!((m.rec_set, m.rec_clr), (0x1 | 0x2, 0x8));
        assert!(m.data.is_empty(), "{:?}", m.data);
        let m = o(&["rro", "rrw"]).unwrap();
        assert_eq!((m.rec_set, m.rec_clr), (0, 0x1));
        let e = o(&["rnoatime"]).unwrap_err().to_string();
        assert!(
            e.contains("rnoatime") && e.contains("mounts[0].options"),
            "{e}"
        );
    }

    #[test]
    fn the_mount_point_holding_a_path_is_the_longest_prefix() {
        let mountinfo = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 0:30 / /var rw - ext4 /dev/sdb1 rw
31 30 0:31 / /var/lib/ctr rw - tmpfs tmpfs rw
32 22 0:32 / /variant rw - tmpfs tmpfs rw
";
        let at = |p: &str| {
            mount_point_of(mountinfo, std::path::Path::new(p)).map(|c| c.into_string().unwrap())
        };
        assert_eq!(at("/var/lib/ctr/b/rootfs").as_deref(), Some("/var/lib/ctr"));
        assert_eq!(at("/var/x").as_deref(), Some("/var"));
        // A path prefix by characters is not one by components.
        assert_eq!(at("/variable/rootfs").as_deref(), Some("/"));
    }

    #[test]
    fn no_pivot_hides_the_hosts_proc_and_sys_outside_the_rootfs_deepest_first() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid shared:2 - proc proc rw
24 22 0:22 / /sys rw,nosuid shared:3 - sysfs sysfs rw
25 23 0:40 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
26 22 0:23 / /srv/my\\040dir/proc rw - proc proc rw
27 22 0:24 / /bundle/rootfs/proc rw - proc proc rw
28 24 0:25 / /sys/fs/cgroup rw - tmpfs tmpfs rw
";
        let got: Vec<String> = kernel_fs_outside(mountinfo, std::path::Path::new("/bundle/rootfs"))
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert_eq!(got, ["/srv/my dir/proc", "/proc", "/sys"]);
    }

    #[test]
    fn options_become_flags_and_data() {
        let o: Vec<String> = ["nosuid", "noexec", "ro", "mode=755", "size=64k", "rprivate"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = parse_options(&o, "f").unwrap();
        assert_eq!(m.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_RDONLY);
        assert_eq!(m.data, ["mode=755", "size=64k"]);
        assert_eq!(m.propagation, libc::MS_PRIVATE | libc::MS_REC);
        assert!(!m.bind);
        let later_wins = parse_options(&["ro".into(), "rw".into()], "f").unwrap();
        assert_eq!(later_wins.flags & libc::MS_RDONLY, 0);
        let rbind = parse_options(&["rbind".into()], "f").unwrap();
        assert!(rbind.bind && rbind.flags & libc::MS_REC != 0);
    }

    #[test]
    fn bad_options_name_the_field() {
        let e = parse_options(&["remount".into()], "mounts[1].options").unwrap_err();
        assert!(e.to_string().contains("mounts[1].options"), "{e}");
        let e = parse_options(&["idmap".into()], "mounts[1].options").unwrap_err();
        assert!(matches!(e, DriverError::Unsupported { .. }), "{e}");
        let e = parse_options(&["a,b".into()], "mounts[1].options").unwrap_err();
        assert!(e.to_string().contains("one option per entry"), "{e}");
    }

    fn spec_with_mounts(json: &str) -> Spec {
        execdriver_api::parse_spec(
            format!(r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"mounts":{json}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn plan(spec: &Spec, cg: &[(String, PathBuf)]) -> Result<RootfsPlan, DriverError> {
        build(&RootfsInputs {
            spec,
            bundle: Path::new("/"),
            rootfs: Path::new("/rootfs"),
            cgroup_dirs: cg,
            userns: false,
        })
    }

    #[test]
    fn default_dev_is_added_before_the_spec_mounts() {
        let spec = spec_with_mounts(r#"[{"destination":"/proc","type":"proc","source":"proc"}]"#);
        let p = plan(&spec, &[]).unwrap();
        let dests: Vec<_> = p.ops.iter().map(|o| o.dest().display.clone()).collect();
        assert_eq!(dests, ["/dev", "/dev/pts", "/dev/shm", "/proc"]);
        assert_eq!(p.devices.len(), 6);
        assert!(p.links.iter().any(|l| l.display.starts_with("/dev/ptmx")));
        assert_eq!(p.op_names[3], "mounts[0] proc on /proc");
    }

    #[test]
    fn spec_dev_replaces_the_default() {
        let spec = spec_with_mounts(
            r#"[{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid"]},
                {"destination":"/dev/pts","type":"devpts","source":"devpts"}]"#,
        );
        let p = plan(&spec, &[]).unwrap();
        assert_eq!(p.ops.len(), 2);
        assert!(!p.readonly_dev);
    }

    #[test]
    fn a_read_only_dev_is_mounted_writable_and_made_read_only_last() {
        let spec = spec_with_mounts(
            r#"[{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","ro"]},
                {"destination":"/dev/pts","type":"devpts","source":"devpts"}]"#,
        );
        let p = plan(&spec, &[]).unwrap();
        assert!(p.readonly_dev);
        let MountOp::Mount { flags, .. } = &p.ops[0] else {
            panic!("{:?}", p.ops[0]);
        };
        assert_eq!(*flags, libc::MS_NOSUID);
    }

    #[test]
    fn escaping_and_bad_mounts_are_rejected() {
        for (json, want) in [
            (
                r#"[{"destination":"/a/../../etc","type":"tmpfs"}]"#,
                "mounts[0].destination: /a/../../etc contains '..'",
            ),
            (
                r#"[{"destination":"relative","type":"tmpfs"}]"#,
                "mounts[0].destination: relative is not an absolute path",
            ),
            (
                r#"[{"destination":"/","type":"tmpfs"}]"#,
                "mounts[0].destination: can't mount over",
            ),
            (r#"[{"destination":"/x"}]"#, "mounts[0].type: missing"),
            (
                r#"[{"destination":"/x","type":"bind"}]"#,
                "mounts[0].source: a bind mount needs a source",
            ),
            (
                r#"[{"destination":"/x","type":"bind","source":"/nonexistent-src"}]"#,
                "mounts[0].source: /nonexistent-src: No such file",
            ),
        ] {
            let err = plan(&spec_with_mounts(json), &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{json}\n{err}");
        }
    }

    #[test]
    fn cgroup_mounts_expand_per_hierarchy() {
        let spec = spec_with_mounts(
            r#"[{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid"]}]"#,
        );
        let dirs = vec![
            (
                "memory".to_owned(),
                PathBuf::from("/sys/fs/cgroup/memory/x"),
            ),
            ("pids".to_owned(), PathBuf::from("/sys/fs/cgroup/pids/x")),
        ];
        let p = plan(&spec, &dirs).unwrap();
        let dests: Vec<_> = p.ops.iter().map(|o| o.dest().display.clone()).collect();
        assert_eq!(
            &dests[3..],
            [
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup"
            ]
        );
        assert!(matches!(p.ops.last(), Some(MountOp::Remount { .. })));
        let v2 = plan(&spec, &[(String::new(), PathBuf::from("/sys/fs/cgroup/x"))]).unwrap();
        assert_eq!(v2.ops.len(), 4);
    }
}
