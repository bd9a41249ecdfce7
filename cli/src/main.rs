//! `execdriver`: run OCI bundles with any registered driver.
#![forbid(unsafe_code)]

mod select;
mod signals;
mod tty;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use execdriver::{Command, ContainerId, DriverError, Hooks, Pipes};

/// Exit code for errors of execdriver itself (not of the container), as Docker uses.
const EXIT_ERROR: u8 = 125;

#[derive(Parser, Debug)]
#[command(
    name = "execdriver",
    version,
    about = "Run OCI bundles with pluggable execution drivers"
)]
struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "warn", env = "EXECDRIVER_LOG")]
    log_level: String,

    /// State directory of the selected driver (its `root` option).
    #[arg(long, global = true)]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a container from an OCI bundle and exit with its exit code (128+N when killed by
    /// signal N; 137 and an `oom-killed` line on stderr when OOM-killed).
    Run {
        /// The driver, by name (see `execdriver drivers`).
        #[arg(long, conflicts_with = "config")]
        driver: Option<String>,
        /// A driver configuration file: {"driver": "...", "options": {...}}.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The bundle directory (config.json + rootfs).
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// The container id.
        id: String,
    },
    /// Run a process in a running container (started by any execdriver process), with the
    /// container's own process settings (capabilities, limits) as the template.
    Exec {
        /// The driver of the container.
        #[arg(long, default_value = "native")]
        driver: String,
        /// Give the process a terminal; our stdin/stdout are bridged to it.
        #[arg(long, short = 't')]
        tty: bool,
        /// The user, `UID[:GID]`.
        #[arg(long, short = 'u')]
        user: Option<String>,
        /// An environment variable, `KEY=VALUE` (repeatable).
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// The working directory inside the container.
        #[arg(long)]
        cwd: Option<String>,
        /// The container id.
        id: String,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List the registered drivers and what they support.
    Drivers,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("execdriver: {err}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn dispatch(cli: Cli) -> Result<ExitCode, DriverError> {
    match cli.command {
        Cmd::Drivers => drivers(),
        Cmd::Exec {
            driver,
            tty,
            user,
            env,
            cwd,
            id,
            command,
        } => {
            let id = ContainerId::new(id)?;
            let mut config = execdriver::DriverConfig::new(driver);
            if let Some(root) = &cli.root {
                let root = std::path::absolute(root).map_err(|e| DriverError::io("--root", e))?;
                config.options = serde_json::json!({ "root": root });
            }
            let driver = execdriver::default_registry().create(&config)?;
            let process = exec_process(&*driver, &id, tty, user.as_deref(), &env, cwd, command)?;
            exec(driver, &id, &process, tty)
        }
        Cmd::Run {
            driver,
            config,
            bundle,
            id,
        } => {
            let id = ContainerId::new(id)?;
            let cmd = Command::from_bundle(id, &bundle)?;
            let config = select::config(
                driver.as_deref(),
                config.as_deref(),
                cli.root.as_deref(),
                &cmd,
            )?;
            let driver = execdriver::default_registry().create(&config)?;
            run(driver, cmd)
        }
    }
}

/// The process of `execdriver exec`: the container's own process (from its bundle) with the
/// given command, terminal, user, environment and directory, as `runc exec` does.
fn exec_process(
    driver: &dyn execdriver::Driver,
    id: &ContainerId,
    tty: bool,
    user: Option<&str>,
    env: &[String],
    cwd: Option<String>,
    command: Vec<String>,
) -> Result<execdriver::oci_spec::runtime::Process, DriverError> {
    let info = driver.info(id)?;
    let template = execdriver::load_spec(&info.bundle.join("config.json"))
        .ok()
        .and_then(|s| s.process().clone())
        .unwrap_or_default();
    let mut p = serde_json::to_value(&template).map_err(|e| DriverError::Internal {
        context: "exec".into(),
        message: e.to_string(),
    })?;
    p["args"] = serde_json::json!(command);
    p["terminal"] = tty.into();
    if let Some(cwd) = cwd {
        p["cwd"] = cwd.into();
    }
    if let Some(user) = user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |v: &str| {
            v.parse::<u32>().map_err(|_| DriverError::InvalidConfig {
                reason: format!("--user {user:?}: expected UID[:GID]"),
            })
        };
        p["user"] = serde_json::json!({"uid": parse(uid)?, "gid": parse(gid)?});
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
    for kv in env {
        let key = kv
            .split_once('=')
            .map(|(k, _)| k)
            .ok_or_else(|| DriverError::InvalidConfig {
                reason: format!("--env {kv:?}: expected KEY=VALUE"),
            })?;
        vars.retain(|v| v.split_once('=').map(|(k, _)| k) != Some(key));
        vars.push(kv.clone());
    }
    p["env"] = serde_json::json!(vars);
    serde_json::from_value(p).map_err(|e| DriverError::invalid_spec("process", e.to_string()))
}

/// Hooks that bridge our terminal to the container's pty, when it has one; the output thread
/// lands in the returned slot.
type OutputSlot = std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>;

fn bridging_hooks() -> (Hooks, OutputSlot) {
    let slot = OutputSlot::default();
    let out = slot.clone();
    let hooks = Hooks::new().on_pre_start(move |ctx| {
        if let Some(term) = ctx.terminal()
            && let Ok(mut s) = out.lock()
        {
            *s = tty::bridge(term.clone());
        }
        Ok(())
    });
    (hooks, slot)
}

fn join_output(slot: &OutputSlot) {
    if let Some(t) = slot.lock().ok().and_then(|mut s| s.take()) {
        let _ = t.join();
    }
}

fn exec(
    driver: std::sync::Arc<dyn execdriver::Driver>,
    id: &ContainerId,
    process: &execdriver::oci_spec::runtime::Process,
    tty: bool,
) -> Result<ExitCode, DriverError> {
    let (hooks, output) = bridging_hooks();
    let raw = tty.then(tty::RawMode::enter);
    let pipes = if tty { Pipes::null() } else { Pipes::inherit() };
    let status = driver.exec(id, process, pipes, &hooks);
    join_output(&output);
    drop(raw);
    Ok(ExitCode::from(status?.code.clamp(0, 255) as u8))
}

fn run(
    driver: std::sync::Arc<dyn execdriver::Driver>,
    cmd: Command,
) -> Result<ExitCode, DriverError> {
    let id = cmd.id.clone();
    let tty = cmd.process().is_ok_and(|p| p.terminal() == Some(true));
    let forwarder = signals::Forwarder::start(driver.clone(), id.clone())?;
    let (hooks, output) = bridging_hooks();
    let hooks = hooks.on_start({
        let forwarder = forwarder.clone();
        move |_| {
            forwarder.armed();
            Ok(())
        }
    });
    let raw = tty.then(tty::RawMode::enter);
    let pipes = if tty { Pipes::null() } else { Pipes::inherit() };
    let result = driver.run(&cmd, pipes, &hooks);
    join_output(&output);
    drop(raw);
    forwarder.stop();
    let status = result?;
    if status.oom_killed {
        eprintln!("execdriver: container {id}: oom-killed");
    }
    Ok(ExitCode::from(status.code.clamp(0, 255) as u8))
}

fn drivers() -> Result<ExitCode, DriverError> {
    let registry = execdriver::default_registry();
    println!("{:<10} {:<60} CAPABILITIES", "NAME", "DESCRIPTION");
    for name in registry.names() {
        let factory = registry.factory(name)?;
        let caps = match factory.create(&serde_json::Value::Null) {
            Ok(d) => d.capabilities().to_string(),
            Err(e) => format!("(unavailable: {e})"),
        };
        println!("{:<10} {:<60} {caps}", name, factory.description());
    }
    Ok(ExitCode::SUCCESS)
}
