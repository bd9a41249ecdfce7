//! Container status, exit status and [`Info`].

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::id::ContainerId;

/// The lifecycle status of a container, with the OCI runtime spec's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Isolation exists, the user's program has not started (pre_start hooks run now).
    Created,
    /// The user's program runs.
    Running,
    /// Frozen by [`Driver::pause`](crate::Driver::pause).
    Paused,
    /// The program exited; the container has not been cleaned yet.
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        })
    }
}

/// How a container's init process (or an exec'd process) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code; `128 + N` when the process was killed by signal `N` (shell convention).
    pub code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// True when the kernel OOM killer (or the wasm memory limit) killed the container.
    pub oom_killed: bool,
}

impl ExitStatus {
    /// A normal exit with `code`.
    pub const fn exited(code: i32) -> Self {
        Self {
            code,
            signal: None,
            oom_killed: false,
        }
    }

    /// Death by `signal`; the code is `128 + signal`.
    pub const fn signaled(signal: i32) -> Self {
        Self {
            code: 128 + signal,
            signal: Some(signal),
            oom_killed: false,
        }
    }

    /// The same status, marked as an OOM kill.
    #[must_use]
    pub const fn with_oom_killed(mut self, oom_killed: bool) -> Self {
        self.oom_killed = oom_killed;
        self
    }

    /// True for a clean exit with code 0.
    pub const fn success(&self) -> bool {
        self.code == 0 && self.signal.is_none()
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            Some(sig) => write!(f, "killed by signal {sig} (exit code {})", self.code)?,
            None => write!(f, "exit code {}", self.code)?,
        }
        if self.oom_killed {
            f.write_str(", oom-killed")?;
        }
        Ok(())
    }
}

/// What a driver knows about one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Info {
    /// The container id.
    pub id: ContainerId,
    /// The driver that runs it.
    pub driver: String,
    /// Its status.
    pub status: Status,
    /// The pid of its init process (wasm: the hosting process), while it has one.
    pub pid: Option<u32>,
    /// The bundle it was started from.
    pub bundle: PathBuf,
    /// When it was created.
    pub created: SystemTime,
    /// Its exit status, once it stopped and the driver still knows it.
    pub exit: Option<ExitStatus>,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Info {
    /// An `Info` with the required fields; the rest start empty.
    pub fn new(
        id: ContainerId,
        driver: impl Into<String>,
        status: Status,
        bundle: PathBuf,
    ) -> Self {
        Self {
            id,
            driver: driver.into(),
            status,
            pid: None,
            bundle,
            created: SystemTime::now(),
            exit: None,
            annotations: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_conventions() {
        assert!(ExitStatus::exited(0).success());
        assert!(!ExitStatus::exited(3).success());
        let k = ExitStatus::signaled(9);
        assert_eq!(k.code, 137);
        assert_eq!(k.signal, Some(9));
        assert!(!k.success());
        assert_eq!(k.to_string(), "killed by signal 9 (exit code 137)");
        assert_eq!(
            k.with_oom_killed(true).to_string(),
            "killed by signal 9 (exit code 137), oom-killed"
        );
    }

    #[test]
    fn status_names_follow_oci() {
        for (s, n) in [
            (Status::Created, "created"),
            (Status::Running, "running"),
            (Status::Paused, "paused"),
            (Status::Stopped, "stopped"),
        ] {
            assert_eq!(s.to_string(), n);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{n}\""));
        }
    }
}
