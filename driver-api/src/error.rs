//! The one error type of the API boundary.

use std::fmt;

use crate::hooks::HookStage;
use crate::status::Status;

/// What a hook callback returns when it fails; any error type converts into it.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results at the API boundary.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// Every error a [`Driver`](crate::Driver), the [`Registry`](crate::Registry) or a helper of this
/// crate returns.
///
/// Drivers keep their own error types internally and convert once at the trait boundary. Messages
/// are one line, lowercase, name the container id and the failing field or system call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// No container with this id is known to the driver.
    #[error("container {id}: not found")]
    NotFound {
        /// The container id.
        id: String,
    },
    /// A container with this id already exists (running, or not yet cleaned).
    #[error("container {id}: already exists")]
    AlreadyExists {
        /// The container id.
        id: String,
    },
    /// A container id that can't be used as a path component.
    #[error("invalid container id \"{id}\": {reason}")]
    InvalidId {
        /// The offending id, escaped and shortened for printing.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The OCI spec or bundle is invalid; `field` names the offending part (`process.args`,
    /// `linux.namespaces[2].type`, `root.path`, ...).
    #[error("invalid spec: {field}: {reason}")]
    InvalidSpec {
        /// The JSON path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The spec is valid but this driver cannot run it (e.g. the wasm driver given an ELF binary).
    #[error("the {driver} driver can't handle this container: {reason}")]
    CantHandle {
        /// The driver's name.
        driver: String,
        /// Why.
        reason: String,
    },
    /// The driver does not implement this operation; its [`Capabilities`](crate::Capabilities)
    /// say so too.
    #[error("{op} is not supported by the {driver} driver")]
    Unsupported {
        /// The operation (`pause`, `exec`, `signal SIGUSR1`, ...).
        op: String,
        /// The driver's name.
        driver: String,
    },
    /// The operation needs a running container.
    #[error("container {id}: not running (status: {status})")]
    NotRunning {
        /// The container id.
        id: String,
        /// Its current status.
        status: Status,
    },
    /// The operation is not valid in the container's current state (pause twice, exec while
    /// paused, ...).
    #[error("container {id}: can't {op} while {status}")]
    InvalidState {
        /// The container id.
        id: String,
        /// The refused operation.
        op: String,
        /// Its current status.
        status: Status,
    },
    /// A hook callback failed or panicked. For `pre_start` the container has been torn down.
    #[error("{stage} hook #{index} failed: {source}")]
    Hook {
        /// The stage whose callback failed.
        stage: HookStage,
        /// The position of the failing callback in its list (0-based).
        index: usize,
        /// The callback's error (a panic is turned into an error carrying its message).
        #[source]
        source: HookError,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed, naming the path or container.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call or setup step failed with an errno.
    #[error("{op}: {}", Errno(*errno))]
    Sys {
        /// The step or system call, with its argument (`mount proc on /proc`, `execve /bin/sh`).
        op: String,
        /// The raw OS error number.
        errno: i32,
    },
    /// [`Registry::create`](crate::Registry::create) was asked for a driver name it does not know.
    #[error("unknown driver \"{name}\"; available drivers: {}", list(available))]
    UnknownDriver {
        /// The requested name.
        name: String,
        /// The registered names.
        available: Vec<String>,
    },
    /// A factory with this name is already registered.
    #[error("a driver named \"{name}\" is already registered")]
    DuplicateDriver {
        /// The duplicate name.
        name: String,
    },
    /// The driver was unregistered and drains: it takes no new containers (its running ones
    /// finish, and can be killed, inspected and cleaned).
    #[error("the {driver} driver is draining: it takes no new containers")]
    Draining {
        /// The driver's name.
        driver: String,
    },
    /// [`Registry::resolve`](crate::Registry::resolve) found no registered driver for a
    /// container; `reasons` says why each one was passed over.
    #[error("no registered driver can run this container: {}", reasons.join("; "))]
    NoDriverFits {
        /// `name: why` per registered driver.
        reasons: Vec<String>,
    },
    /// A driver configuration document could not be parsed.
    #[error("invalid driver configuration: {reason}")]
    InvalidConfig {
        /// What is wrong, with the JSON path where known.
        reason: String,
    },
    /// A driver's options were rejected by its factory.
    #[error("invalid options for the {driver} driver: {reason}")]
    InvalidOptions {
        /// The driver's name.
        driver: String,
        /// What is wrong (unknown key, wrong type, ...).
        reason: String,
    },
    /// A failure inside the driver that fits no other kind.
    #[error("{context}: {message}")]
    Internal {
        /// What was being done.
        context: String,
        /// What went wrong.
        message: String,
    },
}

struct Errno(i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&std::io::Error::from_raw_os_error(self.0), f)
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none registered)".to_owned()
    } else {
        names.join(", ")
    }
}

impl DriverError {
    /// An [`InvalidSpec`](Self::InvalidSpec) error.
    pub fn invalid_spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Unsupported`](Self::Unsupported) error.
    pub fn unsupported(op: impl Into<String>, driver: impl Into<String>) -> Self {
        Self::Unsupported {
            op: op.into(),
            driver: driver.into(),
        }
    }

    /// An [`Io`](Self::Io) error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A [`Sys`](Self::Sys) error for a failed step and its errno.
    pub fn sys(op: impl Into<String>, errno: i32) -> Self {
        Self::Sys {
            op: op.into(),
            errno,
        }
    }

    /// A [`NotFound`](Self::NotFound) error.
    pub fn not_found(id: impl fmt::Display) -> Self {
        Self::NotFound { id: id.to_string() }
    }

    /// A [`CantHandle`](Self::CantHandle) error.
    pub fn cant_handle(driver: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::CantHandle {
            driver: driver.into(),
            reason: reason.into(),
        }
    }

    /// The raw OS error number, for [`Sys`](Self::Sys) and [`Io`](Self::Io) errors that have one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Sys { errno, .. } => Some(*errno),
            Self::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_clear_line() {
        let cases: Vec<(DriverError, &str)> = vec![
            (DriverError::not_found("web"), "container web: not found"),
            (
                DriverError::AlreadyExists { id: "web".into() },
                "container web: already exists",
            ),
            (
                DriverError::invalid_spec("process.args", "must not be empty"),
                "invalid spec: process.args: must not be empty",
            ),
            (
                DriverError::unsupported("pause", "process"),
                "pause is not supported by the process driver",
            ),
            (
                DriverError::sys("mount proc on /proc", 1),
                "mount proc on /proc: Operation not permitted (os error 1)",
            ),
            (
                DriverError::UnknownDriver {
                    name: "nope".into(),
                    available: vec!["native".into(), "wasm".into()],
                },
                "unknown driver \"nope\"; available drivers: native, wasm",
            ),
            (
                DriverError::UnknownDriver {
                    name: "nope".into(),
                    available: vec![],
                },
                "unknown driver \"nope\"; available drivers: (none registered)",
            ),
            (
                DriverError::Draining {
                    driver: "wasm".into(),
                },
                "the wasm driver is draining: it takes no new containers",
            ),
            (
                DriverError::NoDriverFits {
                    reasons: vec!["native: no".into(), "wasm: no".into()],
                },
                "no registered driver can run this container: native: no; wasm: no",
            ),
            (
                DriverError::NotRunning {
                    id: "a".into(),
                    status: Status::Stopped,
                },
                "container a: not running (status: stopped)",
            ),
            (
                DriverError::InvalidState {
                    id: "a".into(),
                    op: "pause".into(),
                    status: Status::Paused,
                },
                "container a: can't pause while paused",
            ),
            (
                DriverError::Hook {
                    stage: HookStage::PreStart,
                    index: 1,
                    source: "no network".into(),
                },
                "pre_start hook #1 failed: no network",
            ),
        ];
        for (err, want) in cases {
            let got = err.to_string();
            assert_eq!(got, want);
            assert!(!got.contains('\n'));
        }
    }

    #[test]
    fn raw_os_error_is_exposed() {
        assert_eq!(DriverError::sys("x", 2).raw_os_error(), Some(2));
        let io = DriverError::io("read", std::io::Error::from_raw_os_error(13));
        assert_eq!(io.raw_os_error(), Some(13));
        assert_eq!(DriverError::not_found("a").raw_os_error(), None);
    }

    #[test]
    fn hook_error_keeps_its_source() {
        use std::error::Error as _;
        let err = DriverError::Hook {
            stage: HookStage::Start,
            index: 0,
            source: Box::new(std::io::Error::other("inner")),
        };
        assert_eq!(err.source().unwrap().to_string(), "inner");
    }
}
