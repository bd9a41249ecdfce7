//! What the CLI remembers about each container: `<root>/cli/<id>.json` (its driver, whether a
//! hosting process holds it), `<id>.sock` (that process's socket), `<id>.exit` (its exit).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use execdriver::{ContainerId, DriverConfig, DriverError, ExitStatus};
use serde::{Deserialize, Serialize};

/// One container of the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: ContainerId,
    /// The driver configuration it was created with.
    pub config: DriverConfig,
    /// A hosting process holds it (every driver but native).
    pub hosted: bool,
    pub bundle: PathBuf,
    pub created: SystemTime,
}

/// The CLI's directory under `--root`.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> DriverError {
    DriverError::io(format!("{what} {}", p.display()), e)
}

impl Records {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("cli"),
        }
    }

    pub fn path(&self, id: &ContainerId, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    pub fn socket(&self, id: &ContainerId) -> PathBuf {
        self.path(id, "sock")
    }

    /// Saves a new record; `AlreadyExists` when there is one.
    pub fn create(&self, r: &Record) -> Result<(), DriverError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io("create", &self.dir, e))?;
        let p = self.path(&r.id, "json");
        let json = serde_json::to_vec(r).map_err(|e| DriverError::Internal {
            context: "record".into(),
            message: e.to_string(),
        })?;
        // Written whole under a temporary name, then linked into place: a reader (or a crash)
        // never sees half a record, and `link` fails if the id is taken.
        let tmp = self.temp(&r.id);
        std::fs::write(&tmp, &json).map_err(|e| io("write", &tmp, e))?;
        let linked = std::fs::hard_link(&tmp, &p);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(DriverError::AlreadyExists {
                    id: r.id.to_string(),
                })
            }
            Err(e) => Err(io("create", &p, e)),
        }
    }

    /// A private temporary name in the records folder (never listed: it starts with a dot).
    fn temp(&self, id: &ContainerId) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.dir.join(format!(
            ".{id}.{}.{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    }

    /// Where a detached exec's request for container `id` is written: a folder of its own, so
    /// that `list` never takes it for a container.
    pub fn exec_request(&self, id: &ContainerId) -> Result<PathBuf, DriverError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.dir.join("exec");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io("create", &dir, e))?;
        Ok(dir.join(format!(
            "{id}-{}-{}.json",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        )))
    }

    pub fn get(&self, id: &ContainerId) -> Result<Option<Record>, DriverError> {
        let p = self.path(id, "json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| DriverError::Internal {
                    context: format!("{}", p.display()),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &p, e)),
        }
    }

    /// Forgets a container (record, socket, exit file).
    pub fn remove(&self, id: &ContainerId) {
        for ext in ["json", "sock", "exit"] {
            let _ = std::fs::remove_file(self.path(id, ext));
        }
    }

    pub fn list(&self) -> Vec<ContainerId> {
        let Ok(d) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<ContainerId> = d
            .flatten()
            .filter_map(|e| {
                let n = e.file_name();
                let n = n.to_str()?;
                ContainerId::new(n.strip_suffix(".json")?).ok()
            })
            .collect();
        ids.sort();
        ids
    }

    pub fn set_exit(&self, id: &ContainerId, st: &ExitStatus) {
        if let Ok(json) = serde_json::to_vec(st) {
            let tmp = self.temp(id);
            if std::fs::write(&tmp, json).is_err()
                || std::fs::rename(&tmp, self.path(id, "exit")).is_err()
            {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }

    pub fn exit(&self, id: &ContainerId) -> Option<ExitStatus> {
        serde_json::from_slice(&std::fs::read(self.path(id, "exit")).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            id: ContainerId::new(id).unwrap(),
            config: DriverConfig {
                driver: "wasm".into(),
                options: serde_json::Value::Null,
            },
            hosted: true,
            bundle: "/b".into(),
            created: SystemTime::now(),
        }
    }

    #[test]
    fn list_shows_containers_only_and_records_are_written_whole_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::new(dir.path());
        let c = ContainerId::new("c1").unwrap();
        r.create(&record("c1")).unwrap();
        assert!(matches!(
            r.create(&record("c1")),
            Err(DriverError::AlreadyExists { .. })
        ));
        // A detached exec's request file is not a container.
        std::fs::write(r.exec_request(&c).unwrap(), "{}").unwrap();
        r.set_exit(&c, &ExitStatus::exited(3));
        assert_eq!(r.list(), vec![c.clone()]);
        assert_eq!(r.exit(&c), Some(ExitStatus::exited(3)));
        assert_eq!(r.get(&c).unwrap().unwrap().bundle, PathBuf::from("/b"));
        let names: Vec<String> = std::fs::read_dir(dir.path().join("cli"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
