#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod control;
mod driver;
mod engine;
mod entry;
mod http;
mod instance;
#[cfg(target_os = "linux")]
mod nodev;
mod options;
mod special;
mod stdio;

use std::sync::Arc;

use execdriver_api::DriverFactory;

pub use cache::CacheStats;
pub use driver::WasmDriver;
pub use http::{ADDRESS_ANNOTATION as HTTP_ADDRESS_ANNOTATION, ANNOTATION as HTTP_ANNOTATION};
pub use instance::TRAP_EXIT_CODE;
pub use options::WasmOptions;

/// The name the driver registers under.
pub const NAME: &str = "wasm";

/// The factory to register: `registry.register(execdriver_wasm::factory())`.
pub fn factory() -> Arc<dyn DriverFactory> {
    Arc::new(Factory)
}

struct Factory;

impl DriverFactory for Factory {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "WebAssembly modules and components on embedded wasmtime (WASI)"
    }

    fn create(
        &self,
        options: &execdriver_api::serde_json::Value,
    ) -> execdriver_api::Result<Arc<dyn execdriver_api::Driver>> {
        let opts: WasmOptions = execdriver_api::parse_options(NAME, options)?;
        for (key, zero) in [
            ("tick_us", opts.tick_us == 0),
            ("max_instances", opts.max_instances == 0),
            ("max_memory_mib", opts.max_memory_mib == 0),
            ("cache_max_mib", opts.cache_max_mib == 0),
        ] {
            if zero {
                return Err(execdriver_api::DriverError::InvalidOptions {
                    driver: NAME.into(),
                    reason: format!("{key} must be above 0"),
                });
            }
        }
        Ok(Arc::new(WasmDriver::new(opts)))
    }
}

#[cfg(test)]
mod tests {
    use execdriver_api::serde_json::json;

    #[test]
    fn zero_limits_are_refused_naming_the_option() {
        for key in [
            "tick_us",
            "max_instances",
            "max_memory_mib",
            "cache_max_mib",
        ] {
            let err = super::factory()
                .create(&json!({ key: 0 }))
                .err()
                .unwrap_or_else(|| panic!("{key}: 0 accepted"))
                .to_string();
            assert!(err.contains(&format!("{key} must be above 0")), "{err}");
        }
        assert!(
            super::factory()
                .create(&json!({"cache_max_mib": 1}))
                .is_ok()
        );
    }
}
