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
    /// Enter the rootfs with `MS_MOVE` onto `/` and `chroot` instead of `pivot_root` (runc's
    /// `--no-pivot`), for a rootfs that `pivot_root` refuses (the host runs from its
    /// initramfs). Weaker: a process with `CAP_SYS_CHROOT` can leave a chroot, so use it only
    /// where `pivot_root` can't work. The host's own procfs and sysfs mounts are detached
    /// first, as runc does. Default false.
    pub no_pivot: bool,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/run/execdriver/native"),
            cgroup_parent: "execdriver".to_owned(),
            no_pivot: false,
        }
    }
}
