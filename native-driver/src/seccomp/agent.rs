//! Handing a container process's seccomp listener to the agent at `linux.seccomp.listenerPath`.
//!
//! The process loads its notify filter and tells the engine the listener's fd number; the
//! engine copies the fd out of it (`pidfd_getfd`), connects to the agent's unix socket and
//! sends the OCI `ContainerProcessState` document with the fd attached (`SCM_RIGHTS`, named
//! `seccompFd` in `fds`), as runc does. The engine keeps no copy and the process closes its
//! own, so the agent holds the only one: when the agent goes, notified calls get `ENOSYS`.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

use execdriver_api::DriverError;

use super::Listener;
use crate::sys;

/// How long the agent may take to accept the state (its socket's backlog is full, or it reads
/// nothing) before the container fails.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The OCI `ContainerProcessState` for process `pid` of a container whose state document is
/// `state`.
fn process_state(listener: &Listener, pid: i32, state: &str) -> Result<Vec<u8>, DriverError> {
    let state: serde_json::Value =
        serde_json::from_str(state).map_err(|e| DriverError::Internal {
            context: "seccomp agent".into(),
            message: format!("container state is not JSON: {e}"),
        })?;
    let mut doc = serde_json::json!({
        "ociVersion": "1.0.2",
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if !listener.metadata.is_empty() {
        doc["metadata"] = listener.metadata.clone().into();
    }
    Ok(doc.to_string().into_bytes())
}

/// Copies fd `target` of the process behind `pidfd` (its listener) to the agent, with the
/// process's state.
pub(crate) fn hand_over(
    listener: &Listener,
    pidfd: RawFd,
    target: RawFd,
    pid: i32,
    state: &str,
) -> Result<(), DriverError> {
    let fd = sys::pidfd_getfd(pidfd, target)
        .map(sys::own_fd)
        .map_err(|e| {
            DriverError::sys(
                "copy the seccomp listener out of the container (pidfd_getfd)",
                e,
            )
        })?;
    let doc = process_state(listener, pid, state)?;
    let path = &listener.path;
    let connect_error = |e: std::io::Error| {
        DriverError::io(
            format!(
                "failed to connect with seccomp agent specified in the seccomp profile \
                 (linux.seccomp.listenerPath {path})"
            ),
            e,
        )
    };
    let mut stream = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| UnixStream::connect_addr(&addr)),
        None => UnixStream::connect(path),
    }
    .map_err(connect_error)?;
    let send_error = |e: std::io::Error| {
        DriverError::io(
            format!("send the seccomp listener to the agent at {path}"),
            e,
        )
    };
    stream
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(send_error)?;
    let sent = loop {
        match sys::send_with_fd(stream.as_raw_fd(), &doc, fd.as_raw_fd()) {
            Err(libc::EINTR) => continue,
            r => break r.map_err(|e| send_error(std::io::Error::from_raw_os_error(e)))?,
        }
    };
    stream.write_all(&doc[sent..]).map_err(send_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn the_agent_gets_the_process_state_and_the_listener_fd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let agent = UnixListener::bind(&path).unwrap();
        let listener = Listener {
            path: path.to_string_lossy().into_owned(),
            metadata: "bar".into(),
        };
        // Our own pidfd and one of our fds stand in for the container's listener.
        let pidfd = sys::own_fd(sys::pidfd_open(std::process::id() as i32).unwrap());
        let (probe, _other) = UnixStream::pair().unwrap();
        let state =
            r#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b"}"#;
        hand_over(&listener, pidfd.as_raw_fd(), probe.as_raw_fd(), 42, state).unwrap();

        let (mut conn, _) = agent.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut space = nix::cmsg_space!(RawFd);
        let (n, fd) = {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = nix::sys::socket::recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .unwrap();
            let fd = msg.cmsgs().unwrap().find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            });
            (msg.bytes, fd)
        };
        let mut doc = buf[..n].to_vec();
        conn.read_to_end(&mut doc).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(doc["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(doc["pid"], 42);
        assert_eq!(doc["metadata"], "bar");
        assert_eq!(doc["state"]["id"], "c1");
        assert_eq!(doc["state"]["status"], "creating");
        // The fd is a copy of the one named: the same socket (same inode).
        let fd = sys::own_fd(fd.expect("an fd came with the state"));
        let ino = |fd: RawFd| std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(ino(fd.as_raw_fd()).ino(), ino(probe.as_raw_fd()).ino());
    }

    #[test]
    fn a_missing_agent_is_an_error_in_runcs_words() {
        let pidfd = sys::own_fd(sys::pidfd_open(std::process::id() as i32).unwrap());
        for path in [
            "/nonexistent-execdriver-agent.sock",
            "@execdriver-no-such-agent",
        ] {
            let listener = Listener {
                path: path.into(),
                metadata: String::new(),
            };
            let e = hand_over(&listener, pidfd.as_raw_fd(), 0, 1, "{}")
                .unwrap_err()
                .to_string();
            assert!(e.contains("failed to connect with seccomp agent"), "{e}");
            assert!(e.contains(path), "{e}");
        }
    }
}
