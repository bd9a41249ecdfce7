#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;
use std::sync::Arc;

pub use execdriver_api::*;

/// The `native` driver (Linux namespaces + cgroups).
#[cfg(feature = "native")]
pub use execdriver_native as native;
/// The `oci` driver (a runc-compatible binary: runc, crun).
#[cfg(all(feature = "oci", target_os = "linux"))]
pub use execdriver_oci as oci;
/// The `wasm` driver (embedded wasmtime).
#[cfg(feature = "wasm")]
pub use execdriver_wasm as wasm;

/// A registry with every built-in driver compiled in: `native` (feature `native`, Linux only),
/// `wasm` (feature `wasm`) and `oci` (feature `oci`, Linux only).
pub fn default_registry() -> Registry {
    let registry = Registry::new();
    for factory in builtin_factories() {
        // Built-in names are distinct; a duplicate would be a bug caught by the tests below.
        let _ = registry.register(factory);
    }
    registry
}

// Pushes under cfg attributes; a vec![] literal could not leave items out.
#[allow(clippy::vec_init_then_push)]
fn builtin_factories() -> Vec<Arc<dyn DriverFactory>> {
    let mut v: Vec<Arc<dyn DriverFactory>> = Vec::new();
    #[cfg(all(feature = "native", target_os = "linux"))]
    v.push(execdriver_native::factory());
    #[cfg(feature = "wasm")]
    v.push(execdriver_wasm::factory());
    #[cfg(all(feature = "oci", target_os = "linux"))]
    v.push(execdriver_oci::factory());
    v
}

/// Reads a driver configuration file (`{"driver": "...", "options": {...}}`) and creates the
/// driver it names from [`default_registry`].
///
/// # Errors
/// [`DriverError::InvalidConfig`] for an unreadable or malformed file,
/// [`DriverError::UnknownDriver`] listing the built-in names, or the driver's
/// [`DriverError::InvalidOptions`].
pub fn from_config_file(path: &Path) -> Result<Arc<dyn Driver>> {
    default_registry().create(&DriverConfig::from_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_distinct_and_registered() {
        let factories = builtin_factories();
        let r = default_registry();
        assert_eq!(r.names().len(), factories.len());
        #[cfg(all(feature = "native", target_os = "linux"))]
        assert!(r.contains("native"));
        #[cfg(feature = "wasm")]
        assert!(r.contains("wasm"));
    }

    #[test]
    fn config_file_selects_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"driver": "nope"}"#).unwrap();
        let err = from_config_file(&p).err().unwrap().to_string();
        assert!(
            err.starts_with("unknown driver \"nope\"; available drivers: "),
            "{err}"
        );
        std::fs::write(&p, r#"{"driver": "native", "options": {"rooot": "/x"}}"#).unwrap();
        let err = from_config_file(&p).err().unwrap().to_string();
        #[cfg(all(feature = "native", target_os = "linux"))]
        assert!(err.contains("unknown field `rooot`"), "{err}");
        let _ = err;
    }
}
