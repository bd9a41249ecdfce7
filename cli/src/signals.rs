//! Forwarding the CLI's signals to the container, like `runc run` does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use execdriver::{ContainerId, Driver, DriverError, Signal};
use nix::sys::signal::{SigSet, SigmaskHow, Signal as NixSignal, pthread_sigmask};

const FORWARDED: &[NixSignal] = &[
    NixSignal::SIGHUP,
    NixSignal::SIGINT,
    NixSignal::SIGQUIT,
    NixSignal::SIGTERM,
    NixSignal::SIGUSR1,
    NixSignal::SIGUSR2,
    NixSignal::SIGALRM,
];

/// A thread that waits for the forwarded signals (blocked in every other thread) and sends
/// each to the container once it has started.
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    armed: AtomicBool,
    stopped: AtomicBool,
    pending: Mutex<Vec<Signal>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    driver: Arc<dyn Driver>,
    id: ContainerId,
}

fn set() -> SigSet {
    let mut s = SigSet::empty();
    for sig in FORWARDED {
        s.add(*sig);
    }
    s
}

impl Forwarder {
    /// Blocks the forwarded signals in this thread (and so in threads it creates later) and
    /// starts the forwarding thread.
    pub fn start(driver: Arc<dyn Driver>, id: ContainerId) -> Result<Self, DriverError> {
        let mask = set();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| DriverError::sys("block signals", e as i32))?;
        let inner = Arc::new(Inner {
            armed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
            driver,
            id,
        });
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("execdriver-signals".into())
            .spawn(move || {
                loop {
                    let Ok(sig) = mask.wait() else { continue };
                    if worker.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(sig) = Signal::from_number(sig as i32) else {
                        continue;
                    };
                    if worker.armed.load(Ordering::SeqCst) {
                        worker.send(sig);
                    } else if let Ok(mut p) = worker.pending.lock() {
                        p.push(sig);
                    }
                }
            })
            .map_err(|e| DriverError::io("start the signal thread", e))?;
        if let Ok(mut t) = inner.thread.lock() {
            *t = Some(handle);
        }
        Ok(Self { inner })
    }

    /// The container started: deliver what arrived before, and forward from now on.
    pub fn armed(&self) {
        self.inner.armed.store(true, Ordering::SeqCst);
        let pending = self
            .inner
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for sig in pending {
            self.inner.send(sig);
        }
    }

    /// Ends the forwarding thread.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        // Wake the thread with a signal of the set, sent to this process.
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), NixSignal::SIGALRM);
        if let Some(t) = self.inner.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn send(&self, sig: Signal) {
        if let Err(e) = self.driver.kill(&self.id, sig) {
            tracing::warn!(id = %self.id, %sig, err = %e, "could not forward signal");
        }
    }
}
