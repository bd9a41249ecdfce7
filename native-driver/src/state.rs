//! Container state on disk: `<root>/<id>/state.json`, so that any process can find a
//! container, and a lock held by the engine process that runs it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use execdriver_api::{ContainerId, DriverError};
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;

/// The format version of `state.json`.
pub(crate) const STATE_VERSION: u32 = 1;

/// What is known about a container, on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    pub id: ContainerId,
    /// The init's pid in the engine's pid namespace.
    pub pid: i32,
    /// The init's start time (clock ticks after boot) — guards against pid reuse.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: SystemTime,
    /// The user's program has been exec'd.
    pub started: bool,
    pub cgroup: Cgroup,
    /// The engine process running the container.
    pub owner: u32,
    /// The container has a network namespace of its own (network stats are meaningful).
    pub netns: bool,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The container's `linux.seccomp`, applied to exec'd processes too.
    #[serde(default)]
    pub seccomp: Option<execdriver_api::oci_spec::runtime::LinuxSeccomp>,
    /// The container's OCI hooks, for `start` and `delete` from another process.
    #[serde(default)]
    pub hooks: Option<execdriver_api::oci_spec::runtime::Hooks>,
    /// The container has no mount namespace of its own: the engine bound `rootfs` onto itself
    /// in the runtime's mount namespace (the container's mounts sit below it), and teardown
    /// detaches it.
    #[serde(default)]
    pub rootfs_bound: bool,
}

/// The state directory tree.
#[derive(Debug, Clone)]
pub(crate) struct StateStore {
    root: PathBuf,
}

/// Holds a container's state directory exclusively (an flock on the directory) while its
/// engine runs it.
#[derive(Debug)]
pub(crate) struct DirLock {
    _fd: OwnedFd,
}

impl StateStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn dir(&self, id: &ContainerId) -> PathBuf {
        self.root.join(id.as_str())
    }

    fn io(&self, what: &str, path: &Path, e: io::Error) -> DriverError {
        DriverError::io(format!("state {what} {}", path.display()), e)
    }

    /// Creates `<root>/<id>` (the root too, mode 0700) and locks it.
    ///
    /// # Errors
    /// `AlreadyExists` when the directory exists.
    pub fn create(&self, id: &ContainerId) -> Result<DirLock, DriverError> {
        let dir = self.dir(id);
        let mut builder = fs::DirBuilder::new();
        builder.mode(0o700);
        match builder.create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(DriverError::AlreadyExists { id: id.to_string() });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                builder
                    .recursive(true)
                    .create(&self.root)
                    .map_err(|e| self.io("create root", &self.root, e))?;
                builder.recursive(false);
                match builder.create(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(DriverError::AlreadyExists { id: id.to_string() });
                    }
                    Err(e) => return Err(self.io("create", &dir, e)),
                }
            }
            Err(e) => return Err(self.io("create", &dir, e)),
        }
        match lock(&dir) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(DriverError::AlreadyExists { id: id.to_string() }),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(self.io("lock", &dir, e))
            }
        }
    }

    /// Whether some engine holds the container's lock (it is being created or run).
    pub fn is_locked(&self, id: &ContainerId) -> bool {
        matches!(lock(&self.dir(id)), Ok(None))
    }

    /// Writes `state.json` atomically.
    pub fn write(&self, state: &State) -> Result<(), DriverError> {
        let dir = self.dir(&state.id);
        let tmp = dir.join("state.json.tmp");
        let path = dir.join("state.json");
        let json = serde_json::to_vec(state).map_err(|e| DriverError::Internal {
            context: format!("container {}: encode state", state.id),
            message: e.to_string(),
        })?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io("write", &tmp, e))?;
        f.write_all(&json).map_err(|e| self.io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| self.io("rename", &path, e))
    }

    /// Reads a container's state: `Ok(None)` when there is no such container, `Err` for a state
    /// directory whose `state.json` is missing (being created) or unreadable.
    pub fn read(&self, id: &ContainerId) -> Result<Option<State>, ReadError> {
        let path = self.dir(id).join("state.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| ReadError::Corrupt(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.dir(id).exists() {
                    Err(ReadError::Incomplete)
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(ReadError::Io(path, e)),
        }
    }

    /// Removes a container's state directory; a missing one is fine.
    pub fn remove(&self, id: &ContainerId) -> Result<(), DriverError> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove", &dir, e)),
        }
    }

    /// The ids with a state directory.
    pub fn list(&self) -> Result<Vec<ContainerId>, DriverError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("list", &self.root, e)),
        };
        let mut ids: Vec<ContainerId> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| ContainerId::new(n).ok())
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Why a state could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The directory exists without `state.json`: being created, or left by a crash.
    Incomplete,
    Corrupt(String),
    Io(PathBuf, io::Error),
}

/// An flock on `dir`: `Ok(None)` when someone else holds it.
fn lock(dir: &Path) -> io::Result<Option<DirLock>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let fd = OwnedFd::from(f);
    match crate::sys::flock_exclusive_nonblock(fd.as_raw_fd()) {
        Ok(()) => Ok(Some(DirLock { _fd: fd })),
        Err(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &ContainerId) -> State {
        State {
            version: STATE_VERSION,
            id: id.clone(),
            pid: 1,
            start_time: 2,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: SystemTime::now(),
            started: false,
            cgroup: Cgroup {
                v2: true,
                dirs: vec![],
            },
            owner: 3,
            netns: false,
            annotations: BTreeMap::new(),
            seccomp: None,
            hooks: None,
            rootfs_bound: false,
        }
    }

    #[test]
    fn create_write_read_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path().join("deep/root"));
        let id = ContainerId::new("c1").unwrap();
        assert!(store.read(&id).unwrap().is_none());
        let lock = store.create(&id).unwrap();
        assert!(matches!(store.read(&id), Err(ReadError::Incomplete)));
        assert!(matches!(
            store.create(&id),
            Err(DriverError::AlreadyExists { .. })
        ));
        assert!(store.is_locked(&id));
        store.write(&state(&id)).unwrap();
        assert_eq!(store.read(&id).unwrap().unwrap().pid, 1);
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&id));
        drop(lock);
        assert!(!store.is_locked(&id));
        store.remove(&id).unwrap();
        store.remove(&id).unwrap();
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn corrupt_state_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path().to_owned());
        let id = ContainerId::new("c").unwrap();
        let _l = store.create(&id).unwrap();
        fs::write(store.dir(&id).join("state.json"), "{not json").unwrap();
        assert!(matches!(store.read(&id), Err(ReadError::Corrupt(_))));
    }
}
