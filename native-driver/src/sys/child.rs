//! The container's init between `clone3` and `execve`.
//!
//! This runs in a child of a possibly multithreaded engine, so it only reads the [`Plan`]
//! prepared before `clone` and calls the raw system calls of [`super`]: no allocation, no
//! locks, no panics (no indexing, no `unwrap`). A failure is reported to the parent as one
//! fixed-size [`Msg`] naming the [`Step`], its argument and the errno, then the child exits.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use libc::{c_int, c_ulong};

use super::{
    CapData, Errno, SysResult, capset, chdir, chroot, close, close_range, dup3, fchdir, fchownat,
    fstatat, fstatfs_flags, fstatfs_type, getcwd, mkdirat, mknodat, mount, open, openat, openat2,
    pivot_root, poll_either, prctl, prlimit, proc_fd_path, raise, read, reset_signal_dispositions,
    set_sigmask, setdomainname, setgroups, sethostname, setns, setresgid, setresuid, setsid,
    signalfd, symlinkat, umask, umount2, unshare, write,
};
use crate::plan::mounts::{Beneath, Create, DeviceOp, LinkOp, MAX_VERIFIED, MountOp};
use crate::plan::paths::InRootPath;
use crate::plan::{Plan, ProcessPlan};
use crate::trampoline::{self, Exec};

/// One message on the parent/child socket (a `SOCK_SEQPACKET` pair, so records stay whole).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Msg {
    pub kind: u32,
    pub step: u32,
    pub errno: i32,
    pub arg: u32,
}

/// Message kinds.
pub(crate) mod kind {
    /// Parent → child: continue.
    pub const GO: u32 = 1;
    /// Child → parent: set up, waiting to exec (pre_start hooks may run).
    pub const READY: u32 = 2;
    /// Child → parent: a step failed (`step`, `errno`, `arg`).
    pub const ERROR: u32 = 3;
    /// Intermediate → parent: the container init's pid is `arg`.
    pub const PID: u32 = 4;
    /// Intermediate → parent: write the id maps of my user namespace, then GO.
    pub const MAPS: u32 = 5;
    /// Child → parent: the pty master, as an `SCM_RIGHTS` fd on this message.
    pub const PTY: u32 = 6;
    /// Child → parent: mounts are done, `pivot_root` is next — run the OCI hooks that come
    /// before it, then GO.
    pub const HOOKS: u32 = 7;
    /// Child → parent: the seccomp filter is loaded and its listener is my fd `arg` — copy it
    /// (`pidfd_getfd`) to the agent, then GO. Sent with `write`, the one call a notify rule
    /// may not name.
    pub const SECCOMP: u32 = 8;
}

pub(crate) const MSG_LEN: usize = std::mem::size_of::<Msg>();

impl Msg {
    pub fn new(kind: u32) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    pub fn to_bytes(self) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        b[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        b[4..8].copy_from_slice(&self.step.to_ne_bytes());
        b[8..12].copy_from_slice(&self.errno.to_ne_bytes());
        b[12..16].copy_from_slice(&self.arg.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; MSG_LEN]) -> Self {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Self {
            kind: u32::from_ne_bytes(word(0)),
            step: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
            arg: u32::from_ne_bytes(word(12)),
        }
    }
}

/// The setup steps, as reported in a failure [`Msg`]. `arg` is the index into the plan's list
/// where a step has one.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Sync = 1,
    Stdio,
    CloseFds,
    JoinNamespace,
    Unshare,
    Clone,
    UserNsRoot,
    UnshareCgroup,
    Setsid,
    Hostname,
    Domainname,
    RootPropagation,
    BindRootfs,
    OpenRootfs,
    MountTarget,
    Mount,
    MountRemount,
    MountPropagation,
    Device,
    Link,
    CreateCwd,
    PivotRoot,
    DetachOldRoot,
    Sysctl,
    MaskPath,
    ReadonlyPath,
    ReadonlyRoot,
    Rlimit,
    NoNewPrivs,
    Bounding,
    Setgroups,
    Setgid,
    Setuid,
    Capset,
    Ambient,
    Cwd,
    CwdOutsideRoot,
    ExecLookup,
    Execve,
    Dumpable,
    JoinContainer,
    Terminal,
    Seccomp,
    SpecialTarget,
    SpecialVerify,
    // New steps go last: the trampoline's C source has the numbers of some.
    MoveRoot,
    SeccompAgent,
    ReadonlyDev,
    BindSource,
}

impl Step {
    pub fn from_u32(n: u32) -> Option<Self> {
        use Step::*;
        const ALL: [Step; 49] = [
            Sync,
            Stdio,
            CloseFds,
            JoinNamespace,
            Unshare,
            Clone,
            UserNsRoot,
            UnshareCgroup,
            Setsid,
            Hostname,
            Domainname,
            RootPropagation,
            BindRootfs,
            OpenRootfs,
            MountTarget,
            Mount,
            MountRemount,
            MountPropagation,
            Device,
            Link,
            CreateCwd,
            PivotRoot,
            DetachOldRoot,
            Sysctl,
            MaskPath,
            ReadonlyPath,
            ReadonlyRoot,
            Rlimit,
            NoNewPrivs,
            Bounding,
            Setgroups,
            Setgid,
            Setuid,
            Capset,
            Ambient,
            Cwd,
            CwdOutsideRoot,
            ExecLookup,
            Execve,
            Dumpable,
            JoinContainer,
            Terminal,
            Seccomp,
            SpecialTarget,
            SpecialVerify,
            MoveRoot,
            SeccompAgent,
            ReadonlyDev,
            BindSource,
        ];
        ALL.into_iter().find(|s| *s as u32 == n)
    }
}

/// A failed step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fail {
    pub step: Step,
    pub errno: Errno,
    pub arg: u32,
}

trait At<T> {
    fn at(self, step: Step, arg: usize) -> Result<T, Fail>;
}

impl<T> At<T> for SysResult<T> {
    #[inline]
    fn at(self, step: Step, arg: usize) -> Result<T, Fail> {
        self.map_err(|errno| Fail {
            step,
            errno,
            arg: arg as u32,
        })
    }
}

/// What the child gets.
pub(crate) struct ChildArgs<'a> {
    /// The container's plan, for its init; `None` for a process exec'd into a container.
    pub plan: Option<&'a Plan>,
    /// The process to start.
    pub process: &'a ProcessPlan,
    /// Exec: a pidfd of the container's init, the `CLONE_NEW*` flags of its namespaces to
    /// join (`setns(pidfd, flags)` joins them all at once, user namespace first), and an fd
    /// of the init's root to `chroot` into when the container has no mount namespace of its
    /// own (-1 otherwise).
    pub join: Option<(RawFd, c_int, RawFd)>,
    /// The child's end of the parent socket (≥ 3).
    pub sync: RawFd,
    /// Sources for fds 0, 1, 2 (each ≥ 3), or -1 to leave that fd as inherited.
    pub stdio: [RawFd; 3],
    /// Sources for fds 3, 4, … (`Pipes::extra`). Every fd of these args is at or above
    /// `3 + extra.len()`, so dup'ing them into place clobbers nothing.
    pub extra: &'a [RawFd],
    /// The sealed exec trampoline and its argv vectors (one per candidate of `process`): the
    /// program is never exec'd by this copy of the engine itself.
    pub exec: Exec<'a>,
}

fn send(sync: RawFd, msg: Msg) -> SysResult<()> {
    let b = msg.to_bytes();
    loop {
        match write(sync, &b) {
            Err(libc::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Blocks until the parent says GO; EOF (the parent died) or anything else ends the child.
fn wait_go(sync: RawFd) -> Result<(), Fail> {
    let mut b = [0u8; MSG_LEN];
    loop {
        match read(sync, &mut b) {
            Err(libc::EINTR) => continue,
            Ok(MSG_LEN) if Msg::from_bytes(&b).kind == kind::GO => return Ok(()),
            Ok(_) => super::exit(1),
            Err(e) => {
                return Err(Fail {
                    step: Step::Sync,
                    errno: e,
                    arg: 0,
                });
            }
        }
    }
}

fn report(sync: RawFd, f: Fail) -> ! {
    let _ = send(
        sync,
        Msg {
            kind: kind::ERROR,
            step: f.step as u32,
            errno: f.errno,
            arg: f.arg,
        },
    );
    super::exit(127)
}

/// The intermediate process of a launch that joins existing namespaces: join them, create the
/// new ones, then clone the container's init as a sibling (`CLONE_PARENT`), report its pid and
/// exit.
pub(crate) fn intermediate(a: &ChildArgs<'_>) -> ! {
    let sync = a.sync;
    if let Err(f) = intermediate_steps(a) {
        report(sync, f);
    }
    // SAFETY (of the call below): the init path runs only this module's code and ends in
    // execve or exit.
    let forked = unsafe {
        super::clone3(super::CloneArgs {
            flags: libc::CLONE_PARENT as u64,
            exit_signal: 0,
        })
    };
    match forked {
        Ok(super::Forked::Child) => init(a),
        Ok(super::Forked::Parent { pid, .. }) => {
            let _ = send(
                sync,
                Msg {
                    kind: kind::PID,
                    arg: pid as u32,
                    ..Msg::default()
                },
            );
            super::exit(0)
        }
        Err(e) => report(
            sync,
            Fail {
                step: Step::Clone,
                errno: e,
                arg: 0,
            },
        ),
    }
}

fn intermediate_steps(a: &ChildArgs<'_>) -> Result<(), Fail> {
    prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0).at(Step::Sync, 0)?;
    // Until it execs, this process is a copy of the engine: processes of the container must
    // not reach it (or the engine's binary) through /proc/<pid> (the CVE-2019-5736 class).
    prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0).at(Step::Dumpable, 0)?;
    wait_go(a.sync)?;
    if let Some((pidfd, flags, root)) = a.join {
        setns(pidfd, flags).at(Step::JoinContainer, 0)?;
        // A container in the runtime's mount namespace: its root is a chroot.
        if root >= 0 {
            fchdir(root).at(Step::JoinContainer, 1)?;
            chroot(c".").at(Step::JoinContainer, 1)?;
        }
        return Ok(());
    }
    let Some(plan) = a.plan else {
        return Ok(());
    };
    let ns = &plan.ns;
    for (i, j) in ns.joins.iter().enumerate() {
        let fd = open(&j.path, libc::O_RDONLY | libc::O_CLOEXEC, 0).at(Step::JoinNamespace, i)?;
        setns(fd, j.nstype).at(Step::JoinNamespace, i)?;
        let _ = close(fd);
    }
    // Bind sources are opened by a helper that keeps the host's credentials: it must exist
    // before the user namespace does.
    let helper = if ns.new_user && !plan.rootfs.source_fds.is_empty() {
        Some(SourceHelper::spawn(plan)?)
    } else {
        None
    };
    let r = (|| {
        if ns.new_flags != 0 {
            unshare(ns.new_flags).at(Step::Unshare, 0)?;
        }
        if ns.new_user {
            send(a.sync, Msg::new(kind::MAPS)).at(Step::Sync, 0)?;
            wait_go(a.sync)?;
        }
        Ok(())
    })();
    match helper {
        Some(h) if r.is_ok() => h.open_sources(),
        Some(h) => {
            h.dismiss();
            r
        }
        None => r,
    }
}

/// A process that shares the intermediate's fd table but not its credentials: cloned before
/// the user namespace is created, it stays the host's root. Once the container's mount
/// namespace exists it joins it and opens every bind source there (`O_PATH`, following the
/// path as `mount` would, past directories the container's mapped root may not enter), each
/// at the fd number the engine reserved for it in `RootfsPlan::source_fds`; the init binds
/// from `/proc/self/fd/<n>`. runc 1.1 opens bind sources on the host's side the same way.
struct SourceHelper {
    pid: i32,
    go_r: RawFd,
    go_w: RawFd,
    res_r: RawFd,
    res_w: RawFd,
}

/// The helper's answer when every source is open.
const SOURCES_OPEN: u32 = u32::MAX;

impl SourceHelper {
    fn spawn(plan: &Plan) -> Result<Self, Fail> {
        let (go_r, go_w) = super::pipe2(libc::O_CLOEXEC).at(Step::BindSource, usize::MAX)?;
        let (res_r, res_w) = super::pipe2(libc::O_CLOEXEC).at(Step::BindSource, usize::MAX)?;
        // SAFETY: the helper runs only this module's code on the plan and ends in exit.
        let forked = unsafe {
            super::clone3(super::CloneArgs {
                flags: libc::CLONE_FILES as u64,
                exit_signal: libc::SIGCHLD as u64,
            })
        };
        match forked {
            Ok(super::Forked::Child) => source_helper(plan, go_r, res_w),
            Ok(super::Forked::Parent { pid, .. }) => Ok(Self {
                pid,
                go_r,
                go_w,
                res_r,
                res_w,
            }),
            Err(e) => Err(Fail {
                step: Step::BindSource,
                errno: e,
                arg: u32::MAX,
            }),
        }
    }

    /// Lets the helper open the sources in this process's (new) mount namespace; returns its
    /// answer once it has exited.
    fn open_sources(self) -> Result<(), Fail> {
        let at = |errno, arg| Fail {
            step: Step::BindSource,
            errno,
            arg,
        };
        let ns = match open(c"/proc/self/ns/mnt", libc::O_RDONLY | libc::O_CLOEXEC, 0) {
            Ok(fd) => fd,
            Err(e) => {
                self.dismiss();
                return Err(at(e, u32::MAX));
            }
        };
        let sent = write(self.go_w, &ns.to_ne_bytes());
        if sent.is_err() {
            // A helper that did not get the fd number sees EOF and exits.
            let _ = close(self.go_w);
        }
        // One fd table: nothing the helper reads or writes may be closed before it is gone.
        let waited = super::waitid_pid(self.pid);
        for fd in [ns, self.go_w, self.go_r, self.res_w] {
            let _ = close(fd);
        }
        let mut b = [0u8; 8];
        let got = read(self.res_r, &mut b);
        let _ = close(self.res_r);
        sent.map_err(|e| at(e, u32::MAX))?;
        waited.map_err(|e| at(e, u32::MAX))?;
        match got {
            Ok(8) => {
                let (mut i, mut e) = ([0u8; 4], [0u8; 4]);
                i.copy_from_slice(&b[..4]);
                e.copy_from_slice(&b[4..]);
                match u32::from_ne_bytes(i) {
                    SOURCES_OPEN => Ok(()),
                    i => Err(at(i32::from_ne_bytes(e), i)),
                }
            }
            Ok(_) => Err(at(libc::EPIPE, u32::MAX)),
            Err(e) => Err(at(e, u32::MAX)),
        }
    }

    /// Ends a helper that will not be needed (a failure before it ran): our write end closed,
    /// its read sees EOF (its read end stays open until it is gone).
    fn dismiss(self) {
        let _ = close(self.go_w);
        let _ = super::waitid_pid(self.pid);
        for fd in [self.go_r, self.res_r, self.res_w] {
            let _ = close(fd);
        }
    }
}

/// The helper: wait for the mount namespace's fd number, join it, open the sources, answer
/// `(index, errno)` (`SOURCES_OPEN` when all are open) and exit.
fn source_helper(plan: &Plan, go_r: RawFd, res_w: RawFd) -> ! {
    let _ = prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
    let mut b = [0u8; 4];
    let got = loop {
        match read(go_r, &mut b) {
            Err(libc::EINTR) => continue,
            r => break r,
        }
    };
    if got != Ok(4) {
        super::exit(1);
    }
    let (i, errno) = match open_sources_in(plan, i32::from_ne_bytes(b)) {
        Ok(()) => (SOURCES_OPEN, 0),
        Err((i, e)) => (i, e),
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&i.to_ne_bytes());
    out[4..].copy_from_slice(&errno.to_ne_bytes());
    let _ = write(res_w, &out);
    super::exit(0)
}

fn open_sources_in(plan: &Plan, mnt_ns: RawFd) -> Result<(), (u32, Errno)> {
    setns(mnt_ns, libc::CLONE_NEWNS).map_err(|e| (u32::MAX, e))?;
    let r = &plan.rootfs;
    for (i, (op, slot)) in r.ops.iter().zip(&r.source_fds).enumerate() {
        let (
            MountOp::Mount {
                source: Some(src), ..
            },
            true,
        ) = (op, *slot >= 0)
        else {
            continue;
        };
        let fd = open(src, libc::O_PATH | libc::O_CLOEXEC, 0).map_err(|e| (i as u32, e))?;
        let moved = dup3(fd, *slot, libc::O_CLOEXEC);
        let _ = close(fd);
        moved.map_err(|e| (i as u32, e))?;
    }
    Ok(())
}

/// The container's init: set everything up, report READY, wait for GO, exec. Never returns.
pub(crate) fn init(a: &ChildArgs<'_>) -> ! {
    let sync = a.sync;
    let f = match setup(a).and_then(|path| exec(a, path)) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report(sync, f)
}

/// Execs `path` through the sealed trampoline, which reports an execve failure of its own on
/// the socket (kept open across its exec, closed across the program's).
fn exec(a: &ChildArgs<'_>, path: &CStr) -> Result<std::convert::Infallible, Fail> {
    let p = a.process;
    let index = trampoline::index_of(&p.candidates, path).unwrap_or(usize::MAX);
    let errno = a.exec.exec(index, &p.envp_ptrs);
    Err(Fail {
        step: Step::Execve,
        errno,
        arg: 0,
    })
}

/// Everything before `execve`; returns the program to exec.
fn setup<'p>(a: &ChildArgs<'p>) -> Result<&'p CStr, Fail> {
    let sync = a.sync;
    let p = a.process;
    prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0).at(Step::Sync, 0)?;
    // Until it execs, this process is a copy of the engine (CVE-2019-5736 class): keep the
    // container's processes out of /proc/<pid>.
    prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0).at(Step::Dumpable, 0)?;
    umask(0);

    for (i, src) in a.stdio.iter().enumerate() {
        if *src >= 0 {
            dup3(*src, i as RawFd, 0).at(Step::Stdio, i)?;
        }
    }
    for (i, src) in a.extra.iter().enumerate() {
        // Without O_CLOEXEC: they stay open across the exec of the program.
        dup3(*src, 3 + i as RawFd, 0).at(Step::Stdio, 3 + i)?;
    }
    let fifo = a.plan.and_then(|plan| plan.exec_fifo).unwrap_or(-1);
    let sources = a.plan.map_or(&[][..], |plan| &plan.rootfs.source_fds[..]);
    close_fds_except(3 + a.extra.len() as u32, [sync, fifo, a.exec.fd], sources)
        .at(Step::CloseFds, 0)?;
    // The socket stays open across the trampoline's exec (it reports a failed exec of the
    // program there, and marks it close-on-exec first); cleared now, before any seccomp
    // filter could refuse the fcntl.
    super::fcntl(sync, libc::F_SETFD, 0).at(Step::CloseFds, 1)?;

    // The parent has written id maps and placed us in our cgroups.
    wait_go(sync)?;

    if let Some(plan) = a.plan {
        if plan.ns.new_user {
            setresgid(0).at(Step::UserNsRoot, 0)?;
            setresuid(0).at(Step::UserNsRoot, 0)?;
        }
        if plan.ns.unshare_cgroup {
            unshare(libc::CLONE_NEWCGROUP).at(Step::UnshareCgroup, 0)?;
        }
        setsid().at(Step::Setsid, 0)?;
        if let Some(h) = &plan.hostname {
            sethostname(h.to_bytes()).at(Step::Hostname, 0)?;
        }
        if let Some(d) = &plan.domainname {
            setdomainname(d.to_bytes()).at(Step::Domainname, 0)?;
        }
        rootfs(plan, sync)?;
        finish_rootfs(plan)?;
    } else if p.terminal.is_some() {
        // An exec'd process needs a session of its own for a controlling terminal.
        setsid().at(Step::Setsid, 0)?;
    }
    if let Some(size) = p.terminal {
        terminal(sync, p, size)?;
    }
    let program = process(sync, p)?;
    // A filter with a listener is loaded before READY, while the engine is there to hand the
    // listener to the agent (runc loads it before its start wait too); otherwise as late as
    // possible, after the start signal.
    let late = p.seccomp.as_ref().filter(|_| !p.seccomp_early);
    if let Some(sc) = late.filter(|sc| sc.notify.is_some()) {
        install_seccomp(sync, sc)?;
    }

    if let Some(fifo) = a.plan.and_then(|plan| plan.exec_fifo) {
        // Created, not started: outlive the creator and wait for `start` to write a byte
        // into the fifo (which we hold open for reading and writing, so the read blocks).
        prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0).at(Step::Sync, 0)?;
        // Signals stay blocked until exec (no handler of the engine's copy may run), but one
        // that would end a process ends a created container too (`kill` before `start`); a
        // signalfd sees them even when we are a pid namespace's init.
        let sfd = signalfd(TERMINATING).at(Step::Sync, 3)?;
        send(sync, Msg::new(kind::READY)).at(Step::Sync, 0)?;
        loop {
            let (started, signalled) = match poll_either(fifo, sfd) {
                Err(libc::EINTR) => continue,
                r => r.at(Step::Sync, 4)?,
            };
            if signalled {
                let mut info = [0u8; 128];
                if let Ok(128) = read(sfd, &mut info) {
                    let sig = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as c_int;
                    die_of(sig);
                }
            }
            if started {
                let mut b = [0u8; 1];
                match read(fifo, &mut b) {
                    Ok(1) => break,
                    Err(libc::EINTR | libc::EAGAIN) => {}
                    Ok(_) => Err(libc::EPIPE).at(Step::Sync, 1)?,
                    Err(e) => Err(e).at(Step::Sync, 1)?,
                }
            }
        }
        let _ = close(fifo);
        let _ = close(sfd);
    } else {
        send(sync, Msg::new(kind::READY)).at(Step::Sync, 0)?;
        wait_go(sync)?;
        // From here on the engine may be gone without taking us along.
        prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0).at(Step::Sync, 0)?;
    }
    reset_signal_dispositions();
    set_sigmask(false);
    if let Some(sc) = late.filter(|sc| sc.notify.is_none()) {
        install_seccomp(sync, sc)?;
    }
    Ok(program)
}

/// The signals whose default action ends a process (all but SIGKILL, which needs no help,
/// and the ignored and stopping ones), as a mask with bit N-1 for signal N.
const TERMINATING: u64 = {
    let mut m: u64 = 0;
    let mut sig = 1;
    while sig <= 64 {
        let ends = !matches!(
            sig,
            libc::SIGKILL
                | libc::SIGCHLD
                | libc::SIGCONT
                | libc::SIGSTOP
                | libc::SIGTSTP
                | libc::SIGTTIN
                | libc::SIGTTOU
                | libc::SIGURG
                | libc::SIGWINCH
                | 32
                | 33
        );
        if ends {
            m |= 1 << (sig - 1);
        }
        sig += 1;
    }
    m
};

/// Ends this (created, not started) process as `sig` would: by the signal itself, or, as a pid
/// namespace's init (which ignores default actions of its own signals), with 128 + `sig`.
fn die_of(sig: c_int) -> ! {
    reset_signal_dispositions();
    set_sigmask(false);
    raise(sig);
    super::exit(128 + sig)
}

/// Loads the filters; the notify one's listener goes to the engine (which copies it to the
/// agent) and is closed here once the engine says GO, so that the agent holds the only copy
/// (when it goes, notified calls get ENOSYS instead of waiting forever).
fn install_seccomp(sync: RawFd, sc: &crate::seccomp::SeccompPlan) -> Result<(), Fail> {
    for (i, prog) in sc.fprogs.iter().enumerate() {
        let fd = super::seccomp_install(prog, sc.flags_of(i, true)).at(Step::Seccomp, i)?;
        if matches!(sc.notify, Some((n, _)) if n == i) {
            let mut m = Msg::new(kind::SECCOMP);
            m.arg = fd as u32;
            send(sync, m).at(Step::SeccompAgent, 0)?;
            wait_go(sync)?;
            let _ = close(fd);
        }
    }
    Ok(())
}

/// Opens a pty of the container's own devpts, makes its slave our controlling terminal and
/// stdio, and hands the master to the engine.
fn terminal(sync: RawFd, p: &ProcessPlan, size: Option<(u16, u16)>) -> Result<(), Fail> {
    let master = open(
        c"/dev/ptmx",
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
    )
    .at(Step::Terminal, 0)?;
    let res = (|| {
        let mut unlock: c_int = 0;
        super::ioctl_ptr(master, libc::TIOCSPTLCK, &raw mut unlock).at(Step::Terminal, 1)?;
        let mut n: u32 = 0;
        super::ioctl_ptr(master, libc::TIOCGPTN, &raw mut n).at(Step::Terminal, 2)?;
        let mut buf = [0u8; 32];
        let path = pts_path(&mut buf, n);
        let slave = open(path, libc::O_RDWR | libc::O_NOCTTY, 0).at(Step::Terminal, 3)?;
        let res = (|| {
            // The owner only: the group stays devpts' (tty, gid 5), as runc leaves it.
            super::fchown(slave, p.uid, u32::MAX).at(Step::Terminal, 4)?;
            if let Some((rows, cols)) = size {
                let mut ws = libc::winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                super::ioctl_ptr(slave, libc::TIOCSWINSZ, &raw mut ws).at(Step::Terminal, 5)?;
            }
            super::ioctl_int(slave, libc::TIOCSCTTY, 0).at(Step::Terminal, 6)?;
            for fd in 0..3 {
                dup3(slave, fd, 0).at(Step::Terminal, 7)?;
            }
            Ok(())
        })();
        let _ = close(slave);
        res?;
        super::send_with_fd(sync, &Msg::new(kind::PTY).to_bytes(), master)
            .map(drop)
            .at(Step::Terminal, 8)
    })();
    let _ = close(master);
    res
}

/// `/dev/pts/<n>` in `buf`, without allocating.
fn pts_path(buf: &mut [u8; 32], n: u32) -> &CStr {
    const PREFIX: &[u8] = b"/dev/pts/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 || len == digits.len() {
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
    CStr::from_bytes_with_nul(&buf[..=pos]).unwrap_or(c"/dev/pts/0")
}

/// Closes every fd from `from` up but those in `keep` (-1 entries keep nothing).
fn close_fds_except(mut from: u32, keep: [RawFd; 3], more: &[RawFd]) -> SysResult<()> {
    loop {
        let next = keep
            .iter()
            .chain(more)
            .copied()
            .filter(|&k| k >= 0 && k as u32 >= from)
            .min();
        let Some(k) = next else {
            return close_range(from, u32::MAX, 0);
        };
        let k = k as u32;
        if k > from {
            close_range(from, k - 1, 0)?;
        }
        from = k + 1;
    }
}

const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
const O_PATH: u64 = (libc::O_PATH | libc::O_CLOEXEC) as u64;

/// Opens `p` inside the rootfs (symlinks resolved as the container would), creating missing
/// components — the last one as `create`.
pub(crate) fn resolve_create(
    root: RawFd,
    p: &InRootPath,
    create: Create,
    step: Step,
    arg: usize,
) -> Result<RawFd, Fail> {
    resolve_create_with(root, p, create, step, arg, RESOLVE)
}

/// [`resolve_create`] with the given `RESOLVE_*` flags.
fn resolve_create_with(
    root: RawFd,
    p: &InRootPath,
    create: Create,
    step: Step,
    arg: usize,
    resolve: u64,
) -> Result<RawFd, Fail> {
    let Some(full) = p.prefixes.last() else {
        return openat(root, c".", O_PATH as c_int, 0).at(step, arg);
    };
    match openat2(root, full, O_PATH, resolve) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) => {}
        Err(e) => {
            return Err(Fail {
                step,
                errno: e,
                arg: arg as u32,
            });
        }
    }
    let last = p.prefixes.len() - 1;
    let mut parent = -1;
    for (k, (prefix, name)) in p.prefixes.iter().zip(p.names.iter()).enumerate() {
        let fd = match openat2(root, prefix, O_PATH, resolve) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => {
                let dir = if parent < 0 { root } else { parent };
                let made = if k == last && create == Create::File {
                    openat(
                        dir,
                        name,
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_CLOEXEC
                            | libc::O_NOFOLLOW,
                        0o644,
                    )
                    .and_then(close)
                } else {
                    mkdirat(dir, name, 0o755)
                };
                match made {
                    Ok(()) | Err(libc::EEXIST) => {}
                    Err(e) => {
                        if parent >= 0 {
                            let _ = close(parent);
                        }
                        return Err(Fail {
                            step,
                            errno: e,
                            arg: arg as u32,
                        });
                    }
                }
                match openat2(root, prefix, O_PATH, resolve) {
                    Ok(fd) => fd,
                    Err(e) => {
                        if parent >= 0 {
                            let _ = close(parent);
                        }
                        return Err(Fail {
                            step,
                            errno: e,
                            arg: arg as u32,
                        });
                    }
                }
            }
            Err(e) => {
                if parent >= 0 {
                    let _ = close(parent);
                }
                return Err(Fail {
                    step,
                    errno: e,
                    arg: arg as u32,
                });
            }
        };
        if parent >= 0 {
            let _ = close(parent);
        }
        parent = fd;
    }
    Ok(parent)
}

/// Mount flags a bind remount must keep (the kernel locks them in user namespaces).
fn locked_flags(fd: RawFd) -> c_ulong {
    match fstatfs_flags(fd) {
        Ok(flags) => flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC),
        Err(_) => 0,
    }
}

fn rootfs(plan: &Plan, sync: RawFd) -> Result<(), Fail> {
    let r = &plan.rootfs;
    // In the runtime's mount namespace (`host_ns`) `/` is not ours to change, and the engine
    // bound the rootfs (it detaches it at teardown).
    if !r.host_ns {
        mount(None, c"/", None, r.root_propagation, None).at(Step::RootPropagation, 0)?;
        if let Some(parent) = &r.private_parent {
            mount(None, parent, None, libc::MS_PRIVATE, None).at(Step::RootPropagation, 1)?;
        }
        mount(
            Some(&r.rootfs),
            &r.rootfs,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .at(Step::BindRootfs, 0)?;
    }
    let root = open(
        &r.rootfs,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .at(Step::OpenRootfs, 0)?;
    // The procfs/sysfs mounts made and verified so far: (op index, fd of the mount's root).
    let mut verified: [(usize, RawFd); MAX_VERIFIED] = [(0, -1); MAX_VERIFIED];
    let res = rootfs_ops(plan, sync, root, &mut verified);
    for (_, fd) in verified {
        if fd >= 0 {
            let _ = close(fd);
        }
    }
    let _ = close(root);
    res?;

    if r.host_ns {
        // pivot_root would move every process of the runtime's namespace.
        chdir(&r.rootfs).at(Step::MoveRoot, usize::MAX)?;
        chroot(c".").at(Step::MoveRoot, usize::MAX)?;
        return chdir(c"/").at(Step::MoveRoot, usize::MAX);
    }
    if let Some(hide) = &r.no_pivot {
        return move_root(&r.rootfs, hide);
    }
    // pivot_root(".", ".") stacks the old root on top of the new one; detach it from there.
    let old = open(
        c"/",
        libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        0,
    )
    .at(Step::PivotRoot, 0)?;
    let new = open(
        &r.rootfs,
        libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        0,
    )
    .at(Step::PivotRoot, 1)?;
    fchdir(new).at(Step::PivotRoot, 2)?;
    pivot_root(c".", c".").at(Step::PivotRoot, 3)?;
    fchdir(old).at(Step::DetachOldRoot, 0)?;
    mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None).at(Step::DetachOldRoot, 1)?;
    umount2(c".", libc::MNT_DETACH).at(Step::DetachOldRoot, 2)?;
    chdir(c"/").at(Step::DetachOldRoot, 3)?;
    let _ = close(old);
    let _ = close(new);
    Ok(())
}

/// `--no-pivot`: the rootfs moved onto `/` and `chroot` into it, as runc does where
/// `pivot_root` can't be used. The host's procfs/sysfs mounts (`hide`) are detached first: they
/// would stay below the moved root in this mount namespace. (Propagation of `/` was made
/// private or slave first, so nothing of this reaches the host.)
fn move_root(rootfs: &CStr, hide: &[CString]) -> Result<(), Fail> {
    for (i, p) in hide.iter().enumerate() {
        match umount2(p, libc::MNT_DETACH) {
            // Already gone with a parent, or not a mount point any more.
            Ok(()) | Err(libc::EINVAL | libc::ENOENT) => {}
            Err(e) => {
                return Err(Fail {
                    step: Step::MoveRoot,
                    errno: e,
                    arg: i as u32,
                });
            }
        }
    }
    chdir(rootfs).at(Step::MoveRoot, usize::MAX)?;
    mount(Some(c"."), c"/", None, libc::MS_MOVE, None).at(Step::MoveRoot, usize::MAX)?;
    chroot(c".").at(Step::MoveRoot, usize::MAX)?;
    chdir(c"/").at(Step::MoveRoot, usize::MAX)
}

/// The mounts, devices and links of the plan, then (after the pre-pivot hooks) sysctls, masks
/// and read-only paths through the verified procfs/sysfs fds.
fn rootfs_ops(
    plan: &Plan,
    sync: RawFd,
    root: RawFd,
    verified: &mut [(usize, RawFd); MAX_VERIFIED],
) -> Result<(), Fail> {
    let r = &plan.rootfs;
    let mut buf = [0u8; 32];
    let mut src_buf = [0u8; 32];

    for (i, op) in r.ops.iter().enumerate() {
        match op {
            MountOp::Mount {
                source,
                dest,
                fstype,
                flags,
                data,
                create,
                remount,
                propagation,
                rec_attr,
                verify,
            } => {
                let fd = match verify {
                    // procfs/sysfs: no symlink anywhere on the way to the target.
                    Some(_) => resolve_create_with(
                        root,
                        dest,
                        *create,
                        Step::SpecialTarget,
                        i,
                        RESOLVE | libc::RESOLVE_NO_SYMLINKS,
                    )?,
                    None => resolve_create(root, dest, *create, Step::MountTarget, i)?,
                };
                let target = proc_fd_path(&mut buf, fd);
                // In a new user namespace a bind source was opened on the host's side.
                let source = match r.source_fds.get(i) {
                    Some(&src) if src >= 0 => Some(proc_fd_path(&mut src_buf, src)),
                    _ => source.as_deref(),
                };
                let res = mount(source, target, fstype.as_deref(), *flags, data.as_deref());
                let _ = close(fd);
                res.at(Step::Mount, i)?;
                if *remount != 0 || *propagation != 0 {
                    // Reopen: the fd above is the covered directory, this is the new mount.
                    let fd = resolve_create(root, dest, *create, Step::MountTarget, i)?;
                    let target = proc_fd_path(&mut buf, fd);
                    let mut res = Ok(());
                    if *remount != 0 {
                        let keep = locked_flags(fd);
                        res = mount(
                            None,
                            target,
                            None,
                            libc::MS_BIND | libc::MS_REMOUNT | *remount | keep,
                            None,
                        )
                        .at(Step::MountRemount, i);
                    }
                    if res.is_ok() && *propagation != 0 {
                        res = mount(None, target, None, *propagation, None)
                            .at(Step::MountPropagation, i);
                    }
                    let _ = close(fd);
                    res?;
                }
                if *rec_attr != (0, 0) {
                    let fd = resolve_create(root, dest, *create, Step::MountTarget, i)?;
                    let res = super::mount_setattr_recursive(fd, rec_attr.0, rec_attr.1);
                    let _ = close(fd);
                    res.at(Step::MountRemount, i)?;
                }
                if let Some(magic) = verify {
                    let fd = verified_mount(root, dest, *magic, i)?;
                    match verified.iter_mut().find(|(_, f)| *f < 0) {
                        Some(slot) => *slot = (i, fd),
                        None => {
                            let _ = close(fd);
                            return Err(Fail {
                                step: Step::SpecialVerify,
                                errno: libc::E2BIG,
                                arg: i as u32,
                            });
                        }
                    }
                }
            }
            MountOp::Remount { dest, flags } => {
                let fd = resolve_create(root, dest, Create::Dir, Step::MountTarget, i)?;
                let target = proc_fd_path(&mut buf, fd);
                let res = mount(None, target, None, libc::MS_REMOUNT | *flags, None);
                let _ = close(fd);
                res.at(Step::MountRemount, i)?;
            }
        }
    }
    // Host-side fds must not reach the container's program or hooks.
    for &src in r.source_fds.iter().filter(|&&f| f >= 0) {
        let _ = close(src);
    }
    for (i, d) in r.devices.iter().enumerate() {
        device(root, d, i)?;
    }
    for (i, l) in r.links.iter().enumerate() {
        link(root, l, i)?;
    }
    if let Some(cwd) = &plan.cwd {
        let fd = resolve_create(root, cwd, Create::Dir, Step::CreateCwd, 0)?;
        let _ = close(fd);
    }

    if plan.hooks_before_pivot {
        send(sync, Msg::new(kind::HOOKS)).at(Step::Sync, 0)?;
        wait_go(sync)?;
    }
    kernel_files(plan, root, verified)
}

/// After mounting procfs/sysfs on `dest`: the mount's root, opened again without following
/// symlinks, must be that filesystem — a directory swapped in meanwhile fails here.
fn verified_mount(root: RawFd, dest: &InRootPath, magic: i64, i: usize) -> Result<RawFd, Fail> {
    let fd = match dest.prefixes.last() {
        Some(full) => openat2(
            root,
            full,
            (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
            RESOLVE | libc::RESOLVE_NO_SYMLINKS,
        ),
        None => Err(libc::EINVAL),
    }
    .at(Step::SpecialTarget, i)?;
    match fstatfs_type(fd) {
        Ok(t) if t == magic => Ok(fd),
        Ok(_) => {
            let _ = close(fd);
            Err(Fail {
                step: Step::SpecialVerify,
                errno: libc::EXDEV,
                arg: i as u32,
            })
        }
        Err(e) => {
            let _ = close(fd);
            Err(Fail {
                step: Step::SpecialVerify,
                errno: e,
                arg: i as u32,
            })
        }
    }
}

/// Resolution beneath a verified kernel filesystem: no `..` out of it, no symlinks, no
/// crossing into another mount.
const BENEATH: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_XDEV
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS;

/// Opens `b` (`O_PATH`): beneath its verified mount, or inside the rootfs. `Ok(None)` when it
/// does not exist.
fn open_beneath(
    root: RawFd,
    verified: &[(usize, RawFd); MAX_VERIFIED],
    b: &Beneath,
    resolve_beneath: u64,
    step: Step,
    i: usize,
) -> Result<Option<RawFd>, Fail> {
    let (dir, resolve) = match b.base {
        Some(op) => match verified.iter().find(|(j, fd)| *j == op && *fd >= 0) {
            Some((_, fd)) => (*fd, resolve_beneath),
            None => {
                return Err(Fail {
                    step,
                    errno: libc::ENOENT,
                    arg: i as u32,
                });
            }
        },
        None => (root, RESOLVE),
    };
    match openat2(dir, &b.rel, O_PATH, resolve) {
        Ok(fd) => Ok(Some(fd)),
        Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(Fail {
            step,
            errno: e,
            arg: i as u32,
        }),
    }
}

/// Sysctls, masked paths, read-only paths: each through an fd opened beneath the verified
/// procfs/sysfs mount it lies in, never by a container path resolved again later (a racing
/// container renaming directories of a shared volume can't leave procfs unmasked).
fn kernel_files(
    plan: &Plan,
    root: RawFd,
    verified: &[(usize, RawFd); MAX_VERIFIED],
) -> Result<(), Fail> {
    let r = &plan.rootfs;
    let mut buf = [0u8; 32];
    for (i, s) in plan.sysctls.iter().enumerate() {
        let Some(fd) = open_beneath(root, verified, &s.at, BENEATH, Step::Sysctl, i)? else {
            return Err(Fail {
                step: Step::Sysctl,
                errno: libc::ENOENT,
                arg: i as u32,
            });
        };
        let path = proc_fd_path(&mut buf, fd);
        let res = open(path, libc::O_WRONLY | libc::O_CLOEXEC, 0).and_then(|w| {
            let res = write(w, s.value.to_bytes());
            let _ = close(w);
            res
        });
        let _ = close(fd);
        res.at(Step::Sysctl, i)?;
    }
    let mut st = super::zeroed_stat();
    for (i, m) in r.masked.iter().enumerate() {
        let Some(fd) = open_beneath(root, verified, m, BENEATH, Step::MaskPath, i)? else {
            continue;
        };
        let res = fstatat(fd, c"", &mut st, libc::AT_EMPTY_PATH).and_then(|()| {
            let target = proc_fd_path(&mut buf, fd);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                mount(
                    Some(c"tmpfs"),
                    target,
                    Some(c"tmpfs"),
                    libc::MS_RDONLY,
                    Some(c"size=0k"),
                )
            } else {
                // The host's /dev/null: we have not pivoted yet.
                mount(Some(c"/dev/null"), target, None, libc::MS_BIND, None)
            }
        });
        let _ = close(fd);
        res.at(Step::MaskPath, i)?;
    }
    for (i, p) in r.readonly.iter().enumerate() {
        let Some(fd) = open_beneath(root, verified, p, BENEATH, Step::ReadonlyPath, i)? else {
            continue;
        };
        let target = proc_fd_path(&mut buf, fd);
        let res = mount(
            Some(target),
            target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        );
        let _ = close(fd);
        res.at(Step::ReadonlyPath, i)?;
        // The bind just made: the same name beneath the same mount, now crossing into it.
        let Some(fd) = open_beneath(
            root,
            verified,
            p,
            BENEATH & !libc::RESOLVE_NO_XDEV,
            Step::ReadonlyPath,
            i,
        )?
        else {
            return Err(Fail {
                step: Step::ReadonlyPath,
                errno: libc::ENOENT,
                arg: i as u32,
            });
        };
        let keep = locked_flags(fd);
        let target = proc_fd_path(&mut buf, fd);
        let res = mount(
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | keep,
            None,
        );
        let _ = close(fd);
        res.at(Step::ReadonlyPath, i)?;
    }
    Ok(())
}

fn device(root: RawFd, d: &DeviceOp, i: usize) -> Result<(), Fail> {
    let dir = resolve_create(root, &d.parent, Create::Dir, Step::Device, i)?;
    let res = (|| {
        match mknodat(dir, &d.name, d.mode, d.dev) {
            Ok(()) => {}
            Err(libc::EEXIST) => return Ok(()),
            Err(libc::EPERM) if d.host.is_some() => {
                // No mknod in a user namespace: bind the host's node onto an empty file.
                match openat(
                    dir,
                    &d.name,
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                ) {
                    Ok(fd) => {
                        let _ = close(fd);
                    }
                    Err(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                let fd = openat(
                    dir,
                    &d.name,
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0,
                )?;
                let mut buf = [0u8; 32];
                let res = mount(
                    d.host.as_deref(),
                    proc_fd_path(&mut buf, fd),
                    None,
                    libc::MS_BIND,
                    None,
                );
                let _ = close(fd);
                return res;
            }
            Err(e) => return Err(e),
        }
        if d.uid != 0 || d.gid != 0 {
            fchownat(dir, &d.name, d.uid, d.gid, libc::AT_SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    })();
    let _ = close(dir);
    res.at(Step::Device, i)
}

fn link(root: RawFd, l: &LinkOp, i: usize) -> Result<(), Fail> {
    let dir = resolve_create(root, &l.parent, Create::Dir, Step::Link, i)?;
    let res = match symlinkat(&l.target, dir, &l.name) {
        Ok(()) | Err(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    };
    let _ = close(dir);
    res.at(Step::Link, i)
}

/// After `pivot_root`: a read-only `/dev` and root.
fn finish_rootfs(plan: &Plan) -> Result<(), Fail> {
    let r = &plan.rootfs;
    if r.readonly_dev {
        remount_readonly(c"/dev", Step::ReadonlyDev)?;
    }
    if r.readonly_root {
        remount_readonly(c"/", Step::ReadonlyRoot)?;
    }
    Ok(())
}

/// Makes the mount at `path` read-only (a bind remount, keeping its locked flags).
fn remount_readonly(path: &CStr, step: Step) -> Result<(), Fail> {
    let fd = open(path, libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0).at(step, 0)?;
    let keep = locked_flags(fd);
    let _ = close(fd);
    mount(
        None,
        path,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
        None,
    )
    .at(step, 0)
}

/// Limits, user, capabilities, cwd; returns the program path found in the container.
fn process(sync: RawFd, p: &ProcessPlan) -> Result<&CStr, Fail> {
    for (i, r) in p.rlimits.iter().enumerate() {
        prlimit(r.resource, r.soft, r.hard).at(Step::Rlimit, i)?;
    }
    if p.no_new_privs {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).at(Step::NoNewPrivs, 0)?;
    }
    if let (Some(sc), true) = (&p.seccomp, p.seccomp_early) {
        install_seccomp(sync, sc)?;
    }
    let caps = &p.caps;
    {
        prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).at(Step::Bounding, 0)?;
        for cap in 0..=p.last_cap.min(63) {
            if caps.bounding & (1u64 << cap) == 0 {
                match prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0) {
                    Ok(_) | Err(libc::EINVAL) => {}
                    Err(e) => {
                        return Err(Fail {
                            step: Step::Bounding,
                            errno: e,
                            arg: cap,
                        });
                    }
                }
            }
        }
    }
    // As runc: the cwd is entered while still privileged (a process may live in a directory
    // only root can enter, such as a 0700 /root), and again after the user change when that
    // failed; getcwd checks it below either way.
    let in_cwd = chdir(&p.cwd).is_ok();
    setgroups(&p.groups).at(Step::Setgroups, 0)?;
    setresgid(p.gid).at(Step::Setgid, 0)?;
    setresuid(p.uid).at(Step::Setuid, 0)?;
    {
        prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0).at(Step::Capset, 0)?;
        let word = |m: u64, hi: bool| if hi { (m >> 32) as u32 } else { m as u32 };
        let data = [false, true].map(|hi| CapData {
            effective: word(caps.effective, hi),
            permitted: word(caps.permitted, hi),
            inheritable: word(caps.inheritable, hi),
        });
        capset(&data).at(Step::Capset, 0)?;
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            0,
            0,
            0,
        )
        .at(Step::Ambient, 64)?;
        for cap in 0..=p.last_cap.min(63) {
            if caps.ambient & (1u64 << cap) != 0 {
                prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as c_ulong,
                    cap as c_ulong,
                    0,
                    0,
                )
                .at(Step::Ambient, cap as usize)?;
            }
        }
    }
    umask(p.umask.unwrap_or(0o022));
    if !in_cwd {
        chdir(&p.cwd).at(Step::Cwd, 0)?;
    }
    // A cwd reached through a leaked fd would lie outside our root: getcwd says so
    // ("(unreachable)/..."), as in CVE-2024-21626.
    let mut buf = [0u8; 4096];
    match getcwd(&mut buf) {
        Ok(_) if buf[0] == b'/' => {}
        Ok(_) => {
            // arg 1: getcwd answered, with a path outside our root.
            return Err(Fail {
                step: Step::CwdOutsideRoot,
                errno: libc::EPERM,
                arg: 1,
            });
        }
        Err(e) => {
            return Err(Fail {
                step: Step::CwdOutsideRoot,
                errno: e,
                arg: 0,
            });
        }
    }
    let mut st = super::zeroed_stat();
    let mut denied = false;
    for c in &p.candidates {
        match fstatat(libc::AT_FDCWD, c, &mut st, 0) {
            Ok(()) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                if st.st_mode & 0o111 != 0 {
                    return Ok(c);
                }
                denied = true;
            }
            Ok(()) => denied = true,
            Err(libc::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    Err(Fail {
        step: Step::ExecLookup,
        errno: if denied { libc::EACCES } else { libc::ENOENT },
        arg: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = Msg {
            kind: kind::ERROR,
            step: Step::Mount as u32,
            errno: -3,
            arg: 7,
        };
        assert_eq!(Msg::from_bytes(&m.to_bytes()), m);
    }

    #[test]
    fn every_step_number_maps_back() {
        for n in 1..=49 {
            let s = Step::from_u32(n).expect("step");
            assert_eq!(s as u32, n);
        }
        assert!(Step::from_u32(0).is_none());
        assert!(Step::from_u32(50).is_none());
    }
}
