//! `execdriver`: run OCI bundles with any registered driver, through runc's command line.
#![forbid(unsafe_code)]

#[cfg(target_os = "linux")]
mod ctx;
#[cfg(target_os = "linux")]
mod error;
#[cfg(target_os = "linux")]
mod exec;
#[cfg(target_os = "linux")]
mod fdpass;
#[cfg(target_os = "linux")]
mod host;
#[cfg(target_os = "linux")]
mod lifecycle;
#[cfg(target_os = "linux")]
mod logging;
#[cfg(target_os = "linux")]
mod oci;
#[cfg(target_os = "linux")]
mod records;
#[cfg(target_os = "linux")]
mod select;
#[cfg(target_os = "linux")]
mod signals;
#[cfg(target_os = "linux")]
mod tty;

/// Exit code of `exec` for errors of execdriver itself (not of the exec'd program), as runc;
/// the other commands (`run` too) exit 1 on error, as runc does.
#[cfg(target_os = "linux")]
const EXEC_ERROR: u8 = 255;

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("execdriver: the command line runs on Linux only");
    std::process::ExitCode::from(1)
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_os = "linux")]
mod cli {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use clap::{Parser, Subcommand};

    use crate::ctx::{Ctx, Globals};
    use crate::error::{Error, Result};
    use crate::exec::ExecFlags;
    use crate::lifecycle::{self, CreateFlags, UpdateFlags};
    use crate::logging::{self, Format};
    use crate::records::Records;
    use crate::select::Operator;
    use crate::{EXEC_ERROR, oci};

    #[derive(Parser, Debug)]
    #[command(
        name = "execdriver",
        version,
        about = "Run OCI bundles with pluggable execution drivers, through runc's command line",
        after_help = "Driver per container: --driver > the operator's config file \
                      (/etc/execdriver/config.json or --config) > the annotation \
                      org.execdriver.driver > auto-detection (a .wasm/.wat args[0], or one \
                      starting with \\0asm: wasm; otherwise native)."
    )]
    struct Cli {
        /// Where state lives (the CLI's records, and the native driver's state under
        /// `<root>/native`). Default /run/execdriver as root, else
        /// $XDG_RUNTIME_DIR/execdriver.
        #[arg(long, global = true)]
        root: Option<PathBuf>,

        /// Append logs to this file instead of stderr.
        #[arg(long, global = true)]
        log: Option<PathBuf>,

        /// Log format (json is logrus's, which containerd reads).
        #[arg(long, global = true, value_enum, default_value = "text")]
        log_format: Format,

        /// Log at debug level.
        #[arg(long, global = true)]
        debug: bool,

        /// Log filter: error, warn, info, debug, trace (default warn).
        #[arg(long, global = true, env = "EXECDRIVER_LOG")]
        log_level: Option<String>,

        /// Manage cgroups through systemd: not supported yet.
        #[arg(long, global = true)]
        systemd_cgroup: bool,

        /// The operator's config file (default /etc/execdriver/config.json when it exists):
        /// {"driver": NAME, "options": {...}, "drivers": {NAME: {...}}}.
        #[arg(long, global = true)]
        config: Option<PathBuf>,

        /// The driver of new containers, by name (see `execdriver drivers`).
        #[arg(long, global = true)]
        driver: Option<String>,

        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(clap::Args, Debug)]
    struct CreateArgs {
        /// The bundle directory (config.json + rootfs).
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// Write the container's pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Send the pty master to this unix socket (when process.terminal is true).
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Enter the rootfs with MS_MOVE + chroot instead of pivot_root (native; for a rootfs
        /// pivot_root refuses, e.g. on the host's initramfs). Weaker isolation, as with runc.
        #[arg(long)]
        no_pivot: bool,
        /// Do not create a session keyring (execdriver never does).
        #[arg(long)]
        no_new_keyring: bool,
        /// Pass N more fds of ours (3 … 3+N-1) to the container's process, as runc (native).
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// The container id.
        id: String,
    }

    impl CreateArgs {
        fn flags(&self) -> CreateFlags {
            CreateFlags {
                bundle: self.bundle.clone(),
                pid_file: self.pid_file.clone(),
                console_socket: self.console_socket.clone(),
                no_pivot: self.no_pivot,
                preserve_fds: self.preserve_fds,
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum ListFormat {
        Table,
        Json,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        /// Create a container: it exists, its program waits for `start`.
        Create(CreateArgs),
        /// Start a created container's program.
        Start { id: String },
        /// Create and start a container; in the foreground, exit with its exit code (128+N
        /// when killed by signal N; 137 and an `oom-killed` line on stderr when OOM-killed).
        Run {
            #[command(flatten)]
            args: CreateArgs,
            /// Return once it started.
            #[arg(long, short = 'd')]
            detach: bool,
            /// Keep the stopped container after it exits, for `state` and `delete` (native).
            #[arg(long)]
            keep: bool,
        },
        /// Print the OCI state of a container as JSON.
        State { id: String },
        /// Send a signal (default SIGTERM; a name or a number) to a container.
        Kill {
            /// Signal every process of the container, not only its init.
            #[arg(long, short = 'a')]
            all: bool,
            id: String,
            signal: Option<String>,
        },
        /// Remove a stopped (or never started) container.
        Delete {
            /// Kill it first if it runs.
            #[arg(long, short = 'f')]
            force: bool,
            id: String,
        },
        /// Run a process in a running container.
        Exec {
            #[command(flatten)]
            flags: ExecFlags,
            /// The container id.
            id: String,
            /// The program and its arguments.
            #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
            command: Vec<String>,
        },
        /// List the processes of a container.
        Ps {
            #[arg(long, short = 'f', value_enum, default_value = "table")]
            format: ListFormat,
            id: String,
            /// Options for ps(1) (default -ef).
            #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
            ps_args: Vec<String>,
        },
        /// Freeze every process of a container.
        Pause { id: String },
        /// Thaw a paused container.
        Resume { id: String },
        /// Print stats and OOM events of a container as JSON lines until it stops.
        Events {
            /// Print the stats once and exit.
            #[arg(long)]
            stats: bool,
            /// How often to print stats.
            #[arg(long, default_value = "5s", value_parser = parse_interval)]
            interval: std::time::Duration,
            id: String,
        },
        /// Change the resource limits of a running container.
        Update {
            #[command(flatten)]
            flags: UpdateFlags,
            id: String,
        },
        /// List containers.
        List {
            #[arg(long, short = 'f', value_enum, default_value = "table")]
            format: ListFormat,
            /// Print the ids only.
            #[arg(long, short = 'q')]
            quiet: bool,
        },
        /// Write a default config.json into a bundle directory.
        Spec {
            #[arg(long, short = 'b', default_value = ".")]
            bundle: PathBuf,
            /// For a user without root: a user namespace mapping the caller to root.
            #[arg(long)]
            rootless: bool,
        },
        /// Print what this runtime supports as JSON.
        Features,
        /// List the registered drivers, what they support and whether they work on this host.
        Drivers {
            #[arg(long, short = 'f', value_enum, default_value = "table")]
            format: ListFormat,
        },
        /// The hosting process of a container (started by create/run).
        #[command(name = "__host", hide = true)]
        Host {
            #[arg(long)]
            ready_socket: PathBuf,
            #[arg(long)]
            start: bool,
            id: String,
        },
        /// The waiting process of a detached exec into a hosted container.
        #[command(name = "__exec", hide = true)]
        ExecWait { id: String, file: PathBuf },
    }

    fn parse_interval(s: &str) -> std::result::Result<std::time::Duration, String> {
        oci::parse_duration(s)
    }

    fn default_root() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/run/execdriver");
        }
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("execdriver"),
            _ => std::env::temp_dir().join(format!("execdriver-{}", nix::unistd::geteuid())),
        }
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let is_exec = matches!(cli.command, Cmd::Exec { .. });
        let log_file = cli.log.is_some();
        let hosting = matches!(cli.command, Cmd::Host { .. });
        let level = cli.log_level.clone().unwrap_or_else(|| {
            if cli.debug {
                "debug".into()
            } else {
                "warn".into()
            }
        });
        let logged = logging::init(&level, cli.log.as_deref(), cli.log_format, hosting);
        let result = logged
            .map_err(Error::from)
            .and_then(|()| dispatch(cli, level));
        match result {
            Ok(code) => code,
            Err(err) => {
                // containerd explains a failed command from the log's last error.
                let msg = err.report();
                if log_file {
                    tracing::error!("{msg}");
                }
                eprintln!("execdriver: {msg}");
                ExitCode::from(if is_exec { EXEC_ERROR } else { 1 })
            }
        }
    }

    fn dispatch(cli: Cli, log_level: String) -> Result<ExitCode> {
        if cli.systemd_cgroup {
            return Err(Error::usage(
                "--systemd-cgroup is not supported yet: execdriver manages cgroups through \
                 cgroupfs (set SystemdCgroup = false for this runtime)",
            ));
        }
        // Commands that need no state.
        match &cli.command {
            Cmd::Drivers { format } => return drivers(*format == ListFormat::Json),
            Cmd::Features => return features(),
            Cmd::Spec { bundle, rootless } => return spec(bundle, *rootless),
            _ => {}
        }
        let root_flag = cli.root.is_some();
        let root = cli.root.clone().unwrap_or_else(default_root);
        let root = std::path::absolute(&root)
            .map_err(|e| execdriver::DriverError::io(format!("--root {}", root.display()), e))?;
        let ctx = Ctx {
            records: Records::new(&root),
            globals: Globals {
                root,
                log: cli
                    .log
                    .as_ref()
                    .map(std::path::absolute)
                    .transpose()
                    .map_err(|e| execdriver::DriverError::io("--log", e))?,
                log_format: cli.log_format,
                log_level,
            },
            root_flag,
            operator: Operator::load(cli.config.as_deref())?,
            driver_flag: cli.driver.clone(),
        };
        match cli.command {
            Cmd::Create(a) => lifecycle::create(&ctx, &a.id, &a.flags()),
            Cmd::Start { id } => lifecycle::start(&ctx, &id),
            Cmd::Run { args, detach, keep } => {
                if keep && !detach {
                    lifecycle::run_kept(&ctx, &args.id, &args.flags())
                } else {
                    // A detached container stays until `delete` anyway.
                    lifecycle::run(&ctx, &args.id, &args.flags(), detach)
                }
            }
            Cmd::State { id } => lifecycle::state(&ctx, &id),
            Cmd::Kill { all, id, signal } => lifecycle::kill(&ctx, &id, signal.as_deref(), all),
            Cmd::Delete { force, id } => lifecycle::delete(&ctx, &id, force),
            Cmd::Exec { flags, id, command } => crate::exec::exec(&ctx, &id, &flags, &command),
            Cmd::Ps {
                format,
                id,
                ps_args,
            } => lifecycle::ps(&ctx, &id, format == ListFormat::Json, &ps_args),
            Cmd::Pause { id } => lifecycle::pause(&ctx, &id, true),
            Cmd::Resume { id } => lifecycle::pause(&ctx, &id, false),
            Cmd::Events {
                stats,
                interval,
                id,
            } => lifecycle::events(&ctx, &id, stats, interval),
            Cmd::Update { flags, id } => lifecycle::update(&ctx, &id, &flags),
            Cmd::List { format, quiet } => lifecycle::list(&ctx, format == ListFormat::Json, quiet),
            Cmd::Host {
                ready_socket,
                start,
                id,
            } => Ok(lifecycle::host_main(&ctx, &id, &ready_socket, start)),
            Cmd::ExecWait { id, file } => crate::exec::exec_main(&ctx, &id, &file),
            Cmd::Drivers { .. } | Cmd::Features | Cmd::Spec { .. } => Ok(ExitCode::SUCCESS),
        }
    }

    /// `drivers`: a table (health: `ok`, or the level and the checks that did not pass), or
    /// one JSON array with every check.
    fn drivers(json: bool) -> Result<ExitCode> {
        let rows = driver_table();
        if json {
            let doc: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name,
                        "description": r.description,
                        "capabilities": r.capabilities.map(|c| c.operations()),
                        "level": r.health.level(),
                        "health": r.health,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::from(doc));
            return Ok(ExitCode::SUCCESS);
        }
        let caps = |r: &DriverRow| r.capabilities.map_or("-".to_owned(), |c| c.to_string());
        let width = |f: &dyn Fn(&DriverRow) -> String, title: &str| {
            rows.iter()
                .map(|r| f(r).len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        };
        let (wn, wd, wc) = (
            width(&|r| r.name.clone(), "NAME"),
            width(&|r| r.description.clone(), "DESCRIPTION"),
            width(&caps, "CAPABILITIES"),
        );
        println!(
            "{:<wn$}  {:<wd$}  {:<wc$}  HEALTH",
            "NAME", "DESCRIPTION", "CAPABILITIES"
        );
        for r in &rows {
            println!(
                "{:<wn$}  {:<wd$}  {:<wc$}  {}",
                r.name,
                r.description,
                caps(r),
                r.health
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    struct DriverRow {
        name: String,
        description: String,
        /// `None` when the driver can't be made here (its health says why).
        capabilities: Option<execdriver::Capabilities>,
        health: execdriver::Health,
    }

    impl DriverRow {
        /// Comma-separated, or why the driver is unavailable.
        fn capabilities_text(&self) -> String {
            match self.capabilities {
                Some(c) => c.to_string(),
                None => format!("(unavailable: {})", self.health),
            }
        }
    }

    /// Every registered driver: name, description, capabilities and health, sorted by name.
    fn driver_table() -> Vec<DriverRow> {
        let registry = execdriver::default_registry();
        registry
            .health()
            .into_iter()
            .map(|(name, health)| {
                let description = registry
                    .factory(&name)
                    .map(|f| f.description().to_owned())
                    .unwrap_or_default();
                let capabilities = registry.driver(&name).ok().map(|d| d.capabilities());
                DriverRow {
                    name,
                    description,
                    capabilities,
                    health,
                }
            })
            .collect()
    }

    fn features() -> Result<ExitCode> {
        let drivers: Vec<(String, String)> = driver_table()
            .into_iter()
            .map(|r| (r.name.clone(), r.capabilities_text()))
            .collect();
        let doc = oci::features(&drivers);
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
        );
        Ok(ExitCode::SUCCESS)
    }

    fn spec(bundle: &std::path::Path, rootless: bool) -> Result<ExitCode> {
        let path = bundle.join("config.json");
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let doc = oci::default_spec(rootless, uid, gid);
        let text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string());
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::usage(format!(
                    "{} exists; remove it first",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(
                    execdriver::DriverError::io(format!("create {}", path.display()), e).into(),
                );
            }
        };
        std::io::Write::write_all(&mut f, text.as_bytes())
            .map_err(|e| execdriver::DriverError::io(format!("write {}", path.display()), e))?;
        Ok(ExitCode::SUCCESS)
    }
}
