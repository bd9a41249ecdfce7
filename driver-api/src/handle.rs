//! Running a container without blocking: [`spawn`] and [`RunHandle`].

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use crate::command::{Command, Pipes};
use crate::driver::Driver;
use crate::error::{DriverError, Result};
use crate::hooks::Hooks;
use crate::id::ContainerId;
use crate::oom::OomReceiver;
use crate::status::ExitStatus;

struct Started {
    pid: u32,
    oom: OomReceiver,
}

/// A container running on its own thread; see [`spawn`].
pub struct RunHandle {
    id: ContainerId,
    started_rx: Receiver<Started>,
    started: Mutex<Option<Option<(u32, OomReceiver)>>>,
    thread: JoinHandle<Result<ExitStatus>>,
}

/// Runs `driver.run(command, pipes, hooks)` on a new thread and returns at once (the Docker
/// pattern, packaged). The handle learns the pid once every `start` hook ran.
///
/// ```no_run
/// # fn demo(driver: std::sync::Arc<dyn execdriver_api::Driver>, cmd: execdriver_api::Command)
/// # -> execdriver_api::Result<()> {
/// use execdriver_api::{spawn, Hooks, Pipes, Signal};
///
/// let handle = spawn(driver.clone(), cmd, Pipes::inherit(), Hooks::new())?;
/// if let Some(pid) = handle.wait_started() {
///     println!("started as pid {pid}");
///     driver.kill(handle.id(), Signal::TERM)?;
/// }
/// let status = handle.wait()?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`DriverError::Io`] when the thread can't be created.
pub fn spawn(
    driver: Arc<dyn Driver>,
    command: Command,
    pipes: Pipes,
    hooks: Hooks,
) -> Result<RunHandle> {
    let (tx, started_rx) = crossbeam_channel::bounded(1);
    // The last start hook reports the pid; if the run ends before it, the sender is dropped
    // with the hooks and `wait_started` returns None.
    let hooks = hooks.on_start(move |ctx| {
        let _ = tx.send(Started {
            pid: ctx.pid(),
            oom: ctx.oom(),
        });
        Ok(())
    });
    let id = command.id.clone();
    let thread = std::thread::Builder::new()
        .name(format!("execdriver-run-{}", short(id.as_str())))
        .spawn(move || driver.run(&command, pipes, &hooks))
        .map_err(|e| DriverError::io(format!("container {id}: spawn run thread"), e))?;
    Ok(RunHandle {
        id,
        started_rx,
        started: Mutex::new(None),
        thread,
    })
}

// Thread names are limited to 15 bytes by the kernel; keep the start of the id.
fn short(id: &str) -> &str {
    let end = id
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&e| e <= 15)
        .last()
        .unwrap_or(0);
    &id[..end]
}

impl RunHandle {
    /// The container id.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// Blocks until the program started and the `start` hooks ran, and returns its pid; `None`
    /// if the run ended before that (call [`wait`](Self::wait) for the error).
    pub fn wait_started(&self) -> Option<u32> {
        let mut slot = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.started_rx.recv().ok().map(|s| (s.pid, s.oom)));
        }
        slot.as_ref().and_then(|s| s.as_ref().map(|(pid, _)| *pid))
    }

    /// The pid, if the program has started (does not block).
    pub fn pid(&self) -> Option<u32> {
        let mut slot = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none()
            && let Ok(s) = self.started_rx.try_recv()
        {
            *slot = Some(Some((s.pid, s.oom)));
        }
        slot.as_ref().and_then(|s| s.as_ref().map(|(pid, _)| *pid))
    }

    /// A receiver of the container's OOM events, once it has started (blocks like
    /// [`wait_started`](Self::wait_started)).
    pub fn oom(&self) -> Option<OomReceiver> {
        self.wait_started()?;
        let slot = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .and_then(|s| s.as_ref().map(|(_, oom)| oom.clone()))
    }

    /// Whether the run has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the run to return.
    ///
    /// # Errors
    /// The run's error; [`DriverError::Internal`] if the driver panicked.
    pub fn wait(self) -> Result<ExitStatus> {
        let id = self.id;
        self.thread.join().unwrap_or_else(|_| {
            Err(DriverError::Internal {
                context: format!("container {id}"),
                message: "the driver panicked in run".into(),
            })
        })
    }
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .field("finished", &self.thread.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_thread_names() {
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("0123456789abcdefgh"), "0123456789abcde");
    }
}
