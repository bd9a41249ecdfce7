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
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p);
        let mut f = match f {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(DriverError::AlreadyExists {
                    id: r.id.to_string(),
                });
            }
            Err(e) => return Err(io("create", &p, e)),
        };
        let json = serde_json::to_vec(r).map_err(|e| DriverError::Internal {
            context: "record".into(),
            message: e.to_string(),
        })?;
        std::io::Write::write_all(&mut f, &json).map_err(|e| io("write", &p, e))
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
            let _ = std::fs::write(self.path(id, "exit"), json);
        }
    }

    pub fn exit(&self, id: &ContainerId) -> Option<ExitStatus> {
        serde_json::from_slice(&std::fs::read(self.path(id, "exit")).ok()?).ok()
    }
}
