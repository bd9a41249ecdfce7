//! Checking what the binary built before the container's program runs.
//!
//! Between `create` and `start` the init exists with its mount tree complete and has run no
//! program of the image. The driver reads that tree (`/proc/<init>/mountinfo`) and refuses to
//! start a container whose kernel filesystems are not where and how the spec puts them: a
//! binary that lost a race against a hostile rename (runc before 1.2.8, crun 1.8 — procfs
//! mounted at a directory another container swapped in, so `/proc/sys` stayed writable) is
//! caught here. Renames after this point only move names: the masks and read-only mounts stay
//! on the filesystems they cover.

use std::path::{Component, Path, PathBuf};

use execdriver_api::oci_spec::runtime::{LinuxNamespaceType, Spec};

/// One line of mountinfo: where, what, read-only or not.
#[derive(Debug, PartialEq, Eq)]
struct Mounted {
    point: PathBuf,
    fstype: String,
    read_only: bool,
}

fn unescape(field: &str) -> String {
    // mountinfo writes space, tab, newline and backslash as octal escapes.
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3
                && let Ok(v) = u8::from_str_radix(&digits, 8)
            {
                out.push(char::from(v));
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn parse(mountinfo: &str) -> Vec<Mounted> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fields: Vec<&str> = pre.split(' ').collect();
            let point = unescape(fields.get(4)?);
            let options = fields.get(5)?;
            Some(Mounted {
                point: PathBuf::from(point),
                fstype: post.split(' ').next()?.to_owned(),
                read_only: options.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// `path` without `.`, trailing slashes or doubled separators (container paths are absolute).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn is_bind(m: &execdriver_api::oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// What the spec says about kernel filesystems, in container paths.
struct Expected {
    proc: Vec<PathBuf>,
    sysfs: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
    masked: Vec<PathBuf>,
}

impl Expected {
    fn of(spec: &Spec) -> Option<Self> {
        let linux = spec.linux().as_ref()?;
        let own_mounts = linux.namespaces().as_ref().is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Mount && n.path().is_none())
        });
        if !own_mounts {
            // No mount namespace of its own: the tree is the host's (or another's).
            return None;
        }
        // Where a filesystem of type `t` may appear: its own mounts, and bind mounts (a
        // rootless spec binds the host's /sys; a bind of procfs or sysfs shows as that type).
        let of_type = |t: &str| -> Vec<PathBuf> {
            spec.mounts()
                .iter()
                .flatten()
                .filter(|m| m.typ().as_deref() == Some(t) || is_bind(m))
                .map(|m| clean(m.destination()))
                .collect()
        };
        let paths = |v: &Option<Vec<String>>| -> Vec<PathBuf> {
            v.iter().flatten().map(|p| clean(Path::new(p))).collect()
        };
        Some(Self {
            proc: of_type("proc"),
            sysfs: of_type("sysfs"),
            read_only: paths(linux.readonly_paths()),
            masked: paths(linux.masked_paths()),
        })
    }

    /// Whether `path` certainly exists in the container: it lies in a procfs or sysfs the
    /// spec mounts and the engine's own procfs/sysfs (the same kernel) has it.
    fn must_exist(&self, path: &Path) -> bool {
        let within = |dests: &[PathBuf], host: &str| {
            dests.iter().any(|d| {
                path.strip_prefix(d)
                    .is_ok_and(|rel| std::fs::symlink_metadata(Path::new(host).join(rel)).is_ok())
            })
        };
        within(&self.proc, "/proc") || within(&self.sysfs, "/sys")
    }
}

/// Refuses a mount tree in which procfs or sysfs is mounted outside the places the spec mounts
/// them, or a
/// read-only or masked path that certainly exists is not covered as the spec asks.
pub(crate) fn mounts(pid: u32, spec: &Spec) -> Result<(), String> {
    let Some(expected) = Expected::of(spec) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| format!("read /proc/{pid}/mountinfo: {e}"))?;
    check(&parse(&text), &expected)
}

fn check(mounted: &[Mounted], expected: &Expected) -> Result<(), String> {
    for m in mounted {
        let allowed = match m.fstype.as_str() {
            "proc" => &expected.proc,
            "sysfs" => &expected.sysfs,
            _ => continue,
        };
        // Read-only binds of its own subdirectories (`/proc/sys`) lie within it.
        if !allowed.iter().any(|d| m.point.starts_with(d)) {
            return Err(format!(
                "{} is mounted at {}, where the spec mounts none",
                m.fstype,
                m.point.display()
            ));
        }
    }
    // Mounts stack: the last one at a point is what the container sees.
    let top = |p: &Path| mounted.iter().rev().find(|m| m.point == p);
    for p in &expected.read_only {
        match top(p) {
            Some(m) if !m.read_only => {
                return Err(format!(
                    "{} is writable, the spec makes it read-only",
                    p.display()
                ));
            }
            None if expected.must_exist(p) => {
                return Err(format!(
                    "{} was not made read-only as the spec asks",
                    p.display()
                ));
            }
            _ => {}
        }
    }
    for p in &expected.masked {
        if top(p).is_none() && expected.must_exist(p) {
            return Err(format!("{} was not masked as the spec asks", p.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            proc: vec![PathBuf::from("/proc")],
            sysfs: vec![PathBuf::from("/sys")],
            read_only: vec![PathBuf::from("/proc/sys")],
            masked: vec![PathBuf::from("/proc/version")],
        }
    }

    const GOOD: &str = "\
100 99 0:50 / / rw,relatime - overlay overlay rw
101 100 0:51 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
102 100 0:52 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
103 101 0:51 /sys /proc/sys ro,relatime - proc proc rw
104 101 0:5 /null /proc/version rw,nosuid - devtmpfs udev rw
";

    #[test]
    fn the_tree_the_spec_asks_for_passes() {
        assert_eq!(check(&parse(GOOD), &expected()), Ok(()));
    }

    #[test]
    fn procfs_at_a_swapped_in_directory_is_refused() {
        let raced = GOOD.replace(" /proc ", " /fakeproc ");
        let e = check(&parse(&raced), &expected()).unwrap_err();
        assert!(e.contains("proc is mounted at /fakeproc"), "{e}");
    }

    #[test]
    fn a_writable_or_missing_read_only_path_is_refused() {
        let writable = GOOD.replace("/sys /proc/sys ro,relatime", "/sys /proc/sys rw,relatime");
        let e = check(&parse(&writable), &expected()).unwrap_err();
        assert!(e.contains("/proc/sys is writable"), "{e}");
        // The engine's own /proc/sys exists (same kernel), so the container's must be covered.
        let missing: String = GOOD
            .lines()
            .filter(|l| !l.contains("/proc/sys"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = check(&parse(&missing), &expected()).unwrap_err();
        assert!(e.contains("/proc/sys was not made read-only"), "{e}");
    }

    #[test]
    fn an_unmasked_path_is_refused_unless_the_kernel_lacks_it() {
        let unmasked: String = GOOD
            .lines()
            .filter(|l| !l.contains("/proc/version"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = check(&parse(&unmasked), &expected()).unwrap_err();
        assert!(e.contains("/proc/version was not masked"), "{e}");
        let mut absent = expected();
        absent.masked = vec![PathBuf::from("/proc/no-such-entry-here")];
        assert_eq!(check(&parse(&unmasked), &absent), Ok(()));
    }

    #[test]
    fn a_bind_of_the_hosts_sys_is_where_the_spec_binds_it() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "ro"]}
            ],
            "linux": {"namespaces": [{"type": "mount"}]}
        }))
        .unwrap();
        let expected = Expected::of(&spec).unwrap();
        let tree = "\
1 0 0:1 / / rw - overlay o rw
2 1 0:2 / /proc rw - proc proc rw
3 1 0:3 / /sys ro - sysfs sysfs rw
4 3 0:4 / /sys/fs/cgroup ro - tmpfs tmpfs rw
";
        assert_eq!(check(&parse(tree), &expected), Ok(()));
        // A sysfs anywhere else is still refused.
        let moved = tree.replace(" /sys ro", " /elsewhere ro");
        assert!(check(&parse(&moved), &expected).is_err());
    }

    #[test]
    fn mountinfo_escapes_and_paths_are_normalised() {
        let m = parse("1 0 0:1 / /a\\040b rw - tmpfs t rw\n");
        assert_eq!(m[0].point, PathBuf::from("/a b"));
        assert_eq!(clean(Path::new("/proc/")), PathBuf::from("/proc"));
        assert_eq!(clean(Path::new("//proc/./sys")), PathBuf::from("/proc/sys"));
    }
}
