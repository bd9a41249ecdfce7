#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod driver;
mod error;
mod events;
mod handle;
mod health;
mod hooks;
mod id;
pub mod lifecycle;
mod managed;
mod oom;
mod registry;
mod signal;
mod stats;
mod status;
mod terminal;
mod validate;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use command::{Captured, Command, MAX_CONFIG_BYTES, Pipes, Stdio, load_spec, parse_spec};
pub use driver::{Capabilities, Driver, Operation};
pub use error::{DriverError, HookError, Result, WireError};
pub use events::{Event, EventKind, EventReceiver};
pub use handle::{RunHandle, spawn};
pub use health::{Health, HealthCheck, Level};
pub use hooks::{Callback, HookContext, HookStage, Hooks};
pub use id::{ContainerId, MAX_ID_LEN};
pub use lifecycle::{Created, Exit, Exited};
pub use managed::{Drain, with_events};
pub use oom::{OomEvent, OomNotifier, OomReceiver};
pub use registry::{DriverConfig, DriverFactory, Registry, Requirements, Resolved, parse_options};
pub use signal::Signal;
pub use stats::{
    BlockIoStats, CpuStats, HttpStats, MemoryStats, NetworkStats, PidsStats, ResourceStats,
};
pub use status::{ExitStatus, Info, Status};
pub use terminal::Terminal;
pub use validate::validate_spec;

/// The channel crate of [`OomReceiver`], re-exported.
pub use crossbeam_channel;
/// The OCI runtime-spec types, re-exported so that a driver crate needs only this crate.
pub use oci_spec;
/// serde, re-exported so that a driver crate can derive its typed options with this crate
/// alone: `#[derive(execdriver_api::serde::Deserialize)] #[serde(crate = "execdriver_api::serde")]`.
pub use serde;
/// The JSON crate of driver options, re-exported.
pub use serde_json;
