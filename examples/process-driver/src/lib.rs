//! A third-party execdriver driver in one small crate: `process` runs a container's program as a
//! plain child process of the engine, with no isolation at all — like Nomad's `raw_exec`.
//!
//! It depends on `execdriver-api` alone (plus `rustix` for signals), and it passes the whole
//! conformance kit: `cargo test -p execdriver-example-process`.
//!
//! How the contract maps onto plain processes:
//! - the program runs on the host filesystem, with the spec's args and env, in the directory
//!   `<rootfs>/<process.cwd>` when that exists (otherwise the bundle directory);
//! - `pre_start` hooks run while the process exists but is stopped before it execs the program
//!   (a `/bin/sh` trampoline stops itself with SIGSTOP; the driver continues it with SIGCONT);
//! - the container is the process group of that process: `kill` signals the leader, `terminate`
//!   and the end of the run SIGKILL the whole group, `pause`/`unpause` send SIGSTOP/SIGCONT to it;
//! - state lives in this driver value only (no `persistent` capability), and there is no OOM
//!   handling, no terminal and no `update`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio as StdStdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use execdriver_api::oci_spec::runtime::Process;
use execdriver_api::{
    Capabilities, Command, ContainerId, CpuStats, Created, Driver, DriverError, DriverFactory,
    Exit, ExitStatus, Info, MemoryStats, OomNotifier, Operation, PidsStats, Pipes, ResourceStats,
    Result, Signal, Status, Stdio, parse_options,
};
use rustix::process::{Pid, WaitId, WaitIdOptions, kill_process, kill_process_group, waitid};

/// The name this driver registers under.
pub const NAME: &str = "process";

/// The factory to register: `registry.register(execdriver_example_process::factory())`.
pub fn factory() -> Arc<dyn DriverFactory> {
    Arc::new(ProcessFactory)
}

/// Options of the `process` driver (all optional).
#[derive(Debug, Clone, Default, execdriver_api::serde::Deserialize)]
#[serde(crate = "execdriver_api::serde", deny_unknown_fields, default)]
pub struct ProcessOptions {
    /// The shell used as the stop-before-exec trampoline. Default `/bin/sh`.
    pub shell: Option<PathBuf>,
}

struct ProcessFactory;

impl DriverFactory for ProcessFactory {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "plain child processes of the engine, no isolation (example third-party driver)"
    }

    fn create(&self, options: &execdriver_api::serde_json::Value) -> Result<Arc<dyn Driver>> {
        let opts: ProcessOptions = parse_options(NAME, options)?;
        Ok(Arc::new(ProcessDriver::new(opts)))
    }
}

/// The `process` driver. Create it through [`factory`] or [`ProcessDriver::new`].
pub struct ProcessDriver {
    shell: PathBuf,
    table: Arc<Table>,
}

/// The containers, shared with their waiter threads.
#[derive(Default)]
struct Table {
    map: Mutex<HashMap<ContainerId, Entry>>,
    /// Notified whenever an entry leaves the table.
    gone: Condvar,
    /// Processes made by `exec_create`, by container and pid, until `exec_delete`.
    execs: Mutex<HashMap<(ContainerId, String), ExecEntry>>,
}

struct ExecEntry {
    pid: u32,
    started: bool,
    /// Set (under the lock, while the process is still a zombie) once it exited: from then on
    /// its pid is not signalled.
    exited: bool,
    /// Set by its waiter thread once it is reaped.
    exit: Exit,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, HashMap<ContainerId, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn execs(&self) -> MutexGuard<'_, HashMap<(ContainerId, String), ExecEntry>> {
        self.execs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_status(&self, id: &ContainerId, status: Status) {
        if let Some(e) = self.lock().get_mut(id) {
            e.status = status;
        }
    }
}

struct Entry {
    /// The init process's pid, which is also the container's process group id (0 until spawned).
    pid: i32,
    status: Status,
    /// Set by the init's waiter thread once it is reaped.
    exit: Exit,
    bundle: PathBuf,
    rootfs: Option<PathBuf>,
    created: SystemTime,
    annotations: std::collections::BTreeMap<String, String>,
}

impl ProcessDriver {
    /// A driver with these options.
    pub fn new(options: ProcessOptions) -> Self {
        Self {
            shell: options.shell.unwrap_or_else(|| PathBuf::from("/bin/sh")),
            table: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ContainerId, Entry>> {
        self.table.lock()
    }

    fn remove(&self, id: &ContainerId) {
        self.lock().remove(id);
        self.table.gone.notify_all();
    }

    /// Starts `process` stopped just before it execs the program: a shell trampoline sends
    /// itself SIGSTOP, and `exec`s the program once continued.
    fn spawn_stopped(
        &self,
        id: &ContainerId,
        process: &Process,
        cwd: &std::path::Path,
        pipes: Pipes,
        group: Option<i32>,
    ) -> Result<Child> {
        pipes.refuse_extra(NAME)?;
        let args = program_args(process)?;
        let mut cmd = std::process::Command::new(&self.shell);
        cmd.arg("-c")
            .arg("kill -STOP $$ && exec \"$0\" \"$@\"")
            .args(args)
            .env_clear()
            .current_dir(cwd)
            .process_group(group.unwrap_or(0))
            .stdin(stdio(pipes.stdin))
            .stdout(stdio(pipes.stdout))
            .stderr(stdio(pipes.stderr));
        for (i, kv) in process.env().iter().flatten().enumerate() {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(DriverError::invalid_spec(
                    format!("process.env[{i}]"),
                    format!("{kv:?} is not KEY=VALUE"),
                ));
            };
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            DriverError::io(format!("container {id}: start {}", self.shell.display()), e)
        })?;
        let pid = pid_of(&child)?;
        loop {
            match waitid(
                WaitId::Pid(pid),
                WaitIdOptions::STOPPED | WaitIdOptions::EXITED,
            ) {
                Ok(Some(st)) if st.stopped() => return Ok(child),
                Ok(_) => {
                    let _ = child.wait();
                    return Err(DriverError::Internal {
                        context: format!("container {id}"),
                        message: "the start trampoline exited before stopping".into(),
                    });
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(DriverError::sys(
                        format!("container {id}: waitid"),
                        e.raw_os_error(),
                    ));
                }
            }
        }
    }
}

/// Waits until `child` exits, kills what is left of its process group while the leader is
/// still a zombie (so the group id can't have been reused) and marks it gone, then reaps it.
fn wait_exit(table: &Table, id: &ContainerId, child: &mut Child, group: Option<i32>) -> ExitStatus {
    if let Ok(pid) = pid_of(child) {
        while let Err(rustix::io::Errno::INTR) = waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {}
        if group.is_none() {
            // The container's init: its group dies with it, like a pid namespace.
            let _ = kill_process_group(pid, rustix::process::Signal::KILL);
            table.set_status(id, Status::Stopped);
        } else if let Some(e) = table
            .execs()
            .iter_mut()
            .find(|((cid, _), e)| cid == id && e.pid == child.id())
            .map(|(_, e)| e)
        {
            e.exited = true;
        }
    }
    match child.wait() {
        Ok(st) => exit_status(st),
        Err(e) => {
            tracing_free_warn(id, &e);
            ExitStatus::exited(255)
        }
    }
}

/// Reaps `child` on a thread of its own and sets `exit` then. One waiter thread per process:
/// fine for an example (a real driver reaps with one pidfd poller for all of them).
fn spawn_waiter(
    table: &Arc<Table>,
    id: &ContainerId,
    mut child: Child,
    group: Option<i32>,
    exit: Exit,
) -> std::io::Result<()> {
    let (table, id) = (table.clone(), id.clone());
    std::thread::Builder::new()
        .name("process-wait".into())
        .spawn(move || {
            let status = wait_exit(&table, &id, &mut child, group);
            exit.set(status);
        })
        .map(drop)
}

impl ProcessDriver {
    /// Moves container `id` from `from` to `to` by sending `sig` to its init (its whole
    /// process group with `group`), as operation `op`; `InvalidState` from any other status.
    fn transition(
        &self,
        id: &ContainerId,
        op: &str,
        from: Status,
        to: Status,
        sig: Signal,
        group: bool,
    ) -> Result<()> {
        let mut table = self.lock();
        let e = table
            .get_mut(id)
            .ok_or_else(|| DriverError::not_found(id))?;
        if e.status != from {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: op.into(),
                status: e.status,
            });
        }
        let (pid, sig) = (to_pid(e.pid)?, signal(sig)?);
        if group {
            kill_process_group(pid, sig)
        } else {
            kill_process(pid, sig)
        }
        .map_err(|err| errno(format!("container {id}: {op}"), err))?;
        e.status = to;
        Ok(())
    }

    fn cwd(
        cmd_bundle: &std::path::Path,
        rootfs: Option<&std::path::Path>,
        process: &Process,
    ) -> PathBuf {
        let rel = process.cwd().strip_prefix("/").unwrap_or(process.cwd());
        rootfs
            .map(|r| r.join(rel))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| cmd_bundle.to_path_buf())
    }
}

fn program_args(process: &Process) -> Result<&[String]> {
    match process.args().as_deref() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => Ok(args),
        Some(args) if !args.is_empty() => Err(DriverError::invalid_spec(
            "process.args[0]",
            "must not be empty",
        )),
        _ => Err(DriverError::invalid_spec(
            "process.args",
            "must not be empty",
        )),
    }
}

fn stdio(s: Stdio) -> StdStdio {
    match s {
        Stdio::Null => StdStdio::null(),
        Stdio::Inherit => StdStdio::inherit(),
        Stdio::Fd(fd) => StdStdio::from(fd),
    }
}

fn pid_of(child: &Child) -> Result<Pid> {
    i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| DriverError::Internal {
            context: "process driver".into(),
            message: format!("child pid {} is not a valid pid", child.id()),
        })
}

fn exit_status(st: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(code), _) => ExitStatus::exited(code),
        (None, Some(sig)) => ExitStatus::signaled(sig),
        _ => ExitStatus::exited(255),
    }
}

fn tracing_free_warn(id: &ContainerId, e: &std::io::Error) {
    // The example keeps its dependencies to the API crate; a real driver would use `tracing`.
    eprintln!("process driver: container {id}: wait failed: {e}");
}

fn signal(sig: Signal) -> Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(sig.number())
        .ok_or_else(|| DriverError::unsupported(format!("signal {sig}"), NAME))
}

fn to_pid(raw: i32) -> Result<Pid> {
    Pid::from_raw(raw).ok_or_else(|| DriverError::Internal {
        context: "process driver".into(),
        message: "container has no pid yet".into(),
    })
}

fn errno(op: String, e: rustix::io::Errno) -> DriverError {
    if e == rustix::io::Errno::SRCH {
        DriverError::Internal {
            context: op,
            message: "the process is gone".into(),
        }
    } else {
        DriverError::sys(op, e.raw_os_error())
    }
}

/// Reads `/proc/<pid>/stat` fields after the command name: (pgrp, utime, stime, rss pages).
fn proc_stat(pid: u32) -> Option<(i32, u64, u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): pgrp is field 5, utime 14, stime 15, rss 24.
    let pgrp = f.get(2)?.parse().ok()?;
    let utime = f.get(11)?.parse().ok()?;
    let stime = f.get(12)?.parse().ok()?;
    let rss = f.get(21)?.parse().ok()?;
    Some((pgrp, utime, stime, rss))
}

fn group_members(pgid: i32) -> Result<Vec<u32>> {
    let dir = fs::read_dir("/proc").map_err(|e| DriverError::io("read /proc", e))?;
    Ok(dir
        .flatten()
        .filter_map(|d| d.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(g, ..)| g == pgid))
        .collect())
}

impl Driver for ProcessDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Operation::Exec)
            .with(Operation::Pause)
            .with(Operation::Stats)
            .with(Operation::Pids)
            .with(Operation::Signals)
            .with(Operation::TwoPhase)
            .with(Operation::TwoPhaseExec)
    }

    // `run` is the API's lifecycle engine over these four: the hook sequence is not ours.

    fn create(&self, cmd: &Command, pipes: Pipes) -> Result<Created> {
        execdriver_api::validate_spec(&cmd.spec)?;
        let process = cmd.process()?;
        program_args(process)?;
        let rootfs = cmd.rootfs().ok();
        let cwd = Self::cwd(&cmd.bundle, rootfs.as_deref(), process);
        let exit = Exit::new();
        {
            let mut table = self.lock();
            if table.contains_key(&cmd.id) {
                return Err(DriverError::AlreadyExists {
                    id: cmd.id.to_string(),
                });
            }
            table.insert(
                cmd.id.clone(),
                Entry {
                    pid: 0,
                    status: Status::Created,
                    exit: exit.clone(),
                    bundle: cmd.bundle.clone(),
                    rootfs,
                    created: SystemTime::now(),
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
        let child = match self.spawn_stopped(&cmd.id, process, &cwd, pipes, None) {
            Ok(c) => c,
            Err(e) => {
                self.remove(&cmd.id);
                return Err(e);
            }
        };
        let pid = child.id();
        if let Some(e) = self.lock().get_mut(&cmd.id) {
            e.pid = pid as i32;
        }
        let waiter = spawn_waiter(&self.table, &cmd.id, child, None, exit);
        if let Err(e) = waiter {
            let _ = kill_process_group(to_pid(pid as i32)?, rustix::process::Signal::KILL);
            self.remove(&cmd.id);
            return Err(DriverError::io(
                format!("container {}: waiter thread", cmd.id),
                e,
            ));
        }
        Ok(Created::new(pid, OomNotifier::new()))
    }

    fn start(&self, id: &ContainerId) -> Result<()> {
        self.transition(
            id,
            "start",
            Status::Created,
            Status::Running,
            Signal::CONT,
            false,
        )
    }

    fn wait(&self, id: &ContainerId) -> Result<Exit> {
        self.lock()
            .get(id)
            .map(|e| e.exit.clone())
            .ok_or_else(|| DriverError::not_found(id))
    }

    fn delete(&self, id: &ContainerId) -> Result<()> {
        let mut table = self.lock();
        let e = table.get(id).ok_or_else(|| DriverError::not_found(id))?;
        if e.exit.status().is_none() {
            return Err(DriverError::InvalidState {
                id: id.to_string(),
                op: "delete".into(),
                status: e.status,
            });
        }
        table.remove(id);
        drop(table);
        self.table.gone.notify_all();
        Ok(())
    }

    // `exec` is the API's lifecycle engine over these four, like `run`.

    fn exec_create(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &Process,
        pipes: Pipes,
    ) -> Result<Created> {
        let key = (id.clone(), exec_id.to_owned());
        let (group, cwd) = {
            let table = self.lock();
            let e = table.get(id).ok_or_else(|| DriverError::not_found(id))?;
            if e.status != Status::Running {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "exec".into(),
                    status: e.status,
                });
            }
            (e.pid, Self::cwd(&e.bundle, e.rootfs.as_deref(), process))
        };
        if self.table.execs().contains_key(&key) {
            return Err(DriverError::exec_exists(id, exec_id));
        }
        let child = self.spawn_stopped(id, process, &cwd, pipes, Some(group))?;
        let pid = child.id();
        let exit = Exit::new();
        self.table.execs().insert(
            key.clone(),
            ExecEntry {
                pid,
                started: false,
                exited: false,
                exit: exit.clone(),
            },
        );
        if let Err(e) = spawn_waiter(&self.table, id, child, Some(group), exit) {
            self.table.execs().remove(&key);
            let _ = kill_process(to_pid(pid as i32)?, rustix::process::Signal::KILL);
            return Err(DriverError::io(format!("container {id}: waiter thread"), e));
        }
        Ok(Created::new(pid, OomNotifier::new()))
    }

    fn exec_start(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let mut execs = self.table.execs();
        let e = execs
            .get_mut(&(id.clone(), exec_id.to_owned()))
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
        if e.started || e.exited {
            return Err(DriverError::exec_started(id, exec_id, e.exited));
        }
        // Under the lock: `exited` is set under it while the process is still a zombie.
        kill_process(to_pid(e.pid as i32)?, rustix::process::Signal::CONT)
            .map_err(|err| errno(format!("container {id}: exec {exec_id}: start"), err))?;
        e.started = true;
        Ok(())
    }

    fn exec_wait(&self, id: &ContainerId, exec_id: &str) -> Result<Exit> {
        self.table
            .execs()
            .get(&(id.clone(), exec_id.to_owned()))
            .map(|e| e.exit.clone())
            .ok_or_else(|| DriverError::exec_not_found(id, exec_id))
    }

    fn exec_delete(&self, id: &ContainerId, exec_id: &str) -> Result<()> {
        let key = (id.clone(), exec_id.to_owned());
        let exit = {
            let execs = self.table.execs();
            let e = execs
                .get(&key)
                .ok_or_else(|| DriverError::exec_not_found(id, exec_id))?;
            if !e.exited {
                let _ = kill_process(to_pid(e.pid as i32)?, rustix::process::Signal::KILL);
            }
            e.exit.clone()
        };
        exit.wait();
        self.table.execs().remove(&key);
        Ok(())
    }

    fn kill(&self, id: &ContainerId, sig: Signal) -> Result<()> {
        let sig = signal(sig)?;
        // Signal under the lock: the run thread marks the entry stopped (under the lock) before
        // it reaps the process, so the pid can't have been reused.
        let table = self.lock();
        let e = table.get(id).ok_or_else(|| DriverError::not_found(id))?;
        if e.status == Status::Stopped || e.pid == 0 {
            return Err(DriverError::NotRunning {
                id: id.to_string(),
                status: e.status,
            });
        }
        kill_process(to_pid(e.pid)?, sig).map_err(|err| errno(format!("container {id}: kill"), err))
    }

    fn pause(&self, id: &ContainerId) -> Result<()> {
        self.transition(
            id,
            "pause",
            Status::Running,
            Status::Paused,
            Signal::STOP,
            true,
        )
    }

    fn unpause(&self, id: &ContainerId) -> Result<()> {
        self.transition(
            id,
            "unpause",
            Status::Paused,
            Status::Running,
            Signal::CONT,
            true,
        )
    }

    fn terminate(&self, id: &ContainerId) -> Result<()> {
        let exit = {
            let table = self.lock();
            let e = table.get(id).ok_or_else(|| DriverError::not_found(id))?;
            if e.pid != 0 && e.status != Status::Stopped {
                let _ = kill_process_group(to_pid(e.pid)?, rustix::process::Signal::KILL);
            }
            e.exit.clone()
        };
        // Until its waiter thread has reaped it.
        match exit.wait_timeout(Duration::from_secs(30)) {
            Some(_) => Ok(()),
            None => Err(DriverError::Internal {
                context: format!("container {id}: terminate"),
                message: "still not gone after 30s".into(),
            }),
        }
    }

    fn clean(&self, id: &ContainerId) -> Result<()> {
        match self.delete(id) {
            Ok(()) | Err(DriverError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn info(&self, id: &ContainerId) -> Result<Info> {
        let table = self.lock();
        let e = table.get(id).ok_or_else(|| DriverError::not_found(id))?;
        let mut info = Info::new(id.clone(), NAME, e.status, e.bundle.clone());
        info.pid = (e.pid > 0).then_some(e.pid as u32);
        info.created = e.created;
        info.annotations = e.annotations.clone();
        Ok(info)
    }

    fn pids(&self, id: &ContainerId) -> Result<Vec<u32>> {
        let pgid = {
            let table = self.lock();
            let e = table.get(id).ok_or_else(|| DriverError::not_found(id))?;
            e.pid
        };
        group_members(pgid)
    }

    fn stats(&self, id: &ContainerId) -> Result<ResourceStats> {
        let pids = self.pids(id)?;
        let tick_ns = 1_000_000_000 / rustix::param::clock_ticks_per_second();
        let page = rustix::param::page_size() as u64;
        let mut stats = ResourceStats::new();
        let (mut user, mut system, mut rss) = (0u64, 0u64, 0u64);
        for pid in &pids {
            if let Some((_, u, s, r)) = proc_stat(*pid) {
                user += u * tick_ns;
                system += s * tick_ns;
                rss += r * page;
            }
        }
        let mut cpu = CpuStats::default();
        cpu.user_ns = user;
        cpu.system_ns = system;
        cpu.total_ns = user + system;
        let mut memory = MemoryStats::default();
        memory.usage = rss;
        memory.rss = rss;
        let mut p = PidsStats::default();
        p.current = pids.len() as u64;
        stats.cpu = cpu;
        stats.memory = memory;
        stats.pids = p;
        Ok(stats)
    }

    fn list(&self) -> Result<Vec<ContainerId>> {
        Ok(self.lock().keys().cloned().collect())
    }
}
