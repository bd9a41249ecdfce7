//! Raw system calls: the only module of the workspace with `unsafe`.
//!
//! Everything here is callable between `clone` and `execve` in a child of a multithreaded
//! process: each function is one `syscall(2)` on caller-provided memory — no allocation, no
//! locks, and no glibc wrapper that keeps process-wide state (glibc's `setresuid` and friends
//! broadcast to every thread glibc believes exists, which hangs a forked child; `getcwd` may
//! allocate). Errors are raw errno values.
#![allow(unsafe_code)]

pub(crate) mod child;
pub(crate) mod spawn;

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void};

/// A raw OS error number.
pub(crate) type Errno = i32;

/// The result of a raw system call.
pub(crate) type SysResult<T = c_long> = Result<T, Errno>;

#[inline]
fn errno() -> Errno {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

#[inline]
fn check(r: c_long) -> SysResult {
    if r < 0 { Err(errno()) } else { Ok(r) }
}

/// A NULL-terminated vector of pointers to C strings (an `argv` or `envp`) that point into
/// strings its owner keeps beside it — a plan's or a hook's own `CString`s, whose heap
/// buffers never move or change while the owner lives.
#[derive(Debug, Default)]
pub(crate) struct CPtrs(Vec<*const c_char>);

impl CPtrs {
    /// Pointers to `strings`, NULL-terminated. The caller keeps `strings` with the result.
    pub fn to(strings: &[CString]) -> Self {
        let mut v: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        v.push(std::ptr::null());
        Self(v)
    }

    /// `v` as it is (the caller terminates it and owns what it points into).
    pub fn from_vec(v: Vec<*const c_char>) -> Self {
        Self(v)
    }
}

impl std::ops::Deref for CPtrs {
    type Target = [*const c_char];

    fn deref(&self) -> &[*const c_char] {
        &self.0
    }
}

// SAFETY: the pointers are only read (by `execve` in a child), never written through, and
// they point into heap strings owned by the same value that owns this vector (see the type's
// docs), so moving or sharing that value between threads moves or shares the strings with it.
unsafe impl Send for CPtrs {}
// SAFETY: as for Send: shared access only reads the pointers.
unsafe impl Sync for CPtrs {}

/// The kernel's `struct sock_fprog`: a filter program's length and its instructions, which
/// the seccomp plan that holds this owns beside it (see [`CPtrs`] for why that is Send).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SockFprog {
    pub len: u16,
    pub filter: *const crate::seccomp::bpf::SockFilter,
}

// SAFETY: `filter` points into a heap vector owned by the same seccomp plan, only read (by
// the kernel when a child installs it), so the plan can move between threads with it.
unsafe impl Send for SockFprog {}
// SAFETY: as for Send: shared access only reads it.
unsafe impl Sync for SockFprog {}

/// A nullable C string pointer.
#[inline]
fn opt_ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    // SAFETY: every pointer is a NUL-terminated string or null, as mount(2) accepts.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount,
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast::<c_void>(),
        )
    })
    .map(drop)
}

pub(crate) fn umount2(target: &CStr, flags: c_int) -> SysResult<()> {
    // SAFETY: target is NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_umount2, target.as_ptr(), flags) }).map(drop)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE)` setting and clearing `MOUNT_ATTR_*`
/// on the mount at `fd` and every mount below it.
pub(crate) fn mount_setattr_recursive(fd: RawFd, set: u64, clr: u64) -> SysResult<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is NUL-terminated and attr is a valid mount_attr of the given size.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

pub(crate) fn chroot(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_chroot, path.as_ptr()) }).map(drop)
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both are NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

pub(crate) fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_chdir, path.as_ptr()) }).map(drop)
}

pub(crate) fn fchdir(fd: RawFd) -> SysResult<()> {
    // SAFETY: plain integer argument.
    check(unsafe { libc::syscall(libc::SYS_fchdir, fd) }).map(drop)
}

pub(crate) fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> SysResult<RawFd> {
    openat(libc::AT_FDCWD, path, flags, mode)
}

pub(crate) fn openat(
    dirfd: RawFd,
    path: &CStr,
    flags: c_int,
    mode: libc::mode_t,
) -> SysResult<RawFd> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_openat, dirfd, path.as_ptr(), flags, mode) })
        .map(|fd| fd as RawFd)
}

/// `openat2(2)` with `flags` and `resolve`.
/// `openat2(2)`. With `RESOLVE_IN_ROOT`/`RESOLVE_BENEATH` the kernel answers `EAGAIN` when a
/// rename or mount anywhere on the system raced with a `..` step of the lookup ("the caller
/// should retry", openat2(2)); that is retried here, a bounded number of times.
pub(crate) fn openat2(dirfd: RawFd, path: &CStr, flags: u64, resolve: u64) -> SysResult<RawFd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags;
    how.resolve = resolve;
    let mut tries = 0;
    loop {
        // SAFETY: path is NUL-terminated; how lives across the call and its size is passed.
        let r = check(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        });
        match r {
            Err(libc::EAGAIN) if tries < 1000 => tries += 1,
            r => return r.map(|fd| fd as RawFd),
        }
    }
}

pub(crate) fn mkdirat(dirfd: RawFd, path: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_mkdirat, dirfd, path.as_ptr(), mode) }).map(drop)
}

pub(crate) fn mknodat(
    dirfd: RawFd,
    path: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_mknodat, dirfd, path.as_ptr(), mode, dev) }).map(drop)
}

pub(crate) fn symlinkat(target: &CStr, dirfd: RawFd, linkpath: &CStr) -> SysResult<()> {
    // SAFETY: both are NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_symlinkat,
            target.as_ptr(),
            dirfd,
            linkpath.as_ptr(),
        )
    })
    .map(drop)
}

pub(crate) fn fchownat(
    dirfd: RawFd,
    path: &CStr,
    uid: u32,
    gid: u32,
    flags: c_int,
) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_fchownat, dirfd, path.as_ptr(), uid, gid, flags) })
        .map(drop)
}

/// `fstatat(2)`; `statbuf` is the caller's.
pub(crate) fn fstatat(
    dirfd: RawFd,
    path: &CStr,
    statbuf: &mut libc::stat,
    flags: c_int,
) -> SysResult<()> {
    // SAFETY: path is NUL-terminated; statbuf is a valid, writable struct stat.
    check(unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            dirfd,
            path.as_ptr(),
            statbuf as *mut libc::stat,
            flags,
        )
    })
    .map(drop)
}

/// The kernel's `struct statfs` on 64-bit Linux (libc hides `f_flags` in its padding).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct StatFs {
    pub f_type: i64,
    pub f_bsize: i64,
    pub f_blocks: u64,
    pub f_bfree: u64,
    pub f_bavail: u64,
    pub f_files: u64,
    pub f_ffree: u64,
    pub f_fsid: [i32; 2],
    pub f_namelen: i64,
    pub f_frsize: i64,
    pub f_flags: i64,
    pub f_spare: [i64; 4],
}

#[cfg(not(target_pointer_width = "64"))]
compile_error!("the native driver supports 64-bit Linux only");

/// `fstatfs(2)`; returns the mount flags (`ST_*`, numerically equal to the `MS_*` flags).
pub(crate) fn fstatfs_flags(fd: RawFd) -> SysResult<c_ulong> {
    let mut buf = StatFs::default();
    // SAFETY: buf is a valid, writable statfs of the 64-bit kernel layout.
    check(unsafe { libc::syscall(libc::SYS_fstatfs, fd, &raw mut buf) })?;
    Ok(buf.f_flags as c_ulong)
}

/// `fstatfs(2)`; returns the filesystem's magic number (`f_type`).
pub(crate) fn fstatfs_type(fd: RawFd) -> SysResult<i64> {
    let mut buf = StatFs::default();
    // SAFETY: buf is a valid, writable statfs of the 64-bit kernel layout.
    check(unsafe { libc::syscall(libc::SYS_fstatfs, fd, &raw mut buf) })?;
    Ok(buf.f_type)
}

pub(crate) fn close(fd: RawFd) -> SysResult<()> {
    // SAFETY: closing an fd number; the caller owns it.
    check(unsafe { libc::syscall(libc::SYS_close, fd) }).map(drop)
}

pub(crate) fn close_range(first: c_uint, last: c_uint, flags: c_uint) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) }).map(drop)
}

pub(crate) fn dup3(old: RawFd, new: RawFd, flags: c_int) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_dup3, old, new, flags) }).map(drop)
}

/// `pipe2(2)`: `(read end, write end)`.
pub(crate) fn pipe2(flags: c_int) -> SysResult<(RawFd, RawFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: fds is a valid, writable array of two ints.
    check(unsafe { libc::syscall(libc::SYS_pipe2, fds.as_mut_ptr(), flags) })?;
    Ok((fds[0], fds[1]))
}

/// Waits for the child `pid` to exit and reaps it; returns the raw `(si_code, si_status)`.
/// Retries on EINTR.
pub(crate) fn waitid_pid(pid: i32) -> SysResult<(c_int, c_int)> {
    waitid(libc::P_PID, pid, libc::WEXITED)
}

pub(crate) fn fcntl(fd: RawFd, cmd: c_int, arg: c_long) -> SysResult {
    // SAFETY: the commands used take an integer argument.
    check(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) })
}

pub(crate) fn setns(fd: RawFd, nstype: c_int) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setns, fd, nstype) }).map(drop)
}

pub(crate) fn unshare(flags: c_int) -> SysResult<()> {
    // SAFETY: plain integer argument.
    check(unsafe { libc::syscall(libc::SYS_unshare, flags) }).map(drop)
}

pub(crate) fn sethostname(name: &[u8]) -> SysResult<()> {
    // SAFETY: pointer and length describe the slice.
    check(unsafe { libc::syscall(libc::SYS_sethostname, name.as_ptr(), name.len()) }).map(drop)
}

pub(crate) fn setdomainname(name: &[u8]) -> SysResult<()> {
    // SAFETY: pointer and length describe the slice.
    check(unsafe { libc::syscall(libc::SYS_setdomainname, name.as_ptr(), name.len()) }).map(drop)
}

pub(crate) fn setsid() -> SysResult<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::syscall(libc::SYS_setsid) }).map(drop)
}

pub(crate) fn setresuid(uid: u32) -> SysResult<()> {
    // SAFETY: plain integers; the raw call changes this thread only, which in the
    // single-threaded child is the whole process.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

pub(crate) fn setresgid(gid: u32) -> SysResult<()> {
    // SAFETY: as setresuid.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

pub(crate) fn setgroups(gids: &[libc::gid_t]) -> SysResult<()> {
    // SAFETY: pointer and length describe the slice.
    check(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) }).map(drop)
}

pub(crate) fn prctl(
    option: c_int,
    a2: c_ulong,
    a3: c_ulong,
    a4: c_ulong,
    a5: c_ulong,
) -> SysResult {
    // SAFETY: the options used take integer arguments.
    check(unsafe { libc::syscall(libc::SYS_prctl, option, a2, a3, a4, a5) })
}

/// Capability sets for `capset(2)`, version 3 (two 32-bit words per set).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

pub(crate) fn capset(data: &[CapData; 2]) -> SysResult<()> {
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and data are valid repr(C) structs of the sizes the v3 ABI expects.
    check(unsafe { libc::syscall(libc::SYS_capset, &raw const hdr, data.as_ptr()) }).map(drop)
}

pub(crate) fn prlimit(resource: c_int, soft: u64, hard: u64) -> SysResult<()> {
    let lim = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: lim is a valid rlimit64; old limit pointer is null.
    check(unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            &raw const lim,
            std::ptr::null_mut::<libc::rlimit64>(),
        )
    })
    .map(drop)
}

pub(crate) fn umask(mask: libc::mode_t) {
    // SAFETY: plain integer argument; umask can't fail.
    unsafe { libc::syscall(libc::SYS_umask, mask) };
}

pub(crate) fn write(fd: RawFd, buf: &[u8]) -> SysResult<usize> {
    // SAFETY: pointer and length describe the slice.
    check(unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) })
        .map(|n| n as usize)
}

pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: pointer and length describe the writable slice.
    check(unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) })
        .map(|n| n as usize)
}

/// `getcwd(2)` into `buf`; returns the length including the NUL.
pub(crate) fn getcwd(buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: pointer and length describe the writable slice.
    check(unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) })
        .map(|n| n as usize)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: execs the file behind `fd`; returns only on
/// failure. Same contract for `argv`/`envp` as [`execve`].
pub(crate) fn fexecve(fd: RawFd, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    // SAFETY: the caller guarantees argv/envp are NULL-terminated arrays of valid strings; the
    // empty path is a static C string.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    errno()
}

/// `memfd_create(2)`.
pub(crate) fn memfd_create(name: &CStr, flags: c_uint) -> SysResult<std::os::fd::OwnedFd> {
    // SAFETY: name is a valid C string.
    check(unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), flags) })
        .map(|fd| own_fd(fd as RawFd))
}

/// `fchmod(2)`.
pub(crate) fn fchmod(fd: RawFd, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_fchmod, fd, mode) }).map(drop)
}

/// Resets every catchable signal to its default disposition.
pub(crate) fn reset_signal_dispositions() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask; the kernel sigaction ABI
        // takes (sig, act, oldact, sigsetsize). Failures (invalid numbers) are harmless.
        unsafe {
            let act: KernelSigaction = std::mem::zeroed();
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &raw const act,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
}

#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets this thread's signal mask to all-blocked or to none, returning the previous mask.
pub(crate) fn set_sigmask(block_all: bool) -> u64 {
    let new: u64 = if block_all { !0 } else { 0 };
    let mut old: u64 = 0;
    // SAFETY: the kernel ABI takes 8-byte masks; both pointers are valid.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const new,
            &raw mut old,
            8usize,
        );
    }
    old
}

/// Restores a mask returned by [`set_sigmask`].
pub(crate) fn restore_sigmask(mask: u64) {
    // SAFETY: as set_sigmask.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const mask,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

pub(crate) fn exit(code: c_int) -> ! {
    // SAFETY: exit_group ends the process without running atexit handlers or flushing stdio,
    // which is what a forked child of a multithreaded process must do.
    unsafe {
        libc::syscall(libc::SYS_exit_group, code);
    }
    // exit_group does not return.
    #[allow(clippy::empty_loop)]
    loop {}
}

pub(crate) fn pidfd_open(pid: i32) -> SysResult<RawFd> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|fd| fd as RawFd)
}

pub(crate) fn pidfd_send_signal(pidfd: RawFd, sig: c_int) -> SysResult<()> {
    // SAFETY: null siginfo means "as kill(2) would"; flags 0.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Waits for the process behind `pidfd` to exit and reaps it (`waitid(P_PIDFD)`); returns the
/// raw `(si_code, si_status)`. Retries on EINTR.
pub(crate) fn waitid_pidfd(pidfd: RawFd, nowait: bool) -> SysResult<(c_int, c_int)> {
    let flags = libc::WEXITED | if nowait { libc::WNOWAIT } else { 0 };
    waitid(libc::P_PIDFD, pidfd, flags)
}

/// `waitid(2)` for one process, retried on EINTR: the raw `(si_code, si_status)`.
fn waitid(idtype: libc::idtype_t, id: c_int, flags: c_int) -> SysResult<(c_int, c_int)> {
    loop {
        // SAFETY: info is a valid, writable siginfo_t; rusage pointer is null.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                idtype,
                id,
                &raw mut info,
                flags,
                std::ptr::null_mut::<libc::rusage>(),
            )
        };
        match check(r) {
            Ok(_) => {
                // SAFETY: waitid filled a SIGCHLD siginfo, whose si_status is valid.
                let status = unsafe { info.si_status() };
                return Ok((info.si_code, status));
            }
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Arguments of `clone3(2)`.
#[derive(Clone, Copy, Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub exit_signal: u64,
}

/// What `clone3` returned in this process.
pub(crate) enum Forked {
    /// We are the new child.
    Child,
    /// We are the parent; the child's pid and, with `CLONE_PIDFD`, its pidfd.
    Parent { pid: i32, pidfd: RawFd },
}

/// `clone3(2)` without `CLONE_VM`: fork semantics (the child continues on a copy of this
/// thread's stack). The child must stick to the functions of this module until it execs or
/// exits.
///
/// # Safety
/// The caller must ensure that the child path runs only async-signal-safe code (the functions
/// of this module on memory prepared before the call) and ends in `execve` or [`exit`].
pub(crate) unsafe fn clone3(args: CloneArgs) -> SysResult<Forked> {
    let mut pidfd: c_int = -1;
    // SAFETY: clone_args is plain data; zeroed is valid.
    let mut ca: libc::clone_args = unsafe { std::mem::zeroed() };
    ca.flags = args.flags;
    ca.exit_signal = args.exit_signal;
    if args.flags & libc::CLONE_PIDFD as u64 != 0 {
        ca.pidfd = (&raw mut pidfd) as u64;
    }
    // SAFETY: ca is valid for the call; without CLONE_VM and with a zero stack the child gets
    // a copy-on-write copy of our memory and continues here, as with fork(2).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut ca,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match check(r)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            pidfd,
        }),
    }
}

/// Formats `/proc/self/fd/<fd>` into `buf` without allocating and returns it.
pub(crate) fn proc_fd_path(buf: &mut [u8; 32], fd: RawFd) -> &CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 12];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    let mut pos = PREFIX.len();
    while len > 0 {
        len -= 1;
        buf[pos] = digits[len];
        pos += 1;
    }
    buf[pos] = 0;
    // The buffer holds exactly one NUL, at `pos`.
    CStr::from_bytes_with_nul(&buf[..=pos]).unwrap_or(c"/proc/self/fd/")
}

/// A zeroed `struct stat` for [`fstatat`].
pub(crate) fn zeroed_stat() -> libc::stat {
    // SAFETY: struct stat is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

pub(crate) fn setxattr(path: &CStr, name: &CStr, value: &[u8]) -> SysResult<()> {
    // SAFETY: path and name are NUL-terminated; pointer and length describe value.
    check(unsafe {
        libc::syscall(
            libc::SYS_setxattr,
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Whether `path` has the extended attribute `name`.
pub(crate) fn has_xattr(path: &CStr, name: &CStr) -> bool {
    // SAFETY: a zero-size query with a null buffer returns the value's size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getxattr,
            path.as_ptr(),
            name.as_ptr(),
            std::ptr::null_mut::<c_void>(),
            0,
        )
    };
    r >= 0
}

/// Takes ownership of a raw fd a system call just returned.
pub(crate) fn own_fd(fd: RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: callers pass fds that a system call just created and nothing else owns.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Waits up to `timeout_ms` for `fd` to become readable.
pub(crate) fn poll_in(fd: RawFd, timeout_ms: c_int) -> SysResult<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd.
    let r = check(unsafe { libc::syscall(libc::SYS_poll, &raw mut p, 1, timeout_ms) })?;
    Ok(r > 0)
}

/// Blocks until `a` or `b` is readable (or hung up); says which.
pub(crate) fn poll_either(a: RawFd, b: RawFd) -> SysResult<(bool, bool)> {
    let mut p = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: p holds two valid pollfds; a null timeout and signal mask mean "wait, with the
    // current mask".
    check(unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            p.as_mut_ptr(),
            2,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u64>(),
            8usize,
        )
    })?;
    Ok((p[0].revents != 0, p[1].revents != 0))
}

/// A `signalfd` (close-on-exec) for the signals in `mask` (bit N-1 for signal N).
pub(crate) fn signalfd(mask: u64) -> SysResult<RawFd> {
    // SAFETY: the kernel ABI takes an 8-byte mask by pointer; -1 asks for a new fd.
    check(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &raw const mask,
            8usize,
            libc::SFD_CLOEXEC,
        )
    })
    .map(|fd| fd as RawFd)
}

/// Sends `sig` to the calling thread.
pub(crate) fn raise(sig: c_int) {
    // SAFETY: plain integer system calls about the calling process and thread.
    unsafe {
        let pid = libc::syscall(libc::SYS_getpid);
        let tid = libc::syscall(libc::SYS_gettid);
        libc::syscall(libc::SYS_tgkill, pid, tid, sig);
    }
}

/// `flock(fd, LOCK_EX | LOCK_NB)`.
pub(crate) fn flock_exclusive_nonblock(fd: RawFd) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_flock, fd, libc::LOCK_EX | libc::LOCK_NB) }).map(drop)
}

/// `bpf(BPF_PROG_LOAD)` of a `BPF_PROG_TYPE_CGROUP_DEVICE` program; returns its fd.
pub(crate) fn bpf_load_device_program(insns: &[[u8; 8]]) -> SysResult<std::os::fd::OwnedFd> {
    const BPF_PROG_LOAD: c_int = 5;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    let code: Vec<u8> = insns.iter().flatten().copied().collect();
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(code.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: attr is a zero-filled bpf_attr for BPF_PROG_LOAD whose pointers (insns, license)
    // stay valid for the call.
    let fd =
        check(unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) })?;
    Ok(own_fd(fd as RawFd))
}

/// `bpf(BPF_PROG_ATTACH)` of a device program to the cgroup directory `cgroup_fd`.
pub(crate) fn bpf_attach_device_program(cgroup_fd: RawFd, prog_fd: RawFd) -> SysResult<()> {
    const BPF_PROG_ATTACH: c_int = 8;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    let mut attr = [0u8; 32];
    attr[0..4].copy_from_slice(&(cgroup_fd as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog_fd as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    // SAFETY: attr is a zero-filled bpf_attr for BPF_PROG_ATTACH.
    check(unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, attr.as_ptr(), attr.len()) })
        .map(drop)
}

/// `ioctl(fd, request, arg)` with a pointer argument.
pub(crate) fn ioctl_ptr<T>(fd: RawFd, request: c_ulong, arg: *mut T) -> SysResult<()> {
    // SAFETY: the callers pass requests whose argument is a pointer to a `T` they own.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) }).map(drop)
}

/// `ioctl(fd, request, 0)`.
pub(crate) fn ioctl_int(fd: RawFd, request: c_ulong, arg: c_ulong) -> SysResult<()> {
    // SAFETY: the callers pass requests that take an integer argument.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) }).map(drop)
}

pub(crate) fn fchown(fd: RawFd, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_fchown, fd, uid, gid) }).map(drop)
}

/// Sends `bytes` and the fd `pass` over the unix socket `sock` (`SCM_RIGHTS`), building every
/// structure on the stack. Returns how many bytes went (a stream socket may take fewer).
pub(crate) fn send_with_fd(sock: RawFd, bytes: &[u8], pass: RawFd) -> SysResult<usize> {
    // cmsghdr (len, level, type) is 16 bytes on 64-bit Linux, then one int, padded to 24.
    let mut control = [0u64; 3];
    let cmsg_len: usize = 16 + std::mem::size_of::<c_int>();
    control[0] = cmsg_len as u64;
    control[1] = (libc::SOL_SOCKET as u32 as u64) | ((libc::SCM_RIGHTS as u32 as u64) << 32);
    control[2] = pass as u32 as u64;
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is valid, the pointers set below live on this
    // stack frame for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg and what it points to are valid for the call.
    check(unsafe { libc::syscall(libc::SYS_sendmsg, sock, &raw const msg, libc::MSG_NOSIGNAL) })
        .map(|n| n as usize)
}

/// Installs a seccomp filter: `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`. Returns the
/// listener fd with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (close-on-exec), else 0.
pub(crate) fn seccomp_install(prog: &crate::seccomp::SockFprog, flags: u32) -> SysResult<RawFd> {
    const SECCOMP_SET_MODE_FILTER: c_ulong = 1;
    // SAFETY: prog is a sock_fprog whose filter points into a program the plan keeps alive.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            prog as *const _,
        )
    })
    .map(|fd| fd as RawFd)
}

/// A copy of fd `target` of the process behind `pidfd` (`pidfd_getfd`), close-on-exec.
pub(crate) fn pidfd_getfd(pidfd: RawFd, target: RawFd) -> SysResult<RawFd> {
    // SAFETY: plain integer arguments; flags must be 0.
    check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target, 0) }).map(|fd| fd as RawFd)
}

/// Starts `path` (with `argv`/`envp`, stdin from `stdin`) inside the namespaces `flags` of the
/// process behind `ns_pidfd`: a helper joins them and forks the program, so that it is in the
/// container's pid namespace too, then exits with its status. Returns the helper's pidfd.
/// With `cwd`, the helper enters that directory of the joined mount namespace. A failed `setns`
/// or `chdir` writes its errno to `report` before the helper exits 126. With `seccomp`, the
/// program execs under those filters (a filter that can't be loaded exits 125).
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_in_namespaces(
    ns_pidfd: RawFd,
    flags: c_int,
    cwd: Option<&CStr>,
    exec: crate::trampoline::Exec<'_>,
    envp: &[*const c_char],
    stdin: RawFd,
    report: RawFd,
    seccomp: Option<&crate::seccomp::SeccompPlan>,
) -> SysResult<std::os::fd::OwnedFd> {
    let mask = set_sigmask(true);
    // SAFETY: the child runs only raw system calls on memory prepared by the caller and ends
    // in exit.
    let forked = unsafe {
        clone3(CloneArgs {
            flags: libc::CLONE_PIDFD as u64,
            exit_signal: libc::SIGCHLD as u64,
        })
    };
    match forked {
        Ok(Forked::Child) => {
            if let Err(e) = setns(ns_pidfd, flags).and_then(|()| cwd.map_or(Ok(()), chdir)) {
                // Tells the caller this 126 is ours, not the hook's.
                let _ = write(report, &e.to_ne_bytes());
                exit(126);
            }
            // A copy of the engine holds every engine fd, the write end of the hook's stdin
            // among them: keep only stdio (and the sealed trampoline, ≥ 3, close-on-exec), so
            // that the hook sees end of file.
            let t = exec.fd as c_uint;
            if dup3(stdin, 0, 0).is_err()
                || t < 3
                || (t > 3 && close_range(3, t - 1, 0).is_err())
                || close_range(t + 1, u32::MAX, 0).is_err()
            {
                exit(125);
            }
            // SAFETY: as above.
            match unsafe {
                clone3(CloneArgs {
                    flags: 0,
                    exit_signal: libc::SIGCHLD as u64,
                })
            } {
                Ok(Forked::Child) => {
                    reset_signal_dispositions();
                    set_sigmask(false);
                    // A hook's filter has no listener: its notified calls get ENOSYS.
                    if let Some(sc) = seccomp
                        && sc
                            .fprogs
                            .iter()
                            .enumerate()
                            .any(|(i, prog)| seccomp_install(prog, sc.flags_of(i, false)).is_err())
                    {
                        exit(125);
                    }
                    // Never exec container content from this copy of the engine.
                    exec.exec(0, envp);
                    exit(127)
                }
                Ok(Forked::Parent { pid, .. }) => loop {
                    // SAFETY: info is a valid, writable siginfo_t.
                    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                    let r = unsafe {
                        libc::syscall(
                            libc::SYS_waitid,
                            libc::P_PID,
                            pid,
                            &raw mut info,
                            libc::WEXITED,
                            0,
                        )
                    };
                    match check(r) {
                        Err(libc::EINTR) => continue,
                        Err(_) => exit(125),
                        Ok(_) => {
                            // SAFETY: waitid filled a SIGCHLD siginfo.
                            let status = unsafe { info.si_status() };
                            exit(if info.si_code == libc::CLD_EXITED {
                                status
                            } else {
                                128 + status
                            })
                        }
                    }
                },
                Err(_) => exit(125),
            }
        }
        Ok(Forked::Parent { pidfd, .. }) => {
            restore_sigmask(mask);
            Ok(own_fd(pidfd))
        }
        Err(e) => {
            restore_sigmask(mask);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fd_paths() {
        let mut buf = [0u8; 32];
        assert_eq!(proc_fd_path(&mut buf, 0).to_bytes(), b"/proc/self/fd/0");
        assert_eq!(proc_fd_path(&mut buf, 7).to_bytes(), b"/proc/self/fd/7");
        assert_eq!(
            proc_fd_path(&mut buf, 1234567).to_bytes(),
            b"/proc/self/fd/1234567"
        );
        assert_eq!(
            proc_fd_path(&mut buf, i32::MAX).to_bytes(),
            b"/proc/self/fd/2147483647"
        );
    }
}
