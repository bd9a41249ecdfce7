//! The hosting process of a container whose driver lives in-process (wasm, and any driver
//! but native): it owns `driver.run`, holds the container in `created` until `start`, serves
//! the other commands on `<root>/cli/<id>.sock`, and exits with the container's exit code —
//! so that a shim watching its pid (the container's pid for the CLI) sees the exit.
//!
//! Protocol: one JSON request line, one JSON response line (`{"ok": ...}` or
//! `{"error": "...", "typed": WireError}` — the kind survives, so the caller matches and
//! reports a host's `NotRunning` as it does the native driver's); `exec` sends the caller's stdin, stdout and stderr with `SCM_RIGHTS`
//! right after its request line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use execdriver::oci_spec::runtime::{LinuxResources, Process};
use execdriver::{
    Command, ContainerId, Driver, DriverError, ExitStatus, Hooks, Pipes, Signal, Status, Stdio,
    WireError,
};
use serde::{Deserialize, Serialize};

use crate::fdpass;
use crate::records::Records;

/// The container's cgroup, when this hosting process joined it (`linux.cgroupsPath`).
static CGROUP: std::sync::OnceLock<execdriver::native::HostedCgroup> = std::sync::OnceLock::new();

/// Records the cgroup this hosting process joined: `update` applies to it too.
pub fn set_cgroup(cg: execdriver::native::HostedCgroup) {
    let _ = CGROUP.set(cg);
}

/// A request to the hosting process.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start,
    State,
    Kill {
        signal: i32,
    },
    Pause,
    Resume,
    Stats,
    Pids,
    Update {
        resources: Box<LinuxResources>,
    },
    /// The caller's stdio follows as three fds.
    Exec {
        process: Box<Process>,
    },
    Delete {
        force: bool,
    },
}

/// What the hosting process says about its container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub status: Status,
    pub pid: u32,
    pub exit: Option<ExitStatus>,
    /// OOM kills so far.
    pub ooms: u64,
    /// The driver's annotations of the container (the spec's, and what the driver adds, such
    /// as the address a wasm HTTP server bound).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Default)]
struct Gate {
    /// `None` while created; `Some(true)` to start, `Some(false)` to abort.
    go: Option<bool>,
    /// The signal that aborted it before it started.
    killed_with: Option<Signal>,
    status: Option<Status>,
    exit: Option<ExitStatus>,
}

struct Shared {
    gate: Mutex<Gate>,
    cv: Condvar,
    ooms: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> HostState {
        let g = self.lock();
        HostState {
            status: g.status.unwrap_or(Status::Created),
            pid: std::process::id(),
            exit: g.exit,
            ooms: self.ooms.load(Ordering::SeqCst),
            annotations: BTreeMap::new(),
        }
    }
}

/// How [`serve`] runs its container.
pub struct Serve {
    /// Hold the container in `created` until a `start` request (`create`), or start it at
    /// once (`run`).
    pub wait_for_start: bool,
    pub pipes: Pipes,
    /// The caller's own hooks, run after the hosting ones.
    pub hooks: Hooks,
    /// Told once the container is created (`wait_for_start`) or started, or why it failed.
    pub ready: Box<dyn FnOnce(Result<u32, DriverError>) + Send>,
}

/// One-shot wrapper for the readiness callback, shared between the hooks and the runner.
type ReadySlot = Arc<Mutex<Option<Box<dyn FnOnce(Result<u32, DriverError>) + Send>>>>;

fn fire(slot: &ReadySlot, r: Result<u32, DriverError>) {
    if let Some(f) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
        f(r);
    }
}

/// Runs the container and serves requests until it is over; returns its exit status.
pub fn serve(
    driver: Arc<dyn Driver>,
    cmd: Command,
    records: &Records,
    opts: Serve,
) -> Result<ExitStatus, DriverError> {
    let id = cmd.id.clone();
    let sock = records.socket(&id);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)
        .map_err(|e| DriverError::io(format!("bind {}", sock.display()), e))?;
    let shared = Arc::new(Shared {
        gate: Mutex::new(Gate {
            go: (!opts.wait_for_start).then_some(true),
            ..Gate::default()
        }),
        cv: Condvar::new(),
        ooms: AtomicU64::new(0),
    });
    let ready: ReadySlot = Arc::new(Mutex::new(Some(opts.ready)));
    let mut hooks = Hooks::new().on_pre_start({
        let s = shared.clone();
        let ready = ready.clone();
        let wait = opts.wait_for_start;
        move |ctx| {
            // Count OOM kills for `events`, for as long as the container lives.
            let rx = ctx.oom();
            let counter = s.clone();
            let _ = std::thread::Builder::new()
                .name("execdriver-host-oom".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        counter.ooms.fetch_add(1, Ordering::SeqCst);
                    }
                });
            {
                let mut g = s.lock();
                g.status = Some(Status::Created);
                s.cv.notify_all();
            }
            // Not under the gate: telling the caller connects to its socket, which may take
            // its time, and requests (state, kill) need the gate meanwhile.
            if wait {
                fire(&ready, Ok(ctx.pid()));
            }
            let mut g = s.lock();
            while g.go.is_none() {
                g = s.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
            if g.go == Some(true) {
                Ok(())
            } else {
                Err("stopped before it was started".into())
            }
        }
    });
    hooks.extend(opts.hooks);
    let hooks = hooks.on_start({
        let s = shared.clone();
        let ready = ready.clone();
        move |ctx| {
            s.lock().status = Some(Status::Running);
            s.cv.notify_all();
            fire(&ready, Ok(ctx.pid()));
            Ok(())
        }
    });
    // The runner closes its end of this pipe when the run is over, which wakes the loop below.
    let (done_rx, done_tx) =
        std::io::pipe().map_err(|e| DriverError::io("pipe for the host thread", e))?;
    let runner = {
        let driver = driver.clone();
        let shared = shared.clone();
        let ready = ready.clone();
        let pipes = opts.pipes;
        std::thread::Builder::new()
            .name("execdriver-host-run".into())
            .spawn(move || {
                let _done = done_tx;
                let r = driver.run(&cmd, pipes, &hooks);
                let mut g = shared.lock();
                g.status = Some(Status::Stopped);
                let r = match (r, g.killed_with) {
                    // Killed before it started: it ends as that signal would have ended it.
                    (Err(DriverError::Hook { .. }), Some(sig)) => {
                        Ok(ExitStatus::signaled(sig.number()))
                    }
                    (r, _) => r,
                };
                g.exit = r.as_ref().ok().copied();
                shared.cv.notify_all();
                drop(g);
                fire(
                    &ready,
                    match &r {
                        Ok(st) => Err(DriverError::Internal {
                            context: format!("container {}", cmd.id),
                            message: format!("exited before it started ({st})"),
                        }),
                        // A copy of the kind and its fields (the run keeps the original).
                        Err(e) => Err(WireError::from(e).into()),
                    },
                );
                r
            })
            .map_err(|e| DriverError::io("spawn the host thread", e))?
    };
    let in_flight = Arc::new(InFlight::default());
    // Serve until the run is over.
    loop {
        let mut fds = [
            rustix::event::PollFd::new(&listener, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&done_rx, rustix::event::PollFlags::IN),
        ];
        if rustix::event::poll(&mut fds, None).is_err() {
            // EINTR: look again.
            continue;
        }
        let (request, done) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if done {
            break;
        }
        if !request {
            continue;
        }
        if let Ok((stream, _)) = listener.accept() {
            let driver = driver.clone();
            let shared = shared.clone();
            let id = id.clone();
            let guard = in_flight.enter();
            let _ = std::thread::Builder::new()
                .name("execdriver-host-req".into())
                .spawn(move || {
                    let _guard = guard;
                    handle(stream, &*driver, &shared, &id);
                });
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    let result = runner.join().unwrap_or_else(|_| {
        Err(DriverError::Internal {
            context: format!("container {id}"),
            message: "the driver panicked".into(),
        })
    });
    // The answer to the request that ended the container (a `delete --force`, a `kill`) may
    // still be on its way: exiting now would cut it off.
    in_flight.wait_idle(IN_FLIGHT_GRACE);
    if let Ok(st) = &result {
        records.set_exit(&id, st);
    }
    result
}

/// How long a host whose container ended waits for request handlers still answering.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);

/// The request handlers still running.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

/// One running request handler; leaving it (even by a panic) ends it.
struct Handling(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> Handling {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Handling(self.clone())
    }

    /// Waits until no handler runs, or `grace` passed.
    fn wait_idle(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(handlers = *n, "request handlers still running at exit");
                return;
            }
            n = self
                .idle
                .wait_timeout(n, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().unwrap_or_else(PoisonError::into_inner);
        *n -= 1;
        self.0.idle.notify_all();
    }
}

fn respond(stream: &mut UnixStream, r: Result<serde_json::Value, DriverError>) {
    let v = match r {
        Ok(v) => serde_json::json!({ "ok": v }),
        // The text for people and older callers, the kind for matching on it.
        Err(e) => serde_json::json!({ "error": e.to_string(), "typed": WireError::from(&e) }),
    };
    // One write: a reader never sees half an answer from a live host.
    let _ = stream.write_all(format!("{v}\n").as_bytes());
}

fn invalid(id: &ContainerId, op: &str, status: Option<Status>) -> DriverError {
    DriverError::InvalidState {
        id: id.to_string(),
        op: op.into(),
        status: status.unwrap_or(Status::Created),
    }
}

fn handle(mut stream: UnixStream, driver: &dyn Driver, shared: &Shared, id: &ContainerId) {
    let mut line = String::new();
    // The request line is read byte by byte: the fds of `exec` come right after it.
    if read_line(&stream, &mut line).is_err() {
        return;
    }
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            return respond(
                &mut stream,
                Err(DriverError::InvalidConfig {
                    reason: format!("bad request: {e}"),
                }),
            );
        }
    };
    let null = |r: Result<(), DriverError>| r.map(|()| serde_json::Value::Null);
    let r: Result<serde_json::Value, DriverError> = match req {
        Request::State => {
            let mut st = shared.state();
            if let Ok(info) = driver.info(id) {
                // Running or paused: the driver knows which.
                if st.status == Status::Running && info.status == Status::Paused {
                    st.status = Status::Paused;
                }
                st.annotations = info.annotations.into_iter().collect();
            }
            Ok(serde_json::json!(st))
        }
        Request::Start => {
            let mut g = shared.lock();
            if g.go.is_some() || g.status != Some(Status::Created) {
                Err(invalid(id, "start", g.status))
            } else {
                g.go = Some(true);
                shared.cv.notify_all();
                // Answer once it runs (or failed to start).
                while g.status == Some(Status::Created) {
                    g = shared
                        .cv
                        .wait_timeout(g, Duration::from_millis(100))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                Ok(serde_json::Value::Null)
            }
        }
        Request::Kill { signal } => match Signal::from_number(signal) {
            Err(e) => Err(e),
            Ok(sig) => {
                let mut g = shared.lock();
                if g.go.is_none() {
                    // Killed before start: the run is aborted in its pre_start hook.
                    g.go = Some(false);
                    g.killed_with = Some(sig);
                    shared.cv.notify_all();
                    Ok(serde_json::Value::Null)
                } else if g.status == Some(Status::Stopped) {
                    Err(DriverError::NotRunning {
                        id: id.to_string(),
                        status: Status::Stopped,
                    })
                } else {
                    drop(g);
                    null(driver.kill(id, sig))
                }
            }
        },
        Request::Delete { force } => {
            let mut g = shared.lock();
            match (g.go, g.status) {
                (None, _) => {
                    g.go = Some(false);
                    g.killed_with = Some(Signal::KILL);
                    shared.cv.notify_all();
                    Ok(serde_json::Value::Null)
                }
                (_, Some(Status::Stopped)) => Ok(serde_json::Value::Null),
                (_, status) if !force => Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "delete".into(),
                    status: status.unwrap_or(Status::Running),
                }),
                _ => {
                    drop(g);
                    null(driver.terminate(id))
                }
            }
        }
        Request::Pause => null(driver.pause(id)),
        Request::Resume => null(driver.unpause(id)),
        Request::Stats => driver.stats(id).map(|s| serde_json::json!(s)),
        Request::Pids => driver.pids(id).map(|p| serde_json::json!(p)),
        Request::Update { resources } => {
            null(
                driver
                    .update(id, &resources)
                    .and_then(|()| match CGROUP.get() {
                        Some(cg) => cg.update(&resources),
                        None => Ok(()),
                    }),
            )
        }
        Request::Exec { process } => {
            let mut buf = [0u8; 1];
            match fdpass::recv(&stream, &mut buf) {
                Ok((_, fds)) if fds.len() == 3 => {
                    let mut it = fds.into_iter();
                    let mut next = || it.next().map_or(Stdio::Null, Stdio::Fd);
                    let pipes = Pipes {
                        stdin: next(),
                        stdout: next(),
                        stderr: next(),
                        extra: Vec::new(),
                    };
                    driver
                        .exec(id, &process, pipes, &Hooks::new())
                        .map(|st| serde_json::json!(st))
                }
                Ok(_) => Err(DriverError::InvalidConfig {
                    reason: "exec needs three fds".into(),
                }),
                Err(e) => Err(DriverError::io("receive stdio", e)),
            }
        }
    };
    respond(&mut stream, r);
}

/// Reads one line without reading past it.
fn read_line(stream: &UnixStream, line: &mut String) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match std::io::Read::read(&mut &*stream, &mut b)? {
            0 => break,
            _ if b[0] == b'\n' => break,
            _ => bytes.push(b[0]),
        }
        if bytes.len() > 1 << 20 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
    *line = String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(())
}

/// Why a request to a hosting process failed.
#[derive(Debug)]
pub enum Failure {
    /// It could not be asked (connect, send or read failed): it is gone, its container stopped.
    Unreachable(DriverError),
    /// It answered with this error, of the kind its driver returned.
    Refused(DriverError),
    /// It answered with an error in words only (a host of an older version).
    Said(String),
}

/// Sends a request to the hosting process listening on `sock`; `stdio` attaches fds.
pub fn request(
    sock: &Path,
    req: &Request,
    stdio: Option<[BorrowedFd<'_>; 3]>,
) -> Result<serde_json::Value, Failure> {
    let mut stream = UnixStream::connect(sock).map_err(|e| {
        Failure::Unreachable(DriverError::io(format!("connect {}", sock.display()), e))
    })?;
    let line = serde_json::to_string(req).map_err(|e| {
        Failure::Refused(DriverError::Internal {
            context: "request".into(),
            message: e.to_string(),
        })
    })?;
    writeln!(stream, "{line}")
        .map_err(|e| Failure::Unreachable(DriverError::io("send a request", e)))?;
    if let Some(fds) = stdio {
        fdpass::send(&stream, b"f", &fds)
            .map_err(|e| Failure::Unreachable(DriverError::io("send stdio", e)))?;
    }
    let mut resp = String::new();
    BufReader::new(&stream)
        .read_line(&mut resp)
        .map_err(|e| Failure::Unreachable(DriverError::io("read the response", e)))?;
    answer(&resp)
}

/// A hosting process's answer line: `{"ok": ...}` or `{"error": "...", "typed": {...}}`.
fn answer(resp: &str) -> Result<serde_json::Value, Failure> {
    let mut v: serde_json::Value = serde_json::from_str(resp).map_err(|e| {
        Failure::Refused(DriverError::Internal {
            context: "hosting process".into(),
            message: format!("bad response {resp:?}: {e}"),
        })
    })?;
    if let Some(typed) = v
        .get_mut("typed")
        .map(serde_json::Value::take)
        .and_then(|t| serde_json::from_value::<WireError>(t).ok())
    {
        return Err(Failure::Refused(typed.into()));
    }
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(Failure::Said(e.to_owned()));
    }
    Ok(v.get("ok").cloned().unwrap_or(serde_json::Value::Null))
}

/// Our own stdin, stdout and stderr, to send with `exec`.
pub fn stdio_fds() -> [BorrowedFd<'static>; 3] {
    [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One answer from a host on a real socket, as `request` sees it.
    fn ask_a_host_that_answers(
        r: Result<serde_json::Value, DriverError>,
    ) -> Result<serde_json::Value, Failure> {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("h.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let host = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            respond(&mut stream, r);
        });
        let got = request(&sock, &Request::Pids, None);
        host.join().unwrap();
        got
    }

    #[test]
    fn error_kinds_survive_the_socket() {
        let stopped = DriverError::NotRunning {
            id: "c".into(),
            status: Status::Stopped,
        };
        let text = stopped.to_string();
        match ask_a_host_that_answers(Err(stopped)) {
            Err(Failure::Refused(e @ DriverError::NotRunning { .. })) => {
                assert_eq!(e.to_string(), text);
                // So the CLI says it in runc's words, which containerd's shim looks for.
                assert!(
                    crate::error::Error::Driver(e)
                        .report()
                        .starts_with("container not running")
                );
            }
            other => panic!("{other:?}"),
        }
        match ask_a_host_that_answers(Err(DriverError::unsupported("signal SIGUSR1", "wasm"))) {
            Err(Failure::Refused(DriverError::Unsupported { op, driver })) => {
                assert_eq!((op.as_str(), driver.as_str()), ("signal SIGUSR1", "wasm"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ask_a_host_that_answers(Ok(serde_json::json!([1, 2]))).unwrap(),
            serde_json::json!([1, 2])
        );
    }

    #[test]
    fn untyped_and_missing_hosts() {
        assert!(matches!(
            answer(r#"{"error": "container c: something"}"#),
            Err(Failure::Said(m)) if m == "container c: something"
        ));
        assert!(matches!(
            answer("nonsense"),
            Err(Failure::Refused(DriverError::Internal { .. }))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            request(&dir.path().join("none.sock"), &Request::State, None),
            Err(Failure::Unreachable(_))
        ));
    }
}
