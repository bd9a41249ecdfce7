//! The PreStart / Start / PostStop callback lists and the context each callback gets.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

use crate::error::{DriverError, HookError};
use crate::id::ContainerId;
use crate::oom::{OomNotifier, OomReceiver};
use crate::status::ExitStatus;
use crate::terminal::Terminal;

/// One callback. It may be called from any thread; a panic is caught and becomes an error of
/// its stage.
pub type Callback = Arc<dyn Fn(&HookContext<'_>) -> Result<(), HookError> + Send + Sync>;

/// The three lifecycle stages with callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookStage {
    /// Isolation exists and the pid is real, the user's program has not started. The first
    /// error aborts the run and tears the container down; post_stop hooks do not run.
    PreStart,
    /// The user's program has started. An error kills the container (post_stop hooks still run)
    /// and the run returns that error.
    Start,
    /// The program exited; resources are released after these. Every callback runs; errors are
    /// logged and do not change the exit status.
    PostStop,
}

impl fmt::Display for HookStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PreStart => "pre_start",
            Self::Start => "start",
            Self::PostStop => "post_stop",
        })
    }
}

/// The callback lists of one run or exec.
///
/// Cloning is cheap (the callbacks are shared).
///
/// ```
/// use execdriver_api::Hooks;
///
/// let hooks = Hooks::new()
///     .on_pre_start(|ctx| {
///         println!("{} created as pid {}", ctx.id(), ctx.pid());
///         Ok(())
///     })
///     .on_post_stop(|ctx| {
///         println!("{} exited: {:?}", ctx.id(), ctx.exit());
///         Ok(())
///     });
/// assert_eq!(hooks.pre_start.len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called in order once the container exists, before its program starts.
    pub pre_start: Vec<Callback>,
    /// Called in order once the program started.
    pub start: Vec<Callback>,
    /// Called in order after the program exited, before resources are released.
    pub post_stop: Vec<Callback>,
}

impl Hooks {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pre_start callback.
    #[must_use]
    pub fn on_pre_start<F>(mut self, f: F) -> Self
    where
        F: Fn(&HookContext<'_>) -> Result<(), HookError> + Send + Sync + 'static,
    {
        self.pre_start.push(Arc::new(f));
        self
    }

    /// Appends a start callback.
    #[must_use]
    pub fn on_start<F>(mut self, f: F) -> Self
    where
        F: Fn(&HookContext<'_>) -> Result<(), HookError> + Send + Sync + 'static,
    {
        self.start.push(Arc::new(f));
        self
    }

    /// Appends a post_stop callback.
    #[must_use]
    pub fn on_post_stop<F>(mut self, f: F) -> Self
    where
        F: Fn(&HookContext<'_>) -> Result<(), HookError> + Send + Sync + 'static,
    {
        self.post_stop.push(Arc::new(f));
        self
    }

    /// Appends every callback of `other` after this list's own, stage by stage.
    pub fn extend(&mut self, other: Hooks) {
        self.pre_start.extend(other.pre_start);
        self.start.extend(other.start);
        self.post_stop.extend(other.post_stop);
    }

    /// The callbacks of `stage`.
    pub fn stage(&self, stage: HookStage) -> &[Callback] {
        match stage {
            HookStage::PreStart => &self.pre_start,
            HookStage::Start => &self.start,
            HookStage::PostStop => &self.post_stop,
        }
    }

    /// True when there is no callback at all.
    pub fn is_empty(&self) -> bool {
        self.pre_start.is_empty() && self.start.is_empty() && self.post_stop.is_empty()
    }

    /// Runs the callbacks of `stage` in order and stops at the first failure (or panic), which
    /// is returned as [`DriverError::Hook`]. For drivers: this is how pre_start and start run.
    ///
    /// # Errors
    /// The first callback's failure.
    pub fn run(&self, stage: HookStage, ctx: &HookContext<'_>) -> Result<(), DriverError> {
        for (index, cb) in self.stage(stage).iter().enumerate() {
            call(stage, index, cb, ctx)?;
        }
        Ok(())
    }

    /// Runs every callback of `stage`, even after failures, logging each failure; returns the
    /// failures. For drivers: this is how post_stop runs.
    pub fn run_all(&self, stage: HookStage, ctx: &HookContext<'_>) -> Vec<DriverError> {
        let mut errors = Vec::new();
        for (index, cb) in self.stage(stage).iter().enumerate() {
            if let Err(err) = call(stage, index, cb, ctx) {
                tracing::warn!(id = %ctx.id(), %err, "hook failed");
                errors.push(err);
            }
        }
        errors
    }
}

fn call(
    stage: HookStage,
    index: usize,
    cb: &Callback,
    ctx: &HookContext<'_>,
) -> Result<(), DriverError> {
    let outcome = catch_unwind(AssertUnwindSafe(|| cb(ctx)));
    let source = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(err)) => err,
        Err(payload) => panic_message(payload.as_ref()).into(),
    };
    Err(DriverError::Hook {
        stage,
        index,
        source,
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("panicked: {msg}")
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("pre_start", &self.pre_start.len())
            .field("start", &self.start.len())
            .field("post_stop", &self.post_stop.len())
            .finish()
    }
}

/// What a callback learns about the container.
pub struct HookContext<'a> {
    id: &'a ContainerId,
    process: &'a Process,
    pid: u32,
    oom: &'a OomNotifier,
    terminal: Option<Arc<dyn Terminal>>,
    exit: Option<ExitStatus>,
}

impl<'a> HookContext<'a> {
    /// A context for drivers to hand to [`Hooks::run`].
    pub fn new(id: &'a ContainerId, process: &'a Process, pid: u32, oom: &'a OomNotifier) -> Self {
        Self {
            id,
            process,
            pid,
            oom,
            terminal: None,
            exit: None,
        }
    }

    /// Adds the process's terminal.
    #[must_use]
    pub fn with_terminal(mut self, terminal: Option<Arc<dyn Terminal>>) -> Self {
        self.terminal = terminal;
        self
    }

    /// Adds the exit status (post_stop).
    #[must_use]
    pub fn with_exit(mut self, exit: ExitStatus) -> Self {
        self.exit = Some(exit);
        self
    }

    /// The container's OOM broadcaster (for the registry's event stream).
    pub(crate) fn notifier(&self) -> &OomNotifier {
        self.oom
    }

    /// The container id.
    pub fn id(&self) -> &ContainerId {
        self.id
    }

    /// The process being started (the container's init, or the exec'd process).
    pub fn process(&self) -> &Process {
        self.process
    }

    /// The process's pid in the engine's pid namespace (native: a real pid whose namespaces
    /// can be joined through `/proc/<pid>/ns/*`; wasm: the hosting process).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A new receiver of the container's OOM events: it sees every OOM kill from now until the
    /// container's run ends, then disconnects. Keep it (or clone it) beyond the callback to
    /// watch the whole run.
    pub fn oom(&self) -> OomReceiver {
        self.oom.subscribe()
    }

    /// The pty master of the process when `process.terminal` is true and the driver supports it.
    pub fn terminal(&self) -> Option<&Arc<dyn Terminal>> {
        self.terminal.as_ref()
    }

    /// The exit status, in post_stop callbacks.
    pub fn exit(&self) -> Option<ExitStatus> {
        self.exit
    }
}

impl fmt::Debug for HookContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookContext")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("terminal", &self.terminal.is_some())
            .field("exit", &self.exit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn extend_appends_stage_by_stage() {
        let mut a = Hooks::new().on_pre_start(|_| Ok(()));
        let b = Hooks::new()
            .on_pre_start(|_| Ok(()))
            .on_start(|_| Ok(()))
            .on_post_stop(|_| Ok(()));
        a.extend(b);
        assert_eq!(
            (a.pre_start.len(), a.start.len(), a.post_stop.len()),
            (2, 1, 1)
        );
    }

    fn ctx_parts() -> (ContainerId, Process, OomNotifier) {
        (
            ContainerId::new("h").unwrap(),
            Process::default(),
            OomNotifier::new(),
        )
    }

    #[test]
    fn run_stops_at_first_error_and_names_it() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
        let hooks = Hooks::new()
            .on_pre_start(move |_| {
                s1.lock().unwrap().push(0);
                Ok(())
            })
            .on_pre_start(move |_| {
                s2.lock().unwrap().push(1);
                Err("boom".into())
            })
            .on_pre_start(move |_| {
                s3.lock().unwrap().push(2);
                Ok(())
            });
        let (id, p, oom) = ctx_parts();
        let err = hooks
            .run(HookStage::PreStart, &HookContext::new(&id, &p, 7, &oom))
            .unwrap_err();
        assert_eq!(err.to_string(), "pre_start hook #1 failed: boom");
        assert_eq!(*seen.lock().unwrap(), [0, 1]);
    }

    #[test]
    fn panics_become_errors() {
        let hooks = Hooks::new().on_start(|_| panic!("kaput"));
        let (id, p, oom) = ctx_parts();
        let err = hooks
            .run(HookStage::Start, &HookContext::new(&id, &p, 7, &oom))
            .unwrap_err();
        assert!(matches!(
            err,
            DriverError::Hook {
                stage: HookStage::Start,
                index: 0,
                ..
            }
        ));
        assert_eq!(err.to_string(), "start hook #0 failed: panicked: kaput");
    }

    #[test]
    fn run_all_runs_everything() {
        let count = Arc::new(Mutex::new(0));
        let (c1, c2) = (count.clone(), count.clone());
        let hooks = Hooks::new()
            .on_post_stop(move |_| {
                *c1.lock().unwrap() += 1;
                Err("first".into())
            })
            .on_post_stop(move |ctx| {
                *c2.lock().unwrap() += 1;
                assert_eq!(ctx.exit(), Some(ExitStatus::exited(3)));
                Ok(())
            });
        let (id, p, oom) = ctx_parts();
        let ctx = HookContext::new(&id, &p, 7, &oom).with_exit(ExitStatus::exited(3));
        let errs = hooks.run_all(HookStage::PostStop, &ctx);
        assert_eq!(errs.len(), 1);
        assert_eq!(*count.lock().unwrap(), 2);
    }

    #[test]
    fn context_oom_receivers_are_live() {
        let (id, p, oom) = ctx_parts();
        let ctx = HookContext::new(&id, &p, 7, &oom);
        let a = ctx.oom();
        let b = ctx.oom();
        oom.notify(&id);
        assert_eq!(a.try_recv().unwrap().count, 1);
        assert_eq!(b.try_recv().unwrap().count, 1);
    }
}
