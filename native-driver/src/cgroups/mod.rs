//! Container cgroups on cgroup v1, v2 and hybrid hosts.
//!
//! Placement follows the design: a container's cgroup lives under the **engine's own cgroup**
//! of each hierarchy (`<own>/<parent>/<id>`, parent `execdriver` by default), unless the
//! operator or the spec gives an absolute path. On a v1 or hybrid host the engine's own cgroup
//! differs per hierarchy, so each hierarchy gets its own path — the reason this is our own code
//! rather than libcgroups' v1 manager, which joins one path to every mount point.
//!
//! Directories the driver creates carry a `trusted.execdriver` mark; removal deletes the
//! container's leaf and then any now-empty marked ancestor, and never a cgroup it did not make.

pub(crate) mod fs;
pub(crate) mod layout;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use fs::{CgroupFs, RealFs};
pub(crate) use layout::Layout;

/// The v1 controllers a container gets a cgroup in (others, like net_cls or perf_event, and
/// named hierarchies are left alone).
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
];

/// Errors of cgroup operations, with the path involved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error("create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cgroup path {0:?}: {1}")]
    BadPath(String, &'static str),
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
}

impl CgroupError {
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Create { source, .. }
            | Self::Write { source, .. }
            | Self::Read { source, .. }
            | Self::Remove { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, CgroupError>;

/// One directory of a container's cgroup: one per v1 hierarchy, or the single v2 one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CgroupDir {
    /// The hierarchy's name as mounted inside containers ("memory", "cpu,cpuacct"); empty on v2.
    pub name: String,
    /// The controllers of this hierarchy.
    pub controllers: Vec<String>,
    /// The absolute path of the container's cgroup.
    pub path: PathBuf,
    /// Where to stop removing empty ancestors (the engine's own cgroup, or the hierarchy root).
    pub stop: PathBuf,
}

/// A container's cgroup across hierarchies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cgroup {
    pub v2: bool,
    pub dirs: Vec<CgroupDir>,
}

/// Where a container's cgroup goes, relative to each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Relative to the engine's own cgroup of each hierarchy.
    UnderOwn(PathBuf),
    /// Relative to each hierarchy's root (an absolute path given by the operator or spec).
    FromRoot(PathBuf),
}

impl Placement {
    /// The placement for container `id`: `spec_path` (`linux.cgroupsPath`) when given — absolute
    /// from the root, relative under `<own>/<parent>` — else `<own>/<parent>/<id>`. A `parent`
    /// starting with `/` is taken from the hierarchy root.
    pub fn new(parent: &str, spec_path: Option<&Path>, id: &str) -> Result<Self> {
        check_rel(parent.trim_start_matches('/'), "cgroup parent")?;
        let (base_from_root, base) = (
            parent.starts_with('/'),
            PathBuf::from(parent.trim_start_matches('/')),
        );
        match spec_path.filter(|p| !p.as_os_str().is_empty()) {
            Some(p) if p.is_absolute() => {
                let rel = p.strip_prefix("/").unwrap_or(p);
                check_rel(&rel.to_string_lossy(), "linux.cgroupsPath")?;
                if rel.as_os_str().is_empty() {
                    return Err(CgroupError::BadPath(
                        p.display().to_string(),
                        "is the hierarchy root",
                    ));
                }
                Ok(Self::FromRoot(rel.to_path_buf()))
            }
            Some(p) => {
                check_rel(&p.to_string_lossy(), "linux.cgroupsPath")?;
                Ok(if base_from_root {
                    Self::FromRoot(base.join(p))
                } else {
                    Self::UnderOwn(base.join(p))
                })
            }
            None => Ok(if base_from_root {
                Self::FromRoot(base.join(id))
            } else {
                Self::UnderOwn(base.join(id))
            }),
        }
    }
}

fn check_rel(p: &str, what: &'static str) -> Result<()> {
    if p.split('/').any(|c| c == "..") || p.contains('\0') {
        return Err(CgroupError::BadPath(p.to_owned(), what));
    }
    Ok(())
}

impl Cgroup {
    /// The directories a container with `placement` gets, without creating anything.
    pub fn plan(layout: &Layout, placement: &Placement) -> Result<Self> {
        let join = |mount: &Path, own: &Path| -> (PathBuf, PathBuf) {
            match placement {
                Placement::UnderOwn(rel) => (mount.join(own).join(rel), mount.join(own)),
                Placement::FromRoot(rel) => (mount.join(rel), mount.to_path_buf()),
            }
        };
        match layout {
            Layout::V2 { mount, own } => {
                let (path, stop) = join(mount, own);
                Ok(Self {
                    v2: true,
                    dirs: vec![CgroupDir {
                        name: String::new(),
                        controllers: Vec::new(),
                        path,
                        stop,
                    }],
                })
            }
            Layout::V1 { hierarchies, .. } => {
                let dirs: Vec<_> = hierarchies
                    .iter()
                    .filter(|h| {
                        h.controllers
                            .iter()
                            .any(|c| V1_CONTROLLERS.contains(&c.as_str()))
                    })
                    .map(|h| {
                        let (path, stop) = join(&h.mount, &h.own);
                        CgroupDir {
                            name: h.name.clone(),
                            controllers: h.controllers.clone(),
                            path,
                            stop,
                        }
                    })
                    .collect();
                if dirs.is_empty() {
                    return Err(CgroupError::NoHierarchy);
                }
                Ok(Self { v2: false, dirs })
            }
        }
    }

    /// The directory of the hierarchy that has `controller` (v2: the one directory).
    pub fn dir_of(&self, controller: &str) -> Option<&CgroupDir> {
        if self.v2 {
            self.dirs.first()
        } else {
            self.dirs
                .iter()
                .find(|d| d.controllers.iter().any(|c| c == controller))
        }
    }

    /// `(name, path)` of every directory, for `cgroup` mounts inside the container.
    pub fn mount_dirs(&self) -> Vec<(String, PathBuf)> {
        self.dirs
            .iter()
            .map(|d| (d.name.clone(), d.path.clone()))
            .collect()
    }

    /// Creates every directory (and missing marked ancestors). A leaf that already exists is an
    /// error: another container (or someone else) owns it. On failure, what was created is
    /// removed again.
    pub fn create(&self, fs: &dyn CgroupFs) -> Result<()> {
        for (i, d) in self.dirs.iter().enumerate() {
            if let Err(e) = create_dir(fs, d) {
                for done in &self.dirs[..i] {
                    let _ = remove_dir(fs, done);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Moves `pid` into every directory.
    pub fn add(&self, fs: &dyn CgroupFs, pid: i32) -> Result<()> {
        for d in &self.dirs {
            let path = d.path.join("cgroup.procs");
            fs.write(&path, &pid.to_string())
                .map_err(|source| CgroupError::Write { path, source })?;
        }
        Ok(())
    }

    /// The directory whose `cgroup.procs` lists the container's processes most reliably.
    fn procs_dir(&self) -> Option<&CgroupDir> {
        ["pids", "freezer", "memory", "devices"]
            .iter()
            .find_map(|c| self.dir_of(c))
            .or_else(|| self.dirs.first())
    }

    /// Every pid in the container's cgroup, nested cgroups included.
    pub fn procs(&self, fs: &dyn CgroupFs) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if let Some(d) = self.procs_dir() {
            collect_procs(fs, &d.path, &mut out, 0)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// SIGKILLs every process and waits (up to 10 s) until the cgroup is empty.
    pub fn kill_all(&self, fs: &dyn CgroupFs) -> Result<()> {
        let Some(dir) = self.procs_dir().map(|d| &d.path) else {
            return Ok(());
        };
        if !fs.exists(dir) {
            return Ok(());
        }
        let kill_file = dir.join("cgroup.kill");
        let use_kill_file = self.v2 && fs.exists(&kill_file);
        for round in 0..1000 {
            let pids = self.procs(fs)?;
            if pids.is_empty() {
                return Ok(());
            }
            if use_kill_file {
                let _ = fs.write(&kill_file, "1");
            }
            if round % 10 == 0 || !use_kill_file {
                for pid in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(CgroupError::Remove {
            path: dir.clone(),
            source: io::Error::other("processes still alive 10s after SIGKILL"),
        })
    }

    /// Removes every directory and the marked ancestors that became empty. Missing directories
    /// are fine (idempotent).
    pub fn remove(&self, fs: &dyn CgroupFs) -> Result<()> {
        let mut first = None;
        for d in &self.dirs {
            if let Err(e) = remove_dir(fs, d) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn collect_procs(fs: &dyn CgroupFs, dir: &Path, out: &mut Vec<u32>, depth: usize) -> Result<()> {
    let path = dir.join("cgroup.procs");
    match fs.read(&path) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { path, source }),
    }
    if depth < 16 {
        for sub in fs.subdirs(dir).unwrap_or_default() {
            collect_procs(fs, &sub, out, depth + 1)?;
        }
    }
    Ok(())
}

fn create_dir(fs: &dyn CgroupFs, d: &CgroupDir) -> Result<()> {
    let rel = d.path.strip_prefix(&d.stop).map_err(|_| {
        CgroupError::BadPath(d.path.display().to_string(), "is not below its hierarchy")
    })?;
    // A concurrent removal of a shared, now-empty ancestor can make a mkdir below it fail with
    // ENOENT; start over then.
    'retry: for _ in 0..20 {
        let mut cur = d.stop.clone();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let leaf = i + 1 == comps.len();
            match fs.mkdir(&cur) {
                Ok(()) => {
                    let _ = fs.mark(&cur);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !leaf => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'retry,
                Err(source) => return Err(CgroupError::Create { path: cur, source }),
            }
            // Fill every level, not only the ones we made: a concurrent creator of a shared
            // parent may not have filled it yet.
            if d.controllers.iter().any(|c| c == "cpuset") {
                match copy_cpuset(fs, &cur) {
                    Ok(()) => {}
                    Err(CgroupError::Write { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        continue 'retry;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        return Ok(());
    }
    Err(CgroupError::Create {
        path: d.path.clone(),
        source: io::Error::other("parent cgroup kept disappearing"),
    })
}

/// A new v1 cpuset cgroup starts with no cpus or memory nodes; give it its parent's.
fn copy_cpuset(fs: &dyn CgroupFs, dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let src = parent.join(file);
        let dst = dir.join(file);
        let Ok(value) = fs.read(&src) else { continue };
        let current = fs.read(&dst).unwrap_or_default();
        if current.trim().is_empty() && !value.trim().is_empty() {
            fs.write(&dst, value.trim())
                .map_err(|source| CgroupError::Write { path: dst, source })?;
        }
    }
    Ok(())
}

fn remove_dir(fs: &dyn CgroupFs, d: &CgroupDir) -> Result<()> {
    // The leaf: retry while the last processes are being reaped.
    let mut tries = 0;
    loop {
        match fs.rmdir(&d.path) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: d.path.clone(),
                    source,
                });
            }
        }
    }
    // Ancestors we made, while empty; never the engine's own cgroup or above.
    let mut cur = d.path.parent();
    while let Some(dir) = cur {
        if dir == d.stop || !dir.starts_with(&d.stop) || !fs.is_marked(dir) {
            break;
        }
        if fs.rmdir(dir).is_err() {
            break;
        }
        cur = dir.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fs::fake::FakeFs;
    use super::layout::V1Hierarchy;
    use super::*;

    fn v1(root: &Path) -> Layout {
        let h = |name: &str, own: &str| V1Hierarchy {
            mount: root.join(name),
            name: name.to_owned(),
            controllers: name.split(',').map(str::to_owned).collect(),
            own: PathBuf::from(own),
        };
        for n in ["memory", "pids", "cpuset"] {
            std::fs::create_dir_all(root.join(n).join("engine")).unwrap();
        }
        std::fs::write(root.join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(root.join("cpuset/cpuset.mems"), "0\n").unwrap();
        Layout::V1 {
            hierarchies: vec![h("memory", "engine"), h("pids", ""), h("cpuset", "")],
            unified: None,
        }
    }

    #[test]
    fn placement_rules() {
        let id = "c1";
        assert_eq!(
            Placement::new("execdriver", None, id).unwrap(),
            Placement::UnderOwn("execdriver/c1".into())
        );
        assert_eq!(
            Placement::new("/ops/x", None, id).unwrap(),
            Placement::FromRoot("ops/x/c1".into())
        );
        assert_eq!(
            Placement::new("execdriver", Some(Path::new("/abs/p")), id).unwrap(),
            Placement::FromRoot("abs/p".into())
        );
        assert_eq!(
            Placement::new("execdriver", Some(Path::new("rel/p")), id).unwrap(),
            Placement::UnderOwn("execdriver/rel/p".into())
        );
        assert!(Placement::new("execdriver", Some(Path::new("../up")), id).is_err());
        assert!(Placement::new("a/../b", None, id).is_err());
        assert!(Placement::new("execdriver", Some(Path::new("/")), id).is_err());
    }

    #[test]
    fn v1_dirs_sit_under_each_hierarchys_own_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let cg = Cgroup::plan(&layout, &Placement::new("execdriver", None, "c1").unwrap()).unwrap();
        let paths: Vec<_> = cg
            .dirs
            .iter()
            .map(|d| d.path.strip_prefix(tmp.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("memory/engine/execdriver/c1"),
                PathBuf::from("pids/execdriver/c1"),
                PathBuf::from("cpuset/execdriver/c1")
            ]
        );
        let fs = FakeFs::default();
        cg.create(&fs).unwrap();
        assert!(tmp.path().join("memory/engine/execdriver/c1").is_dir());
        // cpuset values are copied down to every new level.
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("cpuset/execdriver/c1/cpuset.cpus")).unwrap(),
            "0-1"
        );
        // Creating the same leaf twice is refused.
        assert!(matches!(cg.create(&fs), Err(CgroupError::Create { .. })));
        cg.add(&fs, 42).unwrap();
        assert_eq!(cg.procs(&fs).unwrap(), [42]);
        std::fs::write(tmp.path().join("pids/execdriver/c1/cgroup.procs"), "").unwrap();
        std::fs::write(
            tmp.path().join("memory/engine/execdriver/c1/cgroup.procs"),
            "",
        )
        .unwrap();
        std::fs::write(tmp.path().join("cpuset/execdriver/c1/cgroup.procs"), "").unwrap();
        cg.remove(&fs).unwrap();
        // The marked parent went too, the engine's own cgroup stayed.
        assert!(!tmp.path().join("memory/engine/execdriver").exists());
        assert!(tmp.path().join("memory/engine").exists());
        cg.remove(&fs).unwrap();
    }

    #[test]
    fn shared_parent_stays_while_in_use_and_unmarked_parents_are_never_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        let a = Cgroup::plan(&layout, &Placement::new("execdriver", None, "a").unwrap()).unwrap();
        let b = Cgroup::plan(&layout, &Placement::new("execdriver", None, "b").unwrap()).unwrap();
        a.create(&fs).unwrap();
        b.create(&fs).unwrap();
        a.remove(&fs).unwrap();
        assert!(tmp.path().join("pids/execdriver/b").exists());
        b.remove(&fs).unwrap();
        assert!(!tmp.path().join("pids/execdriver").exists());

        // An operator-made parent (no mark) survives.
        std::fs::create_dir_all(tmp.path().join("pids/ops")).unwrap();
        let c = Cgroup::plan(&layout, &Placement::new("ops", None, "c").unwrap()).unwrap();
        c.create(&fs).unwrap();
        c.remove(&fs).unwrap();
        assert!(tmp.path().join("pids/ops").exists());
        assert!(!tmp.path().join("pids/ops/c").exists());
    }

    #[test]
    fn cpuset_levels_made_by_someone_else_are_filled_too() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        // Another container created the shared parent but has not filled it yet.
        std::fs::create_dir(tmp.path().join("cpuset/execdriver")).unwrap();
        std::fs::write(tmp.path().join("cpuset/execdriver/cpuset.cpus"), "").unwrap();
        let cg = Cgroup::plan(&layout, &Placement::new("execdriver", None, "c").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        for dir in ["cpuset/execdriver", "cpuset/execdriver/c"] {
            let cpus = std::fs::read_to_string(tmp.path().join(dir).join("cpuset.cpus")).unwrap();
            assert_eq!(cpus, "0-1", "{dir}");
        }
    }

    #[test]
    fn v2_has_one_dir() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("user.slice/engine")).unwrap();
        let layout = Layout::V2 {
            mount: tmp.path().to_owned(),
            own: PathBuf::from("user.slice/engine"),
        };
        let cg = Cgroup::plan(&layout, &Placement::new("execdriver", None, "x").unwrap()).unwrap();
        assert!(cg.v2);
        assert_eq!(
            cg.dirs[0].path,
            tmp.path().join("user.slice/engine/execdriver/x")
        );
        assert_eq!(cg.mount_dirs(), [(String::new(), cg.dirs[0].path.clone())]);
        let fs = FakeFs::default();
        cg.create(&fs).unwrap();
        cg.remove(&fs).unwrap();
        assert!(!tmp.path().join("user.slice/engine/execdriver").exists());
    }
}
