//! Passing `Pipes::extra` to the binary as its fds 3, 4, … (runc's `--preserve-fds`).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

/// Makes `fds` the child's fds 3, 4, … in order, open across its exec. The parent keeps its
/// own until it drops them after the spawn.
pub(crate) fn pass_as_3_and_up(cmd: &mut std::process::Command, fds: &[OwnedFd]) {
    let sources: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    // Where each source is parked first, so that a source whose number is another's target
    // is not overwritten before it is moved. Allocated here: the child must not allocate.
    let mut parked: Vec<RawFd> = vec![-1; sources.len()];
    let above = 3 + RawFd::try_from(sources.len()).unwrap_or(RawFd::MAX - 3);
    // SAFETY: the closure runs in the forked child before exec. It only calls fcntl and
    // dup2, which are async-signal-safe, on fds the parent keeps open until the spawn
    // returned, and writes into a buffer allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for (slot, src) in parked.iter_mut().zip(&sources) {
                // A copy numbered above every target, closed at exec.
                let fd = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, above);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                *slot = fd;
            }
            for (target, fd) in (3..).zip(&parked) {
                // dup2 leaves the target without FD_CLOEXEC: it stays open across exec.
                if libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
