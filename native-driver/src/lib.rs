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
mod health;
#[cfg(target_os = "linux")]
mod hosted;
#[cfg(target_os = "linux")]
mod oci_hooks;
#[cfg(target_os = "linux")]
mod oom;
#[cfg(target_os = "linux")]
mod options;
#[cfg(target_os = "linux")]
mod plan;
#[cfg(target_os = "linux")]
mod procfs;
#[cfg(target_os = "linux")]
mod reaper;
#[cfg(target_os = "linux")]
pub mod seccomp;
#[cfg(target_os = "linux")]
mod state;
#[cfg(target_os = "linux")]
mod sys;
#[cfg(target_os = "linux")]
mod terminal;
#[cfg(target_os = "linux")]
mod trampoline;

#[cfg(target_os = "linux")]
pub use driver::{Created, ExecOptions, NativeDriver};
#[cfg(target_os = "linux")]
pub use hosted::{HostedCgroup, bind_mounts_into_rootfs};
#[cfg(target_os = "linux")]
pub use options::NativeOptions;
pub use sys::spawn::inherited_fds;

/// A [`Terminal`](execdriver_api::Terminal) over a pty master handed out by the driver
/// ([`Created::terminal`]), to bridge it to a caller's own terminal.
#[cfg(target_os = "linux")]
pub fn terminal_of(master: std::os::fd::OwnedFd) -> Arc<dyn execdriver_api::Terminal> {
    Arc::new(terminal::Pty::new(master))
}

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

/// Internals exposed for the workspace's integration tests; not a stable API.
#[cfg(target_os = "linux")]
#[doc(hidden)]
pub mod __private {
    use std::path::Path;

    use execdriver_api::oci_spec::runtime::LinuxDeviceCgroup;

    use crate::cgroups::{CgroupFs, RealFs, devices_bpf, resources};

    /// The sealed exec trampoline's fd (close-on-exec), for the benchmark of its cost:
    /// `/proc/self/fd/<fd>` with argv `["-", program, argv0, …]` runs `program` through it.
    ///
    /// # Errors
    /// When the memfd can't be made.
    pub fn exec_trampoline_fd() -> execdriver_api::Result<std::os::fd::RawFd> {
        crate::trampoline::fd()
    }

    /// Attaches the eBPF device filter the driver would make for `rules` to the cgroup v2
    /// directory `dir`.
    ///
    /// # Errors
    /// Invalid rules, or the kernel's refusal.
    pub fn attach_v2_device_filter(dir: &Path, rules: &[LinuxDeviceCgroup]) -> std::io::Result<()> {
        let lines = resources::device_rules(rules, &[]).map_err(std::io::Error::other)?;
        RealFs.attach_device_filter(
            dir,
            &devices_bpf::program(&devices_bpf::parse_rules(&lines)),
        )
    }
}
