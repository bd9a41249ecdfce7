//! The native driver's lifecycle as a user sees it from inside and outside the container.
//! Needs root: without it each test prints a SKIP line (and fails under CI=true).

use std::sync::{Arc, Mutex};

use execdriver_api::oci_spec::runtime::{
    LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec,
};
use execdriver_api::{ContainerId, Driver, DriverError, ExitStatus, Hooks};
use execdriver_tests::native::{driver, run_busybox};
use execdriver_tests::{missing, unique_id};

fn setup(test: &str) -> Option<Arc<dyn Driver>> {
    match driver() {
        Ok(d) => Some(d),
        Err(why) => {
            missing(test, &why);
            None
        }
    }
}

fn sh(d: &dyn Driver, script: &str, edit: impl FnOnce(&mut Spec)) -> (ExitStatus, String, String) {
    let id = unique_id("life");
    run_busybox(d, &id, &["sh", "-c", script], &Hooks::new(), edit).expect("run")
}

fn json_edit(spec: &mut Spec, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = serde_json::to_value(&*spec).unwrap();
    f(&mut v);
    *spec = serde_json::from_value(v).unwrap();
}

#[test]
fn pid_1_hostname_and_only_the_rootfs() {
    let Some(d) = setup("pid_1_hostname_and_only_the_rootfs") else {
        return;
    };
    let (st, out, err) = sh(
        &*d,
        "echo $$; hostname; ls /; cat /proc/self/mountinfo",
        |_| {},
    );
    assert!(st.success(), "{st} {err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "pid 1");
    assert_eq!(lines.next(), Some("runc"), "hostname");
    let top: Vec<&str> = lines.by_ref().take_while(|l| !l.contains(' ')).collect();
    assert_eq!(top, ["bin", "dev", "etc", "proc", "root", "sys", "tmp"]);
    // Every mount is one the spec asked for (or the cgroup hierarchies, masks and read-only
    // binds it implies): nothing of the host is visible.
    let allowed = |m: &str| {
        m == "/"
            || ["/proc", "/dev", "/sys", "/tmp"]
                .iter()
                .any(|p| m == *p || m.starts_with(&format!("{p}/")))
    };
    let mount_points: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert!(mount_points.len() > 5, "{out}");
    for m in &mount_points {
        assert!(allowed(m), "unexpected mount {m} in\n{out}");
    }
}

#[test]
fn env_cwd_user_and_umask_are_applied() {
    let Some(d) = setup("env_cwd_user_and_umask_are_applied") else {
        return;
    };
    let (st, out, err) = sh(
        &*d,
        "echo $FOO; pwd; id -u; id -g; id -G; umask; touch f 2>&1; touch /tmp/g; stat -c %a /tmp/g",
        |spec| {
            json_edit(spec, |v| {
                let p = &mut v["process"];
                p["env"] = serde_json::json!(["PATH=/bin", "FOO=bar baz"]);
                p["cwd"] = serde_json::json!("/tmp/work");
                p["user"] = serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 6], "umask": 63});
            });
            // The cwd is created by root; let uid 1000 write there through a world-writable /tmp.
        },
    );
    assert_eq!(st, ExitStatus::exited(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "bar baz");
    assert_eq!(lines[1], "/tmp/work");
    assert_eq!(lines[2], "1000");
    assert_eq!(lines[3], "1001");
    assert_eq!(lines[4], "1001 5 6");
    assert_eq!(lines[5], "0077");
    // /tmp/work was made by root with mode 0755: uid 1000 can't write there.
    assert!(lines[6].contains("Permission denied"), "{out}");
    // umask 077 applies to new files.
    assert_eq!(lines[7], "600");
}

fn caps_line(out: &str, name: &str) -> u64 {
    let l = out
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {out}"));
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn capabilities_are_dropped_as_specified() {
    let Some(d) = setup("capabilities_are_dropped_as_specified") else {
        return;
    };
    let caps = serde_json::json!({
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
        "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_CHOWN"],
        "ambient": []
    });
    let script = "grep ^Cap /proc/self/status; grep NoNewPrivs /proc/self/status";
    let (st, out, err) = sh(&*d, script, |spec| {
        json_edit(spec, |v| v["process"]["capabilities"] = caps.clone())
    });
    assert!(st.success(), "{err}");
    assert_eq!(caps_line(&out, "CapBnd:"), (1 << 0) | (1 << 5) | (1 << 13));
    assert_eq!(caps_line(&out, "CapPrm:"), (1 << 0) | (1 << 5));
    // For uid 0 execve makes every permitted capability effective (the kernel's root rules).
    assert_eq!(caps_line(&out, "CapEff:"), (1 << 0) | (1 << 5));
    assert_eq!(caps_line(&out, "CapInh:"), 1);
    assert_eq!(caps_line(&out, "CapAmb:"), 0);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");

    // A non-root user keeps exactly its ambient capabilities across execve.
    let (st, out, err) = sh(&*d, script, |spec| {
        json_edit(spec, |v| {
            v["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
            v["process"]["capabilities"] = serde_json::json!({
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
                "inheritable": ["CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE"]
            });
        })
    });
    assert!(st.success(), "{err}");
    assert_eq!(caps_line(&out, "CapAmb:"), 1 << 10);
    assert_eq!(caps_line(&out, "CapEff:"), 1 << 10);
    assert_eq!(caps_line(&out, "CapPrm:"), 1 << 10);
    assert_eq!(caps_line(&out, "CapBnd:"), (1 << 5) | (1 << 10));
}

#[test]
fn masked_paths_are_unreadable_and_readonly_paths_readonly() {
    let Some(d) = setup("masked_paths_are_unreadable_and_readonly_paths_readonly") else {
        return;
    };
    let (st, out, err) = sh(
        &*d,
        "echo kcore=$(cat /proc/kcore | wc -c); echo keys=$(cat /proc/keys | wc -c); echo firmware=$(ls /sys/firmware | wc -l); \
         echo 1 > /proc/sys/kernel/domainname && echo sys-writable; touch /rootfile 2>/dev/null && echo root-writable; \
         touch /tmp/ok && echo tmp-writable",
        |_| {},
    );
    assert!(st.success(), "{err}");
    assert!(out.contains("kcore=0"), "{out}");
    assert!(out.contains("keys=0"), "{out}");
    assert!(out.contains("firmware=0"), "{out}");
    assert!(!out.contains("sys-writable"), "{out}");
    assert!(!out.contains("root-writable"), "{out}");
    assert!(out.contains("tmp-writable"), "{out}");
}

#[test]
fn exit_codes_and_signals_propagate() {
    let Some(d) = setup("exit_codes_and_signals_propagate") else {
        return;
    };
    for code in [0, 1, 7, 255] {
        let (st, _, _) = sh(&*d, &format!("exit {code}"), |_| {});
        assert_eq!(st, ExitStatus::exited(code));
    }
    // Without a pid namespace the process is not an init and can die of its own signal.
    let (st, _, err) = sh(&*d, "kill -SEGV $$", |spec| {
        json_edit(spec, |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "pid");
            v["mounts"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m["destination"] != "/proc");
            v["linux"]["maskedPaths"] = serde_json::json!([]);
            v["linux"]["readonlyPaths"] = serde_json::json!([]);
        });
    });
    assert_eq!(st, ExitStatus::signaled(11), "{err}");
    // An init killed from outside.
    let id = unique_id("life-kill");
    let d2 = d.clone();
    let id2 = id.clone();
    let hooks = Hooks::new().on_start(move |_| {
        d2.kill(&id2, execdriver_api::Signal::KILL)
            .map_err(Into::into)
    });
    let err = run_busybox(&*d, &id, &["sleep", "1000"], &hooks, |_| {});
    let (st, _, _) = err.expect("run");
    assert_eq!(st, ExitStatus::signaled(9));
}

#[test]
fn pre_start_hook_joins_the_network_namespace() {
    let Some(d) = setup("pre_start_hook_joins_the_network_namespace") else {
        return;
    };
    let busybox = execdriver_tests::busybox().expect("busybox");
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let hooks = Hooks::new().on_pre_start(move |ctx| {
        let ns = std::fs::read_link(format!("/proc/{}/ns/net", ctx.pid()))?;
        *seen2.lock().unwrap() = Some(ns);
        // Join the container's network namespace and bring its loopback up.
        let st = std::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", ctx.pid()))
            .args([busybox.to_str().unwrap(), "ip", "link", "set", "lo", "up"])
            .status()?;
        if !st.success() {
            return Err(format!("nsenter: {st}").into());
        }
        Ok(())
    });
    let id = unique_id("life-net");
    let (st, out, err) = run_busybox(
        &*d,
        &id,
        &[
            "sh",
            "-c",
            "cat /sys/class/net/lo/operstate; ip -o link show lo",
        ],
        &hooks,
        |_| {},
    )
    .expect("run");
    assert!(st.success(), "{err}");
    let container_ns = seen.lock().unwrap().clone().expect("hook ran");
    assert_ne!(container_ns, host_netns, "the container has its own netns");
    // lo is up (operstate "unknown" for loopback, "down" otherwise).
    assert!(out.starts_with("unknown"), "{out}");
    assert!(out.contains("UP"), "{out}");
}

#[test]
fn namespaces_given_by_path_are_joined() {
    let Some(d) = setup("namespaces_given_by_path_are_joined") else {
        return;
    };
    // A running container A with its own net and uts namespaces.
    let a = unique_id("life-ns-a");
    let cmd = execdriver_tests::busybox_command(&a, &["sleep", "1000"], |spec| {
        spec.set_hostname(Some("alpha".into()));
    })
    .unwrap();
    let handle =
        execdriver_api::spawn(d.clone(), cmd, execdriver_api::Pipes::null(), Hooks::new()).unwrap();
    let pid = handle.wait_started().expect("A started");
    let a_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    // B joins A's net and uts namespaces by path.
    let (st, out, err) = sh(
        &*d,
        "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/pid",
        |spec| {
            spec.set_hostname(None);
            let linux = spec.linux_mut().as_mut().unwrap();
            let mut ns = linux.namespaces().clone().unwrap();
            ns.retain(|n| {
                !matches!(
                    n.typ(),
                    LinuxNamespaceType::Network | LinuxNamespaceType::Uts
                )
            });
            for (typ, name) in [
                (LinuxNamespaceType::Network, "net"),
                (LinuxNamespaceType::Uts, "uts"),
            ] {
                ns.push(
                    LinuxNamespaceBuilder::default()
                        .typ(typ)
                        .path(format!("/proc/{pid}/ns/{name}"))
                        .build()
                        .unwrap(),
                );
            }
            linux.set_namespaces(Some(ns));
        },
    );
    d.terminate(&a).unwrap();
    handle.wait().unwrap();
    assert!(st.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "alpha");
    assert_eq!(lines[1], a_net.to_str().unwrap());
    assert_ne!(
        lines[2],
        std::fs::read_link("/proc/self/ns/pid")
            .unwrap()
            .to_str()
            .unwrap()
    );
}

#[test]
fn user_namespace_maps_ids() {
    let Some(d) = setup("user_namespace_maps_ids") else {
        return;
    };
    let host_uid = Arc::new(Mutex::new(String::new()));
    let hu = host_uid.clone();
    let hooks = Hooks::new().on_pre_start(move |ctx| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", ctx.pid()))?;
        *hu.lock().unwrap() = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or("")
            .to_owned();
        Ok(())
    });
    let id = unique_id("life-userns");
    let (st, out, err) = run_busybox(
        &*d,
        &id,
        &["sh", "-c", "id -u; cat /proc/self/uid_map"],
        &hooks,
        |spec| {
            let linux = spec.linux_mut().as_mut().unwrap();
            let mut ns = linux.namespaces().clone().unwrap();
            ns.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::User)
                    .build()
                    .unwrap(),
            );
            linux.set_namespaces(Some(ns));
            let map = LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(100_000u32)
                .size(65536u32)
                .build()
                .unwrap();
            linux
                .set_uid_mappings(Some(vec![map]))
                .set_gid_mappings(Some(vec![map]));
        },
    )
    .expect("run");
    assert!(st.success(), "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    // Seen from the host, the container's root is uid 100000.
    assert!(
        host_uid.lock().unwrap().contains("100000"),
        "{}",
        host_uid.lock().unwrap()
    );
}

/// Bad input: a clear error naming the problem, and nothing left behind for the id.
#[test]
fn bad_input_is_rejected_and_leaves_nothing() {
    let Some(d) = setup("bad_input_is_rejected_and_leaves_nothing") else {
        return;
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "missing rootfs",
            Box::new(|v| v["root"]["path"] = "/nonexistent-rootfs".into()),
            "root.path: /nonexistent-rootfs",
        ),
        (
            "empty args",
            Box::new(|v| v["process"]["args"] = serde_json::json!([])),
            "process.args: must not be empty",
        ),
        (
            "relative cwd",
            Box::new(|v| v["process"]["cwd"] = "tmp".into()),
            "process.cwd: tmp is not an absolute path",
        ),
        (
            "escaping mount",
            Box::new(|v| {
                v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/../../etc/x", "type": "tmpfs", "source": "tmpfs"}))
            }),
            "mounts[8].destination: /../../etc/x contains '..'",
        ),
        (
            "relative mount",
            Box::new(|v| {
                v["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"destination": "rel", "type": "tmpfs"}))
            }),
            "mounts[8].destination: rel is not an absolute path",
        ),
        (
            "bad rlimit",
            Box::new(|v| {
                v["process"]["rlimits"] =
                    serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}])
            }),
            "soft limit 10 is above hard limit 5",
        ),
        (
            "rlimit above the hard limit",
            Box::new(
                |v| v["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1u64 << 40, "hard": 1u64 << 40}]),
            ),
            "set process.rlimits[0] RLIMIT_NOFILE: Operation not permitted",
        ),
        (
            "program not found",
            Box::new(|v| v["process"]["args"] = serde_json::json!(["no-such-program"])),
            "process.args[0]: \"no-such-program\" not found in the container's PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)",
        ),
        (
            "absolute program not found",
            Box::new(|v| v["process"]["args"] = serde_json::json!(["/bin/nope"])),
            "process.args[0]: \"/bin/nope\" not found in the container",
        ),
        (
            "hostname without uts",
            Box::new(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "uts")
            }),
            "hostname: setting it needs a UTS namespace",
        ),
        (
            "missing bind source",
            Box::new(|v| {
                v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/x", "type": "bind", "source": "/nonexistent-src", "options": ["bind"]}))
            }),
            "mounts[8].source: /nonexistent-src",
        ),
        (
            "user ns without maps",
            Box::new(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}))
            }),
            "linux.uidMappings: a new user namespace needs at least one mapping",
        ),
        (
            "id maps without user ns",
            Box::new(|v| {
                v["linux"]["uidMappings"] =
                    serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}])
            }),
            "need a new user namespace",
        ),
        (
            "unmapped root in user ns",
            Box::new(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}));
                v["linux"]["uidMappings"] =
                    serde_json::json!([{"containerID": 1000, "hostID": 100000, "size": 1}]);
                v["linux"]["gidMappings"] =
                    serde_json::json!([{"containerID": 1000, "hostID": 100000, "size": 1}]);
            }),
            "uid and gid 0 must be mapped",
        ),
        (
            "cwd is a file",
            Box::new(|v| v["process"]["cwd"] = "/bin/busybox".into()),
            "process.cwd /bin/busybox",
        ),
    ];
    let state_root = execdriver_tests::native::state_root();
    for (name, edit, want) in cases {
        let id = unique_id("bad");
        let cmd =
            execdriver_tests::busybox_command(&id, &["true"], |spec| json_edit(spec, |v| edit(v)))
                .unwrap();
        let err = match d.run(&cmd, execdriver_api::Pipes::null(), &Hooks::new()) {
            Ok(st) => panic!("{name}: ran with {st}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{name}:\n got: {err}\nwant: {want}");
        assert!(
            !state_root.join(id.as_str()).exists(),
            "{name}: state left behind"
        );
        assert!(
            matches!(d.info(&id), Err(DriverError::NotFound { .. })),
            "{name}"
        );
        let mut cgroups = std::collections::BTreeSet::new();
        let snap = execdriver_tests::leaks::snapshot(&state_root);
        cgroups.extend(
            snap.cgroups
                .iter()
                .filter(|p| p.ends_with(id.as_str()))
                .cloned(),
        );
        assert!(cgroups.is_empty(), "{name}: cgroups left: {cgroups:?}");
    }
}

#[test]
fn unknown_namespace_types_are_rejected_when_parsing() {
    let err = execdriver_api::parse_spec(
        br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"mount"},{"type":"bogus"}]}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("invalid spec: linux.namespaces[1].type: unknown variant `bogus`"),
        "{err}"
    );
}

#[test]
fn a_live_id_is_rejected() {
    let Some(d) = setup("a_live_id_is_rejected") else {
        return;
    };
    let id = unique_id("life-dup");
    let cmd = execdriver_tests::busybox_command(&id, &["sleep", "1000"], |_| {}).unwrap();
    let handle = execdriver_api::spawn(
        d.clone(),
        cmd.clone(),
        execdriver_api::Pipes::null(),
        Hooks::new(),
    )
    .unwrap();
    handle.wait_started().expect("started");
    let err = d
        .run(&cmd, execdriver_api::Pipes::null(), &Hooks::new())
        .unwrap_err();
    assert!(matches!(err, DriverError::AlreadyExists { .. }), "{err}");
    d.terminate(&id).unwrap();
    assert_eq!(handle.wait().unwrap(), ExitStatus::signaled(9));
}

#[test]
fn symlinks_in_the_rootfs_cannot_lead_mounts_out() {
    let Some(d) = setup("symlinks_in_the_rootfs_cannot_lead_mounts_out") else {
        return;
    };
    // A private rootfs with symlinks that would point out of it if followed on the host.
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    execdriver_tests::build_rootfs(&execdriver_tests::busybox().unwrap(), &rootfs).unwrap();
    let marker = format!("edtest-escape-{}", std::process::id());
    std::os::unix::fs::symlink("/etc", rootfs.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", rootfs.join("up")).unwrap();
    let host_dir = dir.path().join("host-dir");
    std::fs::create_dir(&host_dir).unwrap();
    std::os::unix::fs::symlink(&host_dir, rootfs.join("dangling")).unwrap();

    let run = |dest: &str| {
        let id = unique_id("life-sym");
        let mut spec = execdriver_tests::runc_like_spec(
            &rootfs,
            &["sh", "-c", &format!("ls -d {dest} && echo ok")],
        );
        spec.root_mut().as_mut().unwrap().set_readonly(Some(false));
        json_edit(&mut spec, |v| {
            let m = v["mounts"].as_array_mut().unwrap();
            m.push(serde_json::json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}));
        });
        let cmd = execdriver_api::Command::new(id, dir.path(), spec).unwrap();
        let (pipes, cap) = execdriver_api::Pipes::capture().unwrap();
        let r = d.run(&cmd, pipes, &Hooks::new());
        (r, cap.wait_strings())
    };
    // An absolute symlink resolves inside the rootfs: /abs/x is the container's /etc/x.
    let (r, (out, err)) = run(&format!("/abs/{marker}"));
    assert!(r.unwrap().success(), "{out}{err}");
    assert!(
        !std::path::Path::new("/etc").join(&marker).exists(),
        "created on the host's /etc"
    );
    assert!(rootfs.join("etc").join(&marker).is_dir());
    // `..` through a symlink stops at the container's root.
    let (r, (out, err)) = run(&format!("/up/{marker}"));
    assert!(r.unwrap().success(), "{out}{err}");
    assert!(rootfs.join(&marker).is_dir());
    // A symlink to a host path dangles inside the rootfs: a clear error, the host untouched.
    let (r, _) = run("/dangling/inside");
    let err = r.unwrap_err().to_string();
    assert!(err.contains("mounts[8] tmpfs on /dangling/inside"), "{err}");
    assert!(err.contains("dangling symlink"), "{err}");
    assert_eq!(
        std::fs::read_dir(&host_dir).unwrap().count(),
        0,
        "the host directory was touched"
    );
}

#[test]
fn ids_are_reusable_and_clean_is_idempotent() {
    let Some(d) = setup("ids_are_reusable_and_clean_is_idempotent") else {
        return;
    };
    let id: ContainerId = unique_id("life-reuse");
    for _ in 0..3 {
        let (st, _, _) = run_busybox(&*d, &id, &["true"], &Hooks::new(), |_| {}).unwrap();
        assert!(st.success());
        d.clean(&id).unwrap();
        d.clean(&id).unwrap();
    }
}

#[test]
fn bind_mounts_devices_domainname_sysctls_and_time_namespace() {
    let Some(d) = setup("bind_mounts_devices_domainname_sysctls_and_time_namespace") else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("data.txt"), "from the host\n").unwrap();
    let file = host.path().join("single.txt");
    std::fs::write(&file, "one file\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    // Mount points under /tmp (a tmpfs): the shared rootfs stays as it is.
    let script = "cat /tmp/ro/data.txt; echo x > /tmp/ro/new 2>/dev/null || echo ro-denied; \
        echo written > /tmp/rw/out; cat /tmp/single.txt; \
        domainname 2>/dev/null || cat /proc/sys/kernel/domainname; \
        cat /proc/sys/net/ipv4/ip_forward; \
        stat -c '%t,%T %a' /dev/fuse; \
        readlink /proc/self/ns/time";
    let (st, out, err) = sh(&*d, script, |spec| {
        spec.set_domainname(Some("example.org".into()));
        json_edit(spec, |v| {
            let m = v["mounts"].as_array_mut().unwrap();
            m.push(serde_json::json!({"destination": "/tmp/ro", "type": "bind", "source": host.path(), "options": ["rbind", "ro"]}));
            m.push(serde_json::json!({"destination": "/tmp/rw", "type": "bind", "source": rw.path(), "options": ["bind"]}));
            m.push(serde_json::json!({"destination": "/tmp/single.txt", "type": "bind", "source": file, "options": ["bind", "ro"]}));
            v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
            v["linux"]["devices"] = serde_json::json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 384}]);
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "time"}));
        });
    });
    assert!(st.success(), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from the host");
    assert_eq!(lines[1], "ro-denied");
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "written\n"
    );
    assert_eq!(lines[2], "one file");
    assert_eq!(lines[3], "example.org");
    assert_eq!(lines[4], "1");
    assert_eq!(lines[5], "a,e5 600");
    let host_time = std::fs::read_link("/proc/self/ns/time").unwrap();
    assert_ne!(
        lines[6],
        host_time.to_str().unwrap(),
        "a new time namespace"
    );
    // The host's own sysctl was not touched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
}

#[test]
fn extra_fds_become_3_4_in_order_and_nothing_else_leaks_in() {
    let Some(d) = setup("extra_fds_become_3_4_in_order_and_nothing_else_leaks_in") else {
        return;
    };
    use std::io::Read;
    let id = unique_id("fds");
    // Two pipes: the process writes "a" into fd 3 and "b" into fd 4; fd 5 is not open. The
    // second pipe is created first, so the sources are out of order and at low numbers: the
    // driver must not clobber one while placing the other.
    let (mut r4, w4) = std::io::pipe().unwrap();
    let (mut r3, w3) = std::io::pipe().unwrap();
    let cmd = execdriver_tests::busybox_command(
        &id,
        &[
            "sh",
            "-c",
            "echo a >&3; echo b >&4; test -e /proc/self/fd/5 && echo five; ls /proc/self/fd | wc -l",
        ],
        |_| {},
    )
    .unwrap();
    let (pipes, captured) = execdriver_api::Pipes::capture().unwrap();
    let pipes = execdriver_api::Pipes {
        extra: vec![w3.into(), w4.into()],
        ..pipes
    };
    let st = d.run(&cmd, pipes, &Hooks::new()).unwrap();
    let (out, err) = captured.wait_strings();
    assert!(st.success(), "{st:?} {err}");
    let (mut a, mut b) = (String::new(), String::new());
    r3.read_to_string(&mut a).unwrap();
    r4.read_to_string(&mut b).unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("a\n", "b\n"));
    // ls's own fds: 0, 1, 2, 3, 4 and the directory it reads.
    assert_eq!(out.trim(), "6", "{out}");
}
