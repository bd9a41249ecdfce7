//! `process.terminal`: the binary's `--console-socket`. The driver listens on a Unix socket,
//! the binary connects to it and sends the pty master (`SCM_RIGHTS`) before `create` or
//! `exec --detach` returns, and the master becomes the hook contexts' [`Terminal`].

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use execdriver_api::{DriverError, Result, Terminal};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// The longest socket path `sockaddr_un` holds (108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A listening console socket, removed when dropped.
pub(crate) struct ConsoleSocket {
    path: PathBuf,
    /// A directory of our own when `dir` was too deep for a socket path.
    private_dir: Option<PathBuf>,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens at `<dir>/<name>`, or in a fresh private directory under the temporary
    /// directory when that path is too long for a Unix socket.
    pub fn bind(dir: &Path, name: &str) -> Result<Self> {
        let wanted = dir.join(name);
        let (path, private_dir) = if wanted.as_os_str().len() <= MAX_SOCKET_PATH {
            (wanted, None)
        } else {
            let private = private_dir()?;
            (private.join("console.sock"), Some(private))
        };
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| DriverError::io(format!("console socket {}", path.display()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| DriverError::io("console socket: non-blocking", e))?;
        Ok(Self {
            path,
            private_dir,
            listener,
        })
    }

    /// The path to give the binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the binary sent. Called once the binary's command returned: the
    /// connection and the fd are queued on the socket by then.
    pub fn receive(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| DriverError::io("console socket: the runtime never connected to it", e))?;
        let mut name = [0u8; 4096];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let mut io = [std::io::IoSliceMut::new(&mut name)];
        rustix::net::recvmsg(
            stream.as_fd(),
            &mut io,
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| {
            DriverError::sys("console socket: receive the pty master", e.raw_os_error())
        })?;
        let mut received = ancillary.drain().filter_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => Some(fds),
            _ => None,
        });
        received
            .next()
            .and_then(|mut fds| fds.next())
            .ok_or_else(|| DriverError::Internal {
                context: "console socket".into(),
                message: "the runtime sent no pty master".into(),
            })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.private_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A new directory only we can enter, for a socket whose natural place is too deep.
fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let dir = base.join(format!("execdriver-oci-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(DriverError::io(format!("create {}", dir.display()), e)),
        }
    }
    Err(DriverError::Internal {
        context: "console socket".into(),
        message: format!("no free directory under {}", base.display()),
    })
}

/// The engine's side of a container process's terminal: the master the binary sent.
#[derive(Debug)]
pub(crate) struct Pty {
    master: Mutex<Option<OwnedFd>>,
}

impl Pty {
    pub fn new(master: OwnedFd) -> Self {
        Self {
            master: Mutex::new(Some(master)),
        }
    }

    fn with_master<T>(&self, f: impl FnOnce(&OwnedFd) -> Result<T>) -> Result<T> {
        let guard = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        let master = guard.as_ref().ok_or_else(|| DriverError::Internal {
            context: "terminal".into(),
            message: "closed".into(),
        })?;
        f(master)
    }

    fn dup(&self) -> Result<File> {
        self.with_master(|m| {
            m.try_clone()
                .map(File::from)
                .map_err(|e| DriverError::io("duplicate the pty master", e))
        })
    }
}

impl Terminal for Pty {
    fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.with_master(|m| {
            let size = rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            rustix::termios::tcsetwinsize(m, size)
                .map_err(|e| DriverError::sys("resize the terminal (TIOCSWINSZ)", e.raw_os_error()))
        })
    }

    fn reader(&self) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.dup()?))
    }

    fn writer(&self) -> Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.dup()?))
    }

    fn close(&self) -> Result<()> {
        self.master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_fd_is_received_and_the_socket_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sock = ConsoleSocket::bind(dir.path(), "c.sock").unwrap();
        let path = sock.path().to_path_buf();
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let file = tempfile::tempfile().unwrap();
        let fds = [file.as_fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
        assert!(anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &client,
            &[std::io::IoSlice::new(b"pty")],
            &mut anc,
            rustix::net::SendFlags::empty(),
        )
        .unwrap();
        let got = sock.receive().unwrap();
        let (a, b) = (
            rustix::fs::fstat(&got).unwrap(),
            rustix::fs::fstat(&file).unwrap(),
        );
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        drop(sock);
        assert!(!path.exists());
    }

    #[test]
    fn no_connection_is_a_clear_error_and_deep_dirs_get_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(120));
        std::fs::create_dir(&deep).unwrap();
        let sock = ConsoleSocket::bind(&deep, "c.sock").unwrap();
        assert!(sock.path().as_os_str().len() <= MAX_SOCKET_PATH);
        let private = sock.path().parent().unwrap().to_path_buf();
        let e = sock.receive().unwrap_err().to_string();
        assert!(e.contains("never connected"), "{e}");
        drop(sock);
        assert!(!private.exists());
    }
}
