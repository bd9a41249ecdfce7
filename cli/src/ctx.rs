//! What every command works with: the state root, the CLI's records, the operator's config,
//! and how to reach one container (`Target`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use execdriver::native::{NativeDriver, NativeOptions};
use execdriver::{Command, ContainerId, Driver, DriverConfig, DriverError, Status};

use crate::error::{Error, Result};
use crate::host::{self, HostState, Request};
use crate::logging::Format;
use crate::records::{Record, Records};
use crate::select::{self, Operator};

/// Global flags a spawned helper (hosting process, detached exec) is given again.
#[derive(Debug, Clone)]
pub struct Globals {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_format: Format,
    pub log_level: String,
}

impl Globals {
    /// The flags, in front of a hidden subcommand.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec!["--root".into(), self.root.clone().into()];
        if let Some(l) = &self.log {
            v.push("--log".into());
            v.push(l.clone().into());
        }
        v.push("--log-format".into());
        v.push(
            match self.log_format {
                Format::Text => "text",
                Format::Json => "json",
            }
            .into(),
        );
        v.push("--log-level".into());
        v.push(self.log_level.clone().into());
        v
    }
}

pub struct Ctx {
    pub globals: Globals,
    /// `--root` was given (it then places the native driver's state too).
    pub root_flag: bool,
    pub records: Records,
    pub operator: Operator,
    pub driver_flag: Option<String>,
}

/// How to reach a container.
pub enum Target {
    /// The native driver keeps the state; any process can act on it directly.
    Native {
        driver: Arc<NativeDriver>,
        record: Option<Record>,
    },
    /// A hosting process holds it.
    Hosted { record: Record },
}

impl Ctx {
    pub fn root(&self) -> &Path {
        &self.globals.root
    }

    /// The driver configuration for a new container.
    pub fn config_for(&self, cmd: &Command) -> Result<DriverConfig> {
        let (mut cfg, source) = select::choose(self.driver_flag.as_deref(), &self.operator, cmd)?;
        tracing::debug!(id = %cmd.id, driver = %cfg.driver, ?source, "driver chosen");
        let registry = execdriver::default_registry();
        // An unknown name fails here, listing the drivers there are.
        registry.factory(&cfg.driver)?;
        select::cli_defaults(&mut cfg, self.root(), self.root_flag)?;
        Ok(cfg)
    }

    /// A native driver with `options` (a JSON object, or null for the defaults under our
    /// root).
    pub fn native(&self, options: &serde_json::Value) -> Result<Arc<NativeDriver>> {
        let mut cfg = DriverConfig {
            driver: "native".into(),
            options: options.clone(),
        };
        select::place_native_root(&mut cfg, self.root(), self.root_flag)?;
        let opts: NativeOptions =
            serde_json::from_value(cfg.options).map_err(|e| DriverError::InvalidOptions {
                driver: "native".into(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(NativeDriver::new(opts)))
    }

    /// How to reach `id`: through its record, or — for a native container that some other
    /// program started on the same state root — through the native driver.
    pub fn target(&self, id: &ContainerId) -> Result<Target> {
        match self.records.get(id)? {
            Some(record) if record.hosted => Ok(Target::Hosted { record }),
            Some(record) => Ok(Target::Native {
                driver: self.native(&record.config.options)?,
                record: Some(record),
            }),
            None => Ok(Target::Native {
                driver: self.native(&self.operator_native_options())?,
                record: None,
            }),
        }
    }

    fn operator_native_options(&self) -> serde_json::Value {
        if self.operator.driver.as_deref() == Some("native")
            && let Some(o) = &self.operator.options
        {
            return o.clone();
        }
        self.operator
            .drivers
            .get("native")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// Every container: the CLI's records and the native driver's state.
    pub fn ids(&self) -> Vec<ContainerId> {
        let mut ids = self.records.list();
        if let Ok(native) = self.native(&self.operator_native_options())
            && let Ok(more) = native.list()
        {
            ids.extend(more);
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

/// What the hosting process of `record` says; `None` when it is gone (the container stopped).
pub fn host_state(records: &Records, record: &Record) -> Option<HostState> {
    let v = host::request(&records.socket(&record.id), &Request::State, None).ok()?;
    serde_json::from_value(v).ok()
}

/// Sends `req` to the hosting process of a container; a container whose hosting process is
/// gone is stopped.
pub fn ask(records: &Records, record: &Record, req: &Request) -> Result<serde_json::Value> {
    ask_with(records, record, req, None)
}

pub fn ask_with(
    records: &Records,
    record: &Record,
    req: &Request,
    stdio: Option<[std::os::fd::BorrowedFd<'_>; 3]>,
) -> Result<serde_json::Value> {
    match host::request(&records.socket(&record.id), req, stdio) {
        Ok(v) => Ok(v),
        // Of the kind the host's driver said, so that a gone or stopped container is reported
        // in runc's words (see `Error::report`) whichever process holds it.
        Err(host::Failure::Refused(e)) => Err(Error::Driver(e)),
        Err(host::Failure::Said(message)) => Err(Error::Remote(message)),
        Err(host::Failure::Unreachable(e)) => {
            tracing::debug!(id = %record.id, error = %e, "no hosting process: stopped");
            Err(Error::Driver(DriverError::NotRunning {
                id: record.id.to_string(),
                status: Status::Stopped,
            }))
        }
    }
}

/// Waits (up to 10 s) for the hosting process of `record` to be gone.
pub fn wait_host_gone(records: &Records, record: &Record) {
    let sock = records.socket(&record.id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(&sock).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(id = %record.id, "the hosting process did not exit within 10s");
}

/// A new record for a container.
pub fn record(cmd: &Command, config: DriverConfig, hosted: bool) -> Record {
    Record {
        id: cmd.id.clone(),
        config,
        hosted,
        bundle: cmd.bundle.clone(),
        created: SystemTime::now(),
    }
}
