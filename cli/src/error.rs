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
