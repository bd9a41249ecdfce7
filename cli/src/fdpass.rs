//! Passing file descriptors over unix sockets (`SCM_RIGHTS`): stdio to a hosting process, a
//! pty master to a `--console-socket`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use execdriver::DriverError;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// The most fds one message carries.
const MAX_FDS: usize = 3;

/// Sends `data` (not empty) with `fds` attached.
pub fn send(stream: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    if fds.len() > MAX_FDS || data.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "one to three fds and some data",
        ));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    anc.push(SendAncillaryMessage::ScmRights(fds));
    let n = sendmsg(stream, &[IoSlice::new(data)], &mut anc, SendFlags::empty())?;
    if n != data.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short write of an fd message",
        ));
    }
    Ok(())
}

/// Receives one message of up to `buf.len()` bytes and the fds attached to it.
pub fn recv(stream: &UnixStream, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let r = recvmsg(
        stream,
        &mut [IoSliceMut::new(buf)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = msg {
            fds.extend(r);
        }
    }
    Ok((r.bytes, fds))
}

/// Hands a pty master to the listener at `--console-socket`, as runc does: the message's data
/// is the terminal's name, the fd is attached.
pub fn send_console(socket: &Path, master: BorrowedFd<'_>) -> Result<(), DriverError> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| DriverError::io(format!("--console-socket {}", socket.display()), e))?;
    send(&stream, b"/dev/ptmx", &[master])
        .map_err(|e| DriverError::io(format!("--console-socket {}: send", socket.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn fds_and_data_cross_a_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut r, mut w) = std::io::pipe().unwrap();
        send(&a, b"hello", &[w.as_fd()]).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        // The received fd is the pipe's write end.
        let mut got = std::fs::File::from(fds.into_iter().next().unwrap());
        got.write_all(b"x").unwrap();
        drop(got);
        w.flush().unwrap();
        drop(w);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
    }

    #[test]
    fn console_socket_gets_the_name_and_fd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (_r, w) = std::io::pipe().unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let (n, fds) = recv(&s, &mut buf).unwrap();
            (String::from_utf8_lossy(&buf[..n]).into_owned(), fds.len())
        });
        send_console(&path, w.as_fd()).unwrap();
        assert_eq!(t.join().unwrap(), ("/dev/ptmx".to_owned(), 1));
        let e = send_console(&dir.path().join("nope"), w.as_fd()).unwrap_err();
        assert!(e.to_string().contains("--console-socket"), "{e}");
    }

    #[test]
    fn too_many_fds_is_an_error() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_fd();
        assert!(send(&a, b"x", &[fd, fd, fd, fd]).is_err());
        assert!(send(&a, b"", &[fd]).is_err());
    }
}
