#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod control;
mod driver;
mod engine;
mod entry;
mod instance;
mod options;

use std::sync::Arc;

use execdriver_api::DriverFactory;

pub use cache::CacheStats;
pub use driver::WasmDriver;
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
        if opts.tick_us == 0 || opts.max_instances == 0 || opts.max_memory_mib == 0 {
            return Err(execdriver_api::DriverError::InvalidOptions {
                driver: NAME.into(),
                reason: "tick_us, max_instances and max_memory_mib must be above 0".into(),
            });
        }
        Ok(Arc::new(WasmDriver::new(opts)))
    }
}
