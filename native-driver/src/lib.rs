#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::sync::Arc;

use execdriver_api::DriverFactory;

/// The name the driver registers under.
pub const NAME: &str = "native";

#[cfg(target_os = "linux")]
mod cgroups;
#[cfg(target_os = "linux")]
mod driver;
#[cfg(target_os = "linux")]
mod failure;
#[cfg(target_os = "linux")]
mod options;
#[cfg(target_os = "linux")]
mod plan;
#[cfg(target_os = "linux")]
mod procfs;
#[cfg(target_os = "linux")]
mod state;
#[cfg(target_os = "linux")]
mod sys;

#[cfg(target_os = "linux")]
pub use driver::NativeDriver;
#[cfg(target_os = "linux")]
pub use options::NativeOptions;

/// The factory to register: `registry.register(execdriver_native::factory())`.
pub fn factory() -> Arc<dyn DriverFactory> {
    Arc::new(Factory)
}

struct Factory;

impl DriverFactory for Factory {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "Linux namespaces + cgroups (OCI bundles, runc-like)"
    }

    #[cfg(target_os = "linux")]
    fn create(
        &self,
        options: &execdriver_api::serde_json::Value,
    ) -> execdriver_api::Result<Arc<dyn execdriver_api::Driver>> {
        let opts: NativeOptions = execdriver_api::parse_options(NAME, options)?;
        if !opts.root.is_absolute() {
            return Err(execdriver_api::DriverError::InvalidOptions {
                driver: NAME.into(),
                reason: format!("root: {} is not an absolute path", opts.root.display()),
            });
        }
        Ok(Arc::new(NativeDriver::new(opts)))
    }

    #[cfg(not(target_os = "linux"))]
    fn create(
        &self,
        _: &execdriver_api::serde_json::Value,
    ) -> execdriver_api::Result<Arc<dyn execdriver_api::Driver>> {
        Err(execdriver_api::DriverError::unsupported(
            "the native driver (Linux only)",
            NAME,
        ))
    }
}
