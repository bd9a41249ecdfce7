//! Signals, by Linux number, parsed from names or numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DriverError;

/// A signal to deliver to a container, with Linux numbering.
///
/// Platform-neutral on purpose: a driver that is not process based (wasm) maps the signals it
/// understands and refuses the rest with [`DriverError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Signal(i32);

const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The highest real-time signal number on Linux.
const SIGRTMAX: i32 = 64;

impl Signal {
    /// SIGHUP.
    pub const HUP: Self = Self(1);
    /// SIGINT.
    pub const INT: Self = Self(2);
    /// SIGQUIT.
    pub const QUIT: Self = Self(3);
    /// SIGKILL.
    pub const KILL: Self = Self(9);
    /// SIGUSR1.
    pub const USR1: Self = Self(10);
    /// SIGUSR2.
    pub const USR2: Self = Self(12);
    /// SIGTERM.
    pub const TERM: Self = Self(15);
    /// SIGCONT.
    pub const CONT: Self = Self(18);
    /// SIGSTOP.
    pub const STOP: Self = Self(19);

    /// A signal from its number.
    ///
    /// # Errors
    /// [`DriverError::InvalidSpec`] for numbers outside `1..=64`.
    pub fn from_number(n: i32) -> Result<Self, DriverError> {
        if (1..=SIGRTMAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(DriverError::invalid_spec(
                "signal",
                format!("{n} is not a signal number (1..=64)"),
            ))
        }
    }

    /// The signal number.
    pub const fn number(self) -> i32 {
        self.0
    }

    /// The conventional name (`SIGTERM`), or `SIG<N>` for real-time signals.
    pub fn name(self) -> String {
        NAMES
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| format!("SIG{name}"))
            .unwrap_or_else(|| format!("SIG{}", self.0))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Signal {
    type Err = DriverError;

    /// Parses `9`, `KILL`, `SIGKILL`, `sigkill`, `RTMIN+3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Self::from_number(n);
        }
        let upper = t.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, n)) = NAMES.iter().find(|(name, _)| *name == bare) {
            return Ok(Self(*n));
        }
        if let Some(rest) = bare.strip_prefix("RTMIN") {
            let off = if rest.is_empty() {
                Some(0)
            } else {
                rest.strip_prefix('+').and_then(|r| r.parse::<i32>().ok())
            };
            if let Some(off) = off.filter(|o| (0..=30).contains(o)) {
                return Ok(Self(34 + off));
            }
        }
        Err(DriverError::invalid_spec(
            "signal",
            format!("unknown signal {s:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        for (s, n) in [
            ("9", 9),
            ("KILL", 9),
            ("SIGKILL", 9),
            ("sigterm", 15),
            ("TERM", 15),
            ("hup", 1),
            ("RTMIN", 34),
            ("SIGRTMIN+2", 36),
            ("64", 64),
        ] {
            assert_eq!(s.parse::<Signal>().unwrap().number(), n, "{s}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for s in ["0", "65", "-1", "FOO", "SIG", "", "RTMIN+99", "9x"] {
            let e = s.parse::<Signal>().unwrap_err().to_string();
            assert!(e.starts_with("invalid spec: signal:"), "{s}: {e}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(Signal::KILL.to_string(), "SIGKILL");
        assert_eq!(Signal::from_number(40).unwrap().to_string(), "SIG40");
    }
}
