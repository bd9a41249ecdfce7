//! The drivers a [`Registry`](crate::Registry) hands out: each counts the containers and
//! processes it runs, so that unregistering can drain it ([`Drain`]).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, Process};

use crate::command::{Command, Pipes};
use crate::driver::{Capabilities, Driver};
use crate::error::{DriverError, Result};
use crate::health::Health;
use crate::hooks::Hooks;
use crate::id::ContainerId;
use crate::signal::Signal;
use crate::stats::ResourceStats;
use crate::status::{ExitStatus, Info};

/// One registration's count of work in flight, and whether it still takes new work.
pub(crate) struct Gate {
    name: String,
    state: Mutex<GateState>,
    idle: Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    in_use: usize,
}

impl Gate {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            state: Mutex::new(GateState::default()),
            idle: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new container, unless the gate is closed.
    fn enter(self: &Arc<Self>) -> Result<InUse> {
        let mut st = self.lock();
        if st.closed {
            return Err(DriverError::Draining {
                driver: self.name.clone(),
            });
        }
        st.in_use += 1;
        Ok(InUse(self.clone()))
    }

    /// Counts work on a container that already runs (an exec): allowed while draining.
    fn enter_existing(self: &Arc<Self>) -> InUse {
        self.lock().in_use += 1;
        InUse(self.clone())
    }

    /// No new containers from now on.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.idle.notify_all();
    }
}

/// One unit of work counted by a gate, uncounted when dropped (also on unwinding).
struct InUse(Arc<Gate>);

impl Drop for InUse {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_use -= 1;
        if st.in_use == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// Says when an unregistered driver has drained: returned by
/// [`Registry::unregister`](crate::Registry::unregister). Drained means no container it ran
/// in this process is running any more (their `run` returned) and no exec is in flight.
#[derive(Clone)]
pub struct Drain {
    pub(crate) gate: Arc<Gate>,
}

impl Drain {
    /// The driver's name.
    pub fn driver(&self) -> &str {
        &self.gate.name
    }

    /// How many containers and execs are still running.
    pub fn in_use(&self) -> usize {
        self.gate.lock().in_use
    }

    /// Whether everything has finished.
    pub fn is_drained(&self) -> bool {
        self.in_use() == 0
    }

    /// Blocks until everything has finished.
    pub fn wait(&self) {
        let mut st = self.gate.lock();
        while st.in_use > 0 {
            st = self
                .gate
                .idle
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until everything has finished or `timeout` has passed; whether it is drained.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.gate.lock();
        while st.in_use > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .gate
                .idle
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("driver", &self.gate.name)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// A driver made by the registry: the factory's driver, with its runs and execs counted by
/// its registration's gate. Every other operation passes straight through.
pub(crate) struct Managed {
    pub(crate) inner: Arc<dyn Driver>,
    pub(crate) gate: Arc<Gate>,
}

impl Driver for Managed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn run(&self, command: &Command, pipes: Pipes, hooks: &Hooks) -> Result<ExitStatus> {
        let _counted = self.gate.enter()?;
        self.inner.run(command, pipes, hooks)
    }

    fn exec(
        &self,
        id: &ContainerId,
        process: &Process,
        pipes: Pipes,
        hooks: &Hooks,
    ) -> Result<ExitStatus> {
        let _counted = self.gate.enter_existing();
        self.inner.exec(id, process, pipes, hooks)
    }

    fn kill(&self, id: &ContainerId, signal: Signal) -> Result<()> {
        self.inner.kill(id, signal)
    }

    fn pause(&self, id: &ContainerId) -> Result<()> {
        self.inner.pause(id)
    }

    fn unpause(&self, id: &ContainerId) -> Result<()> {
        self.inner.unpause(id)
    }

    fn terminate(&self, id: &ContainerId) -> Result<()> {
        self.inner.terminate(id)
    }

    fn clean(&self, id: &ContainerId) -> Result<()> {
        self.inner.clean(id)
    }

    fn info(&self, id: &ContainerId) -> Result<Info> {
        self.inner.info(id)
    }

    fn pids(&self, id: &ContainerId) -> Result<Vec<u32>> {
        self.inner.pids(id)
    }

    fn stats(&self, id: &ContainerId) -> Result<ResourceStats> {
        self.inner.stats(id)
    }

    fn update(&self, id: &ContainerId, resources: &LinuxResources) -> Result<()> {
        self.inner.update(id, resources)
    }

    fn list(&self) -> Result<Vec<ContainerId>> {
        self.inner.list()
    }

    fn can_handle(&self, command: &Command) -> Result<()> {
        self.inner.can_handle(command)
    }

    fn health(&self) -> Health {
        let mut health = self.inner.health();
        if self.gate.lock().closed {
            health.push(
                "registration",
                crate::health::Level::Failed,
                "unregistered: draining, takes no new containers",
            );
        }
        health
    }
}
