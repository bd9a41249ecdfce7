//! The `oci` driver: containers run by a runc-compatible binary (runc, crun, …) through its
//! command line, with the same [`Driver`] contract, hooks and OOM channel as the built-in
//! drivers. The binary is driven with the [`runc`] crate (containerd's Rust client of the runc
//! command line).
//!
//! How the contract maps onto the binary:
//! - `create`: the spec is written to a bundle of the driver's own (`<root>/bundles/<id>`, the
//!   rootfs made absolute), `create --pid-file` leaves the init waiting (so `pre_start` hooks
//!   get its real pid); `start` is the binary's `start`; `delete` its `delete --force`. `run`
//!   is the API's lifecycle engine over them. A waiter thread per container polls the init's
//!   pidfd and its cgroup's OOM events and reaps it.
//! - The init's parent (`create`) exits at once, so the engine process becomes a *child
//!   subreaper* on first use (`PR_SET_CHILD_SUBREAPER`, as containerd's shim is): the init is
//!   re-parented to it and reaped by pid. Only pids this driver started are reaped.
//! - `exec_create` is `exec --detach --pid-file`: the binary has no created state for an extra
//!   process, so it starts there and its `pre_start` hooks run once it has started
//!   (`exec_start` only records the start; no `Operation::TwoPhaseExec`).
//! - OOM: the container's memory cgroup (found from `/proc/<init>/cgroup`) is watched while
//!   the run waits — v1 an eventfd on `memory.oom_control` (`cgroup.event_control`), v2
//!   inotify on `memory.events` — and each event's `oom_kill` count is delivered.
//! - The binary's own state (`<root>/runtime`) is the truth for `list`/`info`/`kill`/`clean`, so
//!   another driver value on the same root (an engine after a restart) finds the containers.
#![warn(missing_docs)]

mod cgroup;
mod console;
mod fds;
mod verify;

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use execdriver_api::oci_spec::runtime::{LinuxResources, Process};
use execdriver_api::{
    Capabilities, Command, ContainerId, Created, Driver, DriverError, DriverFactory, Exit,
    ExitStatus, Info, OomNotifier, Operation, Pipes, ResourceStats, Result, Signal, Status, Stdio,
    Terminal, parse_options,
};
use runc::options::{CreateOpts, DeleteOpts, ExecOpts, GlobalOpts, KillOpts};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use serde::Deserialize;

/// The name the driver registers under.
pub const NAME: &str = "oci";

/// The factory to register: `registry.register(execdriver_oci::factory())`.
pub fn factory() -> Arc<dyn DriverFactory> {
    Arc::new(Factory)
}

/// Options of the `oci` driver (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OciOptions {
    /// The runtime binary: a path, or a name looked up in `PATH`. Default `runc`.
    pub binary: Option<PathBuf>,
    /// The driver's directory: the binary's state (`<root>/runtime`, its `--root`) and the
    /// bundles (`<root>/bundles`). Default `/run/execdriver/oci/<binary name>`.
    pub root: Option<PathBuf>,
    /// Global arguments put before every command of the binary (e.g. `["--debug"]`).
    pub extra_args: Vec<String>,
    /// Use the binary's systemd cgroup manager (`--systemd-cgroup`); refused on a host
    /// without systemd.
    pub systemd_cgroup: bool,
}

struct Factory;

impl DriverFactory for Factory {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "a runc-compatible binary (runc, crun) via its command line"
    }

    fn create(&self, options: &serde_json::Value) -> Result<Arc<dyn Driver>> {
        let opts: OciOptions = parse_options(NAME, options)?;
        Ok(Arc::new(OciDriver::new(opts)?))
    }
}

/// The `oci` driver. Create it through [`factory`] or [`OciDriver::new`].
pub struct OciDriver {
    binary: PathBuf,
    version: String,
    root: PathBuf,
    extra_args: Vec<String>,
    systemd_cgroup: bool,
    /// Containers this value created, until deleted (shared with their waiter threads).
    live: Arc<Mutex<HashMap<ContainerId, Live>>>,
}

struct Live {
    /// 0 until `create` returned.
    pid: u32,
    status: Status,
    bundle: PathBuf,
    created: SystemTime,
    cgroup: cgroup::Paths,
    annotations: std::collections::BTreeMap<String, String>,
    /// Set by the container's waiter thread once the init is reaped.
    exit: Exit,
    /// Processes `exec_create` started, by exec id, until `exec_delete`.
    execs: HashMap<String, LiveExec>,
}

/// A process the binary exec'd into a container.
struct LiveExec {
    pidfd: Arc<OwnedFd>,
    started: bool,
    /// Set by its waiter thread once it is reaped.
    exit: Exit,
}

impl OciDriver {
    /// A driver over the binary of `options`.
    ///
    /// # Errors
    /// `InvalidOptions` when the binary is missing, does not run, or is not an OCI runtime (its
    /// `--version` has no `spec:` line), or `systemd_cgroup` is set on a host without systemd.
    pub fn new(options: OciOptions) -> Result<Self> {
        let named = options.binary.unwrap_or_else(|| PathBuf::from("runc"));
        let binary = find_binary(&named).ok_or_else(|| DriverError::InvalidOptions {
            driver: NAME.into(),
            reason: format!("binary: {} not found (PATH searched)", named.display()),
        })?;
        let out = std::process::Command::new(&binary)
            .arg("--version")
            .stdin(StdStdio::null())
            .output()
            .map_err(|e| DriverError::InvalidOptions {
                driver: NAME.into(),
                reason: format!("binary: {} does not run: {e}", binary.display()),
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || !text.lines().any(|l| l.starts_with("spec:")) {
            return Err(DriverError::InvalidOptions {
                driver: NAME.into(),
                reason: format!(
                    "binary: {} is not an OCI runtime (its --version names no runtime-spec \
                     version): {}",
                    binary.display(),
                    text.trim()
                ),
            });
        }
        if options.systemd_cgroup && !Path::new("/run/systemd/system").is_dir() {
            return Err(DriverError::InvalidOptions {
                driver: NAME.into(),
                reason: "systemd_cgroup: this host does not run systemd (no /run/systemd/system)"
                    .into(),
            });
        }
        let stem = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into());
        let root = options
            .root
            .unwrap_or_else(|| Path::new("/run/execdriver/oci").join(&stem));
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map_err(|e| DriverError::io("current directory", e))?
                .join(root)
        };
        Ok(Self {
            binary,
            version: text.lines().next().unwrap_or_default().to_owned(),
            root,
            extra_args: options.extra_args,
            systemd_cgroup: options.systemd_cgroup,
            live: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The runtime binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The first line of the binary's `--version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ContainerId, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bundle_dir(&self, id: &ContainerId) -> PathBuf {
        self.root.join("bundles").join(id.as_str())
    }

    /// A client of the binary; `log` receives its JSON log (errors of create/start/exec), and
    /// `pipes` become the standard streams of the binary's process (inherited by the
    /// container's process).
    fn client(&self, log: Option<&Path>, pipes: Option<Pipes>) -> Result<runc::Runc> {
        let (streams, preserved) = match pipes {
            Some(p) => (Some([p.stdin, p.stdout, p.stderr]), p.extra),
            None => (None, Vec::new()),
        };
        self.client_with(log, streams, preserved)
    }

    /// A client whose process gets `streams` (or captured output) and `preserved` as its fds
    /// 3, 4, …; `pipes` for a process with a terminal (its stdio is the pty; the pipes' extra
    /// fds still pass).
    fn client_for(&self, log: &Path, pipes: Pipes, tty: bool) -> Result<runc::Runc> {
        if tty {
            self.client_with(Some(log), None, pipes.extra)
        } else {
            self.client(Some(log), Some(pipes))
        }
    }

    fn client_with(
        &self,
        log: Option<&Path>,
        streams: Option<[Stdio; 3]>,
        preserved: Vec<OwnedFd>,
    ) -> Result<runc::Runc> {
        let mut opts = GlobalOpts::new()
            .command(&self.binary)
            .root(self.root.join("runtime"))
            .systemd_cgroup(self.systemd_cgroup);
        if let Some(log) = log {
            opts = opts.log(log).log_json();
        }
        opts.custom_spawner(Arc::new(Spawn {
            extra: self.extra_args.clone(),
            streams: Mutex::new(streams),
            preserved: Mutex::new(preserved),
        }));
        opts.build().map_err(|e| DriverError::Internal {
            context: format!("oci: {}", self.binary.display()),
            message: e.to_string(),
        })
    }

    /// A failed command's error, with the binary's words (its log, or stderr).
    fn failed(
        &self,
        op: &str,
        id: &ContainerId,
        e: runc::error::Error,
        log: Option<&Path>,
    ) -> DriverError {
        let logged = log.map(log_errors).unwrap_or_default();
        let message = match e {
            runc::error::Error::CommandFailed {
                status,
                stdout,
                stderr,
            } => {
                let said = [logged.as_str(), stderr.trim(), stdout.trim()]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or("")
                    .to_owned();
                let said = if said.is_empty() {
                    status.to_string()
                } else {
                    said
                };
                // The binary's words for an unknown id differ (runc: "does not exist", crun:
                // "error opening file …/status"); its state directory is the truth.
                if op != "create" && !self.root.join("runtime").join(id.as_str()).exists() {
                    return DriverError::not_found(id);
                }
                said
            }
            other => other.to_string(),
        };
        DriverError::Internal {
            context: format!("container {id}: {} {op}", self.binary.display()),
            message,
        }
    }

    fn remove(&self, id: &ContainerId) {
        self.lock().remove(id);
    }

    /// Sets the status of a live container that has not stopped (its waiter marks it stopped,
    /// and nothing moves it back).
    fn set_status(&self, id: &ContainerId, status: Status) {
        if let Some(l) = self.lock().get_mut(id)
            && l.status != Status::Stopped
        {
            l.status = status;
        }
    }

    /// Runs a query command of the binary (`state`, `list`) and returns its stdout. The
    /// crate's own `state`/`list` can't be used: they expect `created` as a Unix timestamp,
    /// where runc and crun write RFC 3339.
    fn query(&self, id: Option<&ContainerId>, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new(&self.binary)
            .arg("--root")
            .arg(self.root.join("runtime"))
            .args(&self.extra_args)
            .args(args)
            .stdin(StdStdio::null())
            .output()
            .map_err(|e| DriverError::io(format!("run {}", self.binary.display()), e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let e = runc::error::Error::CommandFailed {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        match id {
            Some(id) => Err(self.failed(args[0], id, e, None)),
            None => Err(DriverError::Internal {
                context: format!("{} {}", self.binary.display(), args[0]),
                message: e.to_string(),
            }),
        }
    }

    /// The binary's view of a container (for containers no run of this value holds).
    fn state(&self, id: &ContainerId) -> Result<State> {
        let text = self.query(Some(id), &["state", id.as_str()])?;
        serde_json::from_str(text.trim()).map_err(|e| DriverError::Internal {
            context: format!("container {id}: {} state", self.binary.display()),
            message: e.to_string(),
        })
    }

    /// Writes the bundle the binary runs: the spec with its rootfs made absolute.
    fn write_bundle(&self, cmd: &Command) -> Result<PathBuf> {
        let dir = self.bundle_dir(&cmd.id);
        let mut spec = cmd.spec.clone();
        let rootfs = cmd.rootfs()?;
        // runc refuses a rootfs path through a symlink; the bundle's own link is resolved.
        let rootfs = fs::canonicalize(&rootfs).unwrap_or(rootfs);
        if let Some(root) = spec.root_mut() {
            root.set_path(rootfs);
        }
        // Without a cgroupsPath the binary would make `/<id>` at the root of every hierarchy;
        // like the native driver, put it below the engine's own cgroup.
        if let Some(linux) = spec.linux_mut()
            && linux.cgroups_path().is_none()
        {
            linux.set_cgroups_path(Some(PathBuf::from(format!(
                "{DEFAULT_CGROUP_PARENT}/{}",
                cmd.id
            ))));
        }
        fs::create_dir_all(&dir)
            .map_err(|e| DriverError::io(format!("create {}", dir.display()), e))?;
        let mut value = serde_json::to_value(&spec).map_err(|e| DriverError::Internal {
            context: format!("container {}: write config.json", cmd.id),
            message: e.to_string(),
        })?;
        default_device_rules(&mut value);
        let json = value.to_string().into_bytes();
        let path = dir.join("config.json");
        fs::write(&path, json)
            .map_err(|e| DriverError::io(format!("write {}", path.display()), e))?;
        Ok(dir)
    }

    fn discard_bundle(&self, id: &ContainerId) {
        let _ = fs::remove_dir_all(self.bundle_dir(id));
    }

    /// `delete --force`, ignoring a container that is already gone.
    fn force_delete(&self, id: &ContainerId) -> Result<()> {
        let client = self.client(None, None)?;
        match client.delete(id.as_str(), Some(&DeleteOpts::new().force(true))) {
            Ok(()) => Ok(()),
            Err(e) => match self.failed("delete", id, e, None) {
                DriverError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// Waits for our (re-parented) child `pid` to exit, counting OOM kills of its cgroup.
fn wait_exit(
    id: &ContainerId,
    pidfd: &OwnedFd,
    cg: &cgroup::Paths,
    oom: &OomNotifier,
) -> Result<ExitStatus> {
    use rustix::event::{PollFd, PollFlags};
    // Woken by the exit or by an OOM event of the container's memory cgroup; the kill
    // counter says how many OOM kills there were.
    let watch = cg.oom_watch();
    let mut seen = 0;
    loop {
        let (exited, oom_event) = {
            let mut fds = vec![PollFd::new(pidfd, PollFlags::IN)];
            if let Some(w) = &watch {
                fds.push(PollFd::new(w, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => (
                    !fds[0].revents().is_empty(),
                    fds.get(1).is_some_and(|f| !f.revents().is_empty()),
                ),
                Err(rustix::io::Errno::INTR) => (false, false),
                Err(e) => {
                    return Err(DriverError::sys(
                        format!("container {id}: poll"),
                        e.raw_os_error(),
                    ));
                }
            }
        };
        if oom_event && let Some(w) = &watch {
            let mut drain = [0u8; 4096];
            while rustix::io::read(w, &mut drain).is_ok_and(|n| n > 0) {}
        }
        let kills = cg.oom_kills();
        while seen < kills {
            oom.notify(id);
            seen += 1;
        }
        if exited {
            break;
        }
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(st)) => {
                let status = if let Some(sig) = st.terminating_signal() {
                    ExitStatus::signaled(sig)
                } else {
                    ExitStatus::exited(st.exit_status().unwrap_or(255))
                };
                return Ok(status);
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(DriverError::sys(
                    format!("container {id}: waitid"),
                    e.raw_os_error(),
                ));
            }
        }
    }
}

/// The status of a reaped init, with the OOM kills of its cgroup delivered on `oom` and
/// counted in it.
fn final_status(
    id: &ContainerId,
    waited: Result<ExitStatus>,
    cg: &cgroup::Paths,
    oom: &OomNotifier,
) -> ExitStatus {
    let mut status = waited.unwrap_or_else(|e| {
        tracing::error!(%id, err = %e, "waiting for the init failed; reporting exit 255");
        ExitStatus::exited(255)
    });
    let kills = cg.oom_kills();
    while oom.count() < kills {
        oom.notify(id);
    }
    status.oom_killed = oom.count() > 0 && status.signal == Some(SIGKILL);
    if status.oom_killed {
        status.code = 137;
    }
    status
}

const SIGKILL: i32 = 9;

/// Held shared while the binary creates a container (its cgroup below the default parent)
/// and exclusively while an empty default parent is removed, so that removal never races
/// another container's `mkdir` of its own cgroup (ENOENT, or ENODEV reading the parent's
/// cpuset). One for the process: every driver value shares the default parent. (Another
/// process on the same parent can still race it.)
static CGROUP_PARENT: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The cgroup (relative to the binary's own) below which containers without a
/// `linux.cgroupsPath` go.
const DEFAULT_CGROUP_PARENT: &str = "execdriver-oci";

/// A spec without device cgroup rules gets the default a container engine gives (deny, then
/// the standard devices, `linux.devices` and mknod), as the native driver and runc apply it
/// themselves: crun 1.8 leaves the device cgroup open without rules, so a device node shipped
/// in the image would reach the host's disks. Rules the spec has are left as they are.
fn default_device_rules(spec: &mut serde_json::Value) {
    let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) else {
        return;
    };
    let given = linux
        .get("resources")
        .and_then(|r| r.get("devices"))
        .and_then(|d| d.as_array())
        .is_some_and(|d| !d.is_empty());
    if given {
        return;
    }
    // An absent major or minor is the wildcard.
    let rule = |kind: &str, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = serde_json::json!({"allow": true, "type": kind, "access": access});
        if let Some(m) = major {
            r["major"] = m.into();
        }
        if let Some(m) = minor {
            r["minor"] = m.into();
        }
        r
    };
    let mut rules = vec![
        serde_json::json!({"allow": false, "access": "rwm"}),
        rule("c", None, None, "m"),
        rule("b", None, None, "m"),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(rule("c", Some(major), Some(minor), "rwm"));
    }
    rules.push(rule("c", Some(136), None, "rwm"));
    for d in linux
        .get("devices")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
    {
        let kind = d["type"].as_str().unwrap_or("c");
        let kind = if kind == "u" { "c" } else { kind };
        rules.push(rule(kind, d["major"].as_i64(), d["minor"].as_i64(), "rwm"));
    }
    let resources = linux
        .entry("resources")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(r) = resources.as_object_mut() {
        r.insert("devices".into(), serde_json::Value::Array(rules));
    }
}

/// The `level: error` messages of the binary's JSON log, one per line.
fn log_errors(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut msgs = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v["level"] == "error" => {
                if let Some(m) = v["msg"].as_str() {
                    msgs.push(m.to_owned());
                }
            }
            Ok(_) => {}
            Err(_) if !line.trim().is_empty() => msgs.push(line.trim().to_owned()),
            Err(_) => {}
        }
    }
    msgs.join("; ")
}

fn find_binary(named: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if named.components().count() > 1 {
        return runnable(named).then(|| named.to_path_buf());
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(named))
        .find(|p| runnable(p))
}

/// The engine becomes the child subreaper once, so that containers' inits come back to it.
fn become_subreaper() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), i32>> = OnceLock::new();
    match DONE.get_or_init(|| {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| e.raw_os_error())
    }) {
        Ok(()) => Ok(()),
        Err(e) => Err(DriverError::sys(
            "oci: become the child subreaper (PR_SET_CHILD_SUBREAPER)",
            *e,
        )),
    }
}

/// Runs the binary's commands: the crate's command line with the `extra_args` put first, and
/// the container's standard streams (when given) as the process's own, which the container's
/// process inherits. Otherwise stdin is `/dev/null` and stdout/stderr are captured.
#[derive(Debug)]
struct Spawn {
    extra: Vec<String>,
    streams: Mutex<Option<[Stdio; 3]>>,
    /// `Pipes::extra`: they become the binary's fds 3, 4, … and `--preserve-fds N` follows
    /// the subcommand, so the container's process gets them at the same numbers.
    preserved: Mutex<Vec<OwnedFd>>,
}

fn std_stdio(s: Stdio) -> StdStdio {
    match s {
        Stdio::Null => StdStdio::null(),
        Stdio::Inherit => StdStdio::inherit(),
        Stdio::Fd(fd) => StdStdio::from(fd),
    }
}

impl runc::Spawner for Spawn {
    fn execute(
        &self,
        cmd: std::process::Command,
    ) -> runc::Result<(std::process::ExitStatus, u32, String, String)> {
        let mut real = std::process::Command::new(cmd.get_program());
        // The crate puts the global options first; ours follow them, before the subcommand.
        let globals = global_count(&cmd);
        let preserved = std::mem::take(
            &mut *self
                .preserved
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        real.args(cmd.get_args().take(globals))
            .args(&self.extra)
            .args(cmd.get_args().skip(globals).take(1));
        if !preserved.is_empty() {
            real.arg("--preserve-fds").arg(preserved.len().to_string());
            fds::pass_as_3_and_up(&mut real, &preserved);
        }
        real.args(cmd.get_args().skip(globals + 1))
            .env_remove("NOTIFY_SOCKET");
        let streams = self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match streams {
            Some([stdin, stdout, stderr]) => {
                real.stdin(std_stdio(stdin))
                    .stdout(std_stdio(stdout))
                    .stderr(std_stdio(stderr));
            }
            None => {
                real.stdin(StdStdio::null())
                    .stdout(StdStdio::piped())
                    .stderr(StdStdio::piped());
            }
        }
        let child = real
            .spawn()
            .map_err(runc::error::Error::ProcessSpawnFailed)?;
        // The child has its copies; ours close now.
        drop(preserved);
        let pid = child.id();
        let out = child
            .wait_with_output()
            .map_err(runc::error::Error::InvalidCommand)?;
        Ok((
            out.status,
            pid,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// How many leading arguments are the crate's global options (`--root X`, `--log X`,
/// `--log-format X`, `--systemd-cgroup`, …): everything before the subcommand.
fn global_count(cmd: &std::process::Command) -> usize {
    let args: Vec<_> = cmd.get_args().collect();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if !a.starts_with("--") {
            break;
        }
        let takes_value = matches!(a.as_ref(), "--root" | "--log" | "--log-format");
        i += if takes_value { 2 } else { 1 };
    }
    i.min(args.len())
}

/// The pid the binary wrote, and a pidfd for it (a child of ours once its parent exited).
fn pid_from_file(path: &Path) -> Result<(u32, OwnedFd)> {
    let text = fs::read_to_string(path)
        .map_err(|e| DriverError::io(format!("read {}", path.display()), e))?;
    let pid: u32 = text.trim().parse().map_err(|_| DriverError::Internal {
        context: format!("read {}", path.display()),
        message: format!("{text:?} is not a pid"),
    })?;
    let raw = Pid::from_raw(pid as i32).ok_or_else(|| DriverError::Internal {
        context: format!("read {}", path.display()),
        message: "pid 0".into(),
    })?;
    let fd = rustix::process::pidfd_open(raw, PidfdFlags::empty())
        .map_err(|e| DriverError::sys(format!("pidfd_open({pid})"), e.raw_os_error()))?;
    Ok((pid, fd))
}

impl Driver for OciDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Operation::Exec)
            .with(Operation::Pause)
            .with(Operation::Stats)
            .with(Operation::Pids)
            .with(Operation::Update)
            .with(Operation::Oom)
            .with(Operation::Terminal)
            .with(Operation::Signals)
            .with(Operation::Isolation)
            .with(Operation::TwoPhase)
    }

    // `run` is the API's lifecycle engine over create/start/wait/delete.

    fn create(&self, cmd: &Command, pipes: Pipes) -> Result<Created> {
        execdriver_api::validate_spec(&cmd.spec)?;
        let tty = cmd.process()?.terminal().unwrap_or(false);
        become_subreaper()?;
        {
            let mut live = self.lock();
            if live.contains_key(&cmd.id) || self.bundle_dir(&cmd.id).exists() {
                return Err(DriverError::AlreadyExists {
                    id: cmd.id.to_string(),
                });
            }
            live.insert(
                cmd.id.clone(),
                Live {
                    pid: 0,
                    status: Status::Created,
                    bundle: cmd.bundle.clone(),
                    created: SystemTime::now(),
                    cgroup: cgroup::Paths::default(),
                    exit: Exit::new(),
                    execs: HashMap::new(),
                    annotations: cmd
                        .spec
                        .annotations()
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                },
            );
        }
        let result = (|| {
            let bundle = self.write_bundle(cmd)?;
            let log = bundle.join("create.log");
            let pid_file = bundle.join("init.pid");
            let mut opts = CreateOpts::new().pid_file(&pid_file);
            // With a terminal the container's stdio is the pty; the pipes are not used.
            let console = tty
                .then(|| console::ConsoleSocket::bind(&bundle, "console.sock"))
                .transpose()?;
            if let Some(c) = &console {
                opts = opts.console_socket(c.path());
            }
            let created = {
                let _creating = CGROUP_PARENT
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.client_for(&log, pipes, tty)?
                    .create(cmd.id.as_str(), &bundle, Some(&opts))
            };
            if let Err(e) = created {
                let err = self.failed("create", &cmd.id, e, Some(&log));
                let _ = self.force_delete(&cmd.id);
                return Err(err);
            }
            let (pid, pidfd) = match pid_from_file(&pid_file) {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.force_delete(&cmd.id);
                    return Err(e);
                }
            };
            let checked = (|| {
                let pty = console.as_ref().map(|c| c.receive()).transpose()?;
                // The image has run nothing yet: check the binary built what the spec says.
                verify::mounts(pid, &cmd.spec).map_err(|why| DriverError::Internal {
                    context: format!("container {}: {} create", cmd.id, self.binary.display()),
                    message: format!("refused before start: {why}"),
                })?;
                Ok(pty.map(|m| Arc::new(console::Pty::new(m))))
            })();
            let pty = match checked {
                Ok(pty) => pty,
                Err(e) => {
                    // The init is our child by now: reaped, not left a zombie.
                    let _ = self.force_delete(&cmd.id);
                    let _ = wait_exit(
                        &cmd.id,
                        &pidfd,
                        &cgroup::Paths::default(),
                        &OomNotifier::new(),
                    );
                    return Err(e);
                }
            };
            drop(console);
            Ok((pid, pidfd, pty))
        })();
        let (pid, pidfd, pty) = match result {
            Ok(made) => made,
            Err(e) => {
                self.discard_bundle(&cmd.id);
                self.remove(&cmd.id);
                return Err(e);
            }
        };
        let id = &cmd.id;
        let cg = cgroup::Paths::of_pid(pid);
        let exit = {
            let mut live = self.lock();
            let l = live.get_mut(id).ok_or_else(|| DriverError::not_found(id))?;
            l.pid = pid;
            l.cgroup = cg.clone();
            l.exit.clone()
        };
        let oom = OomNotifier::new();
        // One waiter per container: it sleeps in poll on the init's pidfd and the cgroup's
        // OOM events, delivers those, reaps the init and marks the container stopped.
        let waiter = {
            let (live, id, oom) = (self.live.clone(), id.clone(), oom.clone());
            std::thread::Builder::new()
                .name("oci-wait".into())
                .spawn(move || {
                    let status = final_status(&id, wait_exit(&id, &pidfd, &cg, &oom), &cg, &oom);
                    if let Some(l) = live
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(&id)
                    {
                        l.status = Status::Stopped;
                    }
                    exit.set(status);
                })
        };
        if let Err(e) = waiter {
            let _ = self.force_delete(id);
            self.discard_bundle(id);
            self.remove(id);
            return Err(DriverError::io(format!("container {id}: waiter thread"), e));
        }
        let terminal = pty.map(|t| t as Arc<dyn Terminal>);
        Ok(Created::new(pid, oom).with_terminal(terminal))
    }

    fn start(&self, id: &ContainerId) -> Result<()> {
        if !self.lock().contains_key(id) {
            // Created by another value on this root: the binary knows it.
            self.state(id)?;
        } else {
            self.expect_status(id, "start", Status::Created)?;
        }
        let log = self.bundle_dir(id).join("start.log");
        self.client(Some(&log), None)?
            .start(id.as_str())
            .map(|_| ())
            .map_err(|e| self.failed("start", id, e, Some(&log)))?;
        self.set_status(id, Status::Running);
        Ok(())
    }

    fn wait(&self, id: &ContainerId) -> Result<Exit> {
        if let Some(l) = self.lock().get(id) {
            return Ok(l.exit.clone());
        }
        self.state(id)?;
        Err(DriverError::unsupported(
            format!("wait for container {id}, which another driver value created"),
            NAME,
        ))
    }

    fn delete(&self, id: &ContainerId) -> Result<()> {
        let cg = {
            let live = self.lock();
            let Some(l) = live.get(id) else {
                drop(live);
                return self.clean(id);
            };
            if l.exit.status().is_none() {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "delete".into(),
                    status: l.status,
                });
            }
            l.cgroup.clone()
        };
        let deleted = self.force_delete(id);
        {
            let _removing = CGROUP_PARENT
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cg.remove_default_parent(DEFAULT_CGROUP_PARENT);
        }
        self.discard_bundle(id);
        self.remove(id);
        deleted
    }

    // `exec` is the API's lifecycle engine over these four. The binary has no created state
    // for an extra process: `exec_create` starts it (`exec --detach`), so its `pre_start`
    // hooks see it running and `exec_start` only records the start (no `TwoPhaseExec`).

    fn exec_create(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &Process,
        pipes: Pipes,
    ) -> Result<Created> {
        let tty = process.terminal().unwrap_or(false);
        {
            let live = self.lock();
            let l = live.get(id).ok_or_else(|| DriverError::not_found(id))?;
            if l.status != Status::Running {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "exec".into(),
                    status: l.status,
                });
            }
            if l.execs.contains_key(exec_id) {
                return Err(DriverError::exec_exists(id, exec_id));
            }
        }
        let dir = self.bundle_dir(id);
        let n = EXEC_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid_file = dir.join(format!("exec-{n}.pid"));
        let log = dir.join(format!("exec-{n}.log"));
        let mut opts = ExecOpts::new().detach(true).pid_file(&pid_file);
        let console = tty
            .then(|| console::ConsoleSocket::bind(&dir, &format!("exec-{n}.sock")))
            .transpose()?;
        if let Some(c) = &console {
            opts = opts.console_socket(c.path());
        }
        let ran = self
            .client_for(&log, pipes, tty)?
            .exec(id.as_str(), process, Some(&opts));
        let made = (|| {
            ran.map_err(|e| self.failed("exec", id, e, Some(&log)))?;
            let (pid, pidfd) = pid_from_file(&pid_file)?;
            let pidfd = Arc::new(pidfd);
            let pty = match console.as_ref().map(|c| c.receive()).transpose() {
                Ok(m) => m.map(|m| Arc::new(console::Pty::new(m))),
                Err(e) => {
                    let _ =
                        rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
                    let _ = wait_exit(id, &pidfd, &cgroup::Paths::default(), &OomNotifier::new());
                    return Err(e);
                }
            };
            Ok((pid, pidfd, pty))
        })();
        let _ = fs::remove_file(&pid_file);
        let _ = fs::remove_file(&log);
        let (pid, pidfd, pty) = made?;
        drop(console);
        let exit = Exit::new();
        let waiter = {
            let (id, pidfd, exit) = (id.clone(), pidfd.clone(), exit.clone());
            std::thread::Builder::new()
                .name("oci-exec-wait".into())
                .spawn(move || {
                    let waited =
                        wait_exit(&id, &pidfd, &cgroup::Paths::default(), &OomNotifier::new());
                    exit.set(waited.unwrap_or_else(|e| {
                        tracing::error!(%id, err = %e, "waiting for an exec'd process failed");
                        ExitStatus::exited(255)
                    }));
                })
        };
        if let Err(e) = waiter {
            let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
            let _ = wait_exit(id, &pidfd, &cgroup::Paths::default(), &OomNotifier::new());
            return Err(DriverError::io(
                format!("container {id}: exec waiter thread"),
                e,
            ));
        }
        let entry = LiveExec {
            pidfd: pidfd.clone(),
            started: false,
            exit,
        };
        let taken = match self.lock().get_mut(id) {
            Some(l) if !l.execs.contains_key(exec_id) => {
                l.execs.insert(exec_id.to_owned(), entry);
                false
            }
            _ => true,
        };
        if taken {
            // The exec id was taken (or the container deleted) meanwhile: this one goes.
            let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
            return Err(DriverError::exec_exists(id, exec_id));
        }
        let terminal = pty.map(|t| t as Arc<dyn Terminal>);
        Ok(Created::new(pid, OomNotifier::new()).with_terminal(terminal))
    }

    fn exec_start(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let mut live = self.lock();
        let e = live
            .get_mut(id)
            .and_then(|l| l.execs.get_mut(exec_id))
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
        if e.started {
            return Err(DriverError::exec_started(
                id,
                exec_id,
                e.exit.status().is_some(),
            ));
        }
        e.started = true;
        Ok(())
    }

    fn exec_wait(&self, id: &ContainerId, exec_id: &str) -> Result<Exit> {
        self.lock()
            .get(id)
            .and_then(|l| l.execs.get(exec_id))
            .map(|e| e.exit.clone())
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))
    }

    fn exec_delete(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let e = self
            .lock()
            .get_mut(id)
            .and_then(|l| l.execs.remove(exec_id))
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
        if e.exit.status().is_none() {
            // Unreaped until its waiter sets the exit, so the pidfd still names it.
            let _ = rustix::process::pidfd_send_signal(&*e.pidfd, rustix::process::Signal::KILL);
            if e.exit.wait_timeout(Duration::from_secs(10)).is_none() {
                return Err(DriverError::Internal {
                    context: format!("container {id}: exec {exec_id}"),
                    message: "still running 10s after SIGKILL".into(),
                });
            }
        }
        Ok(())
    }

    fn kill(&self, id: &ContainerId, signal: Signal) -> Result<()> {
        let status = match self.lock().get(id) {
            Some(l) => l.status,
            None => status_of(&self.state(id)?),
        };
        if status == Status::Stopped {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status,
            });
        }
        self.client(None, None)?
            .kill(id.as_str(), signal.number() as u32, None)
            .map_err(|e| self.failed("kill", id, e, None))
    }

    fn pause(&self, id: &ContainerId) -> Result<()> {
        self.expect_status(id, "pause", Status::Running)?;
        self.client(None, None)?
            .pause(id.as_str())
            .map_err(|e| self.failed("pause", id, e, None))?;
        self.set_status(id, Status::Paused);
        Ok(())
    }

    fn unpause(&self, id: &ContainerId) -> Result<()> {
        self.expect_status(id, "unpause", Status::Paused)?;
        self.client(None, None)?
            .resume(id.as_str())
            .map_err(|e| self.failed("resume", id, e, None))?;
        self.set_status(id, Status::Running);
        Ok(())
    }

    fn terminate(&self, id: &ContainerId) -> Result<()> {
        let held = self.lock().contains_key(id);
        if !held {
            // Not run by this value (a container from before an engine restart): the binary
            // kills and removes it.
            self.state(id)?;
            let _ = self
                .client(None, None)?
                .kill(id.as_str(), 9, Some(&KillOpts::new().all(true)));
            return self.force_delete(id);
        }
        let _ = self
            .client(None, None)?
            .kill(id.as_str(), 9, Some(&KillOpts::new().all(true)));
        let exit = self.wait(id)?;
        match exit.wait_timeout(Duration::from_secs(30)) {
            Some(_) => Ok(()),
            None => Err(DriverError::Internal {
                context: format!("container {id}: terminate"),
                message: "still not gone after 30s".into(),
            }),
        }
    }

    fn clean(&self, id: &ContainerId) -> Result<()> {
        if let Some(l) = self.lock().get(id) {
            if l.status != Status::Stopped {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "clean".into(),
                    status: l.status,
                });
            }
            return Driver::delete(self, id);
        }
        match self.state(id) {
            Ok(c) if status_of(&c) != Status::Stopped => Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "clean".into(),
                status: status_of(&c),
            }),
            Ok(_) => {
                self.force_delete(id)?;
                self.discard_bundle(id);
                Ok(())
            }
            Err(DriverError::NotFound { .. }) => {
                self.discard_bundle(id);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn info(&self, id: &ContainerId) -> Result<Info> {
        if let Some(l) = self.lock().get(id) {
            let mut info = Info::new(id.clone(), NAME, l.status, l.bundle.clone());
            info.pid = (l.pid > 0).then_some(l.pid);
            info.created = l.created;
            info.annotations = l.annotations.clone();
            return Ok(info);
        }
        let c = self.state(id)?;
        let mut info = Info::new(id.clone(), NAME, status_of(&c), PathBuf::from(&c.bundle));
        info.pid = (c.pid > 0).then_some(c.pid);
        info.created = rfc3339(&c.created).unwrap_or(SystemTime::UNIX_EPOCH);
        info.annotations = c.annotations.unwrap_or_default();
        Ok(info)
    }

    fn pids(&self, id: &ContainerId) -> Result<Vec<u32>> {
        self.info(id)?;
        let pids = self
            .client(None, None)?
            .ps(id.as_str())
            .map_err(|e| self.failed("ps", id, e, None))?;
        Ok(pids.into_iter().map(|p| p as u32).collect())
    }

    fn stats(&self, id: &ContainerId) -> Result<ResourceStats> {
        let cg = match self.lock().get(id) {
            Some(l) if l.status == Status::Stopped => {
                return Err(DriverError::NotRunning {
                    id: id.to_string(),
                    status: l.status,
                });
            }
            Some(l) => l.cgroup.clone(),
            None => {
                let c = self.state(id)?;
                cgroup::Paths::of_pid(c.pid)
            }
        };
        Ok(cg.stats())
    }

    fn update(&self, id: &ContainerId, resources: &LinuxResources) -> Result<()> {
        self.info(id)?;
        self.client(None, None)?
            .update(id.as_str(), resources)
            .map_err(|e| self.failed("update", id, e, None))
    }

    fn can_handle(&self, cmd: &Command) -> Result<()> {
        cmd.refuse_wasm_entrypoint(NAME)
    }

    /// The binary answered `--version` when the driver was made; its state root must be
    /// writable.
    fn health(&self) -> execdriver_api::Health {
        use execdriver_api::{Health, Level};
        let mut h = Health::new().with(
            "binary",
            Level::Ok,
            format!("{}: {}", self.binary.display(), self.version),
        );
        h.push_dir("state root", &self.root, Level::Failed, |d| {
            rustix::fs::access(d, rustix::fs::Access::WRITE_OK).is_ok()
        });
        h
    }

    fn list(&self) -> Result<Vec<ContainerId>> {
        let mut ids: Vec<ContainerId> = self.lock().keys().cloned().collect();
        // runc's list fails when a container's directory goes away while it reads them (a
        // concurrent delete: "stat …/<id>: no such file or directory"); such a race is retried.
        let mut attempt = 0;
        let text = loop {
            match self.query(None, &["list", "--format", "json"]) {
                Ok(text) => break text,
                Err(e)
                    if attempt < 10
                        && e.to_string()
                            .to_lowercase()
                            .contains("no such file or directory") =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        let listed: Vec<State> = serde_json::from_str::<Option<Vec<State>>>(text.trim())
            .map_err(|e| DriverError::Internal {
                context: format!("{} list", self.binary.display()),
                message: e.to_string(),
            })?
            .unwrap_or_default();
        for c in listed {
            if let Ok(id) = ContainerId::new(c.id)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

static EXEC_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl OciDriver {
    fn expect_status(&self, id: &ContainerId, op: &str, want: Status) -> Result<()> {
        let status = match self.lock().get(id) {
            Some(l) => l.status,
            None => status_of(&self.state(id)?),
        };
        if status == want {
            Ok(())
        } else {
            Err(DriverError::InvalidState {
                id: id.to_string(),
                op: op.into(),
                status,
            })
        }
    }
}

/// What `state` and `list --format json` say of a container.
#[derive(Debug, Deserialize)]
struct State {
    id: String,
    #[serde(default)]
    pid: u32,
    status: String,
    #[serde(default)]
    bundle: String,
    #[serde(default)]
    created: String,
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An RFC 3339 UTC time (`2026-12-02T11:52:38.628316457Z`) as a `SystemTime`.
fn rfc3339(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.strip_suffix('Z')?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = format!("{digits:0<9}").parse::<u32>().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

fn status_of(c: &State) -> Status {
    match c.status.as_str() {
        "created" | "creating" => Status::Created,
        "running" => Status::Running,
        "paused" | "pausing" => Status::Paused,
        _ => Status::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        let t = rfc3339("2026-12-02T11:52:38.628316457Z").unwrap();
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_796_212_358);
        assert_eq!(d.subsec_nanos(), 628_316_457);
        assert_eq!(
            rfc3339("1970-01-01T00:00:01Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        );
        assert_eq!(rfc3339("yesterday"), None);
    }

    #[test]
    fn states_parse_as_runc_and_crun_write_them() {
        let runc = r#"{"ociVersion":"1.0.2-dev","id":"a","pid":42,"status":"running","bundle":"/b","rootfs":"/r","created":"2026-12-02T11:52:38.628316457Z","owner":""}"#;
        let s: State = serde_json::from_str(runc).unwrap();
        assert_eq!((s.pid, status_of(&s)), (42, Status::Running));
        let crun = r#"{"ociVersion":"1.0.0","id":"a","pid":0,"status":"stopped","bundle":"/b","rootfs":"/r","created":"2026-12-02T11:52:38.628316457Z","annotations":{"k":"v"}}"#;
        let s: State = serde_json::from_str(crun).unwrap();
        assert_eq!(status_of(&s), Status::Stopped);
        assert_eq!(s.annotations.unwrap()["k"], "v");
    }

    #[test]
    fn device_rules_default_to_deny_and_given_ones_stay() {
        let mut bare = serde_json::json!({"linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}});
        default_device_rules(&mut bare);
        let rules = bare["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules[0],
            serde_json::json!({"allow": false, "access": "rwm"})
        );
        assert!(rules.iter().any(|r| r["major"] == 1 && r["minor"] == 3));
        assert!(rules.iter().any(|r| r["major"] == 10 && r["minor"] == 229));
        // The host's block devices are not among them.
        assert!(!rules.iter().any(|r| r["type"] == "b" && r["access"] != "m"));
        let mut given = serde_json::json!({"linux": {"resources": {"devices": [{"allow": true, "access": "rwm"}]}}});
        let before = given.clone();
        default_device_rules(&mut given);
        assert_eq!(given, before);
    }

    #[test]
    fn global_options_are_counted_before_the_subcommand() {
        let mut c = std::process::Command::new("runc");
        c.args([
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "kill",
            "--all",
            "x",
            "9",
        ]);
        assert_eq!(global_count(&c), 7);
    }

    #[test]
    fn bad_binaries_are_clear_errors() {
        let e = OciDriver::new(OciOptions {
            binary: Some("/nonexistent/runc".into()),
            ..OciOptions::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("binary: /nonexistent/runc not found"), "{e}");
        // A program that runs but is no OCI runtime.
        let e = OciDriver::new(OciOptions {
            binary: Some("/bin/true".into()),
            ..OciOptions::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("is not an OCI runtime"), "{e}");
        let e = parse_options::<OciOptions>(NAME, &serde_json::json!({"binray": "x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("binray"), "{e}");
    }
}
