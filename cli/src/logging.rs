//! Logging as runc does it: `--log FILE` (appended to), `--log-format text|json`, `--debug`.
//! The JSON format is logrus's (`{"level":"error","msg":"...","time":"..."}`, one object per
//! line): containerd reads the last `error` entry of that log to explain a failed command, so
//! every error the CLI reports is logged too.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use clap::ValueEnum;
use execdriver::DriverError;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Sets up the global subscriber. Without `--log`, logs go to stderr — except in a hosting
/// process (`quiet_stderr`), whose stderr is the container's.
pub fn init(
    level: &str,
    file: Option<&Path>,
    format: Format,
    quiet_stderr: bool,
) -> Result<(), DriverError> {
    let filter = EnvFilter::try_new(level).map_err(|e| DriverError::InvalidConfig {
        reason: format!("--log-level {level:?}: {e}"),
    })?;
    let sink: Box<dyn Write + Send> = match file {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| DriverError::io(format!("--log {}", path.display()), e))?,
        ),
        None if quiet_stderr => Box::new(std::io::sink()),
        None => Box::new(std::io::stderr()),
    };
    let sink = Mutex::new(sink);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        Format::Json => registry.with(Logrus { sink }).init(),
        Format::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(sink),
            )
            .init(),
    }
    Ok(())
}

/// Writes each event as one logrus-style JSON object.
struct Logrus {
    sink: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let key = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        self.0.insert(key.into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let key = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        self.0.insert(key.into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Logrus {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut obj = fields.0;
        obj.insert(
            "level".into(),
            event
                .metadata()
                .level()
                .as_str()
                .to_ascii_lowercase()
                .into(),
        );
        obj.insert(
            "time".into(),
            crate::oci::rfc3339(std::time::SystemTime::now()).into(),
        );
        let line = serde_json::Value::Object(obj).to_string();
        if let Ok(mut w) = self.sink.lock() {
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }
}
