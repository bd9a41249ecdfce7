//! The one error type of the API boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

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

    /// [`NotFound`](Self::NotFound) for exec `exec_id` of container `id` (the exec
    /// primitives' error for an unknown exec id).
    pub fn exec_not_found(id: impl fmt::Display, exec_id: &str) -> Self {
        Self::not_found(format!("{id} exec {exec_id}"))
    }

    /// [`AlreadyExists`](Self::AlreadyExists) for an exec id of container `id` in use.
    pub fn exec_exists(id: impl fmt::Display, exec_id: &str) -> Self {
        Self::AlreadyExists {
            id: format!("{id} exec {exec_id}"),
        }
    }

    /// [`InvalidState`](Self::InvalidState) for a second `exec_start`: the process is
    /// `Stopped` once `exited`, `Running` before.
    pub fn exec_started(id: impl fmt::Display, exec_id: &str, exited: bool) -> Self {
        Self::InvalidState {
            id: id.to_string(),
            op: format!("start exec {exec_id}"),
            status: if exited {
                Status::Stopped
            } else {
                Status::Running
            },
        }
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

/// A [`DriverError`] as data, for another process: what a process that hosts containers
/// answers and its caller turns back into the same kind of error, so that callers can still
/// match on the kind (`NotRunning`, `NotFound`, ...) across a socket. [`From`] converts both
/// ways; the message stays the same. Error sources become their messages (an I/O error keeps
/// its errno).
///
/// ```
/// use execdriver_api::{DriverError, WireError};
///
/// let e = DriverError::not_found("web");
/// let json = serde_json::to_string(&WireError::from(&e)).unwrap();
/// let back = DriverError::from(serde_json::from_str::<WireError>(&json).unwrap());
/// assert!(matches!(back, DriverError::NotFound { .. }));
/// assert_eq!(back.to_string(), e.to_string());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum WireError {
    NotFound {
        id: String,
    },
    AlreadyExists {
        id: String,
    },
    InvalidId {
        id: String,
        reason: String,
    },
    InvalidSpec {
        field: String,
        reason: String,
    },
    CantHandle {
        driver: String,
        reason: String,
    },
    Unsupported {
        op: String,
        driver: String,
    },
    NotRunning {
        id: String,
        status: Status,
    },
    InvalidState {
        id: String,
        op: String,
        status: Status,
    },
    Hook {
        stage: HookStage,
        index: usize,
        source: String,
    },
    Io {
        context: String,
        errno: Option<i32>,
        message: String,
    },
    Sys {
        op: String,
        errno: i32,
    },
    UnknownDriver {
        name: String,
        available: Vec<String>,
    },
    DuplicateDriver {
        name: String,
    },
    Draining {
        driver: String,
    },
    NoDriverFits {
        reasons: Vec<String>,
    },
    InvalidConfig {
        reason: String,
    },
    InvalidOptions {
        driver: String,
        reason: String,
    },
    Internal {
        context: String,
        message: String,
    },
}

impl From<&DriverError> for WireError {
    fn from(e: &DriverError) -> Self {
        use DriverError as E;
        match e {
            E::NotFound { id } => Self::NotFound { id: id.clone() },
            E::AlreadyExists { id } => Self::AlreadyExists { id: id.clone() },
            E::InvalidId { id, reason } => Self::InvalidId {
                id: id.clone(),
                reason: (*reason).to_owned(),
            },
            E::InvalidSpec { field, reason } => Self::InvalidSpec {
                field: field.clone(),
                reason: reason.clone(),
            },
            E::CantHandle { driver, reason } => Self::CantHandle {
                driver: driver.clone(),
                reason: reason.clone(),
            },
            E::Unsupported { op, driver } => Self::Unsupported {
                op: op.clone(),
                driver: driver.clone(),
            },
            E::NotRunning { id, status } => Self::NotRunning {
                id: id.clone(),
                status: *status,
            },
            E::InvalidState { id, op, status } => Self::InvalidState {
                id: id.clone(),
                op: op.clone(),
                status: *status,
            },
            E::Hook {
                stage,
                index,
                source,
            } => Self::Hook {
                stage: *stage,
                index: *index,
                source: source.to_string(),
            },
            E::Io { context, source } => Self::Io {
                context: context.clone(),
                errno: source.raw_os_error(),
                message: source.to_string(),
            },
            E::Sys { op, errno } => Self::Sys {
                op: op.clone(),
                errno: *errno,
            },
            E::UnknownDriver { name, available } => Self::UnknownDriver {
                name: name.clone(),
                available: available.clone(),
            },
            E::DuplicateDriver { name } => Self::DuplicateDriver { name: name.clone() },
            E::Draining { driver } => Self::Draining {
                driver: driver.clone(),
            },
            E::NoDriverFits { reasons } => Self::NoDriverFits {
                reasons: reasons.clone(),
            },
            E::InvalidConfig { reason } => Self::InvalidConfig {
                reason: reason.clone(),
            },
            E::InvalidOptions { driver, reason } => Self::InvalidOptions {
                driver: driver.clone(),
                reason: reason.clone(),
            },
            E::Internal { context, message } => Self::Internal {
                context: context.clone(),
                message: message.clone(),
            },
        }
    }
}

impl From<WireError> for DriverError {
    fn from(w: WireError) -> Self {
        use WireError as W;
        match w {
            W::NotFound { id } => Self::NotFound { id },
            W::AlreadyExists { id } => Self::AlreadyExists { id },
            // The reason is a `&'static str` here: the same words, as an internal error.
            W::InvalidId { id, reason } => Self::Internal {
                context: format!("invalid container id \"{id}\""),
                message: reason,
            },
            W::InvalidSpec { field, reason } => Self::InvalidSpec { field, reason },
            W::CantHandle { driver, reason } => Self::CantHandle { driver, reason },
            W::Unsupported { op, driver } => Self::Unsupported { op, driver },
            W::NotRunning { id, status } => Self::NotRunning { id, status },
            W::InvalidState { id, op, status } => Self::InvalidState { id, op, status },
            W::Hook {
                stage,
                index,
                source,
            } => Self::Hook {
                stage,
                index,
                source: source.into(),
            },
            W::Io {
                context,
                errno,
                message,
            } => Self::Io {
                context,
                source: match errno {
                    Some(n) => std::io::Error::from_raw_os_error(n),
                    None => std::io::Error::other(message),
                },
            },
            W::Sys { op, errno } => Self::Sys { op, errno },
            W::UnknownDriver { name, available } => Self::UnknownDriver { name, available },
            W::DuplicateDriver { name } => Self::DuplicateDriver { name },
            W::Draining { driver } => Self::Draining { driver },
            W::NoDriverFits { reasons } => Self::NoDriverFits { reasons },
            W::InvalidConfig { reason } => Self::InvalidConfig { reason },
            W::InvalidOptions { driver, reason } => Self::InvalidOptions { driver, reason },
            W::Internal { context, message } => Self::Internal { context, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_message_survives_the_wire() {
        let all = vec![
            DriverError::not_found("a"),
            DriverError::AlreadyExists { id: "a".into() },
            DriverError::InvalidId {
                id: "a/b".into(),
                reason: "must not contain '/'",
            },
            DriverError::invalid_spec("process.args", "must not be empty"),
            DriverError::cant_handle("wasm", "not a module"),
            DriverError::unsupported("pause", "x"),
            DriverError::NotRunning {
                id: "a".into(),
                status: Status::Stopped,
            },
            DriverError::InvalidState {
                id: "a".into(),
                op: "pause".into(),
                status: Status::Paused,
            },
            DriverError::Hook {
                stage: HookStage::Start,
                index: 2,
                source: "no network".into(),
            },
            DriverError::io("read x", std::io::Error::from_raw_os_error(13)),
            DriverError::io("read y", std::io::Error::other("short read")),
            DriverError::sys("mount", 1),
            DriverError::UnknownDriver {
                name: "n".into(),
                available: vec!["native".into()],
            },
            DriverError::DuplicateDriver { name: "n".into() },
            DriverError::Draining {
                driver: "wasm".into(),
            },
            DriverError::NoDriverFits {
                reasons: vec!["a: b".into()],
            },
            DriverError::InvalidConfig { reason: "r".into() },
            DriverError::InvalidOptions {
                driver: "d".into(),
                reason: "r".into(),
            },
            DriverError::Internal {
                context: "c".into(),
                message: "m".into(),
            },
        ];
        for e in all {
            let json = serde_json::to_string(&WireError::from(&e)).unwrap();
            let back = DriverError::from(serde_json::from_str::<WireError>(&json).unwrap());
            assert_eq!(back.to_string(), e.to_string(), "{json}");
            if !matches!(e, DriverError::InvalidId { .. }) {
                assert_eq!(
                    std::mem::discriminant(&back),
                    std::mem::discriminant(&e),
                    "{json}"
                );
            }
            assert_eq!(back.raw_os_error(), e.raw_os_error(), "{json}");
        }
    }

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
