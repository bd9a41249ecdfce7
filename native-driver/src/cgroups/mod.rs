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
//! A live driver keeps the marked ancestors (the shared parent) instead, so that the next
//! container does not create them again, and removes them when it is dropped.

pub(crate) mod devices_bpf;
pub(crate) mod fs;
pub(crate) mod layout;
pub(crate) mod resources;
pub(crate) mod stats;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use execdriver_api::DriverError;
use execdriver_api::oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use resources::Write;

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
    /// The leaf existed before the container was created (a shared or pre-created
    /// `cgroupsPath`, as runc allows): it is joined, never emptied by force, and removed only
    /// when nothing else is left in it.
    #[serde(default)]
    pub joined: bool,
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
                        joined: false,
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
                            joined: false,
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

    /// Creates every directory (and missing marked ancestors). A leaf that already exists is
    /// joined, as runc does (another container shares it, or the operator made it): see
    /// [`create_for`](Self::create_for). On failure, what was created is removed again.
    pub fn create(&mut self, fs: &dyn CgroupFs) -> Result<()> {
        let v2 = self.v2;
        for i in 0..self.dirs.len() {
            match create_dir(fs, &self.dirs[i], v2) {
                Ok(joined) => self.dirs[i].joined = joined,
                Err(e) => {
                    remove_created(fs, &self.dirs[..i]);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Marks the joined leaves shared, so that no container's teardown empties them by force
    /// (the first container's does not know about the second).
    pub fn share_joined(&self, fs: &dyn CgroupFs) {
        for d in self.dirs.iter().filter(|d| d.joined) {
            if let Err(e) = fs.mark_shared(&d.path) {
                tracing::warn!(path = %d.path.display(), err = %e, "can't mark a shared cgroup");
            }
        }
    }

    /// [`create`](Self::create) for container `id`, with runc's checks of a cgroup that was
    /// there before it: a frozen one is refused (and left as it was found), processes already
    /// in it are warned about, and joined leaves are marked shared.
    ///
    /// # Errors
    /// `InvalidSpec` for `linux.cgroupsPath` when frozen; `Sys` when a directory can't be made.
    pub fn create_for(
        &mut self,
        fs: &dyn CgroupFs,
        id: &execdriver_api::ContainerId,
    ) -> std::result::Result<(), DriverError> {
        self.create(fs)
            .map_err(|e| crate::driver::cgroup_error(id, e))?;
        if !self.dirs.iter().any(|d| d.joined) {
            return Ok(());
        }
        match self.check_joined(fs) {
            Err(msg) => {
                remove_created(fs, &self.dirs);
                return Err(DriverError::invalid_spec("linux.cgroupsPath", msg));
            }
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                id = %id,
                "container's cgroup is not empty: {n} process(es) found"
            ),
        }
        self.share_joined(fs);
        Ok(())
    }

    /// What a joined cgroup holds before the container enters it, as runc checks it: `Err`
    /// with runc's words when it is frozen (the container would never run); else the number
    /// of processes already in it (runc warns about them).
    pub fn check_joined(&self, fs: &dyn CgroupFs) -> std::result::Result<usize, String> {
        if self.freezer_dir().is_some_and(|d| d.joined) {
            let frozen = self.is_frozen(fs)
                || (self.v2
                    && self.dirs.first().is_some_and(|d| {
                        fs.read(&d.path.join("cgroup.freeze"))
                            .is_ok_and(|t| t.trim() == "1")
                    }));
            if frozen {
                return Err("container's cgroup unexpectedly frozen".to_owned());
            }
        }
        match self.procs_dir() {
            Some(d) if d.joined => {
                let mut pids = Vec::new();
                let _ = collect_procs(fs, &d.path, &mut pids, 0);
                Ok(pids.len())
            }
            _ => Ok(0),
        }
    }

    /// Whether another container (or someone else) uses this cgroup too: it was joined, or a
    /// later container joined it.
    pub fn is_shared(&self, fs: &dyn CgroupFs) -> bool {
        self.dirs.iter().any(|d| d.joined || fs.is_shared(&d.path))
    }

    /// Ends what is left of a container whose init is gone: [`kill_all`](Self::kill_all) for a
    /// cgroup of its own; for a shared one nothing — the other processes in it, and whether it
    /// is frozen, are not the container's (another container sharing it may be paused).
    pub fn end(&self, fs: &dyn CgroupFs) -> Result<()> {
        self.end_with(fs, false)
    }

    /// [`end`](Self::end) right after the init was sent SIGKILL (terminate): a shared cgroup
    /// that is frozen is thawed too, so that the kill takes effect (with a pid namespace of its
    /// own the kernel then ends the rest). That thaws whoever else is in it: a shared cgroup
    /// has one freezer.
    pub fn end_killed(&self, fs: &dyn CgroupFs) -> Result<()> {
        self.end_with(fs, true)
    }

    fn end_with(&self, fs: &dyn CgroupFs, thaw_shared: bool) -> Result<()> {
        // The usual case at teardown, and the cheap one to ask first: nothing left.
        match self.procs(fs) {
            Ok(pids) if pids.is_empty() => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
                return Ok(());
            }
            _ => {}
        }
        if !self.is_shared(fs) {
            return self.kill_all(fs);
        }
        if thaw_shared && self.is_frozen(fs) {
            let _ = self.freeze(fs, false);
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

    /// Moves `pid` into every directory, or, for the hierarchies `subs` names, into an existing
    /// cgroup below the container's (runc's `exec --cgroup`): `(controllers, path)`, where no
    /// controllers means every hierarchy. Errors name `field`.
    pub fn add_to_sub(
        &self,
        fs: &dyn CgroupFs,
        pid: i32,
        subs: &[(Vec<String>, PathBuf)],
        field: &str,
    ) -> std::result::Result<(), DriverError> {
        for (controllers, _) in subs {
            if self.v2 && !controllers.is_empty() {
                return Err(DriverError::invalid_spec(
                    field,
                    "cgroup v2 has one hierarchy: give the sub-cgroup without controllers",
                ));
            }
            for c in controllers {
                if self.dir_of(c).is_none() {
                    return Err(DriverError::invalid_spec(
                        field,
                        format!("no cgroup hierarchy of the container has the controller {c:?}"),
                    ));
                }
            }
        }
        for d in &self.dirs {
            let sub = subs
                .iter()
                .rev()
                .find(|(cs, _)| cs.is_empty() || cs.iter().any(|c| d.controllers.contains(c)))
                .map(|(_, p)| p);
            let dir = match sub {
                Some(p) => {
                    if p.as_os_str().is_empty()
                        || !p
                            .components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)))
                    {
                        return Err(DriverError::invalid_spec(
                            field,
                            format!(
                                "{}: not a relative path below the container's cgroup",
                                p.display()
                            ),
                        ));
                    }
                    let dir = d.path.join(p);
                    if !fs.exists(&dir) {
                        return Err(DriverError::invalid_spec(
                            field,
                            format!("{} does not exist", dir.display()),
                        ));
                    }
                    dir
                }
                None => d.path.clone(),
            };
            let path = dir.join("cgroup.procs");
            fs.write(&path, &pid.to_string())
                .map_err(|e| DriverError::io(format!("{field}: write {}", path.display()), e))?;
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

    /// SIGKILLs every process and waits (up to 10 s) until the cgroup is empty. A frozen
    /// (paused) cgroup is thawed so that the kills take effect; if processes keep appearing
    /// (a fork storm), the cgroup is frozen while they are killed.
    pub fn kill_all(&self, fs: &dyn CgroupFs) -> Result<()> {
        let Some(dir) = self.procs_dir().map(|d| d.path.clone()) else {
            return Ok(());
        };
        // A cgroup removed meanwhile (by a concurrent teardown) holds nothing any more.
        let procs = |fs: &dyn CgroupFs| match self.procs(fs) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {
                Ok(Vec::new())
            }
            r => r,
        };
        // The usual case at teardown: nothing left.
        if !fs.exists(&dir) || procs(fs)?.is_empty() {
            return Ok(());
        }
        let kill_file = dir.join("cgroup.kill");
        let use_kill_file = self.v2 && fs.exists(&kill_file);
        let was_frozen = self.is_frozen(fs);
        let kill = |pids: &[u32]| {
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        };
        for round in 0..1200 {
            let pids = procs(fs)?;
            if pids.is_empty() {
                return Ok(());
            }
            if use_kill_file {
                let _ = fs.write(&kill_file, "1");
            } else {
                kill(&pids);
            }
            if round == 0 && was_frozen {
                let _ = self.freeze(fs, false);
            }
            if round == 100 && !use_kill_file && self.freezer_dir().is_some() {
                // Still not empty after ~0.2 s: stop the forking, kill, thaw.
                if self.freeze(fs, true).is_ok() {
                    kill(&procs(fs)?);
                    let _ = self.freeze(fs, false);
                }
            }
            std::thread::sleep(Duration::from_millis(if round < 100 { 2 } else { 10 }));
        }
        Err(CgroupError::Remove {
            path: dir,
            source: io::Error::other("processes still alive 10s after SIGKILL"),
        })
    }

    /// Removes every directory and the marked ancestors that became empty. Missing directories
    /// are fine (idempotent). With `keep`, the marked ancestors stay and are added to it (see
    /// [`remove_kept`]).
    pub fn remove(
        &self,
        fs: &dyn CgroupFs,
        mut keep: Option<&mut BTreeSet<PathBuf>>,
    ) -> Result<()> {
        let mut first = None;
        for d in &self.dirs {
            // The usual case goes at once; only a busy leaf is asked whether it is shared
            // and holds someone else's processes (then the last one out removes it).
            if let Err(e) = fs.rmdir(&d.path)
                && e.raw_os_error() == Some(libc::EBUSY)
                && (d.joined || fs.is_shared(&d.path))
                && in_use(fs, &d.path)
            {
                tracing::debug!(path = %d.path.display(), "shared cgroup still in use; left");
                continue;
            }
            if let Err(e) = remove_dir(fs, d, keep.as_deref_mut()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Cgroup {
    /// Applies `res`. `devices` is the list of device nodes the container gets, for the
    /// initial application (device rules are not changed by updates: pass `None`).
    ///
    /// # Errors
    /// `InvalidSpec` naming the field for bad values; `Unsupported` for what this host can't
    /// do; `Sys` naming the field and file for a refused write.
    pub fn apply(
        &self,
        fs: &dyn CgroupFs,
        res: &LinuxResources,
        devices: Option<&[(char, u32, u32)]>,
    ) -> std::result::Result<(), DriverError> {
        if self.v2 {
            let writes = resources::plan_v2(res)?;
            let Some(dir) = self.dirs.first() else {
                return Ok(());
            };
            self.enable_v2(fs, dir, &writes)?;
            for wr in &writes {
                write_one(fs, &dir.path, wr)?;
            }
            let rules = res.devices().as_deref().unwrap_or(&[]);
            if let Some(created) = devices {
                let lines = resources::device_rules(rules, created)?;
                fs.attach_device_filter(
                    &dir.path,
                    &devices_bpf::program(&devices_bpf::parse_rules(&lines)),
                )
                .map_err(|e| {
                    DriverError::sys(
                        format!(
                            "enforce linux.resources.devices (attach an eBPF device filter to {})",
                            dir.path.display()
                        ),
                        e.raw_os_error().unwrap_or(libc::EIO),
                    )
                })?;
            }
            return Ok(());
        }
        let mut writes = resources::plan_v1(res, devices)?;
        self.order_memsw(fs, &mut writes);
        self.bfq_weights(fs, &mut writes);
        let quota_follows = writes.iter().any(|w| w.file == "cpu.cfs_quota_us");
        // A period the kernel refuses for the *old* quota (EINVAL: old quota / new period above
        // the parent's limit) is written again once the new quota is in, as runc does.
        let mut deferred: Option<(PathBuf, &Write)> = None;
        for wr in &writes {
            let Some(dir) = self.dir_of(wr.controller) else {
                if wr.optional {
                    tracing::warn!(
                        field = wr.field,
                        "the {} controller is not mounted; ignored",
                        wr.controller
                    );
                    continue;
                }
                return Err(DriverError::unsupported(
                    format!(
                        "linux.resources.{} (the {} controller is not on this host's cgroup v1 hierarchies)",
                        wr.field, wr.controller
                    ),
                    crate::NAME,
                ));
            };
            match write_one(fs, &dir.path, wr) {
                Err(DriverError::Sys { errno, .. })
                    if errno == libc::EINVAL
                        && wr.file == "cpu.cfs_period_us"
                        && quota_follows
                        && deferred.is_none() =>
                {
                    deferred = Some((dir.path.clone(), wr));
                }
                r => r?,
            }
            if wr.file == "cpu.cfs_quota_us"
                && let Some((path, period)) = deferred.take()
            {
                write_one(fs, &path, period)?;
            }
        }
        Ok(())
    }

    /// v1: where the blkio controller has no `blkio.weight` (CFQ is gone) but BFQ's files, the
    /// weights go to `blkio.bfq.weight` / `blkio.bfq.weight_device`, as runc writes them.
    fn bfq_weights(&self, fs: &dyn CgroupFs, writes: &mut [Write]) {
        let Some(dir) = self.dir_of("blkio") else {
            return;
        };
        if fs.exists(&dir.path.join("blkio.weight"))
            || !fs.exists(&dir.path.join("blkio.bfq.weight"))
        {
            return;
        }
        for w in writes.iter_mut() {
            if let Some(rest) = w.file.strip_prefix("blkio.weight") {
                w.file = format!("blkio.bfq.weight{rest}");
            }
        }
    }

    /// v1: raising memory+swap above the current memsw limit must come before raising the
    /// memory limit (the kernel keeps limit <= memsw), lowering after.
    fn order_memsw(&self, fs: &dyn CgroupFs, writes: &mut [Write]) {
        let (Some(li), Some(si)) = (
            writes
                .iter()
                .position(|w| w.file == "memory.limit_in_bytes"),
            writes
                .iter()
                .position(|w| w.file == "memory.memsw.limit_in_bytes"),
        ) else {
            return;
        };
        let new: i64 = writes[si].value.parse().unwrap_or(-1);
        let current: i64 = self
            .dir_of("memory")
            .and_then(|d| fs.read(&d.path.join("memory.memsw.limit_in_bytes")).ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(i64::MAX);
        let memsw_first = new == -1 || new > current;
        if memsw_first != (si < li) {
            writes.swap(li, si);
        }
    }

    /// v2: the controllers the writes need must be enabled in every ancestor's
    /// `cgroup.subtree_control`. We enable them in directories we created and only check the
    /// others (we never change a cgroup we did not create).
    fn enable_v2(
        &self,
        fs: &dyn CgroupFs,
        dir: &CgroupDir,
        writes: &[Write],
    ) -> std::result::Result<(), DriverError> {
        let mut needed: Vec<&str> = writes.iter().map(|w| w.controller).collect();
        needed.sort_unstable();
        needed.dedup();
        if needed.is_empty() {
            return Ok(());
        }
        let mut levels = Vec::new();
        let mut cur = dir.path.parent();
        while let Some(p) = cur {
            levels.push(p.to_path_buf());
            if p == dir.stop || !p.starts_with(&dir.stop) {
                break;
            }
            cur = p.parent();
        }
        levels.reverse();
        for level in levels {
            let file = level.join("cgroup.subtree_control");
            let enabled = fs.read(&file).unwrap_or_default();
            let enabled: Vec<&str> = enabled.split_whitespace().collect();
            for c in &needed {
                if enabled.contains(c) {
                    continue;
                }
                if level != dir.stop && fs.is_marked(&level) {
                    fs.write(&file, &format!("+{c}")).map_err(|e| {
                        DriverError::sys(
                            format!("enable the {c} controller in {}", file.display()),
                            e.raw_os_error().unwrap_or(libc::EIO),
                        )
                    })?;
                } else {
                    return Err(DriverError::unsupported(
                        format!(
                            "linux.resources on cgroup v2: the {c} controller is not enabled in {} (a cgroup execdriver did not create; enable it there, or set an absolute cgroup_parent that is delegated)",
                            file.display()
                        ),
                        crate::NAME,
                    ));
                }
            }
        }
        Ok(())
    }

    fn freezer_dir(&self) -> Option<&CgroupDir> {
        if self.v2 {
            self.dirs.first()
        } else {
            self.dir_of("freezer")
        }
    }

    /// Freezes (`true`) or thaws every process, and waits until the kernel says it is done.
    pub fn freeze(&self, fs: &dyn CgroupFs, frozen: bool) -> Result<()> {
        let Some(dir) = self.freezer_dir() else {
            return Err(CgroupError::BadPath(
                "freezer".into(),
                "no freezer on this host",
            ));
        };
        let (file, value) = if self.v2 {
            ("cgroup.freeze", if frozen { "1" } else { "0" })
        } else {
            ("freezer.state", if frozen { "FROZEN" } else { "THAWED" })
        };
        let path = dir.path.join(file);
        fs.write(&path, value)
            .map_err(|source| CgroupError::Write {
                path: path.clone(),
                source,
            })?;
        for i in 0..600 {
            match self.frozen_state(fs) {
                Ok(now) if now == frozen => return Ok(()),
                Ok(_) => {}
                // The cgroup is gone (the container was cleaned meanwhile).
                Err((path, source)) => return Err(CgroupError::Read { path, source }),
            }
            if !self.v2 {
                // v1 can stay FREEZING while a task is busy; asking again moves it on. A task
                // that can't be frozen right now (exiting, or a vfork parent waiting for its
                // child) can hold it there for good: thaw now and then and start over, as
                // runc does.
                if frozen && i % 50 == 49 {
                    let _ = fs.write(&path, "THAWED");
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = fs.write(&path, value);
            }
            std::thread::sleep(Duration::from_millis(if i < 100 { 1 } else { 10 }));
        }
        if frozen {
            let _ = self.freeze(fs, false);
        }
        Err(CgroupError::Write {
            path,
            source: io::Error::new(
                io::ErrorKind::TimedOut,
                "the freezer did not settle within 5s",
            ),
        })
    }

    /// Whether the cgroup is frozen, or the file that could not be read.
    fn frozen_state(&self, fs: &dyn CgroupFs) -> std::result::Result<bool, (PathBuf, io::Error)> {
        let Some(dir) = self.freezer_dir() else {
            return Ok(false);
        };
        if self.v2 {
            let p = dir.path.join("cgroup.events");
            fs.read(&p)
                .map(|t| t.lines().any(|l| l.trim() == "frozen 1"))
                .map_err(|e| (p, e))
        } else {
            let p = dir.path.join("freezer.state");
            fs.read(&p)
                .map(|t| t.trim() == "FROZEN")
                .map_err(|e| (p, e))
        }
    }

    /// Whether the cgroup is frozen (v1 `FROZEN`, v2 `frozen 1` in `cgroup.events`).
    pub fn is_frozen(&self, fs: &dyn CgroupFs) -> bool {
        let Some(dir) = self.freezer_dir() else {
            return false;
        };
        if self.v2 {
            fs.read(&dir.path.join("cgroup.events"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "frozen 1"))
        } else {
            fs.read(&dir.path.join("freezer.state"))
                .is_ok_and(|t| t.trim() == "FROZEN")
        }
    }
}

fn write_one(fs: &dyn CgroupFs, dir: &Path, wr: &Write) -> std::result::Result<(), DriverError> {
    let path = dir.join(&wr.file);
    if wr.optional && !fs.exists(&path) {
        tracing::warn!(field = wr.field, file = %path.display(), "not supported by this kernel; ignored");
        return Ok(());
    }
    fs.write(&path, &wr.value).map_err(|e| {
        DriverError::sys(
            format!(
                "set linux.resources.{} (write {:?} to {})",
                wr.field,
                wr.value,
                path.display()
            ),
            e.raw_os_error().unwrap_or(libc::EIO),
        )
    })
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

/// Removes the directories of `dirs` that were created, leaving joined leaves as they were
/// found.
fn remove_created(fs: &dyn CgroupFs, dirs: &[CgroupDir]) {
    for d in dirs.iter().filter(|d| !d.joined) {
        let _ = remove_dir(fs, d, None);
    }
}

/// Whether processes are in `dir` or below it.
fn in_use(fs: &dyn CgroupFs, dir: &Path) -> bool {
    let mut pids = Vec::new();
    let _ = collect_procs(fs, dir, &mut pids, 0);
    !pids.is_empty()
}

/// Makes `d` and its missing ancestors; `Ok(true)` when the leaf was there already (joined).
/// `v2`: parents we made delegate their controllers ([`delegate_v2`]); v1 has no such file.
fn create_dir(fs: &dyn CgroupFs, d: &CgroupDir, v2: bool) -> Result<bool> {
    let rel = d.path.strip_prefix(&d.stop).map_err(|_| {
        CgroupError::BadPath(d.path.display().to_string(), "is not below its hierarchy")
    })?;
    // A concurrent removal of a shared, now-empty ancestor can make a mkdir below it fail with
    // ENOENT; start over then.
    'retry: for _ in 0..20 {
        let mut cur = d.stop.clone();
        let comps: Vec<_> = rel.components().collect();
        let mut joined = false;
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let leaf = i + 1 == comps.len();
            match fs.mkdir(&cur) {
                Ok(()) => {
                    let _ = fs.mark(&cur);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => joined = leaf,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'retry,
                Err(source) => return Err(CgroupError::Create { path: cur, source }),
            }
            if v2 && !leaf && fs.is_marked(&cur) {
                delegate_v2(fs, &cur);
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
        return Ok(joined);
    }
    Err(CgroupError::Create {
        path: d.path.clone(),
        source: io::Error::other("parent cgroup kept disappearing"),
    })
}

/// cgroup v2: a parent we made hands every controller it has on to its children (as runc
/// does for the levels it creates), so that a container's cgroup has `pids.current`,
/// `memory.current`, `cpu.stat` … for its statistics even without limits. A write refused
/// (the level holds processes of someone else's) is left to `enable_v2`, which names the
/// file when a limit needs that controller.
fn delegate_v2(fs: &dyn CgroupFs, level: &Path) {
    let Ok(available) = fs.read(&level.join("cgroup.controllers")) else {
        return;
    };
    let file = level.join("cgroup.subtree_control");
    let enabled = fs.read(&file).unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in available.split_whitespace() {
        if !enabled.contains(&c) {
            let _ = fs.write(&file, &format!("+{c}"));
        }
    }
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

/// Removes the ancestors a driver kept, deepest first, where they are still marked and empty;
/// one still in use (by another driver's container) stays.
pub(crate) fn remove_kept(fs: &dyn CgroupFs, kept: &BTreeSet<PathBuf>) {
    let mut dirs: Vec<&PathBuf> = kept.iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        if fs.is_marked(d) {
            let _ = fs.rmdir(d);
        }
    }
}

/// Removes every cgroup below `dir`, deepest first (what is still busy stays, for the caller's
/// retry).
fn remove_nested(fs: &dyn CgroupFs, dir: &Path, depth: usize) {
    if depth > 64 {
        return;
    }
    for sub in fs.subdirs(dir).unwrap_or_default() {
        remove_nested(fs, &sub, depth + 1);
        let _ = fs.rmdir(&sub);
    }
}

fn remove_dir(
    fs: &dyn CgroupFs,
    d: &CgroupDir,
    mut keep: Option<&mut BTreeSet<PathBuf>>,
) -> Result<()> {
    // The leaf: retry while the last processes are being reaped.
    let mut tries = 0;
    loop {
        // Cgroups the container made below its own (a writable cgroup mount): a directory with
        // children can't be removed.
        remove_nested(fs, &d.path, 0);
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
        if let Some(kept) = keep.as_deref_mut() {
            kept.insert(dir.to_path_buf());
        } else if fs.rmdir(dir).is_err() {
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

    /// A v1 layout of the single hierarchy `name` mounted at `root/name`.
    fn one_v1_hierarchy(root: &Path, name: &str) -> Layout {
        std::fs::create_dir_all(root.join(name)).unwrap();
        Layout::V1 {
            hierarchies: vec![V1Hierarchy {
                mount: root.join(name),
                name: name.into(),
                controllers: vec![name.into()],
                own: PathBuf::new(),
            }],
            unified: None,
        }
    }

    /// `file=value` of every write into `dir`, in order.
    fn writes_in(fs: &FakeFs, dir: &Path) -> Vec<String> {
        fs.writes
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(dir))
            .map(|(p, v)| format!("{}={v}", p.file_name().unwrap().to_string_lossy()))
            .collect()
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
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "c1").unwrap()).unwrap();
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
        // Creating the same leaf again joins it (runc's shared cgroupsPath).
        cg.create(&fs).unwrap();
        assert!(cg.dirs.iter().all(|d| d.joined));
        cg.add(&fs, 42).unwrap();
        assert_eq!(cg.procs(&fs).unwrap(), [42]);
        std::fs::write(tmp.path().join("pids/execdriver/c1/cgroup.procs"), "").unwrap();
        std::fs::write(
            tmp.path().join("memory/engine/execdriver/c1/cgroup.procs"),
            "",
        )
        .unwrap();
        std::fs::write(tmp.path().join("cpuset/execdriver/c1/cgroup.procs"), "").unwrap();
        cg.remove(&fs, None).unwrap();
        // The marked parent went too, the engine's own cgroup stayed.
        assert!(!tmp.path().join("memory/engine/execdriver").exists());
        assert!(tmp.path().join("memory/engine").exists());
        cg.remove(&fs, None).unwrap();
    }

    #[test]
    fn exec_into_sub_cgroups_and_nested_cgroups_go_with_the_container() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "s").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let pids = tmp.path().join("pids/execdriver/s");
        fs.mkdir(&pids.join("sub")).unwrap();
        fs.mkdir(&pids.join("sub/deeper")).unwrap();
        let sub = |cs: &[&str], p: &str| -> Vec<(Vec<String>, PathBuf)> {
            vec![(
                cs.iter().map(|c| (*c).to_owned()).collect(),
                PathBuf::from(p),
            )]
        };
        cg.add_to_sub(&fs, 7, &sub(&["pids"], "sub/deeper"), "f")
            .unwrap();
        let procs = |p: &Path| std::fs::read_to_string(p.join("cgroup.procs")).unwrap();
        assert_eq!(procs(&pids.join("sub/deeper")), "7");
        assert_eq!(procs(&tmp.path().join("memory/engine/execdriver/s")), "7");
        // Refused, naming the field: escaping paths, a missing cgroup, an unknown controller.
        for (cs, p, want) in [
            (&["pids"][..], "../x", "not a relative path"),
            (&["pids"][..], "/abs", "not a relative path"),
            (&["pids"][..], "nope", "does not exist"),
            (&["nosuch"][..], "sub", "no cgroup hierarchy"),
            (&[][..], "sub", "does not exist"),
        ] {
            let e = cg
                .add_to_sub(&fs, 8, &sub(cs, p), "exec cgroup")
                .unwrap_err()
                .to_string();
            assert!(e.contains("exec cgroup") && e.contains(want), "{p}: {e}");
        }
        // Teardown takes the container's own cgroups with it, deepest first.
        let dirs = cg.dirs.iter().map(|d| d.path.clone());
        for d in dirs.chain([pids.join("sub/deeper")]) {
            std::fs::write(d.join("cgroup.procs"), "").unwrap();
        }
        cg.remove(&fs, None).unwrap();
        assert!(!pids.exists());
    }

    #[test]
    fn kill_all_of_a_cgroup_removed_meanwhile_is_done() {
        // A concurrent teardown removed the cgroup between our checks: its control files are
        // gone (ENOENT here; ENODEV for an open file on a real cgroupfs). Nothing to kill.
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "k").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        std::fs::remove_file(tmp.path().join("pids/execdriver/k/cgroup.procs")).unwrap();
        cg.kill_all(&fs).unwrap();
        cg.remove(&fs, None).unwrap();
        cg.kill_all(&fs).unwrap();
    }

    #[test]
    fn shared_parent_stays_while_in_use_and_unmarked_parents_are_never_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        let mut a =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "a").unwrap()).unwrap();
        let mut b =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "b").unwrap()).unwrap();
        a.create(&fs).unwrap();
        b.create(&fs).unwrap();
        a.remove(&fs, None).unwrap();
        assert!(tmp.path().join("pids/execdriver/b").exists());
        b.remove(&fs, None).unwrap();
        assert!(!tmp.path().join("pids/execdriver").exists());

        // An operator-made parent (no mark) survives.
        std::fs::create_dir_all(tmp.path().join("pids/ops")).unwrap();
        let mut c = Cgroup::plan(&layout, &Placement::new("ops", None, "c").unwrap()).unwrap();
        c.create(&fs).unwrap();
        c.remove(&fs, None).unwrap();
        assert!(tmp.path().join("pids/ops").exists());
        assert!(!tmp.path().join("pids/ops/c").exists());
    }

    /// A pid no process can have (above the kernel's largest `pid_max`): killing it by mistake
    /// harms nothing.
    const NO_SUCH_PID: &str = "1999999999\n";

    #[test]
    fn an_existing_leaf_is_joined_and_left_to_its_last_user() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        let id = execdriver_api::ContainerId::new("b").unwrap();
        let place = Placement::new("", Some(Path::new("/shared")), "x").unwrap();
        let mut a = Cgroup::plan(&layout, &place).unwrap();
        a.create(&fs).unwrap();
        assert!(a.dirs.iter().all(|d| !d.joined) && !a.is_shared(&fs));
        let procs = tmp.path().join("pids/shared/cgroup.procs");
        std::fs::write(&procs, NO_SUCH_PID).unwrap();

        // A second container joins it: counted, marked shared for both.
        let mut b = Cgroup::plan(&layout, &place).unwrap();
        b.create_for(&fs, &id).unwrap();
        assert!(b.dirs.iter().all(|d| d.joined));
        assert_eq!(b.check_joined(&fs), Ok(1));
        assert!(a.is_shared(&fs) && b.is_shared(&fs));

        // The first one's teardown kills nothing and leaves the busy leaf.
        a.end(&fs).unwrap();
        a.remove(&fs, None).unwrap();
        assert!(procs.exists());
        // The last one out removes it.
        std::fs::write(&procs, "").unwrap();
        b.end(&fs).unwrap();
        b.remove(&fs, None).unwrap();
        assert!(!tmp.path().join("pids/shared").exists());
    }

    #[test]
    fn a_frozen_existing_leaf_is_refused_and_left_as_found() {
        let tmp = tempfile::tempdir().unwrap();
        let mut layout = one_v1_hierarchy(tmp.path(), "freezer");
        if let (
            Layout::V1 { hierarchies, .. },
            Layout::V1 {
                hierarchies: more, ..
            },
        ) = (&mut layout, v1(tmp.path()))
        {
            hierarchies.extend(more);
        }
        let fs = FakeFs::default();
        let leaf = tmp.path().join("freezer/ct");
        std::fs::create_dir(&leaf).unwrap();
        std::fs::write(leaf.join("cgroup.procs"), "").unwrap();
        std::fs::write(leaf.join("freezer.state"), "FROZEN\n").unwrap();
        let place = Placement::new("", Some(Path::new("/ct")), "x").unwrap();
        let mut c = Cgroup::plan(&layout, &place).unwrap();
        let id = execdriver_api::ContainerId::new("c").unwrap();
        let err = c.create_for(&fs, &id).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid spec: linux.cgroupsPath: container's cgroup unexpectedly frozen"
        );
        assert!(leaf.join("freezer.state").exists() && !fs.is_shared(&leaf));
        assert!(!tmp.path().join("pids/ct").exists());
        assert!(!tmp.path().join("memory/ct").exists());
        // Thawed, it is joined.
        std::fs::write(leaf.join("freezer.state"), "THAWED\n").unwrap();
        let mut c = Cgroup::plan(&layout, &place).unwrap();
        c.create_for(&fs, &id).unwrap();
        assert!(c.dir_of("freezer").unwrap().joined && fs.is_shared(&leaf));
        assert!(!c.dir_of("pids").unwrap().joined);
    }

    #[test]
    fn a_shared_frozen_cgroup_is_thawed_only_by_a_kill() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = one_v1_hierarchy(tmp.path(), "freezer");
        let fs = FakeFs::default();
        let leaf = tmp.path().join("freezer/ct");
        std::fs::create_dir(&leaf).unwrap();
        std::fs::write(leaf.join("cgroup.procs"), NO_SUCH_PID).unwrap();
        std::fs::write(leaf.join("freezer.state"), "THAWED\n").unwrap();
        let place = Placement::new("", Some(Path::new("/ct")), "x").unwrap();
        let mut c = Cgroup::plan(&layout, &place).unwrap();
        let id = execdriver_api::ContainerId::new("c").unwrap();
        c.create_for(&fs, &id).unwrap();
        assert!(c.is_shared(&fs));
        // Another container in it is paused: our teardown and clean leave it so.
        std::fs::write(leaf.join("freezer.state"), "FROZEN\n").unwrap();
        c.end(&fs).unwrap();
        assert!(c.is_frozen(&fs), "end thawed a shared cgroup");
        assert_eq!(
            std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap(),
            NO_SUCH_PID,
            "end touched the processes of a shared cgroup"
        );
        // Terminate: our init was just killed and must be let die.
        c.end_killed(&fs).unwrap();
        assert!(!c.is_frozen(&fs));
    }

    #[test]
    fn a_kept_parent_outlives_its_containers_until_remove_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        let mut kept = BTreeSet::new();
        let mut a = Cgroup::plan(&layout, &Placement::new("ed/nest", None, "a").unwrap()).unwrap();
        a.create(&fs).unwrap();
        a.remove(&fs, Some(&mut kept)).unwrap();
        assert!(!tmp.path().join("pids/ed/nest/a").exists());
        assert!(tmp.path().join("pids/ed/nest").exists());
        // Both marked levels of every hierarchy are kept.
        assert_eq!(kept.len(), 2 * layout_hierarchies(&layout));
        // Another container of another driver sits in the parent: it survives remove_kept.
        let mut b = Cgroup::plan(&layout, &Placement::new("ed/nest", None, "b").unwrap()).unwrap();
        b.create(&fs).unwrap();
        remove_kept(&fs, &kept);
        assert!(tmp.path().join("pids/ed/nest/b").exists());
        b.remove(&fs, None).unwrap();
        assert!(!tmp.path().join("pids/ed").exists());

        // Once empty, remove_kept removes them, deepest first; an unmarked one stays.
        std::fs::create_dir_all(tmp.path().join("pids/ops")).unwrap();
        let mut kept = BTreeSet::new();
        let mut c = Cgroup::plan(&layout, &Placement::new("ops/x", None, "c").unwrap()).unwrap();
        c.create(&fs).unwrap();
        c.remove(&fs, Some(&mut kept)).unwrap();
        assert!(tmp.path().join("pids/ops/x").exists());
        remove_kept(&fs, &kept);
        assert!(!tmp.path().join("pids/ops/x").exists());
        assert!(tmp.path().join("pids/ops").exists());
    }

    fn layout_hierarchies(layout: &Layout) -> usize {
        Cgroup::plan(layout, &Placement::new("p", None, "q").unwrap())
            .unwrap()
            .dirs
            .len()
    }

    #[test]
    fn cpuset_levels_made_by_someone_else_are_filled_too() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        // Another container created the shared parent but has not filled it yet.
        std::fs::create_dir(tmp.path().join("cpuset/execdriver")).unwrap();
        std::fs::write(tmp.path().join("cpuset/execdriver/cpuset.cpus"), "").unwrap();
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "c").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        for dir in ["cpuset/execdriver", "cpuset/execdriver/c"] {
            let cpus = std::fs::read_to_string(tmp.path().join(dir).join("cpuset.cpus")).unwrap();
            assert_eq!(cpus, "0-1", "{dir}");
        }
    }

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    /// A v2 fixture: `<root>/engine` is the engine's cgroup (not ours) with `controllers`
    /// enabled for its children.
    fn v2_fixture(root: &Path, enabled: &str) -> (Layout, FakeFs) {
        let own = root.join("engine");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), enabled).unwrap();
        (
            Layout::V2 {
                mount: root.to_owned(),
                own: PathBuf::from("engine"),
            },
            FakeFs::default(),
        )
    }

    #[test]
    fn v2_apply_enables_controllers_only_in_cgroups_we_made() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, fs) = v2_fixture(tmp.path(), "cpu memory pids\n");
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "c").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let leaf = tmp.path().join("engine/execdriver/c");
        for f in ["memory.max", "memory.swap.max", "cpu.max", "pids.max"] {
            std::fs::write(leaf.join(f), "").unwrap();
        }
        std::fs::write(
            tmp.path().join("engine/execdriver/cgroup.subtree_control"),
            "",
        )
        .unwrap();
        cg.apply(&fs, &res(r#"{"memory": {"limit": 1048576, "swap": 2097152}, "cpu": {"quota": 20000}, "pids": {"limit": 8}}"#), Some(&[]))
            .unwrap();
        let writes = fs.writes.lock().unwrap().clone();
        let short: Vec<(String, String)> = writes
            .iter()
            .map(|(p, v)| {
                (
                    p.strip_prefix(tmp.path()).unwrap().display().to_string(),
                    v.clone(),
                )
            })
            .collect();
        let expect = |p: &str, v: &str| {
            assert!(
                short.contains(&(p.to_owned(), v.to_owned())),
                "{p}={v} not in {short:?}"
            )
        };
        // Our parent gets the controllers; the engine's own cgroup is never written.
        expect("engine/execdriver/cgroup.subtree_control", "+cpu");
        expect("engine/execdriver/cgroup.subtree_control", "+memory");
        expect("engine/execdriver/cgroup.subtree_control", "+pids");
        assert!(
            !short
                .iter()
                .any(|(p, _)| p == "engine/cgroup.subtree_control"),
            "{short:?}"
        );
        expect("engine/execdriver/c/memory.max", "1048576");
        expect("engine/execdriver/c/memory.swap.max", "1048576");
        expect("engine/execdriver/c/cpu.max", "20000 100000");
        expect("engine/execdriver/c/pids.max", "8");
    }

    #[test]
    fn v2_parents_we_made_delegate_every_controller_they_have() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, fs) = v2_fixture(tmp.path(), "cpu memory pids\n");
        // Our shared parent, as the kernel fills it: the engine's delegated controllers.
        let parent = tmp.path().join("engine/execdriver");
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::write(parent.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(parent.join("cgroup.subtree_control"), "memory\n").unwrap();
        fs.marks.lock().unwrap().insert(parent.clone());
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "c").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let writes = fs.writes.lock().unwrap().clone();
        let file = parent.join("cgroup.subtree_control");
        let to_parent: Vec<&str> = writes
            .iter()
            .filter(|(p, _)| *p == file)
            .map(|(_, v)| v.as_str())
            .collect();
        // No limits at all, and still: pids.current, cpu.stat for the statistics.
        assert_eq!(to_parent, ["+cpu", "+pids"], "{writes:?}");
        assert!(
            !writes
                .iter()
                .any(|(p, _)| p.ends_with("engine/cgroup.subtree_control")),
            "the engine's own cgroup is never written: {writes:?}"
        );
    }

    #[test]
    fn v2_apply_refuses_controllers_the_engine_cgroup_does_not_delegate() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, fs) = v2_fixture(tmp.path(), "pids\n");
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "c").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let err = cg
            .apply(&fs, &res(r#"{"memory": {"limit": 1048576}}"#), Some(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the memory controller is not enabled in"),
            "{err}"
        );
        assert!(err.contains("engine/cgroup.subtree_control"), "{err}");
    }

    #[test]
    fn v2_freeze_and_status() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, fs) = v2_fixture(tmp.path(), "");
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "c").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let leaf = tmp.path().join("engine/execdriver/c");
        std::fs::write(leaf.join("cgroup.freeze"), "0").unwrap();
        std::fs::write(leaf.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(!cg.is_frozen(&fs));
        // The kernel would flip cgroup.events; the fixture does it up front.
        std::fs::write(leaf.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze(&fs, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(leaf.join("cgroup.freeze")).unwrap(),
            "1"
        );
        assert!(cg.is_frozen(&fs));
    }

    #[test]
    fn v1_a_period_refused_for_the_old_quota_is_written_after_the_new_quota() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = one_v1_hierarchy(tmp.path(), "cpu");
        let fs = FakeFs::default();
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "q").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let dir = tmp.path().join("cpu/execdriver/q");
        fs.fail_once
            .lock()
            .unwrap()
            .push(("cpu.cfs_period_us".into(), libc::EINVAL));
        cg.apply(
            &fs,
            &res(r#"{"cpu": {"period": 10000, "quota": 5000}}"#),
            None,
        )
        .unwrap();
        let written = writes_in(&fs, &dir);
        assert_eq!(
            written,
            ["cpu.cfs_quota_us=5000", "cpu.cfs_period_us=10000"]
        );
        // Without a quota to wait for, the refusal is the error.
        fs.fail_once
            .lock()
            .unwrap()
            .push(("cpu.cfs_period_us".into(), libc::EINVAL));
        assert!(
            cg.apply(&fs, &res(r#"{"cpu": {"period": 10000}}"#), None)
                .is_err()
        );
    }

    #[test]
    fn v1_blkio_weights_go_to_bfq_where_cfq_files_are_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = one_v1_hierarchy(tmp.path(), "blkio");
        let fs = FakeFs::default();
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "b").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let dir = tmp.path().join("blkio/execdriver/b");
        std::fs::write(dir.join("blkio.bfq.weight"), "100\n").unwrap();
        std::fs::write(dir.join("blkio.bfq.weight_device"), "").unwrap();
        cg.apply(
            &fs,
            &res(r#"{"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}}"#),
            None,
        )
        .unwrap();
        let written = writes_in(&fs, &dir);
        assert_eq!(
            written,
            ["blkio.bfq.weight=500", "blkio.bfq.weight_device=8:0 300"]
        );
        // With CFQ's file there, it is used.
        std::fs::write(dir.join("blkio.weight"), "").unwrap();
        cg.apply(&fs, &res(r#"{"blockIO": {"weight": 200}}"#), None)
            .unwrap();
        assert!(
            fs.writes
                .lock()
                .unwrap()
                .last()
                .unwrap()
                .0
                .ends_with("blkio.weight")
        );
    }

    #[test]
    fn v1_memsw_is_raised_before_the_limit_and_lowered_after() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = v1(tmp.path());
        let fs = FakeFs::default();
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "m").unwrap()).unwrap();
        cg.create(&fs).unwrap();
        let dir = tmp.path().join("memory/engine/execdriver/m");
        std::fs::write(dir.join("memory.limit_in_bytes"), "").unwrap();
        std::fs::write(dir.join("memory.memsw.limit_in_bytes"), "100\n").unwrap();
        cg.apply(
            &fs,
            &res(r#"{"memory": {"limit": 200, "swap": 400}}"#),
            None,
        )
        .unwrap();
        cg.apply(&fs, &res(r#"{"memory": {"limit": 50, "swap": 60}}"#), None)
            .unwrap();
        let order = writes_in(&fs, &dir);
        assert_eq!(
            order,
            [
                "memory.memsw.limit_in_bytes=400",
                "memory.limit_in_bytes=200",
                "memory.limit_in_bytes=50",
                "memory.memsw.limit_in_bytes=60"
            ]
        );
        // A controller this host has no v1 hierarchy for is a clear Unsupported.
        let err = cg
            .apply(
                &fs,
                &res(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}"#),
                None,
            )
            .unwrap_err();
        assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("hugetlb controller is not on this host's cgroup v1 hierarchies"),
            "{err}"
        );
    }

    #[test]
    fn v2_has_one_dir() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("user.slice/engine")).unwrap();
        let layout = Layout::V2 {
            mount: tmp.path().to_owned(),
            own: PathBuf::from("user.slice/engine"),
        };
        let mut cg =
            Cgroup::plan(&layout, &Placement::new("execdriver", None, "x").unwrap()).unwrap();
        assert!(cg.v2);
        assert_eq!(
            cg.dirs[0].path,
            tmp.path().join("user.slice/engine/execdriver/x")
        );
        assert_eq!(cg.mount_dirs(), [(String::new(), cg.dirs[0].path.clone())]);
        let fs = FakeFs::default();
        cg.create(&fs).unwrap();
        cg.remove(&fs, None).unwrap();
        assert!(!tmp.path().join("user.slice/engine/execdriver").exists());
    }
}
