//! Which cgroup hierarchies are mounted, and where the engine's own cgroup is in each.

use std::path::{Path, PathBuf};

use super::{CgroupError, Result};

/// One cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Hierarchy {
    /// Where it is mounted ("/sys/fs/cgroup/memory").
    pub mount: PathBuf,
    /// The mount directory's name ("memory", "cpu,cpuacct").
    pub name: String,
    /// Its controllers.
    pub controllers: Vec<String>,
    /// The engine's cgroup in it, relative to the mount ("process_api/abc").
    pub own: PathBuf,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Pure cgroup v2.
    V2 {
        mount: PathBuf,
        /// The engine's cgroup, relative to the mount.
        own: PathBuf,
    },
    /// cgroup v1, possibly hybrid (a cgroup2 mount beside the v1 hierarchies).
    V1 {
        hierarchies: Vec<V1Hierarchy>,
        unified: Option<(PathBuf, PathBuf)>,
    },
}

impl Layout {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> Result<Self> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: PathBuf::from(p),
                source,
            })
        };
        Self::parse(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)
    }

    /// The layout from the text of `mountinfo` and `/proc/self/cgroup`.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Result<Self> {
        // /proc/self/cgroup: "4:memory:/path", "0::/path" (v2), "1:name=systemd:/".
        let mut v1_own: Vec<(Vec<String>, String)> = Vec::new();
        let mut v2_own = None;
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && ctrls.is_empty() {
                v2_own = Some(path.to_owned());
            } else {
                v1_own.push((
                    ctrls.split(',').map(str::to_owned).collect(),
                    path.to_owned(),
                ));
            }
        }

        let mut hierarchies = Vec::new();
        let mut unified = None;
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (Some(root), Some(mount), Some(fstype), Some(opts)) =
                (pre.get(3), pre.get(4), post.first(), post.get(2))
            else {
                continue;
            };
            let mount = PathBuf::from(unescape(mount));
            match *fstype {
                "cgroup2" => {
                    let own = v2_own.clone().unwrap_or_else(|| "/".into());
                    unified = Some((mount.clone(), relative_to(&own, root)));
                }
                "cgroup" => {
                    let controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| {
                            super::V1_CONTROLLERS.contains(o)
                                || o.starts_with("name=")
                                || ["net_cls", "net_prio", "perf_event", "rdma", "misc"].contains(o)
                        })
                        .map(str::to_owned)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    let own = v1_own
                        .iter()
                        .find(|(c, _)| c.iter().any(|x| controllers.contains(x)))
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| "/".into());
                    // A controller mounted twice: keep the first mount.
                    if hierarchies
                        .iter()
                        .any(|h: &V1Hierarchy| h.controllers == controllers)
                    {
                        continue;
                    }
                    let name = mount
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    hierarchies.push(V1Hierarchy {
                        mount,
                        name,
                        controllers,
                        own: relative_to(&own, root),
                    });
                }
                _ => {}
            }
        }
        if !hierarchies.is_empty() {
            return Ok(Self::V1 {
                hierarchies,
                unified,
            });
        }
        match unified {
            Some((mount, own)) => Ok(Self::V2 { mount, own }),
            None => Err(CgroupError::NoHierarchy),
        }
    }

    /// "v1", "v2" or "hybrid".
    pub fn mode(&self) -> &'static str {
        match self {
            Self::V2 { .. } => "v2",
            Self::V1 {
                unified: Some(_), ..
            } => "hybrid",
            Self::V1 { .. } => "v1",
        }
    }
}

/// The engine's cgroup path relative to a mount whose root is `root` (a mount inside a cgroup
/// namespace or a bind mount shows a non-"/" root).
fn relative_to(own: &str, root: &str) -> PathBuf {
    let own = Path::new(own);
    let rel = own.strip_prefix(root).unwrap_or(own);
    rel.strip_prefix("/").unwrap_or(rel).to_path_buf()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
31 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 25 0:30 / /sys/fs/cgroup/net_cls rw,relatime - cgroup cgroup rw,net_cls
";

    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_host_keeps_a_path_per_hierarchy() {
        let l = Layout::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP).unwrap();
        assert_eq!(l.mode(), "hybrid");
        let Layout::V1 {
            hierarchies,
            unified,
        } = l
        else {
            panic!()
        };
        let mem = hierarchies.iter().find(|h| h.name == "memory").unwrap();
        assert_eq!(mem.own, PathBuf::from("process_api/abc"));
        assert_eq!(mem.mount, PathBuf::from("/sys/fs/cgroup/memory"));
        let cpu = hierarchies.iter().find(|h| h.name == "cpu").unwrap();
        assert_eq!(cpu.own, PathBuf::new());
        assert_eq!(
            unified,
            Some((PathBuf::from("/sys/fs/cgroup/unified"), PathBuf::new()))
        );
        assert!(
            hierarchies
                .iter()
                .any(|h| h.controllers == ["name=systemd"])
        );
    }

    #[test]
    fn pure_v2_and_comounted_v1() {
        let l = Layout::parse(
            "30 25 0:29 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/user.slice/session-1.scope\n",
        )
        .unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                mount: "/sys/fs/cgroup".into(),
                own: "user.slice/session-1.scope".into()
            }
        );
        let l = Layout::parse(
            "26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
            "3:cpu,cpuacct:/docker/x\n",
        )
        .unwrap();
        let Layout::V1 { hierarchies, .. } = l else {
            panic!()
        };
        assert_eq!(hierarchies[0].name, "cpu,cpuacct");
        assert_eq!(hierarchies[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(hierarchies[0].own, PathBuf::from("docker/x"));
    }

    #[test]
    fn mount_roots_inside_cgroup_namespaces_are_stripped() {
        let l = Layout::parse(
            "30 25 0:29 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/kubepods/pod1/ctr\n",
        )
        .unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                mount: "/sys/fs/cgroup".into(),
                own: "ctr".into()
            }
        );
        assert!(matches!(
            Layout::parse("", ""),
            Err(CgroupError::NoHierarchy)
        ));
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
    }
}
