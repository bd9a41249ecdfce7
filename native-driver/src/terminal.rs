//! The engine's side of a container's pty: the master the child handed over.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use execdriver_api::{DriverError, Result, Terminal};

/// The pty master of a container process.
#[derive(Debug)]
pub(crate) struct Pty {
    master: Mutex<Option<OwnedFd>>,
}

impl Pty {
    pub fn new(master: OwnedFd) -> Self {
        Self {
            master: Mutex::new(Some(master)),
        }
    }

    /// The master fd itself, leaving the handle closed (to pass it on, e.g. to a console
    /// socket).
    pub fn take(&self) -> Option<OwnedFd> {
        self.master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn dup(&self) -> Result<File> {
        let guard = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        let master = guard.as_ref().ok_or_else(|| DriverError::Internal {
            context: "terminal".into(),
            message: "closed".into(),
        })?;
        master
            .try_clone()
            .map(File::from)
            .map_err(|e| DriverError::io("duplicate the pty master", e))
    }
}

impl Terminal for Pty {
    fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let guard = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        let master = guard.as_ref().ok_or_else(|| DriverError::Internal {
            context: "terminal".into(),
            message: "closed".into(),
        })?;
        let mut ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        crate::sys::ioctl_ptr(master.as_raw_fd(), libc::TIOCSWINSZ, &raw mut ws)
            .map_err(|e| DriverError::sys("resize the terminal (TIOCSWINSZ)", e))
    }

    fn reader(&self) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.dup()?))
    }

    fn writer(&self) -> Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.dup()?))
    }

    fn close(&self) -> Result<()> {
        self.master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok(())
    }
}
