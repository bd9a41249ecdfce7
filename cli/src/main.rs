//! `execdriver`: run OCI bundles with any registered driver.
#![forbid(unsafe_code)]

mod select;
mod signals;

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

fn run(
    driver: std::sync::Arc<dyn execdriver::Driver>,
    cmd: Command,
) -> Result<ExitCode, DriverError> {
    let id = cmd.id.clone();
    let forwarder = signals::Forwarder::start(driver.clone(), id.clone())?;
    let hooks = Hooks::new().on_start({
        let forwarder = forwarder.clone();
        move |_| {
            forwarder.armed();
            Ok(())
        }
    });
    let result = driver.run(&cmd, Pipes::inherit(), &hooks);
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
