//! A private view of a preopened directory in which device nodes can't be opened.
//!
//! The driver runs modules inside the engine, usually as root: a preopened rootfs that ships a
//! block or character device node (an image needs no CAP_MKNOD to carry one) would otherwise
//! hand the module the host's disk or `/dev/kmsg`. So, where the engine may, each preopen is a
//! *detached* copy of the directory's mount tree (`open_tree(OPEN_TREE_CLONE)`), not attached
//! anywhere and gone with its last fd, with `MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID` (and
//! `MOUNT_ATTR_RDONLY` for a read-only preopen) set on every mount of it: the kernel refuses
//! every open of a device node beneath it (`EACCES`). Nothing is mounted on the host.
//!
//! An engine without CAP_SYS_ADMIN can't make such a view; it opens the directory itself, and
//! device nodes there are only those the engine's own user may open anyway.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The kernel's `struct mount_attr` (Linux 5.12).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// A detached, nodev (and, with `read_only`, read-only) copy of the mount tree at `dir`.
///
/// # Errors
/// The kernel's refusal (`EPERM` without CAP_SYS_ADMIN, `ENOSYS` before Linux 5.12).
pub(crate) fn view(dir: &Path, read_only: bool) -> io::Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: path is a valid C string; the flags are plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NODEV
            | MOUNT_ATTR_NOSUID
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: attr is a valid mount_attr of the size passed; the empty path is a static C
    // string; fd is the detached tree's root.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
