//! The `native` driver: [`Driver`] over namespaces, cgroups and on-disk state.

use crate::trampoline::{self, Exec, TrampolineArgv};
use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use execdriver_api::oci_spec::runtime::{LinuxResources, Process};
use execdriver_api::{
    Capabilities, Command, ContainerId, Driver, DriverError, Exit, ExitStatus, Hooks, Info,
    OomNotifier, Operation, Pipes, ResourceStats, Result, Signal, Status, Stdio, Terminal,
};

use crate::cgroups::{Cgroup, CgroupError, CgroupFs, Layout, Placement, RealFs, stats};
use crate::oci_hooks::{InContainer, OciHook, OciHooks, OciState};
use crate::oom::OomWatcher;
use crate::options::NativeOptions;
use crate::plan::{IdMaps, Plan, PlanInputs, ProcessPlan};
use crate::reaper::Reaper;
use crate::state::{DirLock, ReadError, STATE_VERSION, State, StateStore};
use crate::sys::child::{ChildArgs, kind};
use crate::sys::spawn::{Channel, above, above_stdio, dup_above, fork, socketpair};
use crate::terminal::Pty;
use crate::{NAME, failure, procfs, sys};

/// The `native` driver. Create it with [`crate::factory`] (by name, through a registry) or
/// [`NativeDriver::new`].
pub struct NativeDriver {
    options: NativeOptions,
    state: StateStore,
    fs: Arc<dyn CgroupFs>,
    layout: OnceLock<std::result::Result<Layout, String>>,
    last_cap: OnceLock<u32>,
    dev_null: OnceLock<std::result::Result<OwnedFd, String>>,
    oom: OomWatcher,
    /// Marked ancestors of removed container cgroups (the shared parent), kept while the
    /// driver lives so that the next container does not create them again; removed, where
    /// empty, when the driver is dropped.
    kept_parents: Mutex<BTreeSet<PathBuf>>,
    /// Reaps every process this value started in-process (one thread for all of them).
    reaper: Reaper,
    /// Containers made by [`Driver::create`] in this process, until deleted.
    live: Mutex<HashMap<ContainerId, Live>>,
    /// Processes made by [`Driver::exec_create`], until [`Driver::exec_delete`].
    execs: Mutex<HashMap<(ContainerId, String), LiveExec>>,
}

/// A container [`Driver::create`] made in this process.
struct Live {
    /// Set by the reaper once the init exited (with the OOM kills counted by then).
    exit: Exit,
    /// Until `start`: what it needs to let the init exec.
    pending: Option<Pending>,
    /// What `delete` releases.
    res: Resources,
    oci: Arc<OciHooks>,
    state: State,
}

/// A set-up process waiting on its socket for the GO to exec.
struct Pending {
    chan: Channel,
    plan: Plan,
    pidfd: Arc<OwnedFd>,
}

/// A process [`Driver::exec_create`] made.
struct LiveExec {
    exit: Exit,
    pidfd: Arc<OwnedFd>,
    /// Until `exec_start`.
    pending: Option<(Channel, ProcessPlan)>,
}

impl Drop for NativeDriver {
    fn drop(&mut self) {
        // Containers made in-process end with the value that made them (nothing is left).
        let live: Vec<(ContainerId, Live)> = lock(&self.live).drain().collect();
        for (id, mut l) in live {
            if l.exit.status().is_none() {
                let _ = self.terminate(&id);
            }
            l.res.release(self, &id);
        }
        let kept = std::mem::take(&mut *lock(&self.kept_parents));
        crate::cgroups::remove_kept(&*self.fs, &kept);
    }
}

impl std::fmt::Debug for NativeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeDriver")
            .field("options", &self.options)
            .finish()
    }
}

pub(crate) fn cgroup_error(id: &ContainerId, e: CgroupError) -> DriverError {
    match e.raw_os_error() {
        Some(errno) => DriverError::sys(format!("container {id}: {e}"), errno),
        None => DriverError::Internal {
            context: format!("container {id}: cgroups"),
            message: e.to_string(),
        },
    }
}

impl NativeDriver {
    /// A cgroup error of an operation on a live container: when its cgroup vanished under
    /// us (ENOENT, or ENODEV for a file of a removed cgroup) the container exited and was
    /// cleaned meanwhile, which is `NotFound` once its state is gone and `NotRunning` before.
    fn raced(&self, id: &ContainerId, e: CgroupError) -> DriverError {
        if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) {
            return match self.state.read(id) {
                Ok(None) => DriverError::not_found(id),
                _ => DriverError::NotRunning {
                    id: id.to_string(),
                    status: Status::Stopped,
                },
            };
        }
        cgroup_error(id, e)
    }

    /// A driver with `options`. Nothing on the system is touched until the first operation.
    pub fn new(options: NativeOptions) -> Self {
        let fs: Arc<dyn CgroupFs> = Arc::new(RealFs);
        Self {
            state: StateStore::new(options.root.clone()),
            options,
            oom: OomWatcher::new(fs.clone()),
            fs,
            layout: OnceLock::new(),
            last_cap: OnceLock::new(),
            dev_null: OnceLock::new(),
            kept_parents: Mutex::new(BTreeSet::new()),
            reaper: Reaper::new(),
            live: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &NativeOptions {
        &self.options
    }

    /// The host's cgroup mode as the driver sees it: `v1`, `v2` or `hybrid`.
    ///
    /// # Errors
    /// When no cgroup hierarchy is mounted.
    pub fn cgroup_mode(&self) -> Result<&'static str> {
        self.layout().map(Layout::mode)
    }

    fn layout(&self) -> Result<&Layout> {
        self.layout
            .get_or_init(|| Layout::detect().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| DriverError::Internal {
                context: "cgroup layout".into(),
                message: e.clone(),
            })
    }

    fn dev_null(&self) -> Result<RawFd> {
        self.dev_null
            .get_or_init(|| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| e.to_string())
                    .and_then(|f| above_stdio(f.into()).map_err(|e| e.to_string()))
            })
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .map_err(|e| DriverError::Internal {
                context: "open /dev/null".into(),
                message: e.clone(),
            })
    }

    /// Reads a container's state, mapping "absent" to NotFound.
    fn load(&self, id: &ContainerId) -> Result<State> {
        match self.state.read(id) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(DriverError::not_found(id)),
            Err(ReadError::Incomplete) => Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "inspect".into(),
                status: Status::Created,
            }),
            Err(ReadError::Corrupt(why)) => Err(DriverError::Internal {
                context: format!("container {id}: state"),
                message: why,
            }),
            Err(ReadError::Io(path, e)) => {
                Err(DriverError::io(format!("read {}", path.display()), e))
            }
        }
    }

    fn status(&self, st: &State) -> Status {
        if !procfs::is_alive(st.pid, st.start_time) {
            Status::Stopped
        } else if st.cgroup.is_frozen(&*self.fs) {
            Status::Paused
        } else if st.started {
            Status::Running
        } else {
            Status::Created
        }
    }

    /// Removes the traces of a stopped container by its stored state.
    fn clean_stored(&self, id: &ContainerId) -> Result<()> {
        let st = match self.state.read(id) {
            Ok(None) => return Ok(()),
            Ok(Some(st)) => Some(st),
            Err(ReadError::Incomplete) if self.state.is_locked(id) => {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "clean".into(),
                    status: Status::Created,
                });
            }
            // Left by a crash before the state was written, or unreadable: remove it.
            Err(_) => None,
        };
        if let Some(st) = &st {
            let status = self.status(st);
            if status != Status::Stopped {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "clean".into(),
                    status,
                });
            }
            st.cgroup.end(&*self.fs).map_err(|e| cgroup_error(id, e))?;
            let mut kept = BTreeSet::new();
            let r = st.cgroup.remove(&*self.fs, Some(&mut kept));
            lock(&self.kept_parents).extend(kept);
            r.map_err(|e| cgroup_error(id, e))?;
            if st.rootfs_bound {
                detach_rootfs(id, &st.rootfs);
            }
        }
        self.state.remove(id)
    }

    /// The state of a container whose init is alive, or `NotRunning`.
    fn load_alive(&self, id: &ContainerId) -> Result<State> {
        let st = self.load(id)?;
        if !procfs::is_alive(st.pid, st.start_time) {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            });
        }
        Ok(st)
    }

    /// A pidfd for the container's init if it is still the same process.
    fn init_pidfd(&self, st: &State) -> Option<OwnedFd> {
        let fd = sys::pidfd_open(st.pid).ok()?;
        // SAFETY-free: pidfd_open returned a new fd we own.
        let fd = owned(fd);
        // Checked after opening: if the start time matches now, the pidfd is that process.
        procfs::is_alive(st.pid, st.start_time).then_some(fd)
    }
}

/// A lock that a panicking holder did not poison for good: the data (a set of paths) stays valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// OCI poststop hooks of a container that was created and is gone (also when its start
/// failed); their failures are logged, as the runtime spec says.
fn run_poststop(cmd: &Command, oci: &OciHooks) {
    if oci.poststop.is_empty() {
        return;
    }
    let annotations = cmd
        .spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let state = OciState {
        id: &cmd.id,
        status: "stopped",
        pid: None,
        bundle: &cmd.bundle,
        annotations: &annotations,
    };
    OciHook::run_logged(&oci.poststop, &state.json());
}

fn owned(fd: RawFd) -> OwnedFd {
    sys::own_fd(fd)
}

/// What a launch made that its teardown releases: the processes it started (until reaped),
/// its cgroup, its state and the rootfs bind.
#[derive(Default)]
struct Resources {
    /// Held while the state is incomplete (see `clean`).
    lock: Option<DirLock>,
    /// The state directory is this launch's to remove.
    owns_state: bool,
    cgroup: Option<Cgroup>,
    /// The init (or the intermediate), until reaped.
    children: Vec<OwnedFd>,
    /// The rootfs the engine bound onto itself for a container without a mount namespace.
    rootfs_bind: Option<PathBuf>,
}

impl Resources {
    /// Kills and reaps the processes left in it, removes the cgroup, the rootfs bind and the
    /// state.
    fn release(&mut self, driver: &NativeDriver, id: &ContainerId) {
        for pidfd in self.children.drain(..) {
            let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
            let _ = sys::waitid_pidfd(pidfd.as_raw_fd(), false);
        }
        if let Some(cg) = self.cgroup.take() {
            let fs = &*driver.fs;
            // The driver-wide set is locked only to merge into it: kill_all and the removal's
            // retries can take seconds, and other teardowns must not queue behind them.
            let mut kept = BTreeSet::new();
            let r = cg.end(fs).and_then(|()| cg.remove(fs, Some(&mut kept)));
            lock(&driver.kept_parents).extend(kept);
            if let Err(e) = r {
                tracing::error!(id = %id, err = %e, "failed to remove the container's cgroup");
            }
        }
        if let Some(rootfs) = self.rootfs_bind.take() {
            detach_rootfs(id, &rootfs);
        }
        self.lock = None;
        if std::mem::take(&mut self.owns_state)
            && let Err(e) = driver.state.remove(id)
        {
            tracing::error!(id = %id, err = %e, "failed to remove the container's state");
        }
    }
}

/// Tears a launch down unless it was finished (see [`Resources::release`]).
struct Launch<'a> {
    driver: &'a NativeDriver,
    id: ContainerId,
    res: Resources,
}

impl Launch<'_> {
    /// Leaves everything in place and hands it over: the processes run on, the cgroup and
    /// state stay.
    fn disarm(&mut self) -> Resources {
        std::mem::take(&mut self.res)
    }
}

impl Drop for Launch<'_> {
    fn drop(&mut self) {
        self.res.release(self.driver, &self.id);
    }
}

/// Options of [`NativeDriver::exec_with`] and [`NativeDriver::exec_detached_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExecOptions {
    /// Exec into a paused container too (runc's `--ignore-paused`): the process freezes as it
    /// joins the container's cgroup, so the call returns only after the container is resumed.
    pub ignore_paused: bool,
    /// Existing cgroups below the container's to put the process in (runc's `exec --cgroup`):
    /// `(controllers, relative path)`; no controllers means every hierarchy, and a later entry
    /// wins for a hierarchy two name.
    pub sub_cgroups: Vec<(Vec<String>, PathBuf)>,
}

impl ExecOptions {
    /// Adds a sub-cgroup (see [`sub_cgroups`](Self::sub_cgroups)).
    #[must_use]
    pub fn sub_cgroup(mut self, controllers: &[&str], path: impl Into<PathBuf>) -> Self {
        self.sub_cgroups.push((
            controllers.iter().map(|c| (*c).to_owned()).collect(),
            path.into(),
        ));
        self
    }

    /// With [`ignore_paused`](Self::ignore_paused) set to `yes`.
    #[must_use]
    pub fn ignore_paused(mut self, yes: bool) -> Self {
        self.ignore_paused = yes;
        self
    }
}

/// What [`NativeDriver::create_detached`] and [`NativeDriver::exec_detached`] leave running.
#[derive(Debug)]
pub struct Created {
    /// The process's pid.
    pub pid: u32,
    /// The pty master, when the process has a terminal.
    pub terminal: Option<OwnedFd>,
}

/// The name of the fifo a created (not started) init waits on, in its state directory.
const EXEC_FIFO: &str = "exec.fifo";

/// A container whose init is set up and waits to exec.
struct Launched<'a> {
    launch: Launch<'a>,
    chan: Channel,
    plan: Plan,
    state: State,
    pid: i32,
    terminal: Option<Arc<Pty>>,
    oom: OomNotifier,
    oom_watch: Option<crate::oom::Watch>,
}

/// The OCI state document of `st` with `status`.
fn oci_state(st: &State, status: &'static str) -> String {
    OciState {
        id: &st.id,
        status,
        pid: Some(st.pid),
        bundle: &st.bundle,
        annotations: &st.annotations,
    }
    .json()
}

/// Kills and reaps what an exec started, unless it finished.
struct ExecGuard {
    children: Vec<OwnedFd>,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        for pidfd in self.children.drain(..) {
            let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
            let _ = sys::waitid_pidfd(pidfd.as_raw_fd(), false);
        }
    }
}

/// A process set up in a container, waiting to exec.
struct ExecSetUp {
    guard: ExecGuard,
    chan: Channel,
    plan: ProcessPlan,
    pid: i32,
    terminal: Option<Arc<Pty>>,
    cgroup: Cgroup,
}

/// The fds the child dups onto 0, 1, 2 and onto 3, 4, … (`Pipes::extra`), kept open until
/// after the clone. With extra fds, every fd the child uses is first lifted above them
/// ([`StdioFds::lift`]), so that dup'ing the extras onto 3, 4, … clobbers nothing it needs.
struct StdioFds {
    fds: [Option<OwnedFd>; 3],
    raw: [RawFd; 3],
    extra: Vec<RawFd>,
    held: Vec<OwnedFd>,
}

impl StdioFds {
    fn new(pipes: Pipes, dev_null: RawFd) -> Result<Self> {
        let mut this = Self {
            fds: [None, None, None],
            raw: [-1; 3],
            extra: Vec::new(),
            held: Vec::new(),
        };
        let Pipes {
            stdin,
            stdout,
            stderr,
            extra,
        } = pipes;
        let min = 3 + extra.len() as RawFd;
        for fd in extra {
            let fd = above(fd, min).map_err(|e| DriverError::io("prepare pipes.extra", e))?;
            this.extra.push(fd.as_raw_fd());
            this.held.push(fd);
        }
        for (i, s) in [stdin, stdout, stderr].into_iter().enumerate() {
            match s {
                Stdio::Null => this.raw[i] = this.lift(dev_null)?,
                Stdio::Inherit => {}
                Stdio::Fd(fd) => {
                    let fd = above(fd, min).map_err(|e| DriverError::io("prepare stdio", e))?;
                    this.raw[i] = fd.as_raw_fd();
                    this.fds[i] = Some(fd);
                }
            }
        }
        Ok(this)
    }

    /// A new fd number above the extra fds' targets (a copy of `placeholder`, held until after
    /// the clone), for the child to put something else at.
    fn reserve(&mut self, placeholder: RawFd) -> Result<RawFd> {
        let min = 3 + self.extra.len() as RawFd;
        let owned = dup_above(placeholder, min)
            .map_err(|e| DriverError::io("prepare the child's fds", e))?;
        let raw = owned.as_raw_fd();
        self.held.push(owned);
        Ok(raw)
    }

    /// `fd`, or a copy of it above the extra fds' targets (held until after the clone).
    fn lift(&mut self, fd: RawFd) -> Result<RawFd> {
        if fd >= 3 + self.extra.len() as RawFd {
            return Ok(fd);
        }
        self.reserve(fd)
    }
}

/// Detaches the rootfs bind (and every mount the container made below it) of a container
/// without a mount namespace of its own, in the runtime's mount namespace.
fn detach_rootfs(id: &ContainerId, rootfs: &Path) {
    match nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            tracing::error!(id = %id, rootfs = %rootfs.display(), err = %e, "failed to detach the rootfs")
        }
    }
}

fn write_maps(pid: i32, maps: &IdMaps) -> Result<()> {
    for (file, text) in [("uid_map", &maps.uid_map), ("gid_map", &maps.gid_map)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| {
            DriverError::io(format!("write {path} (linux.{}Mappings)", &file[..3]), e)
        })?;
    }
    Ok(())
}

impl Driver for NativeDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Operation::Pids)
            .with(Operation::Persistent)
            .with(Operation::Signals)
            .with(Operation::Pause)
            .with(Operation::Stats)
            .with(Operation::Update)
            .with(Operation::Oom)
            .with(Operation::Exec)
            .with(Operation::Terminal)
            .with(Operation::Isolation)
            .with(Operation::TwoPhase)
            .with(Operation::TwoPhaseExec)
    }

    // `run` and `exec` are the API's lifecycle engine over the primitives below.

    fn create(&self, cmd: &Command, pipes: Pipes) -> Result<execdriver_api::Created> {
        let id = &cmd.id;
        let oci = OciHooks::from_spec(&cmd.spec)?;
        let mut created = false;
        let launched = match self.launch(cmd, pipes, &oci, &mut created, false) {
            Ok(l) => l,
            Err(e) => {
                // OCI: poststop after the container is deleted, also when its create failed.
                if created {
                    run_poststop(cmd, &oci);
                }
                return Err(e);
            }
        };
        let Launched {
            mut launch,
            chan,
            plan,
            state,
            pid,
            terminal,
            oom,
            oom_watch,
        } = launched;
        let exit = Exit::new();
        let registered = match launch.res.children.pop() {
            Some(fd) => {
                let pidfd = Arc::new(fd);
                self.reap(id, &pidfd, &exit, oom_watch).map(|()| pidfd)
            }
            None => Err(DriverError::Internal {
                context: format!("container {id}"),
                message: "the init has no pidfd".into(),
            }),
        };
        let pidfd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                // The init was taken out of the launch: kill it here, the rest on drop.
                if let Ok(st) = self.load(id)
                    && let Some(fd) = self.init_pidfd(&st)
                {
                    let _ = sys::pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
                    let _ = sys::waitid_pidfd(fd.as_raw_fd(), false);
                }
                drop(launch);
                run_poststop(cmd, &oci);
                return Err(e);
            }
        };
        let mut res = launch.disarm();
        // The state is complete: its lock is not needed any more (one fd less per container).
        res.lock = None;
        lock(&self.live).insert(
            id.clone(),
            Live {
                exit,
                pending: Some(Pending { chan, plan, pidfd }),
                res,
                oci: Arc::new(oci),
                state,
            },
        );
        let terminal = terminal.map(|t| t as Arc<dyn Terminal>);
        Ok(execdriver_api::Created::new(pid as u32, oom).with_terminal(terminal))
    }

    fn start(&self, id: &ContainerId) -> Result<()> {
        let pending = {
            let mut live = lock(&self.live);
            match live.get_mut(id) {
                None => None,
                Some(l) => match l.pending.take() {
                    Some(p) => Some(p),
                    None => {
                        let status = self.status(&l.state);
                        return Err(DriverError::InvalidState {
                            id: id.to_string(),
                            op: "start".into(),
                            status,
                        });
                    }
                },
            }
        };
        match pending {
            Some(p) => self.start_live(id, p),
            // Made by another process (`create_detached`): started through its fifo.
            None => self.start_detached(id),
        }
    }

    fn wait(&self, id: &ContainerId) -> Result<Exit> {
        if let Some(l) = lock(&self.live).get(id) {
            return Ok(l.exit.clone());
        }
        // Known, but its init is not this process's child: nothing here can reap it.
        self.load(id)?;
        Err(DriverError::unsupported(
            format!("wait for container {id}, which another process created"),
            NAME,
        ))
    }

    fn delete(&self, id: &ContainerId) -> Result<()> {
        let mut l = {
            let mut live = lock(&self.live);
            let Some(l) = live.get(id) else {
                drop(live);
                return self.delete_stored(id, false);
            };
            if l.exit.status().is_none() {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "delete".into(),
                    status: self.status(&l.state),
                });
            }
            live.remove(id).expect("present under the lock")
        };
        // Its exec'd processes died with the init (its pid namespace or cgroup).
        lock(&self.execs).retain(|(cid, _), _| cid != id);
        l.res.release(self, id);
        Self::poststop(&l.oci, &l.state);
        Ok(())
    }

    fn exec_create(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &Process,
        pipes: Pipes,
    ) -> Result<execdriver_api::Created> {
        self.exec_create_with(id, exec_id, process, pipes, &ExecOptions::default())
    }

    fn exec_start(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let (pending, exit) = {
            let mut execs = lock(&self.execs);
            let e = execs
                .get_mut(&(id.clone(), exec_id.to_owned()))
                .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
            let Some(p) = e.pending.take() else {
                return Err(DriverError::exec_started(
                    id,
                    exec_id,
                    e.exit.status().is_some(),
                ));
            };
            (p, e.exit.clone())
        };
        let (chan, plan) = pending;
        Self::let_exec(id, chan, None, &plan, &exit)
    }

    fn exec_wait(&self, id: &ContainerId, exec_id: &str) -> Result<Exit> {
        lock(&self.execs)
            .get(&(id.clone(), exec_id.to_owned()))
            .map(|e| e.exit.clone())
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))
    }

    fn exec_delete(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let e = lock(&self.execs)
            .remove(&(id.clone(), exec_id.to_owned()))
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
        if e.exit.status().is_none() {
            // Unreaped until the reaper sets the exit, so the pidfd still names it.
            let _ = sys::pidfd_send_signal(e.pidfd.as_raw_fd(), libc::SIGKILL);
            if e.exit.wait_timeout(Duration::from_secs(10)).is_none() {
                return Err(DriverError::Internal {
                    context: format!("container {id}: exec {exec_id}"),
                    message: "still running 10s after SIGKILL (is the container paused?)".into(),
                });
            }
        }
        Ok(())
    }

    fn kill(&self, id: &ContainerId, signal: Signal) -> Result<()> {
        let st = self.load(id)?;
        let Some(pidfd) = self.init_pidfd(&st) else {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            });
        };
        match sys::pidfd_send_signal(pidfd.as_raw_fd(), signal.number()) {
            Ok(()) => Ok(()),
            Err(libc::ESRCH) => Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            }),
            Err(e) => Err(DriverError::sys(
                format!("container {id}: signal {signal}"),
                e,
            )),
        }
    }

    fn terminate(&self, id: &ContainerId) -> Result<()> {
        let st = self.load(id)?;
        let pidfd = self.init_pidfd(&st);
        if let Some(fd) = &pidfd {
            let _ = sys::pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
        }
        st.cgroup
            .end_killed(&*self.fs)
            .map_err(|e| cgroup_error(id, e))?;
        if let Some(fd) = pidfd {
            wait_exit(&fd, Duration::from_secs(10))
                .map_err(|e| DriverError::sys(format!("container {id}: wait for exit"), e))?;
        }
        Ok(())
    }

    fn clean(&self, id: &ContainerId) -> Result<()> {
        if lock(&self.live).contains_key(id) {
            return Driver::delete(self, id);
        }
        self.clean_stored(id)
    }

    fn info(&self, id: &ContainerId) -> Result<Info> {
        let st = self.load(id)?;
        let status = self.status(&st);
        let mut info = Info::new(id.clone(), NAME, status, st.bundle.clone());
        info.pid = (status != Status::Stopped).then_some(st.pid as u32);
        info.created = st.created;
        info.annotations = st.annotations.clone();
        Ok(info)
    }

    fn pids(&self, id: &ContainerId) -> Result<Vec<u32>> {
        let st = self.load(id)?;
        st.cgroup.procs(&*self.fs).map_err(|e| self.raced(id, e))
    }

    fn list(&self) -> Result<Vec<ContainerId>> {
        self.state.list()
    }

    fn can_handle(&self, cmd: &Command) -> Result<()> {
        cmd.refuse_wasm_entrypoint(NAME)
    }

    fn health(&self) -> execdriver_api::Health {
        crate::health::check(self.layout().map_err(|e| e.to_string()), &self.options.root)
    }

    fn pause(&self, id: &ContainerId) -> Result<()> {
        let st = self.load_alive(id)?;
        let status = self.status(&st);
        if status != Status::Running {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "pause".into(),
                status,
            });
        }
        st.cgroup.freeze(&*self.fs, true).map_err(|e| {
            // Exited meanwhile (its freezer can't settle then): say that instead.
            match self.load_alive(id) {
                Err(gone) => gone,
                Ok(_) => self.raced(id, e),
            }
        })
    }

    fn unpause(&self, id: &ContainerId) -> Result<()> {
        let st = self.load_alive(id)?;
        let status = self.status(&st);
        if status != Status::Paused {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "unpause".into(),
                status,
            });
        }
        st.cgroup.freeze(&*self.fs, false).map_err(|e| {
            // Exited meanwhile (its freezer can't settle then): say that instead.
            match self.load_alive(id) {
                Err(gone) => gone,
                Ok(_) => self.raced(id, e),
            }
        })
    }

    fn stats(&self, id: &ContainerId) -> Result<ResourceStats> {
        let st = self.load_alive(id)?;
        let fs = &*self.fs;
        let mut s = ResourceStats::new();
        s.cpu = stats::cpu(&st.cgroup, fs);
        s.memory = stats::memory(&st.cgroup, fs, stats::host_memory());
        s.pids = stats::pids(&st.cgroup, fs);
        s.block_io = stats::block_io(&st.cgroup, fs);
        s.network = if st.netns {
            stats::network(st.pid)
        } else {
            None
        };
        Ok(s)
    }

    fn update(&self, id: &ContainerId, resources: &LinuxResources) -> Result<()> {
        let st = self.load_alive(id)?;
        st.cgroup
            .apply(&*self.fs, resources, None)
            .map_err(|e| match self.load_alive(id) {
                // It exited while we wrote: that, not the write, is the news.
                Err(gone) => gone,
                Ok(_) => e,
            })
    }
}

impl NativeDriver {
    /// Validates, creates the cgroup and state, starts the init and takes it through setup
    /// (and the OCI hooks before `pivot_root`) until it is ready to exec. With `detached`, the
    /// init will wait on `exec.fifo` in the state directory instead of the socket (`create`).
    /// `created` is set once the container exists.
    fn launch(
        &self,
        cmd: &Command,
        pipes: Pipes,
        oci: &OciHooks,
        created: &mut bool,
        detached: bool,
    ) -> Result<Launched<'_>> {
        let id = &cmd.id;
        // 1. Validate and prepare; nothing on the system changes yet.
        execdriver_api::validate_spec(&cmd.spec)?;
        let rootfs_path = cmd.rootfs()?;
        let rootfs = rootfs_path.canonicalize().map_err(|e| {
            DriverError::invalid_spec("root.path", format!("{}: {e}", rootfs_path.display()))
        })?;
        if !rootfs.is_dir() {
            return Err(DriverError::invalid_spec(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ));
        }
        let layout = self.layout()?;
        let cgroups_path = cmd
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone());
        let placement = Placement::new(
            &self.options.cgroup_parent,
            cgroups_path.as_deref(),
            id.as_str(),
        )
        .map_err(|e| DriverError::invalid_spec("linux.cgroupsPath", e.to_string()))?;
        let mut cgroup = Cgroup::plan(layout, &placement).map_err(|e| cgroup_error(id, e))?;
        let last_cap = *self.last_cap.get_or_init(crate::plan::process::last_cap);
        let mut plan = Plan::build(&PlanInputs {
            command: cmd,
            rootfs: &rootfs,
            cgroup_dirs: &cgroup.mount_dirs(),
            last_cap,
        })?;
        plan.hooks_before_pivot = oci.before_pivot();
        let shared = plan.rootfs.root_propagation & libc::MS_SHARED != 0;
        if !plan.rootfs.host_ns && (self.options.no_pivot || shared) {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| DriverError::io("read /proc/self/mountinfo", e))?;
            if self.options.no_pivot {
                plan.rootfs.no_pivot =
                    Some(crate::plan::mounts::kernel_fs_outside(&mountinfo, &rootfs));
            }
            if shared {
                plan.rootfs.private_parent =
                    crate::plan::mounts::mount_point_of(&mountinfo, &rootfs);
            }
        }
        let mut stdio = StdioFds::new(pipes, self.dev_null()?)?;

        // 2. Create: state, cgroup, the init process.
        let mut launch = Launch {
            driver: self,
            id: id.clone(),
            res: Resources {
                lock: Some(self.state.create(id)?),
                owns_state: true,
                ..Resources::default()
            },
        };
        // `create`: the init holds the fifo open for reading and writing until `start`
        // writes into it; our copy closes once it is cloned.
        let _fifo = if detached {
            let fifo = self.state.dir(id).join(EXEC_FIFO);
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
                |e| {
                    DriverError::sys(
                        format!("container {id}: mkfifo {}", fifo.display()),
                        e as i32,
                    )
                },
            )?;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&fifo)
                .map_err(|e| {
                    DriverError::io(format!("container {id}: open {}", fifo.display()), e)
                })?;
            plan.exec_fifo = Some(f.as_raw_fd());
            Some(f)
        } else {
            None
        };
        cgroup.create_for(&*self.fs, id)?;
        launch.res.cgroup = Some(cgroup.clone());
        // Always, with or without `linux.resources`: the device rules (deny-all, the spec's,
        // runc's defaults) apply to every container.
        {
            let none = LinuxResources::default();
            let res = cmd
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .unwrap_or(&none);
            let devices: Vec<(char, u32, u32)> = plan
                .rootfs
                .devices
                .iter()
                .filter_map(|d| {
                    let t = match d.mode & libc::S_IFMT {
                        libc::S_IFCHR => 'c',
                        libc::S_IFBLK => 'b',
                        _ => return None,
                    };
                    Some((t, libc::major(d.dev), libc::minor(d.dev)))
                })
                .collect();
            cgroup.apply(&*self.fs, res, Some(&devices))?;
        }
        let oom = OomNotifier::new();
        let oom_watch = if detached {
            None
        } else {
            match self.oom.watch(id, &cgroup, &oom) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(%id, err = %e, "no OOM notification for this container");
                    None
                }
            }
        };

        let (parent_end, child_end) = socketpair().map_err(|e| DriverError::io("socketpair", e))?;
        let sync = stdio.lift(child_end.as_raw_fd())?;
        let exec_fd = stdio.lift(trampoline::fd()?)?;
        if let Some(f) = plan.exec_fifo {
            plan.exec_fifo = Some(stdio.lift(f)?);
        }
        if plan.rootfs.host_ns {
            // No mount namespace of its own: the container's mounts go below a bind of the
            // rootfs in the runtime's namespace, made (and at teardown detached) here.
            nix::mount::mount(
                Some(&rootfs),
                &rootfs,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| {
                DriverError::sys(
                    format!("container {id}: bind the rootfs {}", rootfs.display()),
                    e as i32,
                )
            })?;
            launch.res.rootfs_bind = Some(rootfs.clone());
        }
        if plan.ns.new_user {
            // Every bind source gets an fd number of its own, which the intermediate's helper
            // fills in with the host's credentials (`child::SourceHelper`).
            let binds: Vec<bool> = plan.rootfs.binds().collect();
            if binds.contains(&true) {
                let null = self.dev_null()?;
                plan.rootfs.source_fds = binds
                    .into_iter()
                    .map(|b| if b { stdio.reserve(null) } else { Ok(-1) })
                    .collect::<Result<_>>()?;
            }
        }
        let argv = TrampolineArgv::new(
            Some(sync),
            &plan.process.candidates,
            &plan.process.argv_ptrs,
        );
        let args = ChildArgs {
            plan: Some(&plan),
            process: &plan.process,
            join: None,
            sync,
            stdio: stdio.raw,
            extra: &stdio.extra,
            exec: Exec {
                fd: exec_fd,
                argv: &argv,
            },
        };
        let intermediate = !plan.ns.joins.is_empty() || !plan.rootfs.source_fds.is_empty();
        let (pid0, pidfd0) = fork(&args, intermediate)
            .map_err(|e| DriverError::sys(format!("container {id}: clone3"), e))?;
        launch.res.children.push(pidfd0);
        drop(child_end);
        drop(stdio);
        let chan = Channel::new(parent_end).map_err(|e| DriverError::io("setup socket", e))?;
        let setup_failed = |what: &str| DriverError::Internal {
            context: format!("container {id}"),
            message: format!("the container init {what}"),
        };
        let recv = |chan: &Channel| -> Result<Option<crate::sys::child::Msg>> {
            chan.recv()
                .map_err(|e| DriverError::io(format!("container {id}: setup"), e))
        };
        let go = |chan: &Channel| {
            chan.go()
                .map_err(|e| DriverError::io(format!("container {id}: setup"), e))
        };

        cgroup
            .add(&*self.fs, pid0)
            .map_err(|e| cgroup_error(id, e))?;
        let pid = if intermediate {
            go(&chan)?;
            let grandchild = loop {
                match recv(&chan)? {
                    Some(m) if m.kind == kind::MAPS => {
                        if let Some(maps) = &plan.id_maps {
                            write_maps(pid0, maps)?;
                        }
                        go(&chan)?;
                    }
                    Some(m) if m.kind == kind::PID => break m.arg as i32,
                    Some(m) if m.kind == kind::ERROR => {
                        return Err(failure::describe(Some(&plan), &plan.process, &m));
                    }
                    _ => return Err(setup_failed("exited while joining namespaces")),
                }
            };
            // Reap the intermediate; the init is our child too (CLONE_PARENT).
            if let Some(mid) = launch.res.children.pop() {
                let _ = sys::waitid_pidfd(mid.as_raw_fd(), false);
            }
            let pidfd = sys::pidfd_open(grandchild)
                .map_err(|e| DriverError::sys(format!("container {id}: pidfd_open"), e))?;
            launch.res.children.push(owned(pidfd));
            grandchild
        } else {
            if let Some(maps) = &plan.id_maps {
                write_maps(pid0, maps)?;
            }
            pid0
        };
        if let Some(adj) = plan.process.oom_score_adj {
            std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()).map_err(|e| {
                DriverError::io(format!("container {id}: set process.oomScoreAdj {adj}"), e)
            })?;
        }
        let start_time = procfs::stat(pid)
            .map(|s| s.start_time)
            .ok_or_else(|| setup_failed("disappeared"))?;
        let state = State {
            version: STATE_VERSION,
            id: id.clone(),
            pid,
            start_time,
            bundle: cmd.bundle.clone(),
            rootfs: rootfs.clone(),
            created: SystemTime::now(),
            started: false,
            cgroup: cgroup.clone(),
            owner: std::process::id(),
            netns: plan.ns.has_net,
            annotations: cmd
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            seccomp: cmd.spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            hooks: cmd.spec.hooks().clone(),
            rootfs_bound: launch.res.rootfs_bind.is_some(),
        };
        self.state.write(&state)?;
        *created = true;

        go(&chan)?;
        let init_fd = launch
            .res
            .children
            .last()
            .ok_or_else(|| setup_failed("has no pidfd"))?;
        let mut before_pivot = || -> Result<()> {
            let json = oci_state(&state, "creating");
            OciHook::run_all(&oci.prestart, &json, None)?;
            OciHook::run_all(&oci.create_runtime, &json, None)?;
            if !oci.create_container.is_empty() {
                let cwd = crate::plan::paths::cpath(&rootfs, "root.path")?;
                OciHook::run_all(
                    &oci.create_container,
                    &json,
                    Some(InContainer {
                        pidfd: init_fd,
                        flags: namespaces_of(pid)?,
                        cwd: Some(&cwd),
                        // runc's init loads the filter after createContainer hooks.
                        seccomp: None,
                    }),
                )?;
            }
            Ok(())
        };
        let setup = SetUp {
            pidfd: init_fd,
            pid,
            state: &state,
            status: "creating",
        };
        let terminal = await_ready(
            &chan,
            id,
            Some(&plan),
            &plan.process,
            setup,
            &mut before_pivot,
        )?;
        Ok(Launched {
            launch,
            chan,
            plan,
            state,
            pid,
            terminal,
            oom,
            oom_watch,
        })
    }

    /// Lets a set-up init (or exec'd process) exec its program: GO on its socket, then EOF
    /// means `execve` succeeded, an error record says why it did not. `exit` (the reaper's)
    /// describes an init that died on the way.
    fn let_exec(
        id: &ContainerId,
        chan: Channel,
        plan: Option<&Plan>,
        process: &ProcessPlan,
        exit: &Exit,
    ) -> Result<()> {
        let died_early = |e: std::io::Error| -> DriverError {
            // A broken socket: the process died (killed, by a hook or anyone) before its
            // program started. Say how, rather than what the socket said.
            match exit.wait_timeout(Duration::from_secs(1)) {
                Some(st) => DriverError::Internal {
                    context: format!("container {id}"),
                    message: format!(
                        "{} ended ({st}) before the program started",
                        if plan.is_some() {
                            "its init"
                        } else {
                            "the exec'd process"
                        }
                    ),
                },
                None => DriverError::io(format!("container {id}: start"), e),
            }
        };
        if let Err(e) = chan.go() {
            return Err(died_early(e));
        }
        match chan.recv() {
            Ok(None) => Ok(()),
            Ok(Some(m)) if m.kind == kind::ERROR => Err(failure::describe(plan, process, &m)),
            Ok(Some(_)) => Err(DriverError::Internal {
                context: format!("container {id}"),
                message: "the process sent an unexpected message at its start".into(),
            }),
            Err(e) => Err(died_early(e)),
        }
    }

    /// Hands a set-up process's pidfd to the reaper: `exit` is set (after the container's
    /// OOM kills are counted, with `oom`) when it exits.
    fn reap(
        &self,
        id: &ContainerId,
        pidfd: &Arc<OwnedFd>,
        exit: &Exit,
        oom: Option<crate::oom::Watch>,
    ) -> Result<()> {
        let exit = exit.clone();
        self.reaper
            .watch(pidfd.clone(), move |status| {
                // Every OOM kill the kernel counted reaches the receivers before the exit.
                let kills = oom.as_ref().map_or(0, crate::oom::Watch::sync);
                drop(oom);
                exit.set(status.with_oom_killed(kills > 0));
            })
            .map_err(|e| DriverError::Internal {
                context: format!("container {id}"),
                message: e,
            })
    }

    /// Creates a container and leaves its init waiting for [`start`](Driver::start), as
    /// `runc create` does, for a caller that exits before it starts: the init waits on a fifo
    /// in the state directory, so any process can start it; the cgroup, state and init stay
    /// when this returns. The OCI hooks up to `createContainer` have run. The init is a child
    /// of the calling process, which must reap it, or exit and leave that to its subreaper (a
    /// container shim). (An engine that keeps running uses [`Driver::create`].)
    ///
    /// # Errors
    /// As [`Driver::run`] up to the point where the program would exec.
    pub fn create_detached(&self, cmd: &Command, pipes: Pipes) -> Result<Created> {
        let oci = OciHooks::from_spec(&cmd.spec)?;
        let mut created = false;
        match self.launch(cmd, pipes, &oci, &mut created, true) {
            Ok(Launched {
                mut launch,
                chan,
                terminal,
                pid,
                ..
            }) => {
                launch.disarm();
                drop(chan);
                Ok(Created {
                    pid: pid as u32,
                    terminal: terminal.and_then(|t| t.take()),
                })
            }
            Err(e) => {
                if created {
                    run_poststop(cmd, &oci);
                }
                Err(e)
            }
        }
    }

    /// The OCI hooks kept in a container's state.
    fn stored_hooks(&self, st: &State) -> Result<OciHooks> {
        let spec = execdriver_api::oci_spec::runtime::SpecBuilder::default()
            .hooks(st.hooks.clone().unwrap_or_default())
            .build()
            .map_err(|e| DriverError::Internal {
                context: format!("container {}: hooks", st.id),
                message: e.to_string(),
            })?;
        OciHooks::from_spec(&spec)
    }

    /// The `startContainer` hooks, in the container's namespaces.
    fn start_container_hooks(
        oci: &OciHooks,
        st: &State,
        init: &OwnedFd,
        seccomp: Option<&crate::seccomp::SeccompPlan>,
    ) -> Result<()> {
        if oci.start_container.is_empty() {
            return Ok(());
        }
        OciHook::run_all(
            &oci.start_container,
            &oci_state(st, "created"),
            Some(InContainer {
                pidfd: init,
                flags: namespaces_of(st.pid)?,
                cwd: None,
                seccomp,
            }),
        )
    }

    /// Starts a container made by [`create_detached`](Self::create_detached), from any
    /// process: runs its `startContainer` hooks, lets its init exec the program (one byte into
    /// its fifo), runs `poststart`.
    fn start_detached(&self, id: &ContainerId) -> Result<()> {
        let mut st = self.load(id)?;
        let status = self.status(&st);
        let fifo = self.state.dir(id).join(EXEC_FIFO);
        if status != Status::Created || !fifo.exists() {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "start".into(),
                status,
            });
        }
        let init = self
            .init_pidfd(&st)
            .ok_or_else(|| DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            })?;
        let oci = self.stored_hooks(&st)?;
        let seccomp = match &st.seccomp {
            Some(s) if !oci.start_container.is_empty() => crate::seccomp::compile(s)?,
            _ => None,
        };
        Self::start_container_hooks(&oci, &st, &init, seccomp.as_ref())?;
        // The init blocks reading the fifo: one byte and it execs. Non-blocking, so a gone
        // init (no reader left) is ENXIO rather than a hang.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => DriverError::NotRunning {
                    id: id.to_string(),
                    status: Status::Stopped,
                },
                _ => DriverError::io(format!("container {id}: open {}", fifo.display()), e),
            })?;
        std::io::Write::write_all(&mut f, b"0")
            .map_err(|e| DriverError::io(format!("container {id}: write {}", fifo.display()), e))?;
        drop(f);
        let _ = std::fs::remove_file(&fifo);
        st.started = true;
        self.state.write(&st)?;
        OciHook::run_logged(&oci.poststart, &oci_state(&st, "running"));
        Ok(())
    }

    /// Starts a container [`Driver::create`] made in this process.
    fn start_live(&self, id: &ContainerId, pending: Pending) -> Result<()> {
        let (oci, mut state, exit) = {
            let live = lock(&self.live);
            let l = live.get(id).ok_or_else(|| DriverError::not_found(id))?;
            (l.oci.clone(), l.state.clone(), l.exit.clone())
        };
        let Pending { chan, plan, pidfd } = pending;
        Self::start_container_hooks(&oci, &state, &pidfd, plan.process.seccomp.as_ref())?;
        Self::let_exec(id, chan, Some(&plan), &plan.process, &exit)?;
        state.started = true;
        self.state.write(&state)?;
        if let Some(l) = lock(&self.live).get_mut(id) {
            l.state.started = true;
        }
        OciHook::run_logged(&oci.poststart, &oci_state(&state, "running"));
        Ok(())
    }

    /// Removes a container by its stored state — made by
    /// [`create_detached`](Self::create_detached), or left by a crashed engine: kills it first
    /// when it was never started, or with `force` when it runs; then removes its cgroup and
    /// state and runs its `poststop` hooks, as `runc delete` does.
    ///
    /// # Errors
    /// `NotFound`; `InvalidState` for a running or paused container, without `force`.
    pub fn delete_stored(&self, id: &ContainerId, force: bool) -> Result<()> {
        if lock(&self.live).contains_key(id) {
            if force {
                self.terminate(id)?;
            }
            return Driver::delete(self, id);
        }
        let st = match self.state.read(id) {
            Ok(Some(st)) => Some(st),
            Ok(None) => return Err(DriverError::not_found(id)),
            Err(_) => None,
        };
        if let Some(st) = &st {
            let status = self.status(st);
            // A created container was never started: deleting it is how an engine gives up on
            // it (runc kills it too); a running or paused one needs `force`.
            if status != Status::Stopped {
                if !force && status != Status::Created {
                    return Err(DriverError::InvalidState {
                        id: id.to_string(),
                        op: "delete".into(),
                        status,
                    });
                }
                self.terminate(id)?;
            }
        }
        self.clean_stored(id)?;
        if let Some(st) = st {
            let oci = self.stored_hooks(&st)?;
            Self::poststop(&oci, &st);
        }
        Ok(())
    }

    /// The `poststop` hooks of a deleted container (their failures are logged).
    fn poststop(oci: &OciHooks, st: &State) {
        let state = OciState {
            id: &st.id,
            status: "stopped",
            pid: None,
            bundle: &st.bundle,
            annotations: &st.annotations,
        };
        OciHook::run_logged(&oci.poststop, &state.json());
    }

    /// Sets up a process in a running container up to the point where it would exec (its
    /// pidfd in the returned guard).
    fn exec_setup(
        &self,
        id: &ContainerId,
        process: &Process,
        pipes: Pipes,
        opts: &ExecOptions,
    ) -> Result<ExecSetUp> {
        let st = self.load_alive(id)?;
        match self.status(&st) {
            // Created too, as runc: the namespaces, cgroup and rootfs exist; the init waits
            // for `start` and the exec'd process runs beside it.
            Status::Running | Status::Created => {}
            // The process freezes as it joins the cgroup: this returns after a resume.
            Status::Paused if opts.ignore_paused => {}
            status => {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "exec".into(),
                    status,
                });
            }
        }
        let Some(init) = self.init_pidfd(&st) else {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            });
        };
        let last_cap = *self.last_cap.get_or_init(crate::plan::process::last_cap);
        let plan = ProcessPlan::build(process, last_cap, st.seccomp.as_ref())?;
        let flags = namespaces_of(st.pid)?;
        // No mount namespace of its own: the init's root is a chroot, entered through
        // /proc/<pid>/root (opened while the pid is known to be the init's).
        let init_root = if st.rootfs_bound {
            let f = std::fs::File::open(format!("/proc/{}/root", st.pid))
                .map_err(|e| DriverError::io(format!("container {id}: open the init's root"), e))?;
            Some(OwnedFd::from(f))
        } else {
            None
        };
        let mut stdio = StdioFds::new(pipes, self.dev_null()?)?;
        let (parent_end, child_end) = socketpair().map_err(|e| DriverError::io("socketpair", e))?;
        let sync = stdio.lift(child_end.as_raw_fd())?;
        let exec_fd = stdio.lift(trampoline::fd()?)?;
        let root_fd = match &init_root {
            Some(fd) => stdio.lift(fd.as_raw_fd())?,
            None => -1,
        };
        let argv = TrampolineArgv::new(Some(sync), &plan.candidates, &plan.argv_ptrs);
        let args = ChildArgs {
            plan: None,
            process: &plan,
            join: Some((init.as_raw_fd(), flags, root_fd)),
            sync,
            stdio: stdio.raw,
            extra: &stdio.extra,
            exec: Exec {
                fd: exec_fd,
                argv: &argv,
            },
        };
        let (mid, mid_fd) = fork(&args, true)
            .map_err(|e| DriverError::sys(format!("container {id}: exec: clone3"), e))?;
        let mut guard = ExecGuard {
            children: vec![mid_fd],
        };
        drop(child_end);
        drop(stdio);
        let chan = Channel::new(parent_end).map_err(|e| DriverError::io("setup socket", e))?;
        let io_err = |e| DriverError::io(format!("container {id}: exec"), e);
        // In the container's cgroups before it forks the process, which inherits them.
        if opts.sub_cgroups.is_empty() {
            st.cgroup
                .add(&*self.fs, mid)
                .map_err(|e| cgroup_error(id, e))?;
        } else {
            st.cgroup
                .add_to_sub(&*self.fs, mid, &opts.sub_cgroups, "exec cgroup")?;
        }
        chan.go().map_err(io_err)?;
        let pid = match chan.recv().map_err(io_err)? {
            Some(m) if m.kind == kind::PID => m.arg as i32,
            Some(m) if m.kind == kind::ERROR => return Err(failure::describe(None, &plan, &m)),
            _ => {
                return Err(DriverError::Internal {
                    context: format!("container {id}: exec"),
                    message: "the helper exited while joining the container".into(),
                });
            }
        };
        if let Some(mid) = guard.children.pop() {
            let _ = sys::waitid_pidfd(mid.as_raw_fd(), false);
        }
        let pidfd = sys::pidfd_open(pid)
            .map_err(|e| DriverError::sys(format!("container {id}: exec: pidfd_open"), e))?;
        guard.children.push(owned(pidfd));
        chan.go().map_err(io_err)?;
        let terminal = {
            let setup = SetUp {
                pidfd: guard.children.last().expect("just pushed"),
                pid,
                state: &st,
                status: "running",
            };
            await_ready(&chan, id, None, &plan, setup, &mut || Ok(()))?
        };
        Ok(ExecSetUp {
            guard,
            chan,
            plan,
            pid,
            terminal,
            cgroup: st.cgroup,
        })
    }

    /// [`Driver::exec_create`] with options.
    ///
    /// # Errors
    /// As [`Driver::exec`] up to the start.
    pub fn exec_create_with(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &Process,
        pipes: Pipes,
        opts: &ExecOptions,
    ) -> Result<execdriver_api::Created> {
        let ExecSetUp {
            mut guard,
            chan,
            plan,
            pid,
            terminal,
            cgroup,
        } = {
            if lock(&self.execs).contains_key(&(id.clone(), exec_id.to_owned())) {
                return Err(DriverError::exec_exists(id, exec_id));
            }
            self.exec_setup(id, process, pipes, opts)?
        };
        let pidfd = Arc::new(guard.children.pop().ok_or_else(|| DriverError::Internal {
            context: format!("container {id}: exec"),
            message: "no pidfd".into(),
        })?);
        // The container's OOM events, for this process's hooks.
        let oom = OomNotifier::new();
        let watch = self.oom.watch(id, &cgroup, &oom).ok();
        let exit = Exit::new();
        if let Err(e) = self.reap(id, &pidfd, &exit, watch) {
            let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
            let _ = sys::waitid_pidfd(pidfd.as_raw_fd(), false);
            return Err(e);
        }
        {
            use std::collections::hash_map::Entry;
            let mut execs = lock(&self.execs);
            match execs.entry((id.clone(), exec_id.to_owned())) {
                // Taken by a concurrent exec_create meanwhile: this one goes (the reaper
                // reaps it).
                Entry::Occupied(_) => {
                    drop(execs);
                    let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
                    return Err(DriverError::exec_exists(id, exec_id));
                }
                Entry::Vacant(v) => {
                    v.insert(LiveExec {
                        exit,
                        pidfd,
                        pending: Some((chan, plan)),
                    });
                }
            }
        }
        let terminal = terminal.map(|t| t as Arc<dyn Terminal>);
        Ok(execdriver_api::Created::new(pid as u32, oom).with_terminal(terminal))
    }

    /// Runs a process in a running container and returns once it has started, as
    /// `runc exec --detach` does. The process is a child of the caller, which must reap it, or
    /// exit and leave that to its subreaper (a container shim).
    ///
    /// # Errors
    /// As [`Driver::exec`].
    pub fn exec_detached(
        &self,
        id: &ContainerId,
        process: &Process,
        pipes: Pipes,
    ) -> Result<Created> {
        self.exec_detached_with(id, process, pipes, ExecOptions::default())
    }

    /// [`Driver::exec`] with options: the lifecycle engine over
    /// [`exec_create_with`](Self::exec_create_with).
    ///
    /// # Errors
    /// As [`Driver::exec`].
    pub fn exec_with(
        &self,
        id: &ContainerId,
        process: &Process,
        pipes: Pipes,
        hooks: &Hooks,
        opts: ExecOptions,
    ) -> Result<ExitStatus> {
        let exec_id = execdriver_api::lifecycle::next_exec_id();
        let created = self.exec_create_with(id, &exec_id, process, pipes, &opts)?;
        execdriver_api::lifecycle::exec_created(self, id, &exec_id, process, created, hooks)
    }

    /// [`exec_detached`](Self::exec_detached) with options.
    ///
    /// # Errors
    /// As [`Driver::exec`].
    pub fn exec_detached_with(
        &self,
        id: &ContainerId,
        process: &Process,
        pipes: Pipes,
        opts: ExecOptions,
    ) -> Result<Created> {
        let ExecSetUp {
            mut guard,
            chan,
            plan,
            pid,
            terminal,
            ..
        } = self.exec_setup(id, process, pipes, &opts)?;
        // Nothing reaps it here: its exit is for whoever reaps our orphans.
        Self::let_exec(id, chan, None, &plan, &Exit::new())?;
        guard.children.clear();
        Ok(Created {
            pid: pid as u32,
            terminal: terminal.and_then(|t| t.take()),
        })
    }

    /// How many OOM kills the kernel counted in the container's cgroup (for `events`).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn oom_kills(&self, id: &ContainerId) -> Result<u64> {
        let st = self.load(id)?;
        Ok(stats::oom_kills(&st.cgroup, &*self.fs).unwrap_or(0))
    }
}

/// A process being set up, for its seccomp agent: its pidfd and pid, and its container's
/// state with the status the agent is told (the document is only made when an agent needs it).
struct SetUp<'a> {
    pidfd: &'a OwnedFd,
    pid: i32,
    state: &'a State,
    status: &'static str,
}

/// After the last GO of setup: waits for READY, taking the pty master on the way when the
/// process has a terminal, and handing the seccomp listener to the agent when it has one.
fn await_ready(
    chan: &Channel,
    id: &ContainerId,
    plan: Option<&Plan>,
    process: &ProcessPlan,
    setup: SetUp<'_>,
    before_pivot: &mut dyn FnMut() -> Result<()>,
) -> Result<Option<Arc<Pty>>> {
    let mut terminal: Option<Arc<Pty>> = None;
    loop {
        let msg = chan
            .recv_with_fd()
            .map_err(|e| DriverError::io(format!("container {id}: setup"), e))?;
        match msg {
            Some((m, _)) if m.kind == kind::READY => return Ok(terminal),
            Some((m, Some(fd))) if m.kind == kind::PTY => terminal = Some(Arc::new(Pty::new(fd))),
            Some((m, _)) if m.kind == kind::HOOKS => {
                before_pivot()?;
                chan.go()
                    .map_err(|e| DriverError::io(format!("container {id}: setup"), e))?;
            }
            Some((m, _)) if m.kind == kind::SECCOMP => {
                let Some((_, listener)) = process.seccomp.as_ref().and_then(|s| s.notify.as_ref())
                else {
                    return Err(DriverError::Internal {
                        context: format!("container {id}"),
                        message: "a seccomp listener came without a listenerPath".into(),
                    });
                };
                crate::seccomp::agent::hand_over(
                    listener,
                    setup.pidfd.as_raw_fd(),
                    m.arg as RawFd,
                    setup.pid,
                    &oci_state(setup.state, setup.status),
                )?;
                chan.go()
                    .map_err(|e| DriverError::io(format!("container {id}: setup"), e))?;
            }
            Some((m, _)) if m.kind == kind::ERROR => {
                return Err(failure::describe(plan, process, &m));
            }
            _ => {
                return Err(DriverError::Internal {
                    context: format!("container {id}"),
                    message: "the process exited during setup".into(),
                });
            }
        }
    }
}

/// The `CLONE_NEW*` flags of the namespaces of `pid` that differ from this process's own.
fn namespaces_of(pid: i32) -> Result<libc::c_int> {
    const KINDS: &[(&str, libc::c_int)] = &[
        ("user", libc::CLONE_NEWUSER),
        ("mnt", libc::CLONE_NEWNS),
        ("pid", libc::CLONE_NEWPID),
        ("net", libc::CLONE_NEWNET),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("time", libc::CLONE_NEWTIME),
    ];
    let mut flags = 0;
    for (name, flag) in KINDS {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{name}"));
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}"));
        match (theirs, ours) {
            (Ok(t), Ok(o)) if t != o => flags |= flag,
            (Ok(_), Ok(_)) => {}
            // A kernel without this namespace kind.
            (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound && *name == "time" => {}
            (Err(e), _) => return Err(DriverError::io(format!("read /proc/{pid}/ns/{name}"), e)),
            (_, Err(e)) => return Err(DriverError::io(format!("read /proc/self/ns/{name}"), e)),
        }
    }
    Ok(flags)
}

/// Polls a pidfd until the process exits (the fd becomes readable).
pub(crate) fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> std::result::Result<(), i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(libc::ETIMEDOUT);
        }
        match sys::poll_in(
            pidfd.as_raw_fd(),
            left.as_millis().min(i32::MAX as u128) as i32,
        ) {
            Ok(true) => return Ok(()),
            Ok(false) => continue,
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<NativeDriver>();
    let _ = (Path::new(""), PathBuf::new(), Process::default());
}
