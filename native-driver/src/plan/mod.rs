//! Everything the container's init needs, validated and prepared in the parent before `clone`:
//! after `clone` the child only reads this.

pub(crate) mod mounts;
pub(crate) mod paths;
pub(crate) mod process;

use std::ffi::CString;
use std::path::{Path, PathBuf};

use execdriver_api::oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use execdriver_api::{Command, DriverError};
use libc::c_int;

pub(crate) use mounts::RootfsPlan;
pub(crate) use process::ProcessPlan;

use paths::{cpath, cstring};

/// A namespace to join with `setns`.
#[derive(Debug)]
pub(crate) struct Join {
    pub path: CString,
    pub nstype: c_int,
    pub display: String,
}

/// The namespaces of the container.
#[derive(Debug, Default)]
pub(crate) struct NsPlan {
    /// `CLONE_NEW*` flags of the namespaces to create (the cgroup namespace is separate: it is
    /// unshared once the process sits in its cgroup, so that the cgroup is its root).
    pub new_flags: c_int,
    pub unshare_cgroup: bool,
    /// Namespaces to join, user first.
    pub joins: Vec<Join>,
    pub new_user: bool,
    pub has_uts: bool,
    pub has_net: bool,
    pub has_ipc: bool,
    pub has_pid: bool,
    /// A mount namespace, new or joined. Without one the container shares the runtime's (as
    /// the OCI spec says): its mounts are made below the rootfs in the runtime's mount
    /// namespace, bound there by the engine and detached at teardown, and it enters the rootfs
    /// with `chroot`.
    pub has_mount: bool,
}

/// `uid_map` and `gid_map` contents for a new user namespace.
#[derive(Debug, Clone)]
pub(crate) struct IdMaps {
    pub uid_map: String,
    pub gid_map: String,
}

/// A sysctl to write through the container's verified procfs mount before `pivot_root`:
/// (`/proc/sys/...` beneath that mount, value, key for messages).
#[derive(Debug)]
pub(crate) struct Sysctl {
    pub at: mounts::Beneath,
    pub value: CString,
    pub key: String,
}

/// The prepared launch of one container.
#[derive(Debug)]
pub(crate) struct Plan {
    pub ns: NsPlan,
    pub id_maps: Option<IdMaps>,
    pub rootfs: RootfsPlan,
    pub process: ProcessPlan,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    pub sysctls: Vec<Sysctl>,
    /// `process.cwd` inside the rootfs, created (as root) before `pivot_root` when missing.
    pub cwd: Option<paths::InRootPath>,
    /// The init stops before `pivot_root` for OCI hooks (prestart, createRuntime,
    /// createContainer).
    pub hooks_before_pivot: bool,
    /// `create`: once ready, the init waits for `start` to write a byte into this fifo (an
    /// fd the engine opened read-write) instead of waiting on the socket.
    pub exec_fifo: Option<std::os::fd::RawFd>,
}

/// Inputs of [`Plan::build`] that come from the driver rather than the spec.
pub(crate) struct PlanInputs<'a> {
    pub command: &'a Command,
    /// The canonical rootfs directory.
    pub rootfs: &'a Path,
    pub cgroup_dirs: &'a [(String, PathBuf)],
    pub last_cap: u32,
}

impl Plan {
    /// Validates the spec and prepares every string and list the child needs.
    pub fn build(input: &PlanInputs<'_>) -> Result<Self, DriverError> {
        let spec = &input.command.spec;
        let linux = spec.linux().as_ref();
        let seccomp = linux.and_then(|l| l.seccomp().as_ref());
        let process = ProcessPlan::build(input.command.process()?, input.last_cap, seccomp)?;
        let ns = namespaces(spec)?;
        let id_maps = id_maps(spec, ns.new_user)?;
        if linux.and_then(|l| l.time_offsets().as_ref()).is_some() {
            return Err(DriverError::unsupported("linux.timeOffsets", crate::NAME));
        }
        if linux.and_then(|l| l.intel_rdt().as_ref()).is_some() {
            return Err(DriverError::unsupported("linux.intelRdt", crate::NAME));
        }
        if linux.and_then(|l| l.personality().as_ref()).is_some() {
            return Err(DriverError::unsupported("linux.personality", crate::NAME));
        }
        let mut rootfs = mounts::build(&mounts::RootfsInputs {
            spec,
            bundle: &input.command.bundle,
            rootfs: input.rootfs,
            cgroup_dirs: input.cgroup_dirs,
            userns: ns.new_user,
        })?;
        rootfs.host_ns = !ns.has_mount;
        let hostname = match spec.hostname().as_deref() {
            None | Some("") => None,
            Some(h) => {
                if !ns.has_uts {
                    return Err(DriverError::invalid_spec(
                        "hostname",
                        "setting it needs a UTS namespace (linux.namespaces has none)",
                    ));
                }
                if h.len() > 64 {
                    return Err(DriverError::invalid_spec(
                        "hostname",
                        "longer than 64 bytes",
                    ));
                }
                Some(cstring(h, "hostname")?)
            }
        };
        let domainname = match spec.domainname().as_deref() {
            None | Some("") => None,
            Some(d) => {
                if !ns.has_uts {
                    return Err(DriverError::invalid_spec(
                        "domainname",
                        "setting it needs a UTS namespace (linux.namespaces has none)",
                    ));
                }
                if d.len() > 64 {
                    return Err(DriverError::invalid_spec(
                        "domainname",
                        "longer than 64 bytes",
                    ));
                }
                Some(cstring(d, "domainname")?)
            }
        };
        let sysctls = sysctls(spec, &ns, &rootfs.ops)?;
        let cwd = paths::InRootPath::parse(input.command.process()?.cwd(), "process.cwd")?;
        let cwd = (!cwd.is_root()).then_some(cwd);
        Ok(Self {
            ns,
            id_maps,
            rootfs,
            process,
            hostname,
            domainname,
            sysctls,
            cwd,
            hooks_before_pivot: false,
            exec_fifo: None,
        })
    }
}

fn namespaces(spec: &Spec) -> Result<NsPlan, DriverError> {
    use LinuxNamespaceType as T;
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or(&[]);
    let mut ns = NsPlan::default();
    let mut seen = Vec::new();
    let mut has_mount = false;
    let mut joins = Vec::new();
    for (i, n) in list.iter().enumerate() {
        let field = format!("linux.namespaces[{i}]");
        let typ = n.typ();
        if seen.contains(&typ) {
            return Err(DriverError::invalid_spec(
                format!("{field}.type"),
                format!("{typ:?} namespace listed twice"),
            ));
        }
        seen.push(typ);
        let flag = match typ {
            T::Mount => libc::CLONE_NEWNS,
            T::Cgroup => libc::CLONE_NEWCGROUP,
            T::Uts => libc::CLONE_NEWUTS,
            T::Ipc => libc::CLONE_NEWIPC,
            T::User => libc::CLONE_NEWUSER,
            T::Pid => libc::CLONE_NEWPID,
            T::Network => libc::CLONE_NEWNET,
            T::Time => libc::CLONE_NEWTIME,
        };
        match typ {
            T::Mount => has_mount = true,
            T::Uts => ns.has_uts = true,
            T::Network => ns.has_net = true,
            T::Ipc => ns.has_ipc = true,
            T::Pid => ns.has_pid = true,
            _ => {}
        }
        match n.path().as_deref().filter(|p| !p.as_os_str().is_empty()) {
            Some(path) => {
                if !path.is_absolute() {
                    return Err(DriverError::invalid_spec(
                        format!("{field}.path"),
                        format!("{} is not absolute", path.display()),
                    ));
                }
                if let Err(e) = std::fs::metadata(path) {
                    return Err(DriverError::invalid_spec(
                        format!("{field}.path"),
                        format!("{}: {e}", path.display()),
                    ));
                }
                joins.push(Join {
                    path: cpath(path, &format!("{field}.path"))?,
                    nstype: flag,
                    display: format!("{typ:?} namespace {}", path.display()).to_lowercase(),
                });
            }
            None => {
                if typ == T::Cgroup {
                    ns.unshare_cgroup = true;
                } else {
                    ns.new_flags |= flag;
                }
                if typ == T::User {
                    ns.new_user = true;
                }
            }
        }
    }
    ns.has_mount = has_mount;
    // Join the user namespace first: it grants the rights over the others.
    joins.sort_by_key(|j| j.nstype != libc::CLONE_NEWUSER);
    ns.joins = joins;
    Ok(ns)
}

fn id_maps(spec: &Spec, new_user: bool) -> Result<Option<IdMaps>, DriverError> {
    let linux = spec.linux().as_ref();
    let uids = linux
        .and_then(|l| l.uid_mappings().as_deref())
        .unwrap_or(&[]);
    let gids = linux
        .and_then(|l| l.gid_mappings().as_deref())
        .unwrap_or(&[]);
    if !new_user {
        if !uids.is_empty() || !gids.is_empty() {
            return Err(DriverError::invalid_spec(
                "linux.uidMappings",
                "id mappings need a new user namespace in linux.namespaces",
            ));
        }
        return Ok(None);
    }
    let render = |maps: &[LinuxIdMapping], field: &str| -> Result<String, DriverError> {
        if maps.is_empty() {
            return Err(DriverError::invalid_spec(
                field,
                "a new user namespace needs at least one mapping",
            ));
        }
        if maps.len() > 340 {
            return Err(DriverError::invalid_spec(field, "more than 340 mappings"));
        }
        let mut out = String::new();
        for (i, m) in maps.iter().enumerate() {
            if m.size() == 0 {
                return Err(DriverError::invalid_spec(
                    format!("{field}[{i}].size"),
                    "must not be 0",
                ));
            }
            if u64::from(m.container_id()) + u64::from(m.size()) > u64::from(u32::MAX)
                || u64::from(m.host_id()) + u64::from(m.size()) > u64::from(u32::MAX)
            {
                return Err(DriverError::invalid_spec(
                    format!("{field}[{i}]"),
                    "the range overflows 32-bit ids",
                ));
            }
            out.push_str(&format!(
                "{} {} {}\n",
                m.container_id(),
                m.host_id(),
                m.size()
            ));
        }
        Ok(out)
    };
    Ok(Some(IdMaps {
        uid_map: render(uids, "linux.uidMappings")?,
        gid_map: render(gids, "linux.gidMappings")?,
    }))
}

fn sysctls(spec: &Spec, ns: &NsPlan, ops: &[mounts::MountOp]) -> Result<Vec<Sysctl>, DriverError> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(Vec::new());
    };
    let mut keys: Vec<_> = map.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let field = format!("linux.sysctl.{key}");
        let ok = if key.starts_with("net.") {
            ns.has_net
        } else if key.starts_with("fs.mqueue.")
            || [
                "kernel.msgmax",
                "kernel.msgmnb",
                "kernel.msgmni",
                "kernel.sem",
                "kernel.shmall",
                "kernel.shmmax",
                "kernel.shmmni",
                "kernel.shm_rmid_forced",
            ]
            .contains(&key.as_str())
        {
            ns.has_ipc
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            ns.has_uts
        } else {
            false
        };
        if !ok {
            return Err(DriverError::invalid_spec(
                field,
                "not a sysctl of a namespace the container has (only net.*, IPC and UTS sysctls are allowed)",
            ));
        }
        if key.contains("..") || key.contains('\0') {
            return Err(DriverError::invalid_spec(field, "malformed key"));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let at = mounts::beneath(
            ops,
            &paths::InRootPath::parse(std::path::Path::new(&path), &field)?,
            &field,
        )?;
        if at.base.is_none() {
            return Err(DriverError::invalid_spec(
                field,
                "needs a proc mount on /proc (mounts has none)",
            ));
        }
        out.push(Sysctl {
            at,
            value: cstring(&map[key], &field)?,
            key: key.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: &str) -> Spec {
        execdriver_api::parse_spec(
            format!(r#"{{"ociVersion":"1.0.2","process":{{"cwd":"/","args":["sh"],"user":{{"uid":0,"gid":0}}}},"root":{{"path":"rootfs"}},"linux":{linux}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn namespace_flags_and_joins() {
        let s = spec(
            r#"{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"cgroup"},{"type":"network","path":"/proc/self/ns/net"},{"type":"user","path":"/proc/self/ns/user"}]}"#,
        );
        let ns = namespaces(&s).unwrap();
        assert_eq!(ns.new_flags, libc::CLONE_NEWPID | libc::CLONE_NEWNS);
        assert!(ns.unshare_cgroup);
        assert_eq!(ns.joins.len(), 2);
        assert_eq!(
            ns.joins[0].nstype,
            libc::CLONE_NEWUSER,
            "user is joined first"
        );
        assert!(ns.has_net && ns.has_pid && !ns.new_user);
    }

    #[test]
    fn a_mount_namespace_is_new_joined_or_the_runtimes() {
        let ns = namespaces(&spec(r#"{"namespaces":[{"type":"pid"}]}"#)).unwrap();
        assert!(!ns.has_mount && ns.new_flags & libc::CLONE_NEWNS == 0);
        let ns = namespaces(&spec(
            r#"{"namespaces":[{"type":"mount","path":"/proc/self/ns/mnt"}]}"#,
        ))
        .unwrap();
        assert!(ns.has_mount && ns.new_flags & libc::CLONE_NEWNS == 0);
        assert_eq!(ns.joins.len(), 1);
        assert_eq!(ns.joins[0].nstype, libc::CLONE_NEWNS);
    }

    #[test]
    fn bad_namespaces() {
        for (linux, want) in [
            (
                r#"{"namespaces":[{"type":"mount"},{"type":"mount"}]}"#,
                "linux.namespaces[1].type: Mount namespace listed twice",
            ),
            (
                r#"{"namespaces":[{"type":"mount"},{"type":"network","path":"/nonexistent/ns"}]}"#,
                "linux.namespaces[1].path: /nonexistent/ns",
            ),
            (
                r#"{"namespaces":[{"type":"mount"},{"type":"network","path":"rel"}]}"#,
                "is not absolute",
            ),
        ] {
            let err = namespaces(&spec(linux)).unwrap_err().to_string();
            assert!(err.contains(want), "{linux}\n{err}");
        }
        let err = execdriver_api::parse_spec(
            br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"bogus"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("linux.namespaces[0].type"), "{err}");
    }

    #[test]
    fn id_maps_need_a_user_namespace_and_sane_ranges() {
        let s = spec(
            r#"{"namespaces":[{"type":"mount"},{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":1000,"size":10}],"gidMappings":[{"containerID":0,"hostID":1000,"size":10}]}"#,
        );
        let m = id_maps(&s, true).unwrap().unwrap();
        assert_eq!(m.uid_map, "0 1000 10\n");
        assert!(
            id_maps(&s, false)
                .unwrap_err()
                .to_string()
                .contains("need a new user namespace")
        );
        let none = spec(r#"{"namespaces":[{"type":"mount"},{"type":"user"}]}"#);
        assert!(
            id_maps(&none, true)
                .unwrap_err()
                .to_string()
                .contains("at least one mapping")
        );
        let big = spec(
            r#"{"uidMappings":[{"containerID":0,"hostID":4294967295,"size":10}],"gidMappings":[{"containerID":0,"hostID":0,"size":1}]}"#,
        );
        assert!(
            id_maps(&big, true)
                .unwrap_err()
                .to_string()
                .contains("overflows")
        );
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        let ok = spec(
            r#"{"namespaces":[{"type":"mount"},{"type":"network"}],"sysctl":{"net.ipv4.ip_forward":"1"}}"#,
        );
        let ns = namespaces(&ok).unwrap();
        let proc_ops = [mounts::MountOp::Mount {
            source: None,
            dest: paths::InRootPath::parse(Path::new("/proc"), "t").unwrap(),
            fstype: None,
            flags: 0,
            data: None,
            create: mounts::Create::Dir,
            remount: 0,
            propagation: 0,
            rec_attr: (0, 0),
            verify: Some(mounts::PROC_MAGIC),
        }];
        let s = sysctls(&ok, &ns, &proc_ops).unwrap();
        assert_eq!(
            s[0].at.path.to_str().unwrap(),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(s[0].at.base, Some(0));
        assert_eq!(s[0].at.rel.to_str().unwrap(), "sys/net/ipv4/ip_forward");
        let no_proc = sysctls(&ok, &ns, &[]).unwrap_err().to_string();
        assert!(no_proc.contains("needs a proc mount"), "{no_proc}");
        let bad = spec(r#"{"namespaces":[{"type":"mount"}],"sysctl":{"kernel.panic":"1"}}"#);
        let ns = namespaces(&bad).unwrap();
        assert!(
            sysctls(&bad, &ns, &proc_ops)
                .unwrap_err()
                .to_string()
                .contains("linux.sysctl.kernel.panic")
        );
    }
}

/// Spec validation never panics: any spec the parser accepts, however edited, either plans or
/// is refused with an error that names where the problem is.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn base() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                "env": ["PATH=/bin"], "cwd": "/",
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "h",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "network"}],
                "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                "resources": {"devices": [{"allow": false, "access": "rwm"}]}
            }
        })
    }

    /// Where edits land: the fields validation looks at.
    const PATHS: &[&str] = &[
        "/process/args",
        "/process/args/0",
        "/process/cwd",
        "/process/env",
        "/process/env/0",
        "/process/user/uid",
        "/process/user/gid",
        "/process/user/additionalGids",
        "/process/rlimits",
        "/process/rlimits/0/soft",
        "/process/rlimits/0/hard",
        "/process/capabilities/effective",
        "/process/capabilities/ambient",
        "/process/oomScoreAdj",
        "/process/consoleSize",
        "/process/terminal",
        "/process/umask",
        "/root/path",
        "/root/readonly",
        "/hostname",
        "/domainname",
        "/mounts/0/destination",
        "/mounts/1/destination",
        "/mounts/1/type",
        "/mounts/1/options",
        "/mounts/1/source",
        "/linux/namespaces",
        "/linux/namespaces/0/type",
        "/linux/namespaces/3/path",
        "/linux/uidMappings",
        "/linux/gidMappings",
        "/linux/maskedPaths",
        "/linux/readonlyPaths",
        "/linux/sysctl",
        "/linux/devices",
        "/linux/cgroupsPath",
        "/linux/seccomp",
        "/linux/resources/devices/0/access",
        "/linux/rootfsPropagation",
        "/hooks/prestart",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u64..70_000).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            prop::sample::select(vec![
                "/",
                "/..",
                "../x",
                "/proc",
                "/a/../../b",
                "rel",
                "",
                "pid",
                "mount",
                "user",
                "tmpfs",
                "bind",
                "CAP_SYS_ADMIN",
                "RLIMIT_NOFILE",
                "/proc/self/ns/net",
                "net.ipv4.ip_forward",
                "\u{0}",
            ])
            .prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "type",
                        "path",
                        "destination",
                        "source",
                        "options",
                        "containerID",
                        "hostID",
                        "size",
                        "soft",
                        "hard",
                        "allow",
                        "access",
                        "defaultAction",
                    ]),
                    inner,
                    0..4,
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,10}",
            prop::sample::select(vec![
                "/",
                "/..",
                "../x",
                "/proc",
                "/a/../../b",
                "rel",
                "",
                "/tmp",
                "/dev/null",
                "net.ipv4.ip_forward",
                "kernel.shmmax",
                "vm.swappiness",
                "a=b",
                "\u{0}",
                "rprivate",
                "shared",
                "SCMP_ACT_ERRNO",
                "SCMP_ACT_ALLOW",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn num() -> impl Strategy<Value = i64> {
        prop_oneof![
            -2i64..70_000,
            Just(i64::from(u32::MAX)),
            Just(i64::from(u32::MAX) + 1),
            Just(i64::MAX),
            Just(i64::MIN),
        ]
    }

    /// A value shaped like what `path` holds (so that most edits pass the parser and reach
    /// validation), or now and then anything at all.
    fn value_for(path: &'static str) -> BoxedStrategy<Value> {
        let s = || text().prop_map(Value::from);
        let n = || num().prop_map(Value::from);
        let strs = || prop::collection::vec(text(), 0..4).prop_map(|v| json!(v));
        let typed: BoxedStrategy<Value> = match path {
            "/process/args" | "/process/env" | "/process/capabilities/effective"
            | "/process/capabilities/ambient" | "/mounts/1/options" | "/linux/maskedPaths"
            | "/linux/readonlyPaths" => prop_oneof![
                strs(),
                prop::collection::vec(
                    prop::sample::select(vec!["CAP_KILL", "CAP_SYS_ADMIN", "CAP_CHOWN"]),
                    0..3
                )
                .prop_map(|v| json!(v))
            ]
            .boxed(),
            "/process/user/additionalGids" => {
                prop::collection::vec(0u32..70_000, 0..5).prop_map(|v| json!(v)).boxed()
            }
            "/process/rlimits" => prop::collection::vec(
                (
                    prop::sample::select(vec!["RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_AS"]),
                    0u64..(1 << 40),
                    0u64..(1 << 40),
                ),
                0..3,
            )
            .prop_map(|v| json!(v.into_iter().map(|(t, a, b)| json!({"type": t, "soft": a, "hard": b})).collect::<Vec<_>>()))
            .boxed(),
            "/process/user/uid" | "/process/user/gid" | "/process/rlimits/0/soft"
            | "/process/rlimits/0/hard" | "/process/umask" => (0u32..=u32::MAX).prop_map(Value::from).boxed(),
            "/process/oomScoreAdj" => n().boxed(),
            "/process/consoleSize" => (0u32..500, 0u32..500)
                .prop_map(|(h, w)| json!({"height": h, "width": w}))
                .boxed(),
            "/process/terminal" | "/root/readonly" => any::<bool>().prop_map(Value::from).boxed(),
            "/linux/namespaces" => prop::collection::vec(
                (
                    prop::sample::select(vec!["pid", "mount", "uts", "ipc", "network", "user", "cgroup", "time"]),
                    prop::option::of(prop::sample::select(vec!["/proc/self/ns/net", "/nonexistent", "/etc/hostname"])),
                ),
                0..6,
            )
            .prop_map(|v| json!(v.into_iter().map(|(t, p)| match p {
                Some(p) => json!({"type": t, "path": p}),
                None => json!({"type": t}),
            }).collect::<Vec<_>>()))
            .boxed(),
            "/linux/namespaces/0/type" => prop::sample::select(vec!["pid", "mount", "uts", "ipc", "network", "user", "cgroup", "time"])
                .prop_map(Value::from)
                .boxed(),
            "/linux/uidMappings" | "/linux/gidMappings" => prop::collection::vec(
                (0u32..=u32::MAX, 0u32..=u32::MAX, 0u32..=u32::MAX),
                0..3,
            )
            .prop_map(|v| json!(v.into_iter().map(|(c, h, z)| json!({"containerID": c, "hostID": h, "size": z})).collect::<Vec<_>>()))
            .boxed(),
            "/linux/sysctl" => prop::collection::btree_map(text(), text(), 0..3)
                .prop_map(|m| json!(m))
                .boxed(),
            "/linux/devices" => prop::collection::vec(
                (text(), prop::sample::select(vec!["c", "b", "u", "p"]), n(), n()),
                0..3,
            )
            .prop_map(|v| json!(v.into_iter().map(|(p, t, a, b)| json!({"path": p, "type": t, "major": a, "minor": b})).collect::<Vec<_>>()))
            .boxed(),
            "/linux/seccomp" => (
                prop::sample::select(vec!["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"]),
                prop::collection::vec(
                    (
                        prop::collection::vec(prop::sample::select(vec!["mkdir", "read", "nope_syscall", "clone"]), 0..3),
                        prop::sample::select(vec!["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_NOTIFY"]),
                    ),
                    0..3,
                ),
            )
            .prop_map(|(d, rules)| json!({"defaultAction": d, "syscalls": rules.into_iter().map(|(n, a)| json!({"names": n, "action": a})).collect::<Vec<_>>()}))
            .boxed(),
            "/linux/resources/devices/0/access" => "[rwmxz]{0,4}".prop_map(Value::from).boxed(),
            "/hooks/prestart" => prop::collection::vec(text(), 0..2)
                .prop_map(|v| json!(v.into_iter().map(|p| json!({"path": p})).collect::<Vec<_>>()))
                .boxed(),
            _ => s().boxed(),
        };
        prop_oneof![8 => typed, 1 => value()].boxed()
    }

    fn edit(v: &mut Value, path: &str, new: Value) {
        let mut cur = v;
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let next = match cur {
                Value::Object(o) => {
                    if last {
                        o.insert((*part).to_owned(), new);
                        return;
                    }
                    o.entry((*part).to_owned()).or_insert(json!({}))
                }
                Value::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    Some(x) if last => {
                        *x = new;
                        return;
                    }
                    Some(x) => x,
                    None => return,
                },
                _ => return,
            };
            cur = next;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn edited_specs_plan_or_fail_with_a_named_field(
            edits in prop::collection::vec(
                prop::sample::select(PATHS).prop_flat_map(|p| (Just(p), value_for(p))),
                1..4,
            )
        ) {
            let mut v = base();
            for (path, new) in edits {
                edit(&mut v, path, new);
            }
            let Ok(spec) = execdriver_api::parse_spec(v.to_string().as_bytes()) else {
                // The parser's own errors are covered in execdriver-api.
                return Ok(());
            };
            let dir = tempfile::tempdir().unwrap();
            let rootfs = dir.path().join("rootfs");
            std::fs::create_dir(&rootfs).unwrap();
            let id = execdriver_api::ContainerId::new("p").unwrap();
            let cmd = Command::new(id, dir.path(), spec).unwrap();
            let r = Plan::build(&PlanInputs {
                command: &cmd,
                rootfs: &rootfs,
                cgroup_dirs: &[],
                last_cap: 40,
            });
            if let Err(e) = r {
                let msg = e.to_string();
                prop_assert!(
                    msg.starts_with("invalid spec: ") || msg.contains("not supported"),
                    "unexpected kind of error: {msg}"
                );
                // It names a field of the spec.
                prop_assert!(
                    ["process", "root", "hostname", "domainname", "mounts", "linux", "hooks"]
                        .iter()
                        .any(|f| msg.contains(f)),
                    "no field named: {msg}"
                );
            }
        }
    }
}
