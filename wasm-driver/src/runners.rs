//! The threads started instances run on: a pool that grows with the instances running at once
//! and shrinks when they are idle, so a start hands its instance to a parked thread instead of
//! spawning one. An instance holds its thread while it runs (its CPU time, for stats and the
//! CPU quota, is that thread's); a sleeping instance parks it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// How long an idle thread waits for the next instance before it ends.
const IDLE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// The pool of one driver.
#[derive(Default, Clone)]
pub(crate) struct Runners {
    inner: Arc<Inner>,
}

impl Runners {
    /// Runs `job` on an idle thread of the pool, or on a new one when none is idle.
    ///
    /// # Errors
    /// When no thread is idle and none can be started; `job` is dropped unrun then.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut q = self
            .inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if q.idle > q.jobs.len() {
            q.jobs.push_back(Box::new(job));
            drop(q);
            self.inner.ready.notify_one();
            return Ok(());
        }
        drop(q);
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("execdriver-wasm".into())
            .spawn(move || {
                job();
                inner.serve();
            })
            .map(drop)
    }

    /// Threads waiting for an instance (for tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle
    }
}

impl Inner {
    /// Runs queued jobs until none came for [`IDLE`].
    fn serve(&self) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                job();
                q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            q.idle += 1;
            let (next, timeout) = self
                .ready
                .wait_timeout_while(q, IDLE, |q| q.jobs.is_empty())
                .unwrap_or_else(PoisonError::into_inner);
            q = next;
            q.idle -= 1;
            if timeout.timed_out() && q.jobs.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_concurrently_and_threads_are_reused() {
        let pool = Runners::default();
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        // Three jobs that wait for each other: they need three threads at once.
        for i in 0..3 {
            let (tx, gate) = (tx.clone(), gate.clone());
            pool.run(move || {
                tx.send(("started", i)).unwrap();
                let (m, cv) = &*gate;
                let _open = cv.wait_while(m.lock().unwrap(), |open| !*open).unwrap();
                tx.send(("done", i)).unwrap();
            })
            .unwrap();
        }
        for _ in 0..3 {
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(10)).unwrap().0,
                "started"
            );
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for _ in 0..3 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().0, "done");
        }
        // All three park; the next job goes to one of them.
        while pool.idle() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (ttx, trx) = mpsc::channel();
        pool.run(move || {
            ttx.send(std::thread::current().name().map(str::to_owned))
                .unwrap()
        })
        .unwrap();
        let name = trx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(name.as_deref(), Some("execdriver-wasm"));
        while pool.idle() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // A fourth thread would park too.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pool.idle(), 3, "the fourth job started a thread");
    }
}
