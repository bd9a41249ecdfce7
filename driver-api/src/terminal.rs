//! The engine's side of a container's pseudo-terminal.

use std::io::{Read, Write};

use crate::error::Result;

/// A container process's controlling terminal, seen from the engine (the pty master).
///
/// Drivers that support `process.terminal = true` hand one to every hook context of that
/// process ([`HookContext::terminal`](crate::HookContext::terminal)).
pub trait Terminal: Send + Sync {
    /// Sets the window size the container sees (`TIOCSWINSZ`; the process gets `SIGWINCH`).
    ///
    /// # Errors
    /// The driver's error when the terminal is closed or the ioctl fails.
    fn resize(&self, rows: u16, cols: u16) -> Result<()>;

    /// A reader of what the container writes to its terminal.
    ///
    /// # Errors
    /// When the master can't be duplicated or the terminal is closed.
    fn reader(&self) -> Result<Box<dyn Read + Send>>;

    /// A writer of the container's terminal input.
    ///
    /// # Errors
    /// When the master can't be duplicated or the terminal is closed.
    fn writer(&self) -> Result<Box<dyn Write + Send>>;

    /// Closes the engine's side; the container sees a hangup once every reader and writer is
    /// dropped too.
    ///
    /// # Errors
    /// When closing fails.
    fn close(&self) -> Result<()>;
}
