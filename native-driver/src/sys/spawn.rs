//! The parent's side of starting a container init: the socket, the `clone3`, the messages.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::child::{self, ChildArgs, MSG_LEN, Msg, kind};
use super::{Forked, SysResult};

/// A `SOCK_SEQPACKET` pair: (parent end, child end). Both ends are close-on-exec and ≥ 3, so
/// the child's dup of stdio onto 0..=2 can't clobber them.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for socketpair to fill.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two new fds that nothing else owns.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// `fd` itself when ≥ 3, else a close-on-exec duplicate ≥ 3.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    let dup = super::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3)
        .map_err(io::Error::from_raw_os_error)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup as RawFd) })
}

/// Starts the container's init (or, with `intermediate`, the process that joins namespaces
/// and then starts it). Returns the pid and a pidfd. All signals are blocked in this thread
/// around the clone so that the child never runs one of the engine's handlers; the child
/// resets dispositions and unblocks right before `execve`.
pub(crate) fn fork(args: &ChildArgs<'_>, intermediate: bool) -> SysResult<(i32, OwnedFd)> {
    let flags = if intermediate {
        libc::CLONE_PIDFD as u64
    } else {
        (args.plan.map_or(0, |p| p.ns.new_flags) as u64) | libc::CLONE_PIDFD as u64
    };
    let old_mask = super::set_sigmask(true);
    // SAFETY: the child branch calls only `child::init`/`child::intermediate`, which run the
    // raw system calls of `sys` on the prepared plan and end in execve or exit.
    let forked = unsafe {
        super::clone3(super::CloneArgs {
            flags,
            exit_signal: libc::SIGCHLD as u64,
        })
    };
    match forked {
        Ok(Forked::Child) => {
            if intermediate {
                child::intermediate(args)
            } else {
                child::init(args)
            }
        }
        Ok(Forked::Parent { pid, pidfd }) => {
            super::restore_sigmask(old_mask);
            // SAFETY: CLONE_PIDFD stored a new fd that nothing else owns.
            Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd) }))
        }
        Err(e) => {
            super::restore_sigmask(old_mask);
            Err(e)
        }
    }
}

/// The parent's end of the socket.
pub(crate) struct Channel {
    fd: OwnedFd,
}

/// How long the parent waits for one message before declaring the child hung.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl Channel {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        let tv = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    pub fn send(&self, msg: Msg) -> io::Result<()> {
        let b = msg.to_bytes();
        loop {
            // SAFETY: b is a valid buffer of its length; MSG_NOSIGNAL avoids SIGPIPE if the
            // child is gone.
            let r = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    b.as_ptr().cast(),
                    b.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    pub fn go(&self) -> io::Result<()> {
        self.send(Msg::new(kind::GO))
    }

    /// The next message; `None` when the child closed its end (it exec'd or died).
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// The next message and the fd it carries (`SCM_RIGHTS`), if any.
    pub fn recv_with_fd(&self) -> io::Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut b = [0u8; MSG_LEN];
        let mut control = [0u64; 4];
        loop {
            let mut iov = libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            };
            // SAFETY: msghdr is plain data; zeroed is valid. Its pointers (iov, control) live on
            // this frame for the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: msg is valid for recvmsg; MSG_CMSG_CLOEXEC marks received fds close-on-exec.
            let r =
                unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
            if r == 0 {
                return Ok(None);
            }
            if r == MSG_LEN as isize {
                let mut fd = None;
                // The first control message, when it is SCM_RIGHTS with one fd.
                let len = control[0] as usize;
                let level_type = control[1];
                if msg.msg_controllen >= 20 && len >= 20 {
                    let level = (level_type & 0xffff_ffff) as i32;
                    let typ = (level_type >> 32) as i32;
                    if level == libc::SOL_SOCKET && typ == libc::SCM_RIGHTS {
                        let raw = (control[2] & 0xffff_ffff) as i32;
                        // SAFETY: the kernel just installed this fd for us.
                        fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
                return Ok(Some((Msg::from_bytes(&b), fd)));
            }
            if r > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short message from the container init",
                ));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the container init did not answer within {REPLY_TIMEOUT:?}"),
                    ));
                }
                _ => return Err(e),
            }
        }
    }
}
