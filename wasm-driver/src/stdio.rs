//! An instance's stdio as streams that never hold a worker of the shared runtime.
//!
//! Started instances are tasks on a few worker threads, so a read of stdin or a write of
//! stdout that blocks (an empty pipe, a full one nobody drains) must not block in the
//! thread: it would stall every other instance on that worker. Regular files, block devices
//! and `/dev/null`-like devices are read and written inline (they never wait for a peer). A
//! pipe or FIFO is reopened through `/proc/self/fd` as a non-blocking description of its own
//! (the caller's copy keeps its flags) and driven by the runtime's reactor. Anything else
//! (a terminal, a socket, a pipe that can't be reopened) goes through tokio's blocking pool:
//! a stuck write then holds a pool thread, never a worker.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

use wasmtime_wasi::cli::{
    AsyncStdinStream, AsyncStdoutStream, InputFile, OutputFile, StdinStream, StdoutStream,
};

/// Bytes an output stream takes before the instance waits for them to be written: a pipe's
/// capacity.
const WRITE_BUDGET: usize = 64 * 1024;

/// How a stream is driven.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// Never waits for a peer: inline.
    Plain,
    /// A pipe or FIFO: non-blocking through the reactor.
    Pipe,
    /// Through the blocking pool.
    Other,
}

fn kind(f: &File) -> Kind {
    let Ok(m) = f.metadata() else {
        return Kind::Other;
    };
    let t = m.file_type();
    // /dev/null, /dev/zero, /dev/full: major 1, minors 3, 5, 7.
    let memory_device = t.is_char_device()
        && nix::sys::stat::major(m.rdev()) == 1
        && matches!(nix::sys::stat::minor(m.rdev()), 3 | 5 | 7);
    if t.is_file() || t.is_block_device() || memory_device {
        Kind::Plain
    } else if t.is_fifo() {
        Kind::Pipe
    } else {
        Kind::Other
    }
}

/// A new open file description of `f` (a pipe end), non-blocking.
fn reopen(f: &File, write: bool) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// Stdin from `fd`. Called inside the runtime (a pipe registers with its reactor).
pub(crate) fn input(fd: OwnedFd) -> Box<dyn StdinStream + Sync> {
    let f = File::from(fd);
    match kind(&f) {
        Kind::Plain => return Box::new(InputFile::new(f)),
        Kind::Pipe => {
            if let Ok(r) = reopen(&f, false).and_then(tokio::net::unix::pipe::Receiver::from_file) {
                return Box::new(AsyncStdinStream::new(r));
            }
        }
        Kind::Other => {}
    }
    Box::new(AsyncStdinStream::new(tokio::fs::File::from_std(f)))
}

/// Stdout or stderr to `fd`. Called inside the runtime (a pipe registers with its reactor).
pub(crate) fn output(fd: OwnedFd) -> Box<dyn StdoutStream + Sync> {
    let f = File::from(fd);
    match kind(&f) {
        Kind::Plain => return Box::new(OutputFile::new(f)),
        Kind::Pipe => {
            if let Ok(w) = reopen(&f, true).and_then(tokio::net::unix::pipe::Sender::from_file) {
                return Box::new(AsyncStdoutStream::new(WRITE_BUDGET, w));
            }
        }
        Kind::Other => {}
    }
    Box::new(AsyncStdoutStream::new(
        WRITE_BUDGET,
        tokio::fs::File::from_std(f),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let (r, w) = nix::unistd::pipe().unwrap();
        assert_eq!(kind(&File::from(r)), Kind::Pipe);
        assert_eq!(kind(&File::from(w)), Kind::Pipe);
        assert_eq!(kind(&File::open("/dev/null").unwrap()), Kind::Plain);
        let t = tempfile::tempfile().unwrap();
        assert_eq!(kind(&t), Kind::Plain);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(kind(&File::from(OwnedFd::from(a))), Kind::Other);
    }

    #[test]
    fn a_reopened_pipe_end_leaves_the_callers_blocking() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (r, w) = (File::from(r), File::from(w));
        let nr = reopen(&r, false).unwrap();
        let nw = reopen(&w, true).unwrap();
        let nonblocking = |f: &File| {
            let fl = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
            fl & libc::O_NONBLOCK != 0
        };
        assert!(nonblocking(&nr) && nonblocking(&nw));
        assert!(!nonblocking(&r) && !nonblocking(&w));
        // The same pipe: written through the new end, read through the old one.
        use std::io::{Read, Write};
        (&nw).write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        (&r).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }
}
