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
    above(fd, 3)
}

/// `fd` if it is at least `min`, else a close-on-exec copy of it at `min` or above.
pub(crate) fn above(fd: OwnedFd, min: RawFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    dup_above(fd.as_raw_fd(), min)
}

/// A close-on-exec copy of `fd` at `min` or above.
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    let dup = super::fcntl(fd, libc::F_DUPFD_CLOEXEC, min.into())
        .map_err(io::Error::from_raw_os_error)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup as RawFd) })
}

/// Close-on-exec copies of this process's fds 3, 4, … (`n` of them), for `Pipes::extra`: what
/// runc's `--preserve-fds N` hands to the container. An fd that is not open is an error naming
/// it.
pub fn inherited_fds(n: u32) -> io::Result<Vec<OwnedFd>> {
    (0..n)
        .map(|i| {
            let fd = 3 + i as RawFd;
            // F_DUPFD_CLOEXEC on a number that is not open fails with EBADF; nothing is owned.
            dup_above(fd, 3).map_err(|e| io::Error::new(e.kind(), format!("fd {fd}: {e}")))
        })
        .collect()
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

/// The fds of every `SCM_RIGHTS` control message of `msg`, as filled by `recvmsg`.
fn received_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut out = Vec::new();
    // SAFETY: msg was filled by recvmsg; the CMSG_* macros stay within msg_control and
    // msg_controllen, and each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 fds
    // that the kernel installed for this process.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..len / std::mem::size_of::<libc::c_int>() {
                    out.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    out
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
            // Every fd the kernel installed is ours to close, whatever else is wrong.
            let mut fds = if r >= 0 {
                received_fds(&msg).into_iter()
            } else {
                Vec::new().into_iter()
            };
            if r == 0 {
                return Ok(None);
            }
            if r > 0 && msg.msg_flags & libc::MSG_CTRUNC != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated control message from the container init",
                ));
            }
            if r == MSG_LEN as isize {
                // The first fd is the answer; any other is closed with the iterator.
                return Ok(Some((Msg::from_bytes(&b), fds.next())));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::os::unix::net::UnixStream;

    /// Sends one message of the init protocol with `fds` attached.
    fn send_with(s: &UnixStream, fds: &[RawFd]) {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        let b = Msg::new(kind::GO).to_bytes();
        sendmsg::<()>(
            s.as_raw_fd(),
            &[io::IoSlice::new(&b)],
            &[ControlMessage::ScmRights(fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    }

    /// Whether every write end of `r`'s pipe is closed (a non-blocking read sees EOF).
    fn writers_gone(r: &mut std::io::PipeReader) -> bool {
        super::super::fcntl(
            r.as_raw_fd(),
            libc::F_SETFL,
            libc::O_NONBLOCK as libc::c_long,
        )
        .unwrap();
        matches!(r.read(&mut [0u8; 1]), Ok(0))
    }

    #[test]
    fn extra_and_truncated_fds_are_closed_not_leaked() {
        let (a, b) = UnixStream::pair().unwrap();
        let ch = Channel::new(OwnedFd::from(b)).unwrap();
        // Two fds where one is expected: the first is the answer, the second is closed.
        let (mut r1, w1) = std::io::pipe().unwrap();
        let (mut r2, w2) = std::io::pipe().unwrap();
        send_with(&a, &[w1.as_raw_fd(), w2.as_raw_fd()]);
        drop((w1, w2));
        let (_, fd) = ch.recv_with_fd().unwrap().unwrap();
        assert!(fd.is_some());
        assert!(writers_gone(&mut r2), "the extra fd leaked");
        drop(fd);
        assert!(writers_gone(&mut r1));
        // More fds than the control buffer holds: an error, and nothing installed stays open.
        let pipes: Vec<_> = (0..10).map(|_| std::io::pipe().unwrap()).collect();
        let raw: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
        send_with(&a, &raw);
        let mut readers: Vec<_> = pipes.into_iter().map(|(r, _)| r).collect();
        let e = ch.recv_with_fd().unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        for (i, r) in readers.iter_mut().enumerate() {
            assert!(writers_gone(r), "fd {i} of a truncated message leaked");
        }
    }
}
