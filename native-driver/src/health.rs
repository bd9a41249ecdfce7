//! What the native driver needs of the host, checked without side effects: the kernel calls
//! every container start makes, the cgroup hierarchies and whether the engine's own cgroup
//! can be given children (delegation), the state root.

use std::ffi::CStr;
use std::path::Path;

use execdriver_api::{Health, Level};

use crate::cgroups::Layout;
use crate::cgroups::V1_CONTROLLERS;
use crate::sys;

/// The controllers whose limits the driver applies; without one, specs asking for it fail.
const WANTED: &[&str] = &[
    "cpu", "cpuset", "memory", "pids", "io", "blkio", "freezer", "devices",
];

pub(crate) fn check(layout: Result<&Layout, String>, root: &Path) -> Health {
    let mut h = Health::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    h.push("kernel", Level::Ok, kernel);
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        h.push("privileges", Level::Ok, "root");
    } else {
        h.push(
            "privileges",
            Level::Degraded,
            format!("uid {uid}: only containers with a user namespace can be made"),
        );
    }
    // Every start waits on its init through a pidfd, and resolves paths with openat2.
    h = h.checked(
        "pidfd_open",
        Level::Failed,
        sys::pidfd_open(std::process::id() as i32)
            .map(|fd| {
                drop(sys::own_fd(fd));
                "available".to_owned()
            })
            .map_err(std::io::Error::from_raw_os_error),
    );
    let slash: &CStr = c"/";
    h = h.checked(
        "openat2",
        Level::Failed,
        sys::openat2(
            libc::AT_FDCWD,
            slash,
            (libc::O_PATH | libc::O_CLOEXEC) as u64,
            libc::RESOLVE_NO_MAGICLINKS,
        )
        .map(|fd| {
            drop(sys::own_fd(fd));
            "available".to_owned()
        })
        .map_err(std::io::Error::from_raw_os_error),
    );
    match layout {
        Err(e) => h.push("cgroups", Level::Failed, e),
        Ok(layout) => {
            h.push("cgroups", Level::Ok, layout.mode());
            delegation(&mut h, layout);
        }
    }
    h.push_dir("state root", root, Level::Failed, writable);
    h
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The engine's own cgroup must be writable (the driver makes its containers' cgroups below
/// it) and have the controllers limits are applied through.
fn delegation(h: &mut Health, layout: &Layout) {
    let mut found: Vec<String> = Vec::new();
    let mut unwritable: Vec<String> = Vec::new();
    let mut check_dir = |dir: &Path| {
        if !writable(dir) {
            unwritable.push(dir.display().to_string());
        }
    };
    match layout {
        Layout::V2 { mount, own } => {
            let dir = mount.join(own);
            check_dir(&dir);
            if let Ok(list) = std::fs::read_to_string(dir.join("cgroup.controllers")) {
                found.extend(list.split_whitespace().map(str::to_owned));
            }
            // v2 freezes and filters devices without a controller.
            found.extend(["freezer".to_owned(), "devices".to_owned()]);
        }
        Layout::V1 { hierarchies, .. } => {
            for hier in hierarchies {
                if hier
                    .controllers
                    .iter()
                    .any(|c| V1_CONTROLLERS.contains(&c.as_str()))
                {
                    check_dir(&hier.mount.join(&hier.own));
                    found.extend(hier.controllers.iter().cloned());
                }
            }
            // v1 names the io controller blkio.
            if found.iter().any(|c| c == "blkio") {
                found.push("io".into());
            } else if found.iter().any(|c| c == "io") {
                found.push("blkio".into());
            }
        }
    }
    let mut missing: Vec<&str> = WANTED
        .iter()
        .copied()
        .filter(|w| !found.iter().any(|f| f == w))
        .collect();
    if matches!(layout, Layout::V1 { .. }) {
        missing.retain(|m| *m != "io");
    } else {
        missing.retain(|m| *m != "blkio");
    }
    if !unwritable.is_empty() {
        h.push(
            "cgroup delegation",
            Level::Failed,
            format!("not writable: {}", unwritable.join(", ")),
        );
    } else if !missing.is_empty() {
        h.push(
            "cgroup delegation",
            Level::Degraded,
            format!(
                "no {} controller: specs limiting it are refused",
                missing.join(", ")
            ),
        );
    } else {
        h.push("cgroup delegation", Level::Ok, "every controller");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_names_missing_controllers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let layout = Layout::V2 {
            mount: dir.path().to_path_buf(),
            own: "".into(),
        };
        let mut h = Health::new();
        delegation(&mut h, &layout);
        let c = &h.checks[0];
        assert_eq!(c.name, "cgroup delegation");
        assert_eq!(c.level, Level::Degraded, "{c:?}");
        assert_eq!(
            c.detail,
            "no cpuset, io controller: specs limiting it are refused"
        );

        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let mut h = Health::new();
        delegation(&mut h, &layout);
        assert_eq!(h.checks[0].level, Level::Ok, "{:?}", h.checks[0]);
    }

    #[test]
    fn no_cgroups_is_a_failure() {
        let h = check(Err("no cgroup hierarchy".into()), Path::new("/tmp"));
        assert_eq!(h.level(), Level::Failed);
        assert!(
            h.to_string().contains("cgroups (no cgroup hierarchy)"),
            "{h}"
        );
    }
}
