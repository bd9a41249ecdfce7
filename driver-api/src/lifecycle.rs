//! The two-phase lifecycle: what a driver's [`create`](crate::Driver::create) returns
//! ([`Created`]), its exit notification ([`Exit`]), and the lifecycle engine that turns a
//! driver's primitives into [`Driver::run`](crate::Driver::run) with the hook semantics of
//! every driver — written once, here.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::command::{Command, Pipes};
use crate::driver::Driver;
use crate::error::Result;
use crate::hooks::{HookContext, HookStage, Hooks};
use crate::id::ContainerId;
use crate::oom::OomNotifier;
use crate::status::ExitStatus;
use crate::terminal::Terminal;
use oci_spec::runtime::Process;

/// A container [`create`](crate::Driver::create) made: its isolation and init exist, the
/// program has not started.
pub struct Created {
    /// The init's pid (a real pid whose namespaces can be joined, for native drivers).
    pub pid: u32,
    /// The container's OOM broadcaster: the driver notifies it for every OOM kill until the
    /// container is deleted.
    pub oom: OomNotifier,
    /// The container's terminal, with `process.terminal`.
    pub terminal: Option<Arc<dyn Terminal>>,
}

impl Created {
    /// A created container with this init pid and OOM broadcaster, without a terminal.
    pub fn new(pid: u32, oom: OomNotifier) -> Self {
        Self {
            pid,
            oom,
            terminal: None,
        }
    }

    /// Adds the container's terminal.
    #[must_use]
    pub fn with_terminal(mut self, terminal: Option<Arc<dyn Terminal>>) -> Self {
        self.terminal = terminal;
        self
    }
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("pid", &self.pid)
            .field("terminal", &self.terminal.is_some())
            .finish()
    }
}

type OnExit = Box<dyn FnOnce(ExitStatus) + Send>;

#[derive(Default)]
struct ExitState {
    status: Option<ExitStatus>,
    wakers: Vec<Waker>,
    callbacks: Vec<OnExit>,
}

#[derive(Default)]
struct ExitInner {
    state: Mutex<ExitState>,
    done: Condvar,
}

/// A container's (or process's) exit, once it happens: non-blocking
/// ([`status`](Self::status)), blocking ([`wait`](Self::wait),
/// [`wait_timeout`](Self::wait_timeout)) and async ([`exited`](Self::exited), a
/// [`Future`]). Clones share it. The driver [`set`](Self::set)s it exactly once, when the
/// init has exited and is reaped; waiting costs the waiter no thread of the driver's.
///
/// ```
/// use execdriver_api::{Exit, ExitStatus};
///
/// let exit = Exit::new();
/// assert_eq!(exit.status(), None);
/// let waiter = exit.clone();
/// let t = std::thread::spawn(move || waiter.wait());
/// exit.set(ExitStatus::exited(3));
/// assert_eq!(t.join().unwrap(), ExitStatus::exited(3));
/// assert_eq!(exit.status(), Some(ExitStatus::exited(3)));
/// ```
#[derive(Clone, Default)]
pub struct Exit {
    inner: Arc<ExitInner>,
}

impl Exit {
    /// Not exited yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, ExitState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the exit and wakes every waiter; a second call changes nothing (the first
    /// status stays). Returns whether this call set it.
    pub fn set(&self, status: ExitStatus) -> bool {
        let (wakers, callbacks) = {
            let mut st = self.lock();
            if st.status.is_some() {
                return false;
            }
            st.status = Some(status);
            (
                std::mem::take(&mut st.wakers),
                std::mem::take(&mut st.callbacks),
            )
        };
        self.inner.done.notify_all();
        wakers.into_iter().for_each(Waker::wake);
        for f in callbacks {
            f(status);
        }
        true
    }

    /// Calls `f` with the status once it exits (at once, on this thread, if it has), on the
    /// thread that sets it otherwise: it must be quick.
    pub fn on_exit(&self, f: impl FnOnce(ExitStatus) + Send + 'static) {
        let mut st = self.lock();
        match st.status {
            Some(s) => {
                drop(st);
                f(s);
            }
            None => st.callbacks.push(Box::new(f)),
        }
    }

    /// The exit status, if it exited; never blocks.
    pub fn status(&self) -> Option<ExitStatus> {
        self.lock().status
    }

    /// Blocks until it exits.
    pub fn wait(&self) -> ExitStatus {
        let mut st = self.lock();
        loop {
            if let Some(s) = st.status {
                return s;
            }
            st = self
                .inner
                .done
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until it exits or `timeout` passed.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(s) = st.status {
                return Some(s);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self
                .inner
                .done
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A future of the exit status, for async engines (any executor).
    pub fn exited(&self) -> Exited {
        Exited { exit: self.clone() }
    }
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exit")
            .field("status", &self.status())
            .finish()
    }
}

/// The future of [`Exit::exited`].
#[derive(Debug)]
pub struct Exited {
    exit: Exit,
}

impl Future for Exited {
    type Output = ExitStatus;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ExitStatus> {
        let mut st = self.exit.lock();
        match st.status {
            Some(s) => Poll::Ready(s),
            None => {
                if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    st.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The lifecycle of design §3 over a driver's primitives — what [`Driver::run`] does for any
/// driver that implements [`create`](Driver::create), [`start`](Driver::start),
/// [`wait`](Driver::wait) and [`delete`](Driver::delete):
///
/// 1. `create` (the driver validates; nothing is left behind on bad input);
/// 2. `pre_start` hooks with the init's pid — the first error terminates and deletes the
///    container and is returned; `post_stop` hooks do not run;
/// 3. `start`, then the `start` hooks — a failure of either kills the container (`post_stop`
///    still runs, and that failure is returned);
/// 4. wait for the exit (OOM kills reach every hook context's receiver meanwhile);
/// 5. `post_stop` hooks with the exit status, the OOM channel closed, the terminal closed;
/// 6. `delete`: every resource released, the id free. The exit status is returned.
///
/// # Errors
/// `create`'s, `Hook` for a failed callback, `start`'s, `delete`'s.
pub fn run<D: Driver + ?Sized>(
    driver: &D,
    command: &Command,
    pipes: Pipes,
    hooks: &Hooks,
) -> Result<ExitStatus> {
    let id = &command.id;
    let process = command.process()?;
    let created = driver.create(command, pipes)?;
    let ctx = HookContext::new(id, process, created.pid, &created.oom)
        .with_terminal(created.terminal.clone());
    let finish = |created: &Created| {
        created.oom.close();
        if let Some(t) = &created.terminal {
            let _ = t.close();
        }
    };
    let exit = match driver.wait(id) {
        Ok(exit) => exit,
        Err(e) => {
            let _ = driver.terminate(id);
            let _ = driver.delete(id);
            finish(&created);
            return Err(e);
        }
    };
    if let Err(e) = hooks.run(HookStage::PreStart, &ctx) {
        let _ = driver.terminate(id);
        exit.wait();
        finish(&created);
        let _ = driver.delete(id);
        return Err(e);
    }
    let started = driver
        .start(id)
        .and_then(|()| hooks.run(HookStage::Start, &ctx));
    if started.is_err() {
        let _ = driver.terminate(id);
    }
    let status = exit.wait();
    hooks.run_all(HookStage::PostStop, &ctx.with_exit(status));
    finish(&created);
    let deleted = driver.delete(id);
    started.and(deleted).map(|()| status)
}

/// [`Driver::exec`] over a driver's exec primitives, with the hook semantics of [`run`]:
///
/// 1. [`exec_create`](Driver::exec_create) (nothing is left behind on error);
/// 2. `pre_start` hooks with the process's pid — the first error kills and releases it and is
///    returned; `post_stop` hooks do not run;
/// 3. [`exec_start`](Driver::exec_start), then the `start` hooks — a failure of either kills
///    the process (`post_stop` still runs, and that failure is returned);
/// 4. wait for its exit; 5. `post_stop` hooks with the status, the terminal closed;
/// 6. [`exec_delete`](Driver::exec_delete). The exit status is returned.
///
/// # Errors
/// `exec_create`'s, `Hook` for a failed callback, `exec_start`'s, `exec_delete`'s.
pub fn exec<D: Driver + ?Sized>(
    driver: &D,
    id: &ContainerId,
    process: &Process,
    pipes: Pipes,
    hooks: &Hooks,
) -> Result<ExitStatus> {
    let exec_id = next_exec_id();
    let created = driver.exec_create(id, &exec_id, process, pipes)?;
    exec_created(driver, id, &exec_id, process, created, hooks)
}

/// A fresh exec id for [`exec`] (`exec-<n>`, unique in this process).
pub fn next_exec_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "exec-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// [`exec`] from step 2, for a process the driver created already (with options of its own,
/// e.g. the native driver's `exec_with`).
///
/// # Errors
/// As [`exec`].
pub fn exec_created<D: Driver + ?Sized>(
    driver: &D,
    id: &ContainerId,
    exec_id: &str,
    process: &Process,
    created: Created,
    hooks: &Hooks,
) -> Result<ExitStatus> {
    let ctx = HookContext::new(id, process, created.pid, &created.oom)
        .with_terminal(created.terminal.clone());
    let finish = |created: &Created| {
        if let Some(t) = &created.terminal {
            let _ = t.close();
        }
    };
    let exit = match driver.exec_wait(id, exec_id) {
        Ok(exit) => exit,
        Err(e) => {
            let _ = driver.exec_delete(id, exec_id);
            finish(&created);
            return Err(e);
        }
    };
    if let Err(e) = hooks.run(HookStage::PreStart, &ctx) {
        let _ = driver.exec_delete(id, exec_id);
        finish(&created);
        return Err(e);
    }
    let started = driver
        .exec_start(id, exec_id)
        .and_then(|()| hooks.run(HookStage::Start, &ctx));
    // A failed start: killed and released here (exec_delete waits for it).
    let deleted_early = started.is_err();
    if deleted_early {
        let _ = driver.exec_delete(id, exec_id);
    }
    let status = exit.wait();
    hooks.run_all(HookStage::PostStop, &ctx.with_exit(status));
    finish(&created);
    let deleted = if deleted_early {
        Ok(())
    } else {
        driver.exec_delete(id, exec_id)
    };
    started.and(deleted).map(|()| status)
}

/// A minimal executor for the kit and the tests: polls `f` on this thread, parking between
/// wake-ups (with a timeout, so a lost wake-up only slows it).
#[cfg(any(test, feature = "conformance"))]
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_is_seen_by_sync_and_async_waiters_once() {
        let exit = Exit::new();
        assert_eq!(exit.status(), None);
        assert_eq!(exit.wait_timeout(Duration::from_millis(5)), None);
        let (a, b) = (exit.clone(), exit.clone());
        let sync = std::thread::spawn(move || a.wait());
        let asynchronous = std::thread::spawn(move || block_on(b.exited()));
        std::thread::sleep(Duration::from_millis(20));
        assert!(exit.set(ExitStatus::signaled(9)));
        assert!(!exit.set(ExitStatus::exited(0)), "a second exit is ignored");
        assert_eq!(sync.join().unwrap(), ExitStatus::signaled(9));
        assert_eq!(asynchronous.join().unwrap(), ExitStatus::signaled(9));
        assert_eq!(block_on(exit.exited()), ExitStatus::signaled(9));
        assert_eq!(
            exit.wait_timeout(Duration::ZERO),
            Some(ExitStatus::signaled(9))
        );
    }
}
