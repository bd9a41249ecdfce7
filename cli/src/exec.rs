//! `exec`: a new process in a running container, in the foreground or detached, with runc's
//! flags; and the terminal bridging `run` shares.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use execdriver::oci_spec::runtime::Process;
use execdriver::{ContainerId, Driver, DriverError, ExitStatus, Hooks, Pipes};

use crate::ctx::{self, Ctx, Target};
use crate::error::{Error, Result};
use crate::host::Request;
use crate::lifecycle::{exit_code, write_pid_file};

/// Flags of `exec`, runc's names.
#[derive(Debug, Default, clap::Args)]
pub struct ExecFlags {
    /// The process as an OCI `process` JSON file (then the command and the flags that shape
    /// the process are not used).
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Return once the process started; its exit goes to whoever reaps it.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Send the pty master to this unix socket (with --tty --detach).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Exec into a paused container too (native driver): the process starts frozen, and the
    /// command returns once the container is resumed, as runc.
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run the process in an existing cgroup below the container's: `[CONTROLLER[,…]:]PATH`,
    /// repeatable (native driver), as runc.
    #[arg(long = "cgroup")]
    pub cgroups: Vec<String>,
    /// The user, `UID[:GID]`.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional group ids (repeatable).
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// An environment variable, `KEY=VALUE` (repeatable).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// The working directory inside the container.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Add a capability (repeatable), e.g. CAP_NET_ADMIN.
    #[arg(long = "cap", short = 'c')]
    pub caps: Vec<String>,
    /// Set no_new_privileges.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N more fds (3..3+N) of ours to the process, as runc (native driver).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

/// The process to exec: `--process FILE`, or the container's own process (from its bundle)
/// with the given command and flags, as `runc exec` does.
pub fn process(bundle: &Path, flags: &ExecFlags, command: &[String]) -> Result<Process> {
    if let Some(path) = &flags.process {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DriverError::io(format!("--process {}", path.display()), e))?;
        let bad = |e| {
            Error::usage(format!(
                "--process {}: {}",
                path.display(),
                crate::error::json_path(e)
            ))
        };
        let mut de = serde_json::Deserializer::from_str(&text);
        let mut v: serde_json::Value = serde_path_to_error::deserialize(&mut de).map_err(bad)?;
        // runc runs a process document without `user` as uid 0, gid 0.
        if let Some(doc) = v.as_object_mut() {
            doc.entry("user")
                .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
        }
        let mut p: Process = serde_path_to_error::deserialize(v).map_err(bad)?;
        if flags.tty {
            p.set_terminal(Some(true));
        }
        return Ok(p);
    }
    if command.is_empty() {
        return Err(Error::usage(
            "exec: give a command (after the container id) or --process FILE",
        ));
    }
    let template = execdriver::load_spec(&bundle.join("config.json"))
        .ok()
        .and_then(|s| s.process().clone())
        .unwrap_or_default();
    let mut p = serde_json::to_value(&template).map_err(|e| DriverError::Internal {
        context: "exec".into(),
        message: e.to_string(),
    })?;
    p["args"] = serde_json::json!(command);
    p["terminal"] = flags.tty.into();
    if let Some(cwd) = &flags.cwd {
        p["cwd"] = cwd.clone().into();
    }
    if let Some(user) = &flags.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| Error::usage(format!("--user {user:?}: expected UID[:GID]")))
        };
        p["user"] = serde_json::json!({"uid": parse(uid)?, "gid": parse(gid)?});
    }
    if !flags.additional_gids.is_empty() {
        p["user"]["additionalGids"] = serde_json::json!(flags.additional_gids);
    }
    let mut vars: Vec<String> = p["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| {
            vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
        });
    for kv in &flags.env {
        let key = kv
            .split_once('=')
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Error::usage(format!("--env {kv:?}: expected KEY=VALUE")))?;
        vars.retain(|v| v.split_once('=').map(|(k, _)| k) != Some(key));
        vars.push(kv.clone());
    }
    p["env"] = serde_json::json!(vars);
    for cap in &flags.caps {
        let name = cap.to_ascii_uppercase();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{name}")
        };
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            let list = &mut p["capabilities"][set];
            if !list.is_array() {
                *list = serde_json::json!([]);
            }
            if let Some(a) = list.as_array_mut()
                && !a.iter().any(|c| c == &serde_json::json!(name))
            {
                a.push(name.clone().into());
            }
        }
    }
    if flags.no_new_privs {
        p["noNewPrivileges"] = true.into();
    }
    let text = p.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        Error::Driver(DriverError::invalid_spec(
            format!("process.{at}"),
            e.into_inner().to_string(),
        ))
    })
}

/// `--cgroup [CONTROLLER[,…]:]PATH` (runc's syntax): the controllers (none: every hierarchy)
/// and the path below the container's cgroup.
fn sub_cgroup(arg: &str) -> Result<(Vec<&str>, &str)> {
    let (controllers, path) = match arg.split_once(':') {
        Some((cs, p)) => (cs.split(',').filter(|c| !c.is_empty()).collect(), p),
        None => (Vec::new(), arg),
    };
    if path.is_empty() {
        return Err(Error::usage(format!("--cgroup {arg:?}: no cgroup path")));
    }
    Ok((controllers, path))
}

/// `--preserve-fds N`: copies of our fds 3 … 3+N-1 for the process.
pub fn preserved(n: u32) -> Result<Vec<std::os::fd::OwnedFd>> {
    execdriver::native::inherited_fds(n).map_err(|e| DriverError::io("--preserve-fds", e).into())
}

/// `exec`.
pub fn exec(ctx: &Ctx, id: &str, flags: &ExecFlags, command: &[String]) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    let target = ctx.target(&id)?;
    if let Target::Hosted { record } = &target {
        for (used, flag) in [
            (flags.preserve_fds > 0, "--preserve-fds"),
            (!flags.cgroups.is_empty(), "exec --cgroup"),
        ] {
            if used {
                return Err(DriverError::unsupported(flag, record.config.driver.clone()).into());
            }
        }
    }
    let bundle = match &target {
        Target::Native { driver, .. } => driver.info(&id)?.bundle,
        Target::Hosted { record } => record.bundle.clone(),
    };
    let process = process(&bundle, flags, command)?;
    let tty = process.terminal() == Some(true);
    if flags.detach && tty && flags.console_socket.is_none() {
        return Err(Error::usage(
            "--tty --detach needs --console-socket to hand the terminal over",
        ));
    }
    if !flags.detach && flags.console_socket.is_some() {
        return Err(Error::usage(
            "--console-socket needs --detach (in the foreground the terminal is ours)",
        ));
    }
    if let Target::Native { driver, .. } = &target
        && !flags.ignore_paused
        && driver.info(&id)?.status == execdriver::Status::Paused
    {
        // runc's words.
        return Err(Error::usage(
            "cannot exec in a paused container (use --ignore-paused to override)",
        ));
    }
    let mut opts = execdriver::native::ExecOptions::default().ignore_paused(flags.ignore_paused);
    for c in &flags.cgroups {
        let (controllers, path) = sub_cgroup(c)?;
        opts = opts.sub_cgroup(&controllers, path);
    }
    match target {
        Target::Native { driver, .. } if flags.detach => {
            let pipes = Pipes {
                extra: preserved(flags.preserve_fds)?,
                ..Pipes::inherit()
            };
            let created = driver.exec_detached_with(&id, &process, pipes, opts)?;
            if let (Some(master), Some(sock)) = (&created.terminal, &flags.console_socket) {
                crate::fdpass::send_console(sock, master.as_fd())?;
            }
            if let Some(p) = &flags.pid_file {
                write_pid_file(p, created.pid)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Target::Native { driver, .. } => {
            let extra = preserved(flags.preserve_fds)?;
            let status = foreground(
                driver,
                &id,
                &process,
                tty,
                extra,
                opts,
                flags.pid_file.as_deref(),
            )?;
            Ok(exit_code(&status))
        }
        Target::Hosted { record } if flags.detach => {
            if tty {
                return Err(
                    DriverError::unsupported("process.terminal", record.config.driver).into(),
                );
            }
            // A small process of ours waits for the exec and exits with its code: that is the
            // pid a shim watches.
            let file = ctx.records.exec_request(&id)?;
            let json = serde_json::to_vec(&process).map_err(|e| DriverError::Internal {
                context: "exec".into(),
                message: e.to_string(),
            })?;
            std::fs::write(&file, json)
                .map_err(|e| DriverError::io(format!("write {}", file.display()), e))?;
            let exe = std::env::current_exe().map_err(|e| DriverError::io("current_exe", e))?;
            let mut command = std::process::Command::new(exe);
            command
                .args(ctx.globals.args())
                .arg("__exec")
                .arg(id.as_str())
                .arg(&file);
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let child = command.spawn().map_err(|e| {
                let _ = std::fs::remove_file(&file);
                DriverError::io("start the exec process", e)
            })?;
            if let Some(p) = &flags.pid_file {
                write_pid_file(p, child.id())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Target::Hosted { record } => {
            let st = hosted_exec(ctx, &record, &process)?;
            Ok(exit_code(&st))
        }
    }
}

fn hosted_exec(
    ctx: &Ctx,
    record: &crate::records::Record,
    process: &Process,
) -> Result<ExitStatus> {
    let v = ctx::ask_with(
        &ctx.records,
        record,
        &Request::Exec {
            process: Box::new(process.clone()),
        },
        Some(crate::host::stdio_fds()),
    )?;
    serde_json::from_value(v).map_err(|e| Error::Remote(e.to_string()))
}

/// The hidden `__exec ID FILE` of a detached exec into a hosted container.
pub fn exec_main(ctx: &Ctx, id: &str, file: &Path) -> Result<ExitCode> {
    let id = ContainerId::new(id)?;
    let text = std::fs::read(file);
    let _ = std::fs::remove_file(file);
    let text = text.map_err(|e| DriverError::io(format!("read {}", file.display()), e))?;
    let process: Process = serde_json::from_slice(&text)
        .map_err(|e| DriverError::invalid_spec("process", e.to_string()))?;
    let Target::Hosted { record } = ctx.target(&id)? else {
        return Err(Error::usage(format!(
            "container {id} has no hosting process"
        )));
    };
    Ok(exit_code(&hosted_exec(ctx, &record, &process)?))
}

/// Hooks that bridge our terminal to the container's pty, when it has one; the output thread
/// lands in the returned slot.
pub type OutputSlot = Arc<Mutex<Option<JoinHandle<()>>>>;

pub fn bridging_hooks() -> (Hooks, OutputSlot) {
    let slot = OutputSlot::default();
    let out = slot.clone();
    let hooks = Hooks::new().on_pre_start(move |ctx| {
        if let Some(term) = ctx.terminal()
            && let Ok(mut s) = out.lock()
        {
            *s = crate::tty::bridge(term.clone());
        }
        Ok(())
    });
    (hooks, slot)
}

pub fn join_output(slot: &OutputSlot) {
    if let Some(t) = slot.lock().ok().and_then(|mut s| s.take()) {
        let _ = t.join();
    }
}

fn foreground(
    driver: Arc<execdriver::native::NativeDriver>,
    id: &ContainerId,
    process: &Process,
    tty: bool,
    extra: Vec<std::os::fd::OwnedFd>,
    opts: execdriver::native::ExecOptions,
    pid_file: Option<&Path>,
) -> Result<ExitStatus> {
    let (hooks, output) = bridging_hooks();
    let pid_file = pid_file.map(Path::to_path_buf);
    let hooks = hooks.on_start(move |ctx| {
        if let Some(p) = &pid_file {
            write_pid_file(p, ctx.pid()).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let raw = tty.then(crate::tty::RawMode::enter);
    let pipes = if tty { Pipes::null() } else { Pipes::inherit() };
    let pipes = Pipes { extra, ..pipes };
    let status = driver.exec_with(id, process, pipes, &hooks, opts);
    join_output(&output);
    drop(raw);
    Ok(status?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(process: serde_json::Value) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": process});
        std::fs::write(d.path().join("config.json"), spec.to_string()).unwrap();
        d
    }

    fn cmd(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_containers_process_is_the_template() {
        let b = bundle_with(serde_json::json!({
            "args": ["sh"], "cwd": "/", "env": ["PATH=/bin", "A=1"],
            "user": {"uid": 5, "gid": 5},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]}
        }));
        let flags = ExecFlags {
            env: vec!["A=2".into(), "B=3".into()],
            user: Some("7:8".into()),
            cwd: Some("/tmp".into()),
            caps: vec!["net_admin".into()],
            no_new_privs: true,
            additional_gids: vec![10],
            ..ExecFlags::default()
        };
        let p = process(b.path(), &flags, &cmd(&["echo", "hi"])).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &cmd(&["echo", "hi"]));
        assert_eq!(
            p.env().as_ref().unwrap(),
            &cmd(&["PATH=/bin", "A=2", "B=3"])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &vec![10]);
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.no_new_privileges(), Some(true));
        let caps = p.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 2);
        assert_eq!(p.terminal(), Some(false));
    }

    #[test]
    fn a_process_file_is_used_as_is() {
        let b = bundle_with(serde_json::json!({"args": ["sh"], "cwd": "/"}));
        let f = b.path().join("p.json");
        std::fs::write(
            &f,
            r#"{"args": ["ls"], "cwd": "/x", "env": ["Z=1"], "user": {"uid": 0, "gid": 0}}"#,
        )
        .unwrap();
        let flags = ExecFlags {
            process: Some(f.clone()),
            ..ExecFlags::default()
        };
        let p = process(b.path(), &flags, &[]).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &cmd(&["ls"]));
        assert_eq!(p.cwd().to_str(), Some("/x"));
        std::fs::write(
            &f,
            r#"{"args": "ls", "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
        )
        .unwrap();
        let e = process(b.path(), &flags, &[]).unwrap_err().to_string();
        assert!(e.contains("args"), "{e}");
    }

    #[test]
    fn bad_exec_flags_name_the_flag() {
        let b = bundle_with(serde_json::json!({"args": ["sh"], "cwd": "/"}));
        let with = |f: ExecFlags| {
            process(b.path(), &f, &cmd(&["true"]))
                .unwrap_err()
                .to_string()
        };
        let e = with(ExecFlags {
            user: Some("bob".into()),
            ..ExecFlags::default()
        });
        assert!(e.contains("--user \"bob\""), "{e}");
        let e = with(ExecFlags {
            env: vec!["NOEQUALS".into()],
            ..ExecFlags::default()
        });
        assert!(e.contains("--env \"NOEQUALS\""), "{e}");
        let e = with(ExecFlags {
            env: vec!["=x".into()],
            ..ExecFlags::default()
        });
        assert!(e.contains("--env"), "{e}");
        let e = process(b.path(), &ExecFlags::default(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--process"), "{e}");
    }
}
