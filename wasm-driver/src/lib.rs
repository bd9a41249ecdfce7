//! The embedded WebAssembly driver (filled by its own issue).
#![forbid(unsafe_code)]

use std::sync::Arc;

use execdriver_api::{DriverError, DriverFactory};

/// The name the driver registers under.
pub const NAME: &str = "wasm";

/// The factory to register.
pub fn factory() -> Arc<dyn DriverFactory> {
    Arc::new(Factory)
}

struct Factory;

impl DriverFactory for Factory {
    fn name(&self) -> &str {
        NAME
    }

    fn create(
        &self,
        _: &execdriver_api::serde_json::Value,
    ) -> execdriver_api::Result<Arc<dyn execdriver_api::Driver>> {
        Err(DriverError::unsupported(
            "the wasm driver (not built yet)",
            NAME,
        ))
    }
}
