//! A seccomp agent for the tests, shaped like runc's `contrib/cmd/seccompagent`: it listens on
//! a unix socket for the OCI `ContainerProcessState` a runtime sends with a container
//! process's seccomp listener fd, and answers the notified calls:
//! - `mkdir(path)` creates `path-<listenerMetadata>` instead, in the process's root;
//! - `chmod`/`fchmod`/`fchmodat`/`fchmodat2` fail with `ENOMEDIUM`;
//! - anything else continues as if not notified.
//!
//! With [`Agent::one_mkdir`], every listener is closed after the first `mkdir` it answered, so
//! the next notified call sees an agent that is gone (the kernel answers `ENOSYS`).
#![allow(unsafe_code)]

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// `struct seccomp_notif`.
#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

/// `struct seccomp_notif_resp`.
#[repr(C)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
const NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;
const FLAG_CONTINUE: u32 = 1;

/// A running agent; stops (closing every listener it holds) when dropped.
pub struct Agent {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    states: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Agent {
    /// An agent listening at `path`.
    pub fn start(path: &Path) -> std::io::Result<Self> {
        Self::spawn(path, false)
    }

    /// An agent that lets go of each listener after answering its first `mkdir`.
    pub fn one_mkdir(path: &Path) -> std::io::Result<Self> {
        Self::spawn(path, true)
    }

    fn spawn(path: &Path, once: bool) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let states = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (stop, states) = (stop.clone(), states.clone());
            std::thread::spawn(move || {
                let mut handlers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            if let Some((state, fd)) = receive(conn) {
                                let metadata =
                                    state["metadata"].as_str().unwrap_or_default().to_owned();
                                states.lock().unwrap().push(state);
                                let stop = stop.clone();
                                handlers.push(std::thread::spawn(move || {
                                    serve(fd, &metadata, once, &stop)
                                }));
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                for h in handlers {
                    let _ = h.join();
                }
            })
        };
        Ok(Self {
            path: path.to_owned(),
            stop,
            acceptor: Some(acceptor),
            states,
        })
    }

    /// The process states received so far, in order.
    pub fn states(&self) -> Vec<serde_json::Value> {
        self.states.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` process states came; returns them.
    pub fn wait_states(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.states();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The state document and the fd that came with it.
fn receive(conn: UnixStream) -> Option<(serde_json::Value, OwnedFd)> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data (zeroed is valid); its pointers live on this frame.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg is valid for the call.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return None;
    }
    let mut fd = None;
    // SAFETY: the CMSG_* walk stays within msg_controllen, as the kernel filled it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw: RawFd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    // Read until the document is whole, not until EOF: runc 1.1 leaves the connection open.
    let mut doc = buf[..n as usize].to_vec();
    let mut conn = conn;
    loop {
        if let Ok(v) = serde_json::from_slice(&doc) {
            return Some((v, fd?));
        }
        let n = conn.read(&mut buf).ok().filter(|n| *n > 0)?;
        doc.extend_from_slice(&buf[..n]);
    }
}

/// Answers the notifications of one listener until it hangs up (no process uses the filter
/// any more), the agent stops, or (`once`) after the first `mkdir`.
fn serve(fd: OwnedFd, metadata: &str, once: bool, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&raw mut p, 1, 20) } <= 0 {
            continue;
        }
        if p.revents & libc::POLLIN == 0 {
            return;
        }
        let mut n = Notif::default();
        // SAFETY: n is a zeroed seccomp_notif, as NOTIF_RECV requires.
        if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &raw mut n) } != 0 {
            continue;
        }
        let (resp, was_mkdir) = answer(fd.as_raw_fd(), &n, metadata);
        // SAFETY: resp is a valid seccomp_notif_resp. ENOENT (the caller died) is fine.
        unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &raw const resp) };
        if once && was_mkdir {
            return;
        }
    }
}

fn answer(fd: RawFd, n: &Notif, metadata: &str) -> (Resp, bool) {
    let mut resp = Resp {
        id: n.id,
        val: 0,
        error: 0,
        flags: 0,
    };
    match i64::from(n.nr) {
        libc::SYS_mkdir => {
            let made = read_path(n.pid, n.args[0]).and_then(|path| {
                // The path was read from a process that could have changed it since: only act
                // on it while the notification is still pending.
                let mut id = n.id;
                // SAFETY: id is a valid u64.
                if unsafe { libc::ioctl(fd, NOTIF_ID_VALID, &raw mut id) } != 0 {
                    return Err(libc::ENOENT);
                }
                let base = if path.starts_with('/') { "root" } else { "cwd" };
                let target = format!(
                    "/proc/{}/{base}/{}-{metadata}",
                    n.pid,
                    path.trim_start_matches('/')
                );
                std::fs::create_dir(&target).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
            });
            if let Err(e) = made {
                resp.error = -e;
            }
            (resp, true)
        }
        libc::SYS_chmod | libc::SYS_fchmod | libc::SYS_fchmodat | 452 => {
            resp.error = -libc::ENOMEDIUM;
            (resp, false)
        }
        _ => {
            resp.flags = FLAG_CONTINUE;
            (resp, false)
        }
    }
}

/// The NUL-terminated string at `addr` in process `pid`.
fn read_path(pid: u32, addr: u64) -> Result<String, i32> {
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|_| libc::EFAULT)?;
    let mut buf = vec![0u8; 4096];
    let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, addr).map_err(|_| libc::EFAULT)?;
    let s = &buf[..n];
    let end = s.iter().position(|b| *b == 0).ok_or(libc::ENAMETOOLONG)?;
    String::from_utf8(s[..end].to_vec()).map_err(|_| libc::EINVAL)
}
