//! The CLI's errors: a driver's, or a message that already says everything (from a hosting
//! process, or about the command line itself).

use execdriver::DriverError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Reported by a hosting process; the text names the container.
    #[error("{0}")]
    Remote(String),
    /// A bad flag or flag combination; the text names the flag.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::Usage(msg.into())
    }

    /// The message as the CLI prints it: with runc's wording where runc's callers parse it
    /// (containerd's shim treats only "container not running", "does not exist" and "no such
    /// process" as "already gone"; anything else is retried forever).
    pub fn report(&self) -> String {
        match self {
            Self::Driver(DriverError::NotRunning { .. }) => {
                format!("container not running: {self}")
            }
            Self::Driver(DriverError::NotFound { id }) => {
                format!("container {id} does not exist: {self}")
            }
            _ => self.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A JSON error with the path to the bad value in front (`memory.limit: invalid type ...`),
/// or without one when the document itself is wrong.
pub fn json_path(e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path == "." || path == "?" {
        e.into_inner().to_string()
    } else {
        format!("{path}: {}", e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use execdriver::Status;

    use super::*;

    #[test]
    fn gone_containers_are_reported_in_runcs_words() {
        let stopped = Error::Driver(DriverError::NotRunning {
            id: "a".into(),
            status: Status::Stopped,
        });
        assert!(stopped.report().starts_with("container not running"));
        let missing = Error::Driver(DriverError::not_found("a"));
        assert!(missing.report().contains("container a does not exist"));
        assert_eq!(Error::usage("bad flag").report(), "bad flag");
    }
}
