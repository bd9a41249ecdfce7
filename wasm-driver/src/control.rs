//! What other threads use to steer a running instance: kill, pause, limits, usage.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use execdriver_api::{ContainerId, OomNotifier};
use tokio::sync::Notify;

/// State shared by every instance of one container.
pub(crate) struct Shared {
    pub id: ContainerId,
    /// `linux.resources.memory.limit` in bytes; `u64::MAX` for none.
    pub memory_limit: AtomicU64,
    /// Bytes of linear memory and tables of all instances.
    pub memory_used: AtomicU64,
    /// CFS-like CPU quota per period, in µs; a quota <= 0 means none.
    pub cpu_quota_us: AtomicI64,
    pub cpu_period_us: AtomicU64,
    pub paused: AtomicBool,
    /// CPU periods in which an instance used up its quota and sat out the rest, and the
    /// time it sat out, in ns.
    pub throttled_periods: AtomicU64,
    pub throttled_ns: AtomicU64,
    /// Signalled on unpause and on kill.
    pub wake: Notify,
    pub oom: OomNotifier,
    /// An HTTP server container's counters.
    pub http: HttpCounters,
    /// CPU time of its instances that ended, `(total, user, system)` in ns.
    pub cpu_done: std::sync::Mutex<Cpu>,
}

/// CPU time in ns: total (the scheduler's runtime), user, system.
pub(crate) type Cpu = (u64, u64, u64);

fn add(a: Cpu, b: Cpu) -> Cpu {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2)
}

fn since(now: Cpu, base: Cpu) -> Cpu {
    (
        now.0.saturating_sub(base.0),
        now.1.saturating_sub(base.1),
        now.2.saturating_sub(base.2),
    )
}

/// The calling thread's CPU clock, in ns.
fn own_clock() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The calling thread's CPU time (cheap: two system calls).
fn own_cpu() -> Cpu {
    let total = own_clock();
    let (user, system) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)
        .map_or((0, 0), |r| {
            let ns = |t: nix::sys::time::TimeVal| {
                t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1000
            };
            (ns(r.user_time()), ns(r.system_time()))
        });
    (total, user, system)
}

/// Thread `tid`'s CPU time, read from another thread (its schedstat and stat).
fn thread_cpu(tid: i32) -> Cpu {
    let total = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let (user, system) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            // After the state field, numbers start at field 4; utime is field 14, stime 15.
            Some((*f.get(10)? * 10_000_000, *f.get(11)? * 10_000_000))
        })
        .unwrap_or((0, 0));
    (total, user, system)
}

/// What an HTTP server container reports in its stats.
#[derive(Default)]
pub(crate) struct HttpCounters {
    pub serving: AtomicBool,
    pub in_flight: AtomicU64,
    pub served: AtomicU64,
}

impl Shared {
    pub fn new(
        id: ContainerId,
        memory_limit: Option<u64>,
        quota: Option<i64>,
        period: Option<u64>,
    ) -> Self {
        Self {
            id,
            memory_limit: AtomicU64::new(memory_limit.unwrap_or(u64::MAX)),
            memory_used: AtomicU64::new(0),
            cpu_quota_us: AtomicI64::new(quota.unwrap_or(-1)),
            cpu_period_us: AtomicU64::new(period.unwrap_or(100_000)),
            paused: AtomicBool::new(false),
            throttled_periods: AtomicU64::new(0),
            throttled_ns: AtomicU64::new(0),
            wake: Notify::new(),
            oom: OomNotifier::new(),
            http: HttpCounters::default(),
            cpu_done: std::sync::Mutex::new((0, 0, 0)),
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    pub fn limit(&self) -> Option<u64> {
        let l = self.memory_limit.load(Ordering::Relaxed);
        (l != u64::MAX).then_some(l)
    }

    /// The CPU quota and period, when there is a quota.
    pub fn quota(&self) -> Option<(u64, u64)> {
        let q = self.cpu_quota_us.load(Ordering::Relaxed);
        let p = self.cpu_period_us.load(Ordering::Relaxed).max(1000);
        (q > 0).then_some((q as u64, p))
    }
}

/// One instance.
pub(crate) struct Control {
    pub shared: Arc<Shared>,
    /// The signal it was asked to die of; 0 while alive.
    pub kill: AtomicI32,
    /// The OS thread running it (for CPU time); 0 while it runs on none.
    pub tid: AtomicI32,
    /// Its CPU time on threads it ran on before, and that thread's CPU time when it was
    /// bound to the current one.
    cpu: std::sync::Mutex<(Cpu, Cpu)>,
    /// Its share of `Shared::memory_used`.
    pub memory: AtomicU64,
    /// A memory grow was refused: it dies of OOM.
    pub oom_killed: AtomicBool,
}

impl Control {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            kill: AtomicI32::new(0),
            tid: AtomicI32::new(0),
            cpu: std::sync::Mutex::new(((0, 0, 0), (0, 0, 0))),
            memory: AtomicU64::new(0),
            oom_killed: AtomicBool::new(false),
        }
    }

    /// Asks the instance to die of `sig` at its next epoch check (or at once, if it waits
    /// in a host call or is paused). The first request wins, but `SIGKILL` overrides any
    /// other (an HTTP server takes its time over `SIGTERM`).
    pub fn request_kill(&self, sig: i32) {
        if sig == 9 {
            self.kill.store(9, Ordering::SeqCst);
        } else {
            let _ = self
                .kill
                .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
        }
        self.shared.wake.notify_waiters();
    }

    /// Resolves once `SIGKILL` was requested.
    pub async fn killed_hard(&self) {
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.killed_by() == Some(9) {
                return;
            }
            notified.await;
        }
    }

    pub fn killed_by(&self) -> Option<i32> {
        let s = self.kill.load(Ordering::SeqCst);
        (s != 0).then_some(s)
    }

    /// Resolves once a kill was requested.
    pub async fn killed(&self) -> i32 {
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(sig) = self.killed_by() {
                return sig;
            }
            notified.await;
        }
    }

    /// Resolves once the container is no longer paused (or the instance is to die).
    pub async fn unpaused(&self) {
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.shared.paused.load(Ordering::SeqCst) || self.killed_by().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Records this thread as the instance's: its CPU time counts from now.
    pub fn bind_thread(&self) {
        thread_local! {
            static TID: i32 = nix::unistd::gettid().as_raw();
        }
        let mut cpu = self.cpu.lock().unwrap_or_else(PoisonError::into_inner);
        cpu.1 = own_cpu();
        self.tid.store(TID.with(|t| *t), Ordering::Relaxed);
    }

    /// The CPU time it used so far, read on the thread it is bound to (cheaper than
    /// [`cpu_now`](Self::cpu_now): one clock read, no getrusage).
    pub fn cpu_here(&self) -> std::time::Duration {
        let cpu = self.cpu.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ns = cpu.0.0;
        if self.tid.load(Ordering::Relaxed) != 0 {
            ns += own_clock().saturating_sub(cpu.1.0);
        }
        std::time::Duration::from_nanos(ns)
    }

    /// The instance leaves this thread (bound with [`bind_thread`](Self::bind_thread)): the
    /// CPU time it used here is kept.
    pub fn unbind_thread(&self) {
        let mut cpu = self.cpu.lock().unwrap_or_else(PoisonError::into_inner);
        if self.tid.swap(0, Ordering::Relaxed) != 0 {
            cpu.0 = add(cpu.0, since(own_cpu(), cpu.1));
        }
    }

    /// The CPU time it used so far, on every thread it ran on.
    pub fn cpu_now(&self) -> Cpu {
        let cpu = self.cpu.lock().unwrap_or_else(PoisonError::into_inner);
        match self.tid.load(Ordering::Relaxed) {
            0 => cpu.0,
            tid => add(cpu.0, since(thread_cpu(tid), cpu.1)),
        }
    }
}

/// Runs `fut` with `control` bound to the thread of each poll (see
/// [`Control::bind_thread`]): an instance is a task that may run on any worker, and the CPU
/// time of its polls is its own.
pub(crate) async fn bound<F: std::future::Future>(control: &Control, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        control.bind_thread();
        let r = fut.as_mut().poll(cx);
        control.unbind_thread();
        r
    })
    .await
}

impl Drop for Control {
    fn drop(&mut self) {
        let mine = self.memory.load(Ordering::Relaxed);
        self.shared.memory_used.fetch_sub(mine, Ordering::Relaxed);
    }
}

/// The error an instance dies of when a memory grow goes over the container's limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: the instance was OOM-killed")]
pub(crate) struct OomKilled;

/// The error an instance dies of when it is killed.
#[derive(Debug, thiserror::Error)]
#[error("killed by signal {0}")]
pub(crate) struct Killed(pub i32);

/// Bytes one table element is counted as.
const TABLE_ELEMENT_BYTES: usize = 8;

/// The instance's `ResourceLimiter`: linear memories and tables count against the container's
/// memory limit; going over it kills the instance, as the kernel's OOM killer would.
#[derive(Clone)]
pub(crate) struct Limiter {
    pub control: Arc<Control>,
}

impl Limiter {
    fn grow(&mut self, delta: usize) -> wasmtime::Result<bool> {
        let delta = delta as u64;
        let shared = &self.control.shared;
        let used = shared.memory_used.fetch_add(delta, Ordering::SeqCst) + delta;
        if used > shared.memory_limit.load(Ordering::Relaxed) {
            shared.memory_used.fetch_sub(delta, Ordering::SeqCst);
            self.control.oom_killed.store(true, Ordering::SeqCst);
            shared.oom.notify(&shared.id);
            return Err(wasmtime::Error::new(OomKilled));
        }
        self.control.memory.fetch_add(delta, Ordering::Relaxed);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current) * TABLE_ELEMENT_BYTES)
    }
}
