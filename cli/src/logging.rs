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
    registry
        .with(Logrus {
            sink,
            text: format == Format::Text,
        })
        .init();
    Ok(())
}

/// Writes each event as one logrus line: a JSON object (`--log-format json`), or logrus'
/// text format, `time="…" level=error msg="…" key=value`, which callers parse too.
struct Logrus {
    sink: Mutex<Box<dyn Write + Send>>,
    text: bool,
}

/// A value as logrus' text formatter writes it: bare when it is made of `[A-Za-z0-9-._/@^+]`,
/// else double-quoted with Go's escapes.
fn logfmt_value(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// logrus' text line: `time`, `level`, `msg` first, then the other fields sorted by key.
fn logfmt_line(obj: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut parts = Vec::new();
    for k in ["time", "level", "msg"] {
        if let Some(v) = obj.get(k) {
            parts.push(format!("{k}={}", logfmt_value(v)));
        }
    }
    let mut rest: Vec<_> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "time" | "level" | "msg"))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in rest {
        parts.push(format!("{k}={}", logfmt_value(v)));
    }
    parts.join(" ")
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
        let line = if self.text {
            logfmt_line(&obj)
        } else {
            serde_json::Value::Object(obj).to_string()
        };
        if let Ok(mut w) = self.sink.lock() {
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_are_logrus_shaped() {
        let obj = serde_json::json!({
            "msg": "container \"x\" does not exist",
            "level": "error",
            "time": "2026-12-02T03:04:05Z",
            "id": "c1",
            "count": 3,
        });
        assert_eq!(
            logfmt_line(obj.as_object().unwrap()),
            r#"time="2026-12-02T03:04:05Z" level=error msg="container \"x\" does not exist" count=3 id=c1"#
        );
    }
}
