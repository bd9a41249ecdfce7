//! runc's lifecycle commands over every driver: create, start, run, state, kill, delete,
//! pause, resume, ps, events, update, list.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use execdriver::oci_spec::runtime::LinuxResources;
use execdriver::{
    Command, ContainerId, Driver, DriverError, ExitStatus, Hooks, Pipes, Signal, Status, WireError,
};

use crate::ctx::{self, Ctx, Target};
use crate::error::{Error, Result};
use crate::host::{self, HostState, Request, Serve};
use crate::oci;
use crate::records::Record;

/// Flags of `create` and `run`.
#[derive(Debug, Default)]
pub struct CreateFlags {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

fn bundle_command(id: &str, flags: &CreateFlags) -> Result<Command> {
    let id = ContainerId::new(id)?;
    let bundle = std::path::absolute(&flags.bundle)
        .map_err(|e| DriverError::io(format!("--bundle {}", flags.bundle.display()), e))?;
    Ok(Command::from_bundle(id, bundle)?)
}

/// `--no-pivot`: the native driver's `no_pivot` option for this container.
fn no_pivot(
    mut config: execdriver::DriverConfig,
    flags: &CreateFlags,
) -> Result<execdriver::DriverConfig> {
    if !flags.no_pivot {
        return Ok(config);
    }
    if config.driver != "native" {
        return Err(DriverError::unsupported("--no-pivot", config.driver).into());
    }
    if !config.options.is_object() {
        config.options = serde_json::json!({});
    }
    config.options["no_pivot"] = true.into();
    Ok(config)
}

/// `--preserve-fds` for a container in a hosting process: its fds would have to cross into
/// that process first (not done).
fn refuse_preserved_fds(flags: &CreateFlags, driver: &str) -> Result<()> {
    if flags.preserve_fds > 0 {
        return Err(DriverError::unsupported("--preserve-fds", driver).into());
    }
    Ok(())
}

fn wants_terminal(cmd: &Command) -> bool {
    cmd.process().is_ok_and(|p| p.terminal() == Some(true))
}

/// Writes a pid file atomically (a temporary file renamed over it), as runc does.
pub fn write_pid_file(path: &Path, pid: u32) -> Result<()> {
    let path = std::path::absolute(path)
        .map_err(|e| DriverError::io(format!("--pid-file {}", path.display()), e))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Driver(DriverError::io(format!("--pid-file {}", path.display()), e))
        })
}

/// `create`: the container exists, its program waits for `start`.
pub fn create(ctx: &Ctx, id: &str, flags: &CreateFlags) -> Result<ExitCode> {
    let cmd = bundle_command(id, flags)?;
    let config = no_pivot(ctx.config_for(&cmd)?, flags)?;
    if config.driver == "native" {
        let native = ctx.native(&config.options)?;
        native_create(ctx, &native, &cmd, ctx::record(&cmd, config, false), flags)?;
    } else {
        refuse_preserved_fds(flags, &config.driver)?;
        let pid = spawn_host(ctx, &cmd, ctx::record(&cmd, config, true), false)?;
        if let Some(p) = &flags.pid_file {
            pid_file_or_delete(ctx, &cmd.id, p, pid)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn native_create(
    ctx: &Ctx,
    native: &execdriver::native::NativeDriver,
    cmd: &Command,
    record: Record,
    flags: &CreateFlags,
) -> Result<u32> {
    native_create_with(ctx, native, cmd, record, flags, false).map(|(pid, _)| pid)
}

/// [`native_create`]; with `own_terminal`, a terminal without `--console-socket` is this
/// process's to bridge: its pty master is returned.
fn native_create_with(
    ctx: &Ctx,
    native: &execdriver::native::NativeDriver,
    cmd: &Command,
    record: Record,
    flags: &CreateFlags,
    own_terminal: bool,
) -> Result<(u32, Option<std::os::fd::OwnedFd>)> {
    if wants_terminal(cmd) && flags.console_socket.is_none() && !own_terminal {
        return Err(Error::usage(
            "process.terminal is true: --console-socket is needed to hand the terminal over",
        ));
    }
    ctx.records.create(&record)?;
    let pipes = Pipes {
        extra: crate::exec::preserved(flags.preserve_fds)?,
        ..Pipes::inherit()
    };
    let created = match native.create_detached(cmd, pipes) {
        Ok(c) => c,
        Err(e) => {
            ctx.records.remove(&cmd.id);
            return Err(e.into());
        }
    };
    let (handed, kept) = match (created.terminal, &flags.console_socket) {
        (Some(master), Some(sock)) => (crate::fdpass::send_console(sock, master.as_fd()), None),
        (master, _) => (Ok(()), master),
    };
    if let Err(e) = handed {
        let _ = native.delete_stored(&cmd.id, true);
        ctx.records.remove(&cmd.id);
        return Err(e.into());
    }
    if let Some(p) = &flags.pid_file {
        pid_file_or_delete(ctx, &cmd.id, p, created.pid)?;
    }
    Ok((created.pid, kept))
}

fn pid_file_or_delete(ctx: &Ctx, id: &ContainerId, path: &Path, pid: u32) -> Result<()> {
    write_pid_file(path, pid).inspect_err(|_| {
        let _ = delete(ctx, id.as_str(), true);
    })
}

/// Starts the hosting process of a container and waits until it is created (or, with
/// `start_now`, running); returns its pid.
fn spawn_host(ctx: &Ctx, cmd: &Command, record: Record, start_now: bool) -> Result<u32> {
    if wants_terminal(cmd) {
        return Err(Error::Driver(DriverError::unsupported(
            "process.terminal",
            record.config.driver.clone(),
        )));
    }
    ctx.records.create(&record)?;
    let fail = |e: Error| {
        ctx.records.remove(&record.id);
        e
    };
    let ready_path = ctx.records.path(&record.id, "ready");
    let _ = std::fs::remove_file(&ready_path);
    let listener = UnixListener::bind(&ready_path)
        .map_err(|e| fail(DriverError::io(format!("bind {}", ready_path.display()), e).into()))?;
    let exe =
        std::env::current_exe().map_err(|e| fail(DriverError::io("current_exe", e).into()))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(ctx.globals.args())
        .arg("__host")
        .arg("--ready-socket")
        .arg(&ready_path);
    if start_now {
        command.arg("--start");
    }
    command.arg(record.id.as_str());
    // Its own process group: ^C at our terminal is not for it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| fail(DriverError::io("start the hosting process", e).into()))?;
    let answer = wait_ready(&listener, &mut child);
    let _ = std::fs::remove_file(&ready_path);
    match answer {
        Ok(_) => Ok(child.id()),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            remove_hosted_cgroup(&record.id, &record.bundle);
            Err(fail(e))
        }
    }
}

/// The hosting process's answer on the ready socket: `ok PID`, or `error JSON` with the
/// error's text and, for a driver's error, its kind (`{"error": TEXT, "typed": WireError}`),
/// so that the caller gets the same [`DriverError`] the hosting process had.
fn ready_line(r: Result<u32, &Error>) -> String {
    match r {
        Ok(pid) => format!("ok {pid}"),
        Err(e) => {
            let typed = match e {
                Error::Driver(d) => serde_json::to_value(WireError::from(d)).ok(),
                _ => None,
            };
            format!(
                "error {}",
                serde_json::json!({ "error": e.to_string(), "typed": typed })
            )
        }
    }
}

/// Reads a [`ready_line`]; `pid` when the line has none.
fn parse_ready(line: &str, pid: u32) -> Result<u32> {
    match line.split_once(' ') {
        Some(("ok", p)) => Ok(p.parse().unwrap_or(pid)),
        Some(("error", json)) => {
            let v: serde_json::Value =
                serde_json::from_str(json).map_err(|_| Error::Remote(json.to_owned()))?;
            if let Some(typed) = v
                .get("typed")
                .cloned()
                .and_then(|t| serde_json::from_value::<WireError>(t).ok())
            {
                return Err(Error::Driver(typed.into()));
            }
            Err(Error::Remote(
                v.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or(json)
                    .to_owned(),
            ))
        }
        _ => Err(Error::Remote(format!("the hosting process said {line:?}"))),
    }
}

/// Reads the hosting process's answer line (see [`ready_line`]).
fn wait_ready(listener: &UnixListener, child: &mut std::process::Child) -> Result<u32> {
    listener
        .set_nonblocking(true)
        .map_err(|e| DriverError::io("ready socket", e))?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                return parse_ready(line.trim_end(), child.id());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(DriverError::io("ready socket", e).into()),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Remote(format!(
                "the hosting process exited before the container was ready ({status})"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The hidden `__host` command: the hosting process itself.
pub fn host_main(ctx: &Ctx, id: &str, ready_socket: &Path, start_now: bool) -> ExitCode {
    let ready_socket = ready_socket.to_path_buf();
    let say = move |line: String| {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&ready_socket) {
            let _ = writeln!(s, "{line}");
        }
    };
    let setup = || -> Result<(Arc<dyn Driver>, Command, Record)> {
        let id = ContainerId::new(id)?;
        let record = ctx
            .records
            .get(&id)?
            .ok_or_else(|| DriverError::not_found(&id))?;
        let driver = execdriver::default_registry().create(&record.config)?;
        let cmd = Command::from_bundle(id, &record.bundle)?;
        Ok((driver, cmd, record))
    };
    let (driver, cmd, _record) = match setup().and_then(|(d, c, r)| Ok((d, isolate(c)?, r))) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("{e}");
            say(ready_line(Err(&e)));
            return ExitCode::from(1);
        }
    };
    // Signals sent to the hosting process (its pid is the container's) go to the container.
    let forwarder = crate::signals::Forwarder::start(driver.clone(), cmd.id.clone()).ok();
    let hooks = match &forwarder {
        Some(f) => {
            let f = f.clone();
            Hooks::new().on_start(move |_| {
                f.armed();
                Ok(())
            })
        }
        None => Hooks::new(),
    };
    let result = host::serve(
        driver,
        cmd,
        &ctx.records,
        Serve {
            wait_for_start: !start_now,
            pipes: Pipes::inherit(),
            hooks,
            ready: Box::new(move |r| {
                let r = r.map_err(Error::Driver);
                say(ready_line(r.as_ref().copied()));
            }),
        },
    );
    if let Some(f) = forwarder {
        f.stop();
    }
    match result {
        Ok(st) => exit_code(&st),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// What the hosting process does before its driver runs the container, so that the container
/// looks to a shim and to kubelet like a runc one: every bind mount (files too) is made inside
/// the rootfs in a private mount namespace of the hosting process (see
/// `bind_mounts_into_rootfs`; without CAP_SYS_ADMIN the driver gets the spec as it is), and
/// with `linux.cgroupsPath` the hosting process joins the container's cgroup, with its limits,
/// so that the cgroup of the container's pid holds the container's numbers.
fn isolate(mut cmd: Command) -> Result<Command> {
    match execdriver::native::bind_mounts_into_rootfs(&cmd) {
        Ok(spec) => cmd.spec = spec,
        Err(DriverError::Sys { errno, .. }) if errno == libc_eperm() => {
            tracing::debug!(id = %cmd.id, "no private mount namespace (EPERM): bind mounts stay the driver's");
        }
        Err(e) => return Err(e.into()),
    }
    if has_cgroups_path(&cmd.spec) {
        let cg = execdriver::native::HostedCgroup::join(
            &cmd.id,
            &cmd.spec,
            &execdriver::native::NativeOptions::default().cgroup_parent,
            std::process::id(),
        )?;
        host::set_cgroup(cg);
    }
    Ok(cmd)
}

fn libc_eperm() -> i32 {
    nix::errno::Errno::EPERM as i32
}

fn has_cgroups_path(spec: &execdriver::oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .is_some_and(|p| !p.as_os_str().is_empty())
}

/// Removes the cgroup a hosting process joined (it is gone by now); errors are logged.
fn remove_hosted_cgroup(id: &ContainerId, bundle: &Path) {
    let Ok(cmd) = Command::from_bundle(id.clone(), bundle) else {
        return;
    };
    if has_cgroups_path(&cmd.spec)
        && let Err(e) = execdriver::native::HostedCgroup::remove(
            id,
            &cmd.spec,
            &execdriver::native::NativeOptions::default().cgroup_parent,
        )
    {
        tracing::warn!(%id, err = %e, "could not remove the hosting process's cgroup");
    }
}

pub fn exit_code(st: &ExitStatus) -> ExitCode {
    ExitCode::from(st.code.clamp(0, 255) as u8)
}

/// `start`.
pub fn start(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    match ctx.target(&id)? {
        Target::Native { driver, .. } => driver.start(&id)?,
        Target::Hosted { record } => match ctx::ask(&ctx.records, &record, &Request::Start) {
            Err(Error::Driver(DriverError::NotRunning { .. })) => {
                return Err(DriverError::InvalidState {
                    id: id.to_string(),
                    op: "start".into(),
                    status: Status::Stopped,
                }
                .into());
            }
            r => {
                r?;
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `run`: create and start; in the foreground unless `detach`, exiting with the container's
/// code.
pub fn run(ctx: &Ctx, id: &str, flags: &CreateFlags, detach: bool) -> Result<ExitCode> {
    let cmd = bundle_command(id, flags)?;
    let config = no_pivot(ctx.config_for(&cmd)?, flags)?;
    let native = config.driver == "native";
    if detach {
        if native {
            let driver = ctx.native(&config.options)?;
            native_create(ctx, &driver, &cmd, ctx::record(&cmd, config, false), flags)?;
            if let Err(e) = driver.start(&cmd.id) {
                let _ = delete(ctx, cmd.id.as_str(), true);
                return Err(e.into());
            }
        } else {
            refuse_preserved_fds(flags, &config.driver)?;
            let pid = spawn_host(ctx, &cmd, ctx::record(&cmd, config, true), true)?;
            if let Some(p) = &flags.pid_file {
                pid_file_or_delete(ctx, &cmd.id, p, pid)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if flags.console_socket.is_some() {
        return Err(Error::usage(
            "--console-socket needs --detach (in the foreground the terminal is ours)",
        ));
    }
    let extra = crate::exec::preserved(flags.preserve_fds)?;
    let record = ctx::record(&cmd, config.clone(), !native);
    ctx.records.create(&record)?;
    let result = if native {
        ctx.native(&config.options)
            .and_then(|d| foreground(d, &cmd, extra, flags.pid_file.as_deref(), None))
    } else {
        execdriver::default_registry()
            .create(&config)
            .map_err(Error::from)
            .and_then(|d| foreground(d, &cmd, extra, flags.pid_file.as_deref(), Some(ctx)))
    };
    ctx.records.remove(&cmd.id);
    let status = result?;
    if status.oom_killed {
        eprintln!("execdriver: container {}: oom-killed", cmd.id);
    }
    Ok(exit_code(&status))
}

/// `run --keep` (native driver), as runc: create and start, wait for the init, and leave the
/// stopped container (state, cgroup, poststop hooks) to `delete`.
pub fn run_kept(ctx: &Ctx, id: &str, flags: &CreateFlags) -> Result<ExitCode> {
    let cmd = bundle_command(id, flags)?;
    let config = no_pivot(ctx.config_for(&cmd)?, flags)?;
    if config.driver != "native" {
        return Err(DriverError::unsupported("run --keep", config.driver).into());
    }
    if flags.console_socket.is_some() {
        return Err(Error::usage(
            "--console-socket needs --detach (in the foreground the terminal is ours)",
        ));
    }
    let tty = wants_terminal(&cmd);
    let driver = ctx.native(&config.options)?;
    let (pid, master) = native_create_with(
        ctx,
        &driver,
        &cmd,
        ctx::record(&cmd, config, false),
        flags,
        true,
    )?;
    let forwarder = crate::signals::Forwarder::start(driver.clone(), cmd.id.clone())?;
    // The terminal is ours, as in a foreground `run`: raw mode, and the pty bridged to our
    // stdin/stdout until the container's side closes.
    let raw = tty.then(crate::tty::RawMode::enter);
    let output = master.and_then(|m| crate::tty::bridge(execdriver::native::terminal_of(m)));
    if let Err(e) = driver.start(&cmd.id) {
        forwarder.stop();
        let _ = delete(ctx, cmd.id.as_str(), true);
        return Err(e.into());
    }
    forwarder.armed();
    // The init is our child (create leaves it to its creator to reap).
    let waited = loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    forwarder.stop();
    if let Some(t) = output {
        let _ = t.join();
    }
    drop(raw);
    let status = match waited {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => ExitStatus::exited(code),
        Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => ExitStatus::signaled(sig as i32),
        other => {
            return Err(DriverError::Internal {
                context: format!("container {}: wait", cmd.id),
                message: format!("{other:?}"),
            }
            .into());
        }
    };
    let status = if status.signal == Some(9) && driver.oom_kills(&cmd.id).unwrap_or(0) > 0 {
        eprintln!("execdriver: container {}: oom-killed", cmd.id);
        status.with_oom_killed(true)
    } else {
        status
    };
    Ok(exit_code(&status))
}

/// Runs a container in this process, forwarding our signals and bridging our terminal; with
/// `host`, serves the other commands on its socket meanwhile.
fn foreground(
    driver: Arc<dyn Driver>,
    cmd: &Command,
    extra: Vec<std::os::fd::OwnedFd>,
    pid_file: Option<&Path>,
    host: Option<&Ctx>,
) -> Result<ExitStatus> {
    let id = cmd.id.clone();
    let tty = wants_terminal(cmd);
    let forwarder = crate::signals::Forwarder::start(driver.clone(), id.clone())?;
    let (hooks, output) = crate::exec::bridging_hooks();
    let pid_file = pid_file.map(Path::to_path_buf);
    let hooks = hooks.on_start({
        let forwarder = forwarder.clone();
        move |ctx| {
            if let Some(p) = &pid_file {
                write_pid_file(p, ctx.pid()).map_err(|e| e.to_string())?;
            }
            forwarder.armed();
            Ok(())
        }
    });
    let raw = tty.then(crate::tty::RawMode::enter);
    let pipes = if tty { Pipes::null() } else { Pipes::inherit() };
    let pipes = Pipes { extra, ..pipes };
    let result = match host {
        None => driver.run(cmd, pipes, &hooks).map_err(Error::from),
        Some(ctx) => host::serve(
            driver,
            cmd.clone(),
            &ctx.records,
            Serve {
                wait_for_start: false,
                pipes,
                hooks,
                ready: Box::new(|_| {}),
            },
        )
        .map_err(Error::from),
    };
    crate::exec::join_output(&output);
    drop(raw);
    forwarder.stop();
    result
}

/// The status and pid of a container.
fn status_of(ctx: &Ctx, id: &ContainerId) -> Result<oci::State> {
    match ctx.target(id)? {
        Target::Native { driver, record } => {
            let info = driver.info(id)?;
            Ok(oci::State::new(
                id,
                info.status,
                info.pid.unwrap_or(0),
                &info.bundle,
                record.as_ref().map_or(info.created, |r| r.created),
                info.annotations,
                "native",
            ))
        }
        Target::Hosted { record } => {
            let hs = ctx::host_state(&ctx.records, &record).unwrap_or(HostState {
                status: Status::Stopped,
                pid: 0,
                exit: ctx.records.exit(id),
                ooms: 0,
                annotations: Default::default(),
            });
            // The bundle's, with what the driver added over them while it runs.
            let mut annotations: std::collections::BTreeMap<_, _> =
                execdriver::load_spec(&record.bundle.join("config.json"))
                    .ok()
                    .and_then(|s| s.annotations().clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
            annotations.extend(hs.annotations);
            Ok(oci::State::new(
                id,
                hs.status,
                hs.pid,
                &record.bundle,
                record.created,
                annotations,
                &record.config.driver,
            ))
        }
    }
}

/// Prints `v` as runc does: `state` indented, `ps`/`list --format json` as one compact line
/// (what their parsers, containerd's among them, read).
fn print_json(v: &impl serde::Serialize, pretty: bool) -> Result<()> {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    let s = s.map_err(|e| DriverError::Internal {
        context: "output".into(),
        message: e.to_string(),
    })?;
    println!("{s}");
    Ok(())
}

/// `state`.
pub fn state(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    print_json(&status_of(ctx, &id)?, true)?;
    Ok(ExitCode::SUCCESS)
}

/// `kill [--all] ID [SIGNAL]`.
pub fn kill(ctx: &Ctx, id: &str, signal: Option<&str>, all: bool) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    if signal.is_some_and(|s| s.trim() == "0") {
        // Signal 0 sends nothing: runc's (and kill(1)'s) "is it alive", which succeeds for a
        // created, running or paused container.
        return match status_of(ctx, &id)?.status.as_str() {
            "created" | "running" | "paused" => Ok(ExitCode::SUCCESS),
            _ => Err(DriverError::NotRunning {
                id: id.to_string(),
                status: Status::Stopped,
            }
            .into()),
        };
    }
    let sig: Signal = signal.unwrap_or("SIGTERM").parse()?;
    match ctx.target(&id)? {
        Target::Native { driver, .. } => {
            if all {
                kill_all(&*driver, &id, sig)?;
            } else {
                driver.kill(&id, sig)?;
            }
        }
        Target::Hosted { record } => {
            // A hosted container's processes are its hosting process: one signal reaches all.
            match ctx::ask(
                &ctx.records,
                &record,
                &Request::Kill {
                    signal: sig.number(),
                },
            ) {
                // `--all` of a stopped container signals no process and succeeds, as runc's.
                Err(Error::Driver(DriverError::NotRunning { .. })) if all => {}
                r => {
                    r?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Signals every process of a native container (its init first).
fn kill_all(driver: &dyn Driver, id: &ContainerId, sig: Signal) -> Result<()> {
    let info = driver.info(id)?;
    if info.status == Status::Stopped {
        // Leftovers of a dead init still get the signal; with none, there is nothing to
        // signal and that is success — runc 1.1 exits 0 here, and containerd's shim sends
        // `kill --all ID 9` after every exit.
    } else {
        driver.kill(id, sig)?;
    }
    for pid in driver.pids(id)? {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::try_from(sig.number()).ok(),
        );
    }
    Ok(())
}

/// `delete [--force]`.
pub fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    match ctx.target(&id)? {
        Target::Native { driver, record } => match driver.delete_stored(&id, force) {
            Ok(()) => {}
            // Gone already (its state was removed): forget the record.
            Err(DriverError::NotFound { .. }) if force || record.is_some() => {}
            Err(e) => return Err(e.into()),
        },
        Target::Hosted { record } => {
            match ctx::ask(&ctx.records, &record, &Request::Delete { force }) {
                Ok(_) => ctx::wait_host_gone(&ctx.records, &record),
                // Its hosting process is gone: it stopped.
                Err(Error::Driver(DriverError::NotRunning { .. })) => {}
                Err(e) => return Err(e),
            }
            remove_hosted_cgroup(&record.id, &record.bundle);
        }
    }
    ctx.records.remove(&id);
    Ok(ExitCode::SUCCESS)
}

/// `pause` / `resume`.
pub fn pause(ctx: &Ctx, id: &str, pause: bool) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    match ctx.target(&id)? {
        Target::Native { driver, .. } if pause => driver.pause(&id)?,
        Target::Native { driver, .. } => driver.unpause(&id)?,
        Target::Hosted { record } => {
            let req = if pause {
                Request::Pause
            } else {
                Request::Resume
            };
            ctx::ask(&ctx.records, &record, &req)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pids_of(ctx: &Ctx, id: &ContainerId) -> Result<Vec<u32>> {
    match ctx.target(id)? {
        Target::Native { driver, .. } => Ok(driver.pids(id)?),
        Target::Hosted { record } => {
            let v = match ctx::ask(&ctx.records, &record, &Request::Pids) {
                // Stopped: no processes.
                Err(Error::Driver(DriverError::NotRunning { .. })) => return Ok(Vec::new()),
                r => r?,
            };
            serde_json::from_value(v).map_err(|e| Error::Remote(e.to_string()))
        }
    }
}

/// `ps [--format table|json] ID [PS_ARGS...]`.
pub fn ps(ctx: &Ctx, id: &str, json: bool, ps_args: &[String]) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    let pids = pids_of(ctx, &id)?;
    if json {
        print_json(&pids, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    let args: Vec<&str> = if ps_args.is_empty() {
        vec!["-ef"]
    } else {
        ps_args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| DriverError::io("run ps", e))?;
    if !out.status.success() {
        return Err(Error::Remote(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::usage("ps: its output has no PID column"))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stats_and_ooms(ctx: &Ctx, id: &ContainerId) -> Result<(execdriver::ResourceStats, u64)> {
    match ctx.target(id)? {
        Target::Native { driver, .. } => {
            let s = driver.stats(id)?;
            Ok((s, driver.oom_kills(id).unwrap_or(0)))
        }
        Target::Hosted { record } => {
            let s = ctx::ask(&ctx.records, &record, &Request::Stats)?;
            let s = serde_json::from_value(s).map_err(|e| Error::Remote(e.to_string()))?;
            let ooms = ctx::host_state(&ctx.records, &record).map_or(0, |h| h.ooms);
            Ok((s, ooms))
        }
    }
}

/// `events [--stats] [--interval D] ID`: stats every interval and `oom` as it happens, one
/// JSON object per line, until the container stops; `--stats` prints one stats object.
pub fn events(ctx: &Ctx, id: &str, once: bool, interval: Duration) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    let emit = |kind: &'static str, data: Option<serde_json::Value>| {
        let ev = oci::Event {
            kind,
            id: id.as_str(),
            data,
        };
        if let Ok(s) = serde_json::to_string(&ev) {
            println!("{s}");
            let _ = std::io::stdout().flush();
        }
    };
    let (stats, mut ooms) = stats_and_ooms(ctx, &id)?;
    if once {
        emit("stats", Some(oci::runc_stats(&stats)));
        return Ok(ExitCode::SUCCESS);
    }
    let interval = interval.max(Duration::from_millis(10));
    let poll = interval.min(Duration::from_millis(100));
    let mut next_stats = Instant::now();
    loop {
        let (stats, now_ooms) = match stats_and_ooms(ctx, &id) {
            Ok(v) => v,
            // It stopped (or was deleted): the stream ends.
            Err(Error::Driver(DriverError::NotRunning { .. } | DriverError::NotFound { .. })) => {
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => return Err(e),
        };
        for _ in ooms..now_ooms {
            emit("oom", None);
        }
        ooms = ooms.max(now_ooms);
        if Instant::now() >= next_stats {
            emit("stats", Some(oci::runc_stats(&stats)));
            next_stats += interval;
        }
        std::thread::sleep(poll);
    }
}

/// Flags of `update`, runc's names.
#[derive(Debug, Default, clap::Args)]
pub struct UpdateFlags {
    /// Resources as JSON (LinuxResources), from a file or `-` for stdin; flags override it.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g).
    #[arg(long, short = 'm', allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Kernel memory limit (ignored: deprecated by the kernel, as runc does).
    #[arg(long, hide = true)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit (ignored, as runc does).
    #[arg(long, hide = true)]
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to run on (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 or 0: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

impl UpdateFlags {
    /// The resources to apply: `--resources` with the flags on top.
    pub fn resources(&self) -> Result<LinuxResources> {
        let mut v = match &self.resources {
            None => serde_json::json!({}),
            Some(p) => {
                let text = if p.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                        .map_err(|e| DriverError::io("--resources -: read stdin", e))?
                } else {
                    std::fs::read_to_string(p)
                        .map_err(|e| DriverError::io(format!("--resources {}", p.display()), e))?
                };
                serde_json::from_str(&text)
                    .map_err(|e| Error::usage(format!("--resources {}: {e}", p.display())))?
            }
        };
        if !v.is_object() {
            return Err(Error::usage("--resources: expected a JSON object"));
        }
        let size = |flag: &str, s: &str| {
            oci::parse_size(s).map_err(|e| Error::usage(format!("--{flag} {e}")))
        };
        if let Some(m) = &self.memory {
            v["memory"]["limit"] = size("memory", m)?.into();
        }
        if let Some(m) = &self.memory_reservation {
            v["memory"]["reservation"] = size("memory-reservation", m)?.into();
        }
        if let Some(m) = &self.memory_swap {
            v["memory"]["swap"] = size("memory-swap", m)?.into();
        }
        // As runc: lifting the memory limit (-1) without a word on swap lifts memory+swap too
        // (the kernel keeps memory <= memory+swap, so the old memsw limit would still bind).
        if v["memory"]["limit"].as_i64() == Some(-1) && v["memory"]["swap"].is_null() {
            v["memory"]["swap"] = (-1).into();
        }
        if self.kernel_memory.is_some() || self.kernel_memory_tcp.is_some() {
            tracing::warn!("--kernel-memory and --kernel-memory-tcp are ignored");
        }
        if let Some(x) = self.cpu_share {
            v["cpu"]["shares"] = x.into();
        }
        if let Some(x) = self.cpu_period {
            v["cpu"]["period"] = x.into();
        }
        if let Some(x) = self.cpu_quota {
            v["cpu"]["quota"] = x.into();
        }
        if let Some(x) = self.cpu_rt_period {
            v["cpu"]["realtimePeriod"] = x.into();
        }
        if let Some(x) = self.cpu_rt_runtime {
            v["cpu"]["realtimeRuntime"] = x.into();
        }
        if let Some(x) = &self.cpuset_cpus {
            v["cpu"]["cpus"] = x.clone().into();
        }
        if let Some(x) = &self.cpuset_mems {
            v["cpu"]["mems"] = x.clone().into();
        }
        if let Some(x) = self.pids_limit {
            v["pids"]["limit"] = x.into();
        }
        if let Some(x) = self.blkio_weight {
            v["blockIO"]["weight"] = x.into();
        }
        let de = serde_json::to_string(&v).unwrap_or_default();
        let mut de = serde_json::Deserializer::from_str(&de);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| Error::usage(format!("resources: {}", crate::error::json_path(e))))
    }
}

/// `update`.
pub fn update(ctx: &Ctx, id: &str, flags: &UpdateFlags) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    let resources = flags.resources()?;
    match ctx.target(&id)? {
        Target::Native { driver, .. } => driver.update(&id, &resources)?,
        Target::Hosted { record } => {
            ctx::ask(
                &ctx.records,
                &record,
                &Request::Update {
                    resources: Box::new(resources),
                },
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `list [--format table|json] [-q]`.
pub fn list(ctx: &Ctx, json: bool, quiet: bool) -> Result<ExitCode> {
    let states: Vec<oci::State> = ctx
        .ids()
        .iter()
        .filter_map(|id| status_of(ctx, id).ok())
        .collect();
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
    } else if json {
        print_json(&states, false)?;
    } else {
        let w = states.iter().map(|s| s.id.len()).max().unwrap_or(2).max(2);
        // runc's columns (callers parse them); the driver is in `--format json`.
        println!(
            "{:<w$}   {:<8} {:<8} {:<40} {:<30} OWNER",
            "ID", "PID", "STATUS", "BUNDLE", "CREATED"
        );
        for s in &states {
            println!(
                "{:<w$}   {:<8} {:<8} {:<40} {:<30} {}",
                s.id, s.pid, s.status, s.bundle, s.created, s.owner
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_keeps_the_error_kind() {
        assert_eq!(parse_ready(&ready_line(Ok(42)), 7).unwrap(), 42);
        let e = Error::Driver(DriverError::invalid_spec(
            "process.args",
            "the module does not exist",
        ));
        let line = ready_line(Err(&e));
        assert!(!line.contains('\n'), "{line}");
        match parse_ready(&line, 7) {
            Err(Error::Driver(DriverError::InvalidSpec { field, .. })) => {
                assert_eq!(field, "process.args");
            }
            other => panic!("{other:?}"),
        }
        // Not a driver's error: the text, as it was.
        let line = ready_line(Err(&Error::usage("bad flag")));
        assert!(matches!(parse_ready(&line, 7), Err(Error::Remote(m)) if m == "bad flag"));
        // An older hosting process's plain text.
        assert!(
            matches!(parse_ready("error it broke", 7), Err(Error::Remote(m)) if m == "it broke")
        );
        assert!(matches!(parse_ready("what", 7), Err(Error::Remote(_))));
    }

    fn flags(args: &[&str]) -> UpdateFlags {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            f: UpdateFlags,
        }
        let mut v = vec!["update"];
        v.extend_from_slice(args);
        P::try_parse_from(v).unwrap().f
    }

    #[test]
    fn update_flags_become_resources() {
        let r = flags(&[
            "--memory",
            "64m",
            "--memory-swap",
            "-1",
            "--cpu-quota",
            "-1",
            "--cpu-period",
            "100000",
            "--pids-limit",
            "32",
            "--cpuset-cpus",
            "0",
            "--blkio-weight",
            "300",
        ])
        .resources()
        .unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(m.swap(), Some(-1));
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(c.quota(), Some(-1));
        assert_eq!(c.period(), Some(100_000));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 32);
        assert_eq!(r.block_io().as_ref().unwrap().weight(), Some(300));
    }

    #[test]
    fn update_flags_override_a_resources_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, r#"{"memory": {"limit": 1000, "reservation": 500}}"#).unwrap();
        let r = flags(&["--resources", p.to_str().unwrap(), "--memory", "2000"])
            .resources()
            .unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!(m.limit(), Some(2000));
        assert_eq!(m.reservation(), Some(500));
    }

    #[test]
    fn bad_update_input_names_the_flag() {
        let e = flags(&["--memory", "lots"]).resources().unwrap_err();
        assert!(e.to_string().starts_with("--memory \"lots\""), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, r#"{"memory": {"limit": "x"}}"#).unwrap();
        let e = flags(&["--resources", p.to_str().unwrap()])
            .resources()
            .unwrap_err();
        assert!(e.to_string().contains("memory.limit"), "{e}");
        std::fs::write(&p, "[1]").unwrap();
        let e = flags(&["--resources", p.to_str().unwrap()])
            .resources()
            .unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        let e = flags(&["--resources", "/nonexistent/r.json"])
            .resources()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/r.json"), "{e}");
    }

    #[test]
    fn pid_files_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pid");
        write_pid_file(&p, 1234).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1234");
        write_pid_file(&p, 5).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "5");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write_pid_file(&dir.path().join("no/such/dir/pid"), 1).unwrap_err();
        assert!(e.to_string().contains("--pid-file"), "{e}");
    }
}
