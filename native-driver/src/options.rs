//! The native driver's options.

use std::path::PathBuf;

use serde::Deserialize;

/// Options of the `native` driver: `{"driver": "native", "options": {...}}`. Every key is
/// optional; unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeOptions {
    /// Where container state lives, so that other processes (and a restarted engine) can find
    /// the containers. Default `/run/execdriver/native`.
    pub root: PathBuf,
    /// The parent of container cgroups. Relative (the default, `execdriver`): under the
    /// engine's own cgroup in each hierarchy. Absolute: from the hierarchy root.
    pub cgroup_parent: String,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/run/execdriver/native"),
            cgroup_parent: "execdriver".to_owned(),
        }
    }
}
