//! The `oci` driver's fixtures: the native driver's conformance programs over the busybox
//! rootfs, run by runc or crun.

use std::path::PathBuf;
use std::sync::Arc;

use execdriver_api::{ContainerId, Driver, DriverError};

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
    driver_over(std::path::Path::new(binary), binary)
}

/// The `oci` driver over the program at `binary` (a copy of runc or crun, say), its state in
/// a root named after `name`; a crun is wrapped as [`driver`] does on a hybrid host.
///
/// # Errors
/// Not root, no busybox, or the binary doesn't run.
pub fn driver_over(binary: &std::path::Path, name: &str) -> Result<Arc<dyn Driver>, String> {
    if !is_root() {
        return Err("the oci driver's containers need root".into());
    }
    busybox_rootfs()?;
    let is_crun = binary
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("crun"));
    let program = if is_crun {
        crun_program(binary)?
    } else {
        binary.to_path_buf()
    };
    let options =
        execdriver_api::serde_json::json!({ "binary": program, "root": state_root(name) });
    execdriver::oci::factory()
        .create(&options)
        .map_err(|e| e.to_string())
}

/// The program to give the `oci` driver as crun on this host: crun itself, or on a hybrid host
/// the wrapper [`driver`] uses.
///
/// # Errors
/// When the wrapper can't be written.
pub fn crun_binary() -> Result<PathBuf, String> {
    crun_program(std::path::Path::new("crun"))
}

/// crun 1.8 refuses a hybrid cgroup layout ("cgroups in hybrid mode not supported"): on such a
/// host (this one: v1 controllers, hugetlb on the cgroup2 mount at /sys/fs/cgroup/unified)
/// every crun command runs in a private mount namespace where that cgroup2 mount is covered by
/// an empty tmpfs, as the runc differential tests run it. The host stays as it is; on a
/// v1-only or v2-only host this is crun itself.
fn crun_program(crun: &std::path::Path) -> Result<PathBuf, String> {
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
        return Ok(crun.to_path_buf());
    }
    let covers: String = hybrid
        .iter()
        .map(|p| format!("umount -l {p} && mount -t tmpfs none {p} && "))
        .collect();
    let script = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c '{covers}exec \"$0\" \"$@\"' {} \"$@\"\n",
        crun.display()
    );
    // The same host and crun give the same script: one file per crun, replaced atomically.
    let tag: u64 = crun
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    let path = crate::fixtures_dir().join(format!("crun-hybrid-{tag:016x}.sh"));
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
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
    Ok((driver("crun")?, Arc::new(CrunFixture)))
}

/// The native fixture, except for the terminal program of an exec: `crun exec` sets a tty's
/// size from its parent once it has the pty back from its child, which by then may have
/// exec'd the program (crun's `exec`: the child sends the terminal fd and goes on; runc sets
/// it in the child before exec). So the exec'd program waits until the size is set before it
/// reads it — the size must still be 24x80, the rest of the dialogue is unchanged.
#[derive(Debug, Default)]
pub struct CrunFixture;

impl execdriver_api::conformance::Fixture for CrunFixture {
    fn command(
        &self,
        id: &ContainerId,
        program: &execdriver_api::conformance::Program,
    ) -> Result<execdriver_api::Command, DriverError> {
        crate::native::NativeFixture.command(id, program)
    }

    fn exec_process(
        &self,
        program: &execdriver_api::conformance::Program,
    ) -> Result<execdriver_api::oci_spec::runtime::Process, DriverError> {
        let mut p = crate::native::NativeFixture.exec_process(program)?;
        if *program == execdriver_api::conformance::Program::Terminal {
            p.set_args(Some(vec![
                "sh".into(),
                "-c".into(),
                "i=0; until s=$(stty size 2>/dev/null) && [ \"$s\" != '0 0' ]; do \
                 i=$((i+1)); [ $i -gt 500 ] && break; sleep 0.01; done; \
                 stty size; read x; stty size; echo got:$x"
                    .into(),
            ]));
        }
        Ok(p)
    }
}
