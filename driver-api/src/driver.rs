//! The [`Driver`] trait and [`Capabilities`].

use std::fmt;

use oci_spec::runtime::{LinuxResources, Process};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Pipes};
use crate::error::{DriverError, Result};
use crate::health::Health;
use crate::hooks::Hooks;
use crate::id::ContainerId;
use crate::signal::Signal;
use crate::stats::ResourceStats;
use crate::status::{ExitStatus, Info};

/// A container execution driver.
///
/// Object safe and `Send + Sync`: engines hold `Arc<dyn Driver>` and call it from many threads
/// at once. Optional operations have default bodies that return [`DriverError::Unsupported`];
/// a driver that implements one says so in its [`Capabilities`].
///
/// The lifecycle of [`run`](Self::run), identical for every driver:
/// 1. validate the command — failures are `InvalidSpec`/`CantHandle` naming the field, and
///    nothing is left behind;
/// 2. create the isolation and the init process (or instance), user program not started;
/// 3. `pre_start` hooks with the real pid — the first error tears down and returns
///    [`DriverError::Hook`] (post_stop hooks do not run);
/// 4. start the user program, then `start` hooks;
/// 5. wait for exit, signal or OOM kill (OOM events go to every hook context's receiver);
/// 6. `post_stop` hooks, release every resource, return the [`ExitStatus`]. The id is free again.
pub trait Driver: Send + Sync {
    /// The name the driver is registered under (`native`, `wasm`, ...).
    fn name(&self) -> &str;

    /// What the driver supports.
    fn capabilities(&self) -> Capabilities;

    /// Runs a container to completion (blocks until its init exits). See the trait docs for the
    /// lifecycle; [`spawn`](crate::spawn) runs it on a thread and returns a handle.
    ///
    /// Provided: [`lifecycle::run`](crate::lifecycle::run) over [`create`](Self::create),
    /// [`start`](Self::start), [`wait`](Self::wait) and [`delete`](Self::delete) — the hook
    /// semantics written once for every driver. A driver without those primitives implements
    /// `run` itself.
    ///
    /// # Errors
    /// `InvalidSpec`/`CantHandle` for bad input, `AlreadyExists` for a live id, `Hook` for a
    /// failed pre_start or start callback, `Sys`/`Io` for what the platform refused.
    fn run(&self, command: &Command, pipes: Pipes, hooks: &Hooks) -> Result<ExitStatus> {
        crate::lifecycle::run(self, command, pipes, hooks)
    }

    /// Creates a container: validated, its isolation and init exist, its program has not
    /// started; the id is taken. Drivers that implement it list [`Operation::TwoPhase`].
    ///
    /// # Errors
    /// As [`run`](Self::run) up to the start; nothing is left behind on error.
    fn create(&self, command: &Command, pipes: Pipes) -> Result<crate::Created> {
        let _ = (command, pipes);
        Err(DriverError::unsupported("create", self.name()))
    }

    /// Starts the program of a created container.
    ///
    /// # Errors
    /// `NotFound`, `InvalidState` unless it is created and not started, what exec'ing it gave.
    fn start(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(DriverError::unsupported("start", self.name()))
    }

    /// The container's exit notification (non-blocking, blocking or async), from `create` on.
    ///
    /// # Errors
    /// `NotFound`.
    fn wait(&self, id: &ContainerId) -> Result<crate::Exit> {
        let _ = id;
        Err(DriverError::unsupported("wait", self.name()))
    }

    /// Releases every resource of a container that exited; the id is free again.
    ///
    /// # Errors
    /// `NotFound`; `InvalidState` while it runs (kill or terminate it first).
    fn delete(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(DriverError::unsupported("delete", self.name()))
    }

    /// Runs an extra process in a running container and waits for it. The hooks' contexts carry
    /// the exec'd process's pid.
    ///
    /// Provided: [`lifecycle::exec`](crate::lifecycle::exec) over
    /// [`exec_create`](Self::exec_create), [`exec_start`](Self::exec_start),
    /// [`exec_wait`](Self::exec_wait) and [`exec_delete`](Self::exec_delete) — the same hook
    /// semantics as a container's. A driver without those primitives implements `exec` itself
    /// (or leaves it `Unsupported`).
    ///
    /// # Errors
    /// `NotFound`, `NotRunning`/`InvalidState` (paused), `InvalidSpec`, or `Unsupported`.
    fn exec(
        &self,
        id: &ContainerId,
        process: &Process,
        pipes: Pipes,
        hooks: &Hooks,
    ) -> Result<ExitStatus> {
        crate::lifecycle::exec(self, id, process, pipes, hooks)
    }

    /// Creates an extra process in a running container: set up inside it, its program not
    /// started. Drivers that implement the exec primitives list [`Operation::TwoPhaseExec`].
    /// The caller names it with `exec_id` (unique among the container's execs until
    /// [`exec_delete`](Self::exec_delete), as containerd's exec ids are) for
    /// [`exec_start`](Self::exec_start), [`exec_wait`](Self::exec_wait) and `exec_delete`;
    /// `Created.pid` is its pid, the OOM broadcaster the container's. A driver whose
    /// runtime can't hold an extra process before its program runs (an OCI binary's `exec`)
    /// starts it here, makes `exec_start` only record the start, and does not list
    /// `TwoPhaseExec`: `pre_start` hooks then see a running process.
    ///
    /// # Errors
    /// As [`exec`](Self::exec) up to the start; `AlreadyExists` for an exec id in use;
    /// nothing is left behind on error.
    fn exec_create(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &Process,
        pipes: Pipes,
    ) -> Result<crate::Created> {
        let _ = (id, exec_id, process, pipes);
        Err(DriverError::unsupported("exec", self.name()))
    }

    /// Starts the program of a process made by [`exec_create`](Self::exec_create).
    ///
    /// # Errors
    /// `NotFound` for an unknown exec id, `InvalidState` when it started already, what
    /// exec'ing it gave.
    fn exec_start(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let _ = (id, exec_id);
        Err(DriverError::unsupported("exec", self.name()))
    }

    /// The exit notification of a process made by [`exec_create`](Self::exec_create).
    ///
    /// # Errors
    /// `NotFound` for an unknown exec id.
    fn exec_wait(&self, id: &ContainerId, exec_id: &str) -> Result<crate::Exit> {
        let _ = (id, exec_id);
        Err(DriverError::unsupported("exec", self.name()))
    }

    /// Releases a process made by [`exec_create`](Self::exec_create): kills it (SIGKILL) and
    /// waits for it first if it still runs, so its exit notification is set when this returns.
    /// The exec id is free again afterwards.
    ///
    /// # Errors
    /// `NotFound` for an unknown exec id.
    fn exec_delete(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let _ = (id, exec_id);
        Err(DriverError::unsupported("exec", self.name()))
    }

    /// Sends `signal` to the container's init process.
    ///
    /// # Errors
    /// `NotFound`, `NotRunning`, or `Unsupported` for a signal the driver can't deliver.
    fn kill(&self, id: &ContainerId, signal: Signal) -> Result<()>;

    /// Freezes every process of the container.
    ///
    /// # Errors
    /// `NotFound`, `InvalidState` (already paused, not running), or `Unsupported`.
    fn pause(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(DriverError::unsupported("pause", self.name()))
    }

    /// Thaws a paused container.
    ///
    /// # Errors
    /// `NotFound`, `InvalidState` (not paused), or `Unsupported`.
    fn unpause(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(DriverError::unsupported("unpause", self.name()))
    }

    /// Kills every process of the container (SIGKILL) and waits until they are gone. Stopping an
    /// already stopped container succeeds.
    ///
    /// # Errors
    /// `NotFound`.
    fn terminate(&self, id: &ContainerId) -> Result<()>;

    /// Removes every trace of a stopped container (state, cgroups, mounts). Idempotent: cleaning
    /// an unknown id succeeds.
    ///
    /// # Errors
    /// `InvalidState` when the container still runs.
    fn clean(&self, id: &ContainerId) -> Result<()>;

    /// Status, pid and bundle of a container.
    ///
    /// # Errors
    /// `NotFound`.
    fn info(&self, id: &ContainerId) -> Result<Info>;

    /// Every pid of the container (engine pid namespace).
    ///
    /// # Errors
    /// `NotFound`, `Unsupported`.
    fn pids(&self, id: &ContainerId) -> Result<Vec<u32>> {
        let _ = id;
        Err(DriverError::unsupported("pids", self.name()))
    }

    /// Current resource usage.
    ///
    /// # Errors
    /// `NotFound`, `NotRunning`, `Unsupported`.
    fn stats(&self, id: &ContainerId) -> Result<ResourceStats> {
        let _ = id;
        Err(DriverError::unsupported("stats", self.name()))
    }

    /// Changes the resource limits of a running container.
    ///
    /// # Errors
    /// `NotFound`, `NotRunning`, `InvalidSpec` naming the field, `Unsupported`.
    fn update(&self, id: &ContainerId, resources: &LinuxResources) -> Result<()> {
        let _ = (id, resources);
        Err(DriverError::unsupported("update", self.name()))
    }

    /// The ids of every container the driver knows (running or not yet cleaned).
    ///
    /// # Errors
    /// `Io` when the driver's state can't be read.
    fn list(&self) -> Result<Vec<ContainerId>>;

    /// Whether this driver is the kind that runs `command` (a WebAssembly entrypoint for the
    /// wasm driver, anything else for native). Cheap, touches nothing but the bundle; used by
    /// [`Registry::resolve`](crate::Registry::resolve) to pick a driver. It is not the
    /// validation: a command it accepts can still be refused by `run`. The default accepts
    /// everything.
    ///
    /// # Errors
    /// [`DriverError::CantHandle`] saying why.
    fn can_handle(&self, command: &Command) -> Result<()> {
        let _ = command;
        Ok(())
    }

    /// A receiver of the driver's lifecycle [`Event`](crate::Event)s (see
    /// [`EventKind`](crate::EventKind) for the order). Drivers don't implement it: the
    /// drivers a [`Registry`](crate::Registry) makes, and any driver wrapped with
    /// [`with_events`](crate::with_events), publish the events of every container they run,
    /// from the lifecycle's stages, the same way for every driver.
    ///
    /// # Errors
    /// `Unsupported` for a driver used without that wrapper.
    fn subscribe(&self) -> Result<crate::EventReceiver> {
        Err(DriverError::unsupported("events", self.name()))
    }

    /// What the driver can do on this host now: kernel features, cgroup delegation, its engine
    /// or runtime binary. Quick and without side effects a caller could see (no containers,
    /// nothing left on disk). The default has no checks (healthy).
    fn health(&self) -> Health {
        Health::new()
    }
}

/// The operations whose support varies between drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// [`Driver::exec`].
    Exec,
    /// [`Driver::pause`] and [`Driver::unpause`].
    Pause,
    /// [`Driver::stats`].
    Stats,
    /// [`Driver::pids`].
    Pids,
    /// [`Driver::update`].
    Update,
    /// OOM events and `ExitStatus::oom_killed`.
    Oom,
    /// `process.terminal = true`.
    Terminal,
    /// Containers outlive the engine process; another process can `kill`/`info`/`clean` them.
    Persistent,
    /// Any signal; without it only SIGKILL, SIGTERM and SIGINT.
    Signals,
    /// Kernel isolation: a container can't reach the engine's files, and never runs the
    /// engine's own executable (the conformance kit's security checks).
    Isolation,
    /// [`Driver::create`], [`Driver::start`], [`Driver::wait`] and [`Driver::delete`]; `run`
    /// is the lifecycle engine over them.
    TwoPhase,
    /// [`Driver::exec_create`], [`Driver::exec_start`], [`Driver::exec_wait`] and
    /// [`Driver::exec_delete`]: an extra process can be set up without starting it; `exec` is
    /// the lifecycle engine over them.
    TwoPhaseExec,
}

impl Operation {
    /// Every operation, in a stable order.
    pub const ALL: [Self; 12] = [
        Self::Exec,
        Self::Pause,
        Self::Stats,
        Self::Pids,
        Self::Update,
        Self::Oom,
        Self::Terminal,
        Self::Persistent,
        Self::Signals,
        Self::Isolation,
        Self::TwoPhase,
        Self::TwoPhaseExec,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Pause => "pause",
            Self::Stats => "stats",
            Self::Pids => "pids",
            Self::Update => "update",
            Self::Oom => "oom",
            Self::Terminal => "terminal",
            Self::Persistent => "persistent",
            Self::Signals => "signals",
            Self::Isolation => "isolation",
            Self::TwoPhase => "two_phase",
            Self::TwoPhaseExec => "two_phase_exec",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a driver supports beyond the required operations (run, kill, terminate, info, clean,
/// list). Start from [`Capabilities::none`] and set what you implement:
///
/// ```
/// use execdriver_api::{Capabilities, Operation};
///
/// let caps = Capabilities::none().with(Operation::Pause).with(Operation::Stats);
/// assert!(caps.supports(Operation::Pause));
/// assert!(!caps.supports(Operation::Exec));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    bits: u32,
}

impl Capabilities {
    /// Nothing optional.
    pub const fn none() -> Self {
        Self { bits: 0 }
    }

    /// Every optional operation.
    pub fn all() -> Self {
        Operation::ALL
            .iter()
            .fold(Self::none(), |c, op| c.with(*op))
    }

    /// Adds `op`.
    #[must_use]
    pub const fn with(self, op: Operation) -> Self {
        Self {
            bits: self.bits | (1 << op as u32),
        }
    }

    /// Removes `op`.
    #[must_use]
    pub const fn without(self, op: Operation) -> Self {
        Self {
            bits: self.bits & !(1 << op as u32),
        }
    }

    /// Whether `op` is supported.
    pub const fn supports(&self, op: Operation) -> bool {
        self.bits & (1 << op as u32) != 0
    }

    /// The supported operations, in [`Operation::ALL`] order.
    pub fn operations(&self) -> Vec<Operation> {
        Operation::ALL
            .into_iter()
            .filter(|op| self.supports(*op))
            .collect()
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.operations().iter().map(|o| o.name()).collect();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        let c = Capabilities::none()
            .with(Operation::Exec)
            .with(Operation::Oom);
        assert!(c.supports(Operation::Exec) && c.supports(Operation::Oom));
        assert!(!c.supports(Operation::Pause));
        assert_eq!(c.to_string(), "exec,oom");
        assert_eq!(c.without(Operation::Exec).to_string(), "oom");
        assert_eq!(Capabilities::none().to_string(), "-");
        assert_eq!(Capabilities::all().operations().len(), Operation::ALL.len());
    }

    // The trait must stay object safe.
    #[allow(dead_code)]
    fn object_safe(_: &dyn Driver) {}
}
