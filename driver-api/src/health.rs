//! What a driver can do on this host right now: [`Health`], one [`HealthCheck`] per
//! prerequisite (a kernel feature, cgroup delegation, the wasm engine, a runtime binary).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a failed check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The prerequisite is there.
    Ok,
    /// Containers run, but something they may ask for does not work (a cgroup controller that
    /// is not delegated, a cache that can't be written).
    Degraded,
    /// No container can run.
    Failed,
}

impl Level {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One prerequisite and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What was checked (`pidfd_open`, `cgroup memory`, `engine`).
    pub name: String,
    /// What was found.
    pub level: Level,
    /// What was seen: a version, a path, the error.
    pub detail: String,
}

/// A driver's answer to [`Driver::health`](crate::Driver::health): its checks, the worst one
/// deciding.
///
/// ```
/// use execdriver_api::{Health, Level};
///
/// let h = Health::new()
///     .with("engine", Level::Ok, "wasmtime 48")
///     .with("cache dir", Level::Degraded, "read-only");
/// assert_eq!(h.level(), Level::Degraded);
/// assert_eq!(h.to_string(), "degraded: cache dir (read-only)");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Every check, in the order the driver made them.
    pub checks: Vec<HealthCheck>,
}

impl Health {
    /// No checks yet (which is healthy).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check.
    #[must_use]
    pub fn with(
        mut self,
        name: impl Into<String>,
        level: Level,
        detail: impl Into<String>,
    ) -> Self {
        self.push(name, level, detail);
        self
    }

    /// Adds a check in place.
    pub fn push(&mut self, name: impl Into<String>, level: Level, detail: impl Into<String>) {
        self.checks.push(HealthCheck {
            name: name.into(),
            level,
            detail: detail.into(),
        });
    }

    /// A check that passed when `result` is `Ok` (its value is the detail), else at `level`
    /// with the error as the detail.
    #[must_use]
    pub fn checked<E: fmt::Display>(
        self,
        name: impl Into<String>,
        level: Level,
        result: std::result::Result<String, E>,
    ) -> Self {
        match result {
            Ok(detail) => self.with(name, Level::Ok, detail),
            Err(e) => self.with(name, level, e.to_string()),
        }
    }

    /// Adds a check that the directory `dir` can be written — or, when it does not exist yet
    /// (drivers make their directories on first use), the nearest directory above it; at
    /// `otherwise` when not. `writable` answers for one existing directory (`access(2)` with
    /// `W_OK` on Unix), so that this crate stays free of platform calls.
    pub fn push_dir(
        &mut self,
        name: impl Into<String>,
        dir: &std::path::Path,
        otherwise: Level,
        writable: impl Fn(&std::path::Path) -> bool,
    ) {
        let mut at = Some(dir);
        let (level, detail) = loop {
            match at {
                Some(d) if d.is_dir() => {
                    break if writable(d) {
                        (Level::Ok, dir.display().to_string())
                    } else {
                        (
                            otherwise,
                            format!("{}: {} is not writable", dir.display(), d.display()),
                        )
                    };
                }
                Some(d) if d.exists() => {
                    break (
                        otherwise,
                        format!("{}: {} is not a directory", dir.display(), d.display()),
                    );
                }
                Some(d) => at = d.parent().filter(|p| !p.as_os_str().is_empty()),
                None => {
                    break (
                        otherwise,
                        format!("{}: no directory above it", dir.display()),
                    );
                }
            }
        };
        self.push(name, level, detail);
    }

    /// The worst level of any check; [`Level::Ok`] without checks.
    pub fn level(&self) -> Level {
        self.checks
            .iter()
            .map(|c| c.level)
            .max()
            .unwrap_or(Level::Ok)
    }

    /// Whether no check failed or degraded.
    pub fn is_ok(&self) -> bool {
        self.level() == Level::Ok
    }

    /// The checks that did not pass.
    pub fn problems(&self) -> impl Iterator<Item = &HealthCheck> {
        self.checks.iter().filter(|c| c.level != Level::Ok)
    }
}

impl fmt::Display for Health {
    /// `ok`, or the level and every check that did not pass: `failed: pidfd_open (ENOSYS)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = self.level();
        f.write_str(level.name())?;
        let mut sep = ": ";
        for c in self.problems() {
            write!(f, "{sep}{} ({})", c.name, c.detail)?;
            sep = "; ";
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_decides() {
        assert!(Health::new().is_ok());
        assert_eq!(Health::new().to_string(), "ok");
        let h = Health::new()
            .with("a", Level::Ok, "fine")
            .checked("b", Level::Failed, Err::<String, _>("ENOSYS"))
            .checked("c", Level::Degraded, Ok::<_, String>("v1".into()))
            .with("d", Level::Degraded, "read-only");
        assert_eq!(h.level(), Level::Failed);
        assert_eq!(h.to_string(), "failed: b (ENOSYS); d (read-only)");
        assert_eq!(h.problems().count(), 2);
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["checks"][1]["level"], "failed");
    }

    #[test]
    fn a_directory_is_judged_by_the_nearest_one_that_exists() {
        let d = tempfile::tempdir().unwrap();
        let mut h = Health::new();
        let asked = std::cell::RefCell::new(Vec::new());
        h.push_dir("state", &d.path().join("a/b"), Level::Failed, |p| {
            asked.borrow_mut().push(p.to_path_buf());
            true
        });
        assert_eq!(asked.borrow().as_slice(), [d.path().to_path_buf()]);
        assert!(h.is_ok());
        h.push_dir("cache", d.path(), Level::Degraded, |_| false);
        assert_eq!(h.checks[1].level, Level::Degraded);
        assert!(
            h.checks[1].detail.ends_with("is not writable"),
            "{:?}",
            h.checks[1]
        );
        std::fs::write(d.path().join("f"), "").unwrap();
        h.push_dir("x", &d.path().join("f/under"), Level::Failed, |_| true);
        assert_eq!(h.checks[2].level, Level::Failed);
        assert!(
            h.checks[2].detail.ends_with("is not a directory"),
            "{:?}",
            h.checks[2]
        );
    }
}
