//! The drivers a [`Registry`](crate::Registry) hands out: each counts the containers and
//! processes it runs, so that unregistering can drain it ([`Drain`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, Process};

use crate::command::{Command, Pipes};
use crate::driver::{Capabilities, Driver};
use crate::error::{DriverError, Result};
use crate::events::{EventBus, EventKind, EventReceiver};
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
/// its registration's gate and its containers' lifecycle published on its event stream. Every
/// other operation passes straight through.
pub(crate) struct Managed {
    pub(crate) inner: Arc<dyn Driver>,
    pub(crate) gate: Arc<Gate>,
    events: Arc<EventBus>,
    /// Containers made with `create` and not deleted yet, each counted by the gate, with
    /// their init's pid (for `Started`).
    created: Mutex<std::collections::HashMap<ContainerId, (InUse, u32)>>,
    /// Processes made with `exec_create` and not released yet, each counted by the gate,
    /// with their pid (for `ExecStarted`).
    execs: Mutex<std::collections::HashMap<(ContainerId, String), (InUse, u32)>>,
}

impl Managed {
    pub(crate) fn new(inner: Arc<dyn Driver>, gate: Arc<Gate>) -> Self {
        Self {
            inner,
            gate,
            events: Arc::new(EventBus::default()),
            created: Mutex::new(std::collections::HashMap::new()),
            execs: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn created(&self) -> MutexGuard<'_, std::collections::HashMap<ContainerId, (InUse, u32)>> {
        self.created.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn execs(
        &self,
    ) -> MutexGuard<'_, std::collections::HashMap<(ContainerId, String), (InUse, u32)>> {
        self.execs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Publishes a container's OOM kills on `bus` as they happen (until its channel is closed).
fn watch_oom(bus: &Arc<EventBus>, id: &ContainerId, oom: &crate::OomNotifier) {
    let (bus, id) = (bus.clone(), id.clone());
    oom.watch(Box::new(move |ev| {
        bus.publish(&id, EventKind::Oom { count: ev.count });
    }));
}

/// `driver` with a lifecycle event stream ([`Driver::subscribe`]) — what every driver a
/// [`Registry`](crate::Registry) makes has already. The events come from the lifecycle's stages
/// (the hooks of `run` and `exec`, successful `pause`/`unpause`, the container's OOM channel),
/// so they are the same for every driver. Only containers run through the returned driver are
/// seen.
pub fn with_events(driver: Arc<dyn Driver>) -> Arc<dyn Driver> {
    let gate = Arc::new(Gate::new(driver.name().to_owned()));
    Arc::new(Managed::new(driver, gate))
}

/// The hooks of a run or exec with the event stream's own callback first in each stage (so an
/// event precedes whatever the caller's hooks do at that stage).
fn with_first(ours: Hooks, theirs: &Hooks) -> Hooks {
    let mut hooks = ours;
    hooks.extend(theirs.clone());
    hooks
}

/// A hook error names its callback's position in the caller's list: ours went first in the
/// stages `ours` has callbacks in.
fn caller_index(ours: &Hooks, result: Result<ExitStatus>) -> Result<ExitStatus> {
    result.map_err(|e| match e {
        DriverError::Hook {
            stage,
            index,
            source,
        } => DriverError::Hook {
            stage,
            index: index.saturating_sub(ours.stage(stage).len()),
            source,
        },
        other => other,
    })
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
        let created = Arc::new(AtomicBool::new(false));
        let (bus, bus2, bus3, flag) = (
            self.events.clone(),
            self.events.clone(),
            self.events.clone(),
            created.clone(),
        );
        let ours = Hooks::new()
            .on_pre_start(move |ctx| {
                flag.store(true, Ordering::SeqCst);
                bus.publish(ctx.id(), EventKind::Created { pid: ctx.pid() });
                watch_oom(&bus, ctx.id(), ctx.notifier());
                Ok(())
            })
            .on_start(move |ctx| {
                bus2.publish(ctx.id(), EventKind::Started { pid: ctx.pid() });
                Ok(())
            })
            .on_post_stop(move |ctx| {
                if let Some(status) = ctx.exit() {
                    bus3.publish(ctx.id(), EventKind::Exited { status });
                }
                Ok(())
            });
        let all = with_first(ours.clone(), hooks);
        let result = caller_index(&ours, self.inner.run(command, pipes, &all));
        if created.load(Ordering::SeqCst) {
            self.events.publish(&command.id, EventKind::Deleted);
        }
        result
    }

    fn create(&self, command: &Command, pipes: Pipes) -> Result<crate::Created> {
        let counted = self.gate.enter()?;
        let created = self.inner.create(command, pipes)?;
        let id = &command.id;
        self.events
            .publish(id, EventKind::Created { pid: created.pid });
        watch_oom(&self.events, id, &created.oom);
        if let Ok(exit) = self.inner.wait(id) {
            let (bus, exit_id) = (self.events.clone(), id.clone());
            exit.on_exit(move |status| bus.publish(&exit_id, EventKind::Exited { status }));
        }
        self.created().insert(id.clone(), (counted, created.pid));
        Ok(created)
    }

    fn start(&self, id: &ContainerId) -> Result<()> {
        self.inner.start(id)?;
        // Only for containers made through this wrapper (their Created was published).
        let pid = self.created().get(id).map(|(_, pid)| *pid);
        if let Some(pid) = pid {
            self.events.publish(id, EventKind::Started { pid });
        }
        Ok(())
    }

    fn wait(&self, id: &ContainerId) -> Result<crate::Exit> {
        self.inner.wait(id)
    }

    fn delete(&self, id: &ContainerId) -> Result<()> {
        self.inner.delete(id)?;
        if self.created().remove(id).is_some() {
            self.events.publish(id, EventKind::Deleted);
        }
        Ok(())
    }

    fn exec(
        &self,
        id: &ContainerId,
        process: &Process,
        pipes: Pipes,
        hooks: &Hooks,
    ) -> Result<ExitStatus> {
        let _counted = self.gate.enter_existing();
        let (bus, bus2) = (self.events.clone(), self.events.clone());
        let ours = Hooks::new()
            .on_start(move |ctx| {
                bus.publish(ctx.id(), EventKind::ExecStarted { pid: ctx.pid() });
                Ok(())
            })
            .on_post_stop(move |ctx| {
                if let Some(status) = ctx.exit() {
                    let pid = ctx.pid();
                    bus2.publish(ctx.id(), EventKind::ExecExited { pid, status });
                }
                Ok(())
            });
        let all = with_first(ours.clone(), hooks);
        caller_index(&ours, self.inner.exec(id, process, pipes, &all))
    }

    fn exec_create(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &Process,
        pipes: Pipes,
    ) -> Result<crate::Created> {
        let counted = self.gate.enter_existing();
        let created = self.inner.exec_create(id, exec_id, process, pipes)?;
        self.execs()
            .insert((id.clone(), exec_id.to_owned()), (counted, created.pid));
        Ok(created)
    }

    fn exec_start(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        self.inner.exec_start(id, exec_id)?;
        let key = (id.clone(), exec_id.to_owned());
        let Some(pid) = self.execs().get(&key).map(|(_, pid)| *pid) else {
            return Ok(());
        };
        self.events.publish(id, EventKind::ExecStarted { pid });
        // After ExecStarted, also when it exited already (on_exit then runs at once).
        if let Ok(exit) = self.inner.exec_wait(id, exec_id) {
            let (bus, exit_id) = (self.events.clone(), id.clone());
            exit.on_exit(move |status| {
                bus.publish(&exit_id, EventKind::ExecExited { pid, status })
            });
        }
        Ok(())
    }

    fn exec_wait(&self, id: &ContainerId, exec_id: &str) -> Result<crate::Exit> {
        self.inner.exec_wait(id, exec_id)
    }

    fn exec_delete(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        self.inner.exec_delete(id, exec_id)?;
        self.execs().remove(&(id.clone(), exec_id.to_owned()));
        Ok(())
    }

    fn kill(&self, id: &ContainerId, signal: Signal) -> Result<()> {
        self.inner.kill(id, signal)
    }

    fn pause(&self, id: &ContainerId) -> Result<()> {
        self.inner.pause(id)?;
        self.events.publish(id, EventKind::Paused);
        Ok(())
    }

    fn unpause(&self, id: &ContainerId) -> Result<()> {
        self.inner.unpause(id)?;
        self.events.publish(id, EventKind::Resumed);
        Ok(())
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

    fn subscribe(&self) -> Result<EventReceiver> {
        Ok(self.events.subscribe())
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
