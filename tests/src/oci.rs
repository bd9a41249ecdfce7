//! The `oci` driver's fixtures: the native driver's conformance programs over the busybox
//! rootfs, run by runc or crun.

use std::path::PathBuf;
use std::sync::Arc;

use execdriver_api::Driver;

use crate::{busybox_rootfs, is_root};

/// A state root private to this test process and `binary` (under the fixtures directory);
/// roots of test processes that are gone are removed when they hold only empty directories
/// (a container left running by a killed test keeps its state).
pub fn state_root(binary: &str) -> PathBuf {
    let states = crate::fixtures_dir().join("oci-state");
    if let Ok(entries) = std::fs::read_dir(&states) {
        for e in entries.flatten() {
            let pid = e
                .file_name()
                .to_str()
                .and_then(|n| n.split('-').next()?.parse::<u32>().ok());
            if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                remove_empty_tree(&e.path());
            }
        }
    }
    states.join(format!("{}-{binary}", std::process::id()))
}

fn remove_empty_tree(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut empty = true;
    for e in entries.flatten() {
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        empty &= is_dir && remove_empty_tree(&e.path());
    }
    empty && std::fs::remove_dir(dir).is_ok()
}

/// The `oci` driver over `binary` (`runc`, `crun`) on a private root, or why it can't run here.
///
/// # Errors
/// Not root, no busybox, or the binary is missing.
pub fn driver(binary: &str) -> Result<Arc<dyn Driver>, String> {
    if !is_root() {
        return Err("the oci driver's containers need root".into());
    }
    busybox_rootfs()?;
    if !crate::have(binary) {
        return Err(format!("{binary} is not installed"));
    }
    let program = if binary == "crun" {
        crun_program()?
    } else {
        PathBuf::from(binary)
    };
    let options =
        execdriver_api::serde_json::json!({ "binary": program, "root": state_root(binary) });
    execdriver::oci::factory()
        .create(&options)
        .map_err(|e| e.to_string())
}

/// crun 1.8 refuses a hybrid cgroup layout ("cgroups in hybrid mode not supported"): on such a
/// host (this one: v1 controllers, hugetlb on the cgroup2 mount at /sys/fs/cgroup/unified)
/// every crun command runs in a private mount namespace where that cgroup2 mount is covered by
/// an empty tmpfs, as the runc differential tests run it. The host stays as it is; on a
/// v1-only or v2-only host this is crun itself.
fn crun_program() -> Result<PathBuf, String> {
    static PROGRAM: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(write_crun_program).clone()
}

fn write_crun_program() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let hybrid: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split(' ').nth(4)?;
            (post.starts_with("cgroup2 ") && point != "/sys/fs/cgroup").then(|| point.to_owned())
        })
        .collect();
    if hybrid.is_empty() {
        return Ok(PathBuf::from("crun"));
    }
    let covers: String = hybrid
        .iter()
        .map(|p| format!("umount -l {p} && mount -t tmpfs none {p} && "))
        .collect();
    let script = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c '{covers}exec crun \"$@\"' crun \"$@\"\n"
    );
    // The same host gives the same script: one file, replaced atomically.
    let path = crate::fixtures_dir().join("crun-hybrid.sh");
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, script).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Driver and fixture for the conformance kit with runc.
///
/// # Errors
/// As [`driver`].
pub fn runc_setup() -> execdriver_api::conformance::Setup {
    Ok((driver("runc")?, Arc::new(crate::native::NativeFixture)))
}

/// Driver and fixture for the conformance kit with crun.
///
/// # Errors
/// As [`driver`].
pub fn crun_setup() -> execdriver_api::conformance::Setup {
    Ok((driver("crun")?, Arc::new(crate::native::NativeFixture)))
}
