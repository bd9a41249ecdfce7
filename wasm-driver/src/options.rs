//! The wasm driver's options.

use std::path::PathBuf;

use serde::Deserialize;

/// Options of the `wasm` driver: `{"driver": "wasm", "options": {...}}`. Every key is
/// optional; unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasmOptions {
    /// A directory for precompiled modules, reused across processes (created with mode 0700;
    /// an existing one must belong to this user and not be writable by others). Default: none,
    /// only the in-memory cache.
    pub cache_dir: Option<PathBuf>,
    /// The most the precompiled modules in `cache_dir` may take, in MiB; past it the least
    /// recently used are removed when a new one is stored. Default 1024.
    pub cache_max_mib: u64,
    /// How many instances may exist at once (the pooling allocator's slots). Default 1000.
    pub max_instances: u32,
    /// The largest linear memory one instance may have, in MiB. Default 4096 (all of wasm32).
    pub max_memory_mib: u32,
    /// Epoch tick in microseconds: how often running instances check for kill, pause and
    /// their CPU quota. Default 1000 (1 ms).
    pub tick_us: u64,
    /// State directory (its `root` option), kept for engines that configure every driver
    /// alike: wasm instances live in the engine process and leave no state on disk.
    pub root: Option<PathBuf>,
}

impl Default for WasmOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_max_mib: 1024,
            max_instances: 1000,
            max_memory_mib: 4096,
            tick_us: 1000,
            root: None,
        }
    }
}
