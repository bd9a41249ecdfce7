//! Bridging the CLI's own terminal to a container's pty.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;
use std::thread::JoinHandle;

use execdriver::Terminal;
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

/// Puts stdin in raw mode while it lives (when stdin is a terminal).
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub fn enter() -> Self {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Self { saved: None };
        }
        let Ok(saved) = tcgetattr(&stdin) else {
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = tcsetattr(&stdin, OptionalActions::Now, &raw);
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, t);
        }
    }
}

/// Gives the container's terminal the size of ours.
pub fn sync_size(term: &dyn Terminal) {
    if let Ok(ws) = tcgetwinsize(std::io::stdin())
        && ws.ws_row > 0
        && ws.ws_col > 0
    {
        let _ = term.resize(ws.ws_row, ws.ws_col);
    }
}

/// Copies our stdin to the container's terminal and its output to our stdout. Returns the
/// output thread (it ends when the container side closes); the input thread is detached.
pub fn bridge(term: Arc<dyn Terminal>) -> Option<JoinHandle<()>> {
    sync_size(&*term);
    let mut input = term.writer().ok()?;
    let mut output = term.reader().ok()?;
    std::thread::Builder::new()
        .name("execdriver-tty-in".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || input.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        })
        .ok()?;
    std::thread::Builder::new()
        .name("execdriver-tty-out".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdout = std::io::stdout();
            // EIO once the container side is closed.
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        })
        .ok()
}
