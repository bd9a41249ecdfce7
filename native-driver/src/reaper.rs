//! The reaper: one epoll thread per driver waits for the exit of every process the driver
//! started in-process (containers' inits and exec'd processes), through their pidfds. No
//! thread waits per container; the thread starts with the first process.
//!
//! A pidfd becomes readable when its process exits; the thread then reaps it (`waitid` on
//! the pidfd) and calls the process's exit callback with its status. Callbacks run on the
//! reaper thread and must be quick (set an [`Exit`](execdriver_api::Exit), sync a counter).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use execdriver_api::ExitStatus;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::sys;

const STOP_TOKEN: u64 = 0;

type OnExit = Box<dyn FnOnce(ExitStatus) + Send>;

struct Entry {
    pidfd: Arc<OwnedFd>,
    on_exit: OnExit,
}

struct Shared {
    epoll: Epoll,
    stop: EventFd,
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

/// The reaper of one driver.
pub(crate) struct Reaper {
    shared: OnceLock<Result<Arc<Shared>, String>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The exit status of a `waitid` result.
pub(crate) fn exit_status(si_code: i32, status: i32) -> ExitStatus {
    match si_code {
        libc::CLD_EXITED => ExitStatus::exited(status),
        _ => ExitStatus::signaled(status),
    }
}

/// An epoll instance with an eventfd registered under `stop_token`: writing to the eventfd
/// tells the thread waiting on the epoll to end (the reaper's and the OOM watcher's).
pub(crate) fn epoll_with_stop(stop_token: u64) -> Result<(Epoll, EventFd), String> {
    let epoll =
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
    let stop = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
        .map_err(|e| format!("eventfd: {e}"))?;
    epoll
        .add(
            stop.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, stop_token),
        )
        .map_err(|e| format!("epoll_ctl: {e}"))?;
    Ok((epoll, stop))
}

impl Reaper {
    pub fn new() -> Self {
        Self {
            shared: OnceLock::new(),
            thread: Mutex::new(None),
        }
    }

    fn shared(&self) -> Result<&Arc<Shared>, String> {
        self.shared
            .get_or_init(|| {
                let (epoll, stop) = epoll_with_stop(STOP_TOKEN)?;
                let shared = Arc::new(Shared {
                    epoll,
                    stop,
                    entries: Mutex::new(HashMap::new()),
                    next: AtomicU64::new(STOP_TOKEN + 1),
                });
                let worker = shared.clone();
                let handle = std::thread::Builder::new()
                    .name("execdriver-reap".into())
                    .spawn(move || worker.run())
                    .map_err(|e| format!("spawn the reaper: {e}"))?;
                *lock(&self.thread) = Some(handle);
                Ok(shared)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Reaps the process of `pidfd` (a child of this process) when it exits and calls
    /// `on_exit` with its status then, on the reaper thread. Nothing else may reap it.
    ///
    /// # Errors
    /// When the reaper can't start or the pidfd can't be watched; `on_exit` is dropped
    /// uncalled then.
    pub fn watch(
        &self,
        pidfd: Arc<OwnedFd>,
        on_exit: impl FnOnce(ExitStatus) + Send + 'static,
    ) -> Result<(), String> {
        let shared = self.shared()?;
        let token = shared.next.fetch_add(1, Ordering::Relaxed);
        // Registered before epoll can report it, so the thread always finds the entry.
        let mut entries = lock(&shared.entries);
        shared
            .epoll
            .add(
                pidfd.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT, token),
            )
            .map_err(|e| format!("epoll_ctl (pidfd): {e}"))?;
        entries.insert(
            token,
            Entry {
                pidfd,
                on_exit: Box::new(on_exit),
            },
        );
        Ok(())
    }

    /// How many processes are watched (for tests).
    #[cfg(test)]
    fn watched(&self) -> usize {
        match self.shared.get() {
            Some(Ok(s)) => lock(&s.entries).len(),
            _ => 0,
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(Ok(shared)) = self.shared.get() {
            let _ = shared.stop.write(1);
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(err = %e, "reaper: epoll_wait failed; exits are no longer seen");
                    return;
                }
            };
            for ev in &events[..n] {
                let token = ev.data();
                if token == STOP_TOKEN {
                    return;
                }
                let Some(entry) = lock(&self.entries).remove(&token) else {
                    continue;
                };
                let _ = self.epoll.delete(entry.pidfd.as_fd());
                let status = match sys::waitid_pidfd(entry.pidfd.as_raw_fd(), false) {
                    Ok((code, st)) => exit_status(code, st),
                    Err(e) => {
                        // Not our child, or reaped by someone else: the status is lost.
                        tracing::error!(errno = e, "reaper: waitid failed; reporting exit 255");
                        ExitStatus::exited(255)
                    }
                };
                (entry.on_exit)(status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn child(code: i32) -> (u32, Arc<OwnedFd>) {
        let c = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exit {code}"))
            .spawn()
            .unwrap();
        let pid = c.id();
        // The Child is forgotten on purpose: the reaper reaps it, not std.
        std::mem::forget(c);
        let fd = sys::pidfd_open(pid as i32).unwrap();
        (pid, Arc::new(sys::own_fd(fd)))
    }

    #[test]
    fn every_exit_is_reaped_and_reported_once_by_one_thread() {
        let reaper = Reaper::new();
        let (tx, rx) = mpsc::channel();
        let mut want = Vec::new();
        for code in 0..20 {
            let (pid, fd) = child(code);
            want.push((pid, ExitStatus::exited(code)));
            let tx = tx.clone();
            reaper
                .watch(fd, move |st| {
                    let _ = tx.send((pid, st));
                })
                .unwrap();
        }
        let mut got: Vec<_> = (0..20)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        got.sort_by_key(|(pid, _)| *pid);
        want.sort_by_key(|(pid, _)| *pid);
        assert_eq!(got, want);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(reaper.watched(), 0);
        // Reaped: no zombie is left for the pid.
        for (pid, _) in want {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(!stat.contains(") Z "), "{pid} is still a zombie: {stat}");
        }
    }
}
