//! The bad-input corpus: malformed bundles, specs, ids and modules, each through the library
//! (`Command::from_bundle` + `Driver::run`) *and* the CLI (`execdriver run`). Every one must
//! give a clear error naming the problem — the library's `DriverError`, the CLI's one stderr
//! line and exit code 1, as runc — never a panic, and leave nothing behind.
//!
//! A case is kept here for good once it found a bug.

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;

use execdriver::{Command, ContainerId, Driver, DriverError, Hooks, Pipes};
use execdriver_tests::leaks::{settle, snapshot};
use execdriver_tests::{busybox_rootfs, is_root, missing, runc_like_spec};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Native,
    Wasm,
}

/// How a case breaks its bundle.
enum Break {
    /// config.json is this text.
    Text(&'static [u8]),
    /// The valid spec, edited.
    Edit(Box<dyn Fn(&mut Value)>),
    /// The bundle directory, rearranged after the valid spec was written.
    Bundle(Box<dyn Fn(&Path)>),
    /// The container id (the bundle is fine).
    Id(String),
}

struct Case {
    name: &'static str,
    kind: Kind,
    brk: Break,
    /// What the error must say (the field or the problem).
    want: &'static str,
}

fn edit(f: impl Fn(&mut Value) + 'static) -> Break {
    Break::Edit(Box::new(f))
}

fn bundle(f: impl Fn(&Path) + 'static) -> Break {
    Break::Bundle(Box::new(f))
}

fn set(path: &'static str, v: Value) -> Break {
    edit(move |s| *pointer(s, path) = v.clone())
}

fn remove(path: &'static str) -> Break {
    edit(move |s| {
        let (parent, key) = path.rsplit_once('/').unwrap();
        if let Some(o) = s.pointer_mut(parent).and_then(Value::as_object_mut) {
            o.remove(key);
        }
    })
}

/// The value at a JSON pointer, created (as null) when missing.
fn pointer<'a>(v: &'a mut Value, path: &str) -> &'a mut Value {
    let mut cur = v;
    for part in path.split('/').skip(1) {
        if cur.is_null() {
            *cur = json!({});
        }
        cur = match cur {
            Value::Array(a) => &mut a[part.parse::<usize>().unwrap()],
            Value::Object(o) => o.entry(part.to_owned()).or_insert(Value::Null),
            other => panic!("{path}: not a container: {other}"),
        };
    }
    cur
}

fn native_cases() -> Vec<Case> {
    let c = |name, brk, want| Case {
        name,
        kind: Kind::Native,
        brk,
        want,
    };
    let ns = |extra: Value| {
        edit(move |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(extra.clone())
        })
    };
    vec![
        c("empty config.json", Break::Text(b""), "config.json"),
        c("unterminated object", Break::Text(b"{"), "config.json"),
        c("not JSON", Break::Text(b"not json"), "config.json"),
        c("an array", Break::Text(b"[]"), "config.json"),
        c("null", Break::Text(b"null"), "config.json"),
        c("a number", Break::Text(b"42"), "config.json"),
        c("a string", Break::Text(b"\"config\""), "config.json"),
        c(
            "binary junk",
            Break::Text(b"\xff\xfe\x00\x01garbage"),
            "config.json",
        ),
        c(
            "trailing garbage",
            Break::Text(b"{\"ociVersion\":\"1.0.2\"} trailing"),
            "config.json",
        ),
        c("missing process", remove("/process"), "process"),
        c("missing root", remove("/root"), "root"),
        c(
            "process of the wrong type",
            set("/process", json!("sh")),
            "process",
        ),
        c(
            "args of the wrong type",
            set("/process/args", json!("sh")),
            "args",
        ),
        c(
            "args of numbers",
            set("/process/args", json!([1, 2])),
            "args",
        ),
        c(
            "empty args",
            set("/process/args", json!([])),
            "process.args",
        ),
        c(
            "an empty program",
            set("/process/args", json!([""])),
            "process.args",
        ),
        c("missing args", remove("/process/args"), "process.args"),
        c("missing cwd", remove("/process/cwd"), "cwd"),
        c(
            "relative cwd",
            set("/process/cwd", json!("tmp")),
            "process.cwd",
        ),
        c(
            "cwd of the wrong type",
            set("/process/cwd", json!(5)),
            "cwd",
        ),
        c("missing user", remove("/process/user"), "user"),
        c("negative uid", set("/process/user/uid", json!(-1)), "uid"),
        c(
            "uid as a string",
            set("/process/user/uid", json!("0")),
            "uid",
        ),
        c(
            "uid beyond 32 bits",
            set("/process/user/uid", json!(4_294_967_296_u64)),
            "uid",
        ),
        c(
            "gid as a float",
            set("/process/user/gid", json!(1.5)),
            "gid",
        ),
        c(
            "additionalGids of the wrong type",
            set("/process/user/additionalGids", json!("x")),
            "additionalGids",
        ),
        c(
            "70000 additional gids",
            set(
                "/process/user/additionalGids",
                json!((0..70_000).collect::<Vec<u32>>()),
            ),
            "additionalGids",
        ),
        c(
            "env of the wrong type",
            set("/process/env", json!("A=1")),
            "env",
        ),
        c(
            "env without '='",
            set("/process/env", json!(["NOEQUALS"])),
            "process.env[0]",
        ),
        c(
            "NUL in env",
            set("/process/env", json!(["A=x\u{0}y"])),
            "process.env[0]",
        ),
        c(
            "NUL in args",
            set("/process/args", json!(["sh", "a\u{0}b"])),
            "process.args[1]",
        ),
        c(
            "unknown rlimit",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]),
            ),
            "rlimits",
        ),
        c(
            "rlimit soft above hard",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]),
            ),
            "process.rlimits[0]",
        ),
        c(
            "rlimit twice",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "soft": 5, "hard": 5}, {"type": "RLIMIT_NOFILE", "soft": 5, "hard": 5}]),
            ),
            "process.rlimits[1]",
        ),
        c(
            "rlimit above the hard limit we have",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "soft": 1_u64 << 40, "hard": 1_u64 << 40}]),
            ),
            "RLIMIT_NOFILE",
        ),
        c(
            "rlimits of the wrong type",
            set("/process/rlimits", json!("unlimited")),
            "rlimits",
        ),
        c(
            "oomScoreAdj too high",
            set("/process/oomScoreAdj", json!(5000)),
            "process.oomScoreAdj",
        ),
        c(
            "oomScoreAdj too low",
            set("/process/oomScoreAdj", json!(-5000)),
            "process.oomScoreAdj",
        ),
        c(
            "unknown capability",
            set("/process/capabilities/bounding", json!(["CAP_NOPE"])),
            "capabilities",
        ),
        c(
            "effective beyond permitted",
            edit(|s| {
                s["process"]["capabilities"]["effective"] = json!(["CAP_SYS_ADMIN"]);
            }),
            "process.capabilities.effective",
        ),
        c(
            "capabilities of the wrong type",
            set("/process/capabilities", json!("all")),
            "capabilities",
        ),
        c(
            "noNewPrivileges as a string",
            set("/process/noNewPrivileges", json!("yes")),
            "noNewPrivileges",
        ),
        c(
            "terminal as a string",
            set("/process/terminal", json!("yes")),
            "terminal",
        ),
        c(
            "negative console size",
            set("/process/consoleSize", json!({"height": -1, "width": 80})),
            "consoleSize",
        ),
        c(
            "an AppArmor profile",
            set("/process/apparmorProfile", json!("docker-default")),
            "apparmorProfile",
        ),
        c(
            "an SELinux label",
            set(
                "/process/selinuxLabel",
                json!("system_u:system_r:container_t:s0"),
            ),
            "selinuxLabel",
        ),
        c(
            "an I/O priority",
            set(
                "/process/ioPriority",
                json!({"class": "IOPRIO_CLASS_RT", "priority": 1}),
            ),
            "ioPriority",
        ),
        c("empty root path", set("/root/path", json!("")), "root.path"),
        c(
            "root path of the wrong type",
            set("/root/path", json!(5)),
            "root",
        ),
        c(
            "missing rootfs",
            set("/root/path", json!("/nonexistent-rootfs")),
            "/nonexistent-rootfs",
        ),
        c(
            "rootfs that is a file",
            set("/root/path", json!("/etc/hostname")),
            "/etc/hostname",
        ),
        c(
            "rootfs behind a dangling symlink",
            bundle(|b| {
                std::os::unix::fs::symlink("/nonexistent-target", b.join("rootlink")).unwrap();
                rewrite(b, |s| s["root"]["path"] = json!("rootlink"));
            }),
            "rootlink",
        ),
        c(
            "readonly as a string",
            set("/root/readonly", json!("yes")),
            "readonly",
        ),
        c(
            "hostname too long",
            set("/hostname", json!("h".repeat(100))),
            "hostname",
        ),
        c(
            "NUL in hostname",
            set("/hostname", json!("a\u{0}b")),
            "hostname",
        ),
        c(
            "hostname without a UTS namespace",
            edit(|s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "uts");
            }),
            "hostname",
        ),
        c(
            "domainname without a UTS namespace",
            edit(|s| {
                s["domainname"] = json!("example.org");
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "uts");
                s["hostname"] = json!("");
            }),
            "domainname",
        ),
        c(
            "unknown namespace type",
            ns(json!({"type": "nope"})),
            "namespaces",
        ),
        c(
            "namespace twice",
            ns(json!({"type": "pid"})),
            "linux.namespaces",
        ),
        c(
            "namespaces of the wrong type",
            set("/linux/namespaces", json!("pid")),
            "namespaces",
        ),
        c(
            "namespace path that does not exist",
            edit(|s| {
                s["linux"]["namespaces"][1] =
                    json!({"type": "network", "path": "/proc/self/ns/nope"});
            }),
            "/proc/self/ns/nope",
        ),
        c(
            "namespace path that is no namespace",
            edit(|s| {
                s["linux"]["namespaces"][1] = json!({"type": "network", "path": "/etc/hostname"});
            }),
            "/etc/hostname",
        ),
        c(
            "uid mappings without a user namespace",
            set(
                "/linux/uidMappings",
                json!([{"containerID": 0, "hostID": 1000, "size": 1}]),
            ),
            "uidMappings",
        ),
        c(
            "a user namespace without mappings",
            ns(json!({"type": "user"})),
            "uidMappings",
        ),
        c(
            "a mapping of size 0",
            edit(|s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 0}]);
                s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
            }),
            "uidMappings[0]",
        ),
        c(
            "a mapping past 2^32",
            edit(|s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                s["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 4_294_967_290_u64, "size": 10}]);
                s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
            }),
            "uidMappings[0]",
        ),
        c(
            "overlapping mappings",
            edit(|s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                s["linux"]["uidMappings"] = json!([
                {"containerID": 0, "hostID": 1000, "size": 10},
                {"containerID": 5, "hostID": 2000, "size": 10}]);
                s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
            }),
            "uidMappings",
        ),
        c(
            "400 mappings",
            edit(|s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                s["linux"]["uidMappings"] = Value::Array(
                    (0..400)
                        .map(|i| json!({"containerID": i, "hostID": 100_000 + i, "size": 1}))
                        .collect(),
                );
                s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
            }),
            "uidMappings",
        ),
        c(
            "gid mappings of the wrong type",
            set("/linux/gidMappings", json!("x")),
            "gidMappings",
        ),
        c(
            "mounts of the wrong type",
            set("/mounts", json!({})),
            "mounts",
        ),
        c(
            "relative mount destination",
            set("/mounts/7/destination", json!("tmp")),
            "mounts[7].destination",
        ),
        c(
            "escaping mount destination",
            set("/mounts/7/destination", json!("/../../etc")),
            "mounts[7].destination",
        ),
        c(
            "empty mount destination",
            set("/mounts/7/destination", json!("")),
            "mounts[7].destination",
        ),
        c(
            "NUL in a mount destination",
            set("/mounts/7/destination", json!("/t\u{0}mp")),
            "mounts[7]",
        ),
        c(
            "unknown filesystem type",
            set("/mounts/7/type", json!("nosuchfs")),
            "mounts[7]",
        ),
        c(
            "bind of a missing source",
            set(
                "/mounts/7",
                json!({"destination": "/mnt", "type": "bind", "source": "/nonexistent-src", "options": ["rbind"]}),
            ),
            "/nonexistent-src",
        ),
        c(
            "relative bind source outside the bundle",
            set(
                "/mounts/7",
                json!({"destination": "/mnt", "type": "bind", "source": "../../../../nonexistent", "options": ["bind"]}),
            ),
            "mounts[7]",
        ),
        c(
            "an idmap mount",
            set("/mounts/7/options", json!(["idmap"])),
            "idmap",
        ),
        c(
            "relative masked path",
            set("/linux/maskedPaths", json!(["proc/kcore"])),
            "maskedPaths[0]",
        ),
        c(
            "relative readonly path",
            set("/linux/readonlyPaths", json!(["proc/sys"])),
            "readonlyPaths[0]",
        ),
        c(
            "a host-wide sysctl",
            set("/linux/sysctl", json!({"vm.swappiness": "10"})),
            "vm.swappiness",
        ),
        c(
            "a net sysctl without a network namespace",
            edit(|s| {
                s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "network");
            }),
            "net.ipv4.ip_forward",
        ),
        c(
            "sysctl of the wrong type",
            set("/linux/sysctl", json!(["a=b"])),
            "sysctl",
        ),
        c(
            "escaping cgroupsPath",
            set("/linux/cgroupsPath", json!("../escape")),
            "cgroupsPath",
        ),
        c(
            "cgroupsPath at the root",
            set("/linux/cgroupsPath", json!("/")),
            "cgroupsPath",
        ),
        c(
            "negative memory limit",
            set("/linux/resources/memory/limit", json!(-5)),
            "memory.limit",
        ),
        c(
            "memory limit as a string",
            set("/linux/resources/memory/limit", json!("1g")),
            "limit",
        ),
        c(
            "swap below the memory limit",
            set(
                "/linux/resources/memory",
                json!({"limit": 67_108_864, "swap": 1_048_576}),
            ),
            "memory",
        ),
        c(
            "cpuset that is no list",
            set("/linux/resources/cpu/cpus", json!("abc")),
            "cpu.cpus",
        ),
        c(
            "cpu quota without a sane period",
            set(
                "/linux/resources/cpu",
                json!({"quota": 50_000, "period": 10}),
            ),
            "cpu.period",
        ),
        c(
            "pids limit as a string",
            set("/linux/resources/pids/limit", json!("many")),
            "pids",
        ),
        c(
            "device rule of an unknown type",
            set(
                "/linux/resources/devices",
                json!([{"allow": true, "type": "x"}]),
            ),
            "devices",
        ),
        // (A device rule's unknown access letters, e.g. "rwz", are ignored as runc ignores them:
        // no longer bad input — runc_lifecycle runs a rule with "rwa".)
        c(
            "block I/O weight out of range",
            set("/linux/resources/blockIO/weight", json!(5)),
            "blockIO.weight",
        ),
        c(
            "hugepage size that does not exist",
            set(
                "/linux/resources/hugepageLimits",
                json!([{"pageSize": "3MB", "limit": 0}]),
            ),
            "hugepageLimits",
        ),
        c(
            "network resources",
            set("/linux/resources/network", json!({"classID": 1})),
            "resources.network",
        ),
        c(
            "relative device path",
            set(
                "/linux/devices",
                json!([{"path": "dev/x", "type": "c", "major": 1, "minor": 3}]),
            ),
            "devices[0]",
        ),
        c(
            "device of an unknown type",
            set(
                "/linux/devices",
                json!([{"path": "/dev/x", "type": "q", "major": 1, "minor": 3}]),
            ),
            "devices",
        ),
        c(
            "unknown seccomp action",
            set("/linux/seccomp", json!({"defaultAction": "SCMP_ACT_NOPE"})),
            "seccomp",
        ),
        c(
            "unknown seccomp architecture",
            set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"]}),
            ),
            "seccomp",
        ),
        c(
            "seccomp notify without a listenerPath",
            set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            ),
            "SCMP_ACT_NOTIFY",
        ),
        c(
            "seccomp with an unknown syscall only",
            set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            ),
            "seccomp",
        ),
        c(
            "relative hook path",
            set("/hooks/prestart", json!([{"path": "hook.sh"}])),
            "hooks.prestart[0]",
        ),
        c(
            "hook that does not exist",
            set(
                "/hooks/createRuntime",
                json!([{"path": "/nonexistent-hook"}]),
            ),
            "/nonexistent-hook",
        ),
        c(
            "annotations of the wrong type",
            set("/annotations", json!("x")),
            "annotations",
        ),
        c(
            "ociVersion of the wrong type",
            set("/ociVersion", json!(5)),
            "ociVersion",
        ),
        c(
            "a program that is not there",
            set("/process/args", json!(["no-such-program"])),
            "no-such-program",
        ),
        c(
            "a program that is a directory",
            set("/process/args", json!(["/etc"])),
            "/etc",
        ),
        c(
            "time offsets",
            set(
                "/linux/timeOffsets",
                json!({"monotonic": {"secs": 1, "nanosecs": 0}}),
            ),
            "timeOffsets",
        ),
        c(
            "a personality",
            set("/linux/personality", json!({"domain": "LINUX32"})),
            "personality",
        ),
        c(
            "Intel RDT",
            set("/linux/intelRdt", json!({"closID": "x"})),
            "intelRdt",
        ),
        c(
            "a missing bundle",
            bundle(|b| std::fs::remove_dir_all(b).unwrap()),
            "config.json",
        ),
        c(
            "a bundle that is a file",
            bundle(|b| {
                std::fs::remove_dir_all(b).unwrap();
                std::fs::write(b, "x").unwrap();
            }),
            "config.json",
        ),
        c(
            "config.json that is a directory",
            bundle(|b| {
                std::fs::remove_file(b.join("config.json")).unwrap();
                std::fs::create_dir(b.join("config.json")).unwrap();
            }),
            "not a regular file",
        ),
        c(
            "config.json that is endless",
            bundle(|b| {
                std::fs::remove_file(b.join("config.json")).unwrap();
                std::os::unix::fs::symlink("/dev/zero", b.join("config.json")).unwrap();
            }),
            "not a regular file",
        ),
        c(
            "config.json of 100 MB",
            bundle(|b| {
                let f = std::fs::File::create(b.join("config.json")).unwrap();
                f.set_len(100 << 20).unwrap();
            }),
            "larger than",
        ),
        c(
            "id with a slash",
            Break::Id("a/b".into()),
            "invalid container id",
        ),
        c("id ..", Break::Id("..".into()), "invalid container id"),
        c("id .", Break::Id(".".into()), "invalid container id"),
        c(
            "id of 10 kB",
            Break::Id("x".repeat(10_240)),
            "longer than 128",
        ),
        c("empty id", Break::Id(String::new()), "must not be empty"),
        c(
            "id with spaces",
            Break::Id("a b".into()),
            "may only contain",
        ),
        c(
            "id with unicode",
            Break::Id("caf\u{e9}".into()),
            "may only contain",
        ),
        c(
            "id with a newline",
            Break::Id("a\nb".into()),
            "may only contain",
        ),
    ]
}

fn wasm_cases() -> Vec<Case> {
    let c = |name, brk, want| Case {
        name,
        kind: Kind::Wasm,
        brk,
        want,
    };
    let args = |a: &'static [&'static str]| set("/process/args", json!(a));
    vec![
        c("junk bytes", args(&["/junk.wasm"]), "junk.wasm"),
        c(
            "a truncated module",
            args(&["/truncated.wasm"]),
            "truncated.wasm",
        ),
        c("wrong magic", args(&["/badmagic.wasm"]), "badmagic.wasm"),
        c(
            "an unknown binary version",
            args(&["/badversion.wasm"]),
            "badversion.wasm",
        ),
        c("an empty file", args(&["/empty.wasm"]), "empty.wasm"),
        c(
            "unknown imports",
            args(&["/unknown_import.wat"]),
            "unknown_import.wat",
        ),
        c(
            "'#' with an empty function",
            args(&["/hello.wat#"]),
            "process.args[0]",
        ),
        c(
            "'#' with an empty path",
            args(&["#_start"]),
            "process.args[0]",
        ),
        c("a missing export", args(&["/hello.wat#nope"]), "nope"),
        c("no _start", args(&["/nostart.wasm"]), "_start"),
        c(
            "an entry with parameters",
            args(&["/funcs.wat#with_param"]),
            "with_param",
        ),
        c("a missing module", args(&["/missing.wasm"]), "missing.wasm"),
        c(
            "a module that is a directory",
            args(&["/dir.wasm"]),
            "dir.wasm",
        ),
        c(
            "a .wat with a syntax error",
            args(&["/broken.wat"]),
            "broken.wat",
        ),
        c(
            "a module behind a symlink out of the rootfs",
            args(&["/escape.wasm"]),
            "escape.wasm",
        ),
        c(
            "#func on a component",
            args(&["/component.wat#run"]),
            "component",
        ),
        c(
            "a terminal",
            set("/process/terminal", json!(true)),
            "process.terminal",
        ),
        c(
            "block I/O limits",
            set("/linux/resources/blockIO", json!({"weight": 100})),
            "blockIO",
        ),
        c(
            "memory limit as a string",
            set("/linux/resources/memory/limit", json!("x")),
            "limit",
        ),
        c("missing process", remove("/process"), "process"),
        c("empty args", args(&[]), "process.args"),
        c(
            "relative module path outside",
            args(&["../../../etc/hostname.wasm"]),
            "hostname.wasm",
        ),
    ]
}

/// Rewrites a bundle's config.json through `f`.
fn rewrite(b: &Path, f: impl Fn(&mut Value)) {
    let p = b.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

/// A rootfs for the wasm cases: the fixtures plus broken modules.
fn wasm_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("wasm-rootfs");
    std::fs::create_dir_all(&root).unwrap();
    for e in std::fs::read_dir(execdriver_tests::wasm::fixtures_src())
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), root.join(e.file_name())).unwrap();
    }
    std::fs::write(root.join("junk.wasm"), b"this is not webassembly at all").unwrap();
    std::fs::write(root.join("truncated.wasm"), b"\0asm\x01\0").unwrap();
    std::fs::write(root.join("badmagic.wasm"), b"\0asX\x01\0\0\0").unwrap();
    std::fs::write(root.join("badversion.wasm"), b"\0asm\x02\0\0\0").unwrap();
    std::fs::write(root.join("empty.wasm"), b"").unwrap();
    std::fs::write(root.join("nostart.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::create_dir_all(root.join("dir.wasm")).unwrap();
    std::fs::write(root.join("broken.wat"), "(module (func $f (i32.add)").unwrap();
    let _ = std::os::unix::fs::symlink("/etc/hostname", root.join("escape.wasm"));
    root
}

fn base_spec(kind: Kind, wasm_root: &Path) -> Value {
    match kind {
        Kind::Native => serde_json::to_value(runc_like_spec(
            busybox_rootfs().expect("busybox rootfs"),
            &["true"],
        ))
        .unwrap(),
        Kind::Wasm => json!({
            "ociVersion": "1.0.2",
            "process": {"cwd": "/", "args": ["/hello.wat"], "env": [], "user": {"uid": 0, "gid": 0}},
            "root": {"path": wasm_root},
        }),
    }
}

/// Lays the case's bundle out under `dir`; returns (bundle, id).
fn lay_out(case: &Case, dir: &Path, wasm_root: &Path, n: usize) -> (PathBuf, String) {
    let b = dir.join(format!("case-{n}"));
    std::fs::create_dir_all(&b).unwrap();
    let mut spec = base_spec(case.kind, wasm_root);
    if case.kind == Kind::Native {
        // A bundle-level mount to break (index 7, /tmp in the runc-like spec).
        assert_eq!(spec["mounts"][7]["destination"], "/tmp");
    }
    let mut id = format!("bad-{}-{n}", std::process::id());
    match &case.brk {
        Break::Text(t) => {
            std::fs::write(b.join("config.json"), t).unwrap();
            return (b, id);
        }
        Break::Edit(f) => f(&mut spec),
        Break::Id(i) => id = i.clone(),
        Break::Bundle(_) => {}
    }
    std::fs::write(b.join("config.json"), spec.to_string()).unwrap();
    if let Break::Bundle(f) = &case.brk {
        f(&b);
    }
    (b, id)
}

fn library(driver: &Arc<dyn Driver>, bundle: &Path, id: &str) -> Result<(), DriverError> {
    let id = ContainerId::new(id)?;
    let cmd = Command::from_bundle(id, bundle)?;
    driver.run(&cmd, Pipes::null(), &Hooks::new()).map(drop)
}

#[test]
fn every_bad_input_is_a_clear_error_and_leaves_nothing() {
    let test = "every_bad_input_is_a_clear_error_and_leaves_nothing";
    let dir = tempfile::tempdir().unwrap();
    let wasm_root = wasm_rootfs(dir.path());
    // Parents left by processes before this one (another engine's, or one that was killed)
    // are not this test's to judge; only those made here must go.
    let host_parents = snapshot(&execdriver_tests::native::state_root()).parents;
    let wasm = execdriver_tests::wasm::driver().expect("wasm driver");
    let native = match execdriver_tests::native::driver() {
        Ok(d) => Some(d),
        Err(why) => {
            missing(&format!("{test} (native cases)"), &why);
            None
        }
    };
    let mut cases = wasm_cases();
    if native.is_some() {
        cases.extend(native_cases());
    }
    if is_root() {
        assert!(cases.len() >= 100, "the corpus has {} cases", cases.len());
    }
    let cli_root = dir.path().join("cli-root");
    let state = execdriver_tests::native::state_root();
    // Warm up the drivers: their one-time threads and fds (OOM watcher, engine) are not leaks.
    let warm = dir.path().join("warm");
    std::fs::create_dir_all(&warm).unwrap();
    std::fs::write(
        warm.join("config.json"),
        base_spec(Kind::Wasm, &wasm_root).to_string(),
    )
    .unwrap();
    library(&wasm, &warm, "warm-wasm").expect("a good wasm bundle runs");
    if let Some(native) = &native {
        std::fs::write(
            warm.join("config.json"),
            base_spec(Kind::Native, &wasm_root).to_string(),
        )
        .unwrap();
        library(native, &warm, "warm-native").expect("a good native bundle runs");
    }
    let before = snapshot(&state);

    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let (bundle, id) = lay_out(case, dir.path(), &wasm_root, n);
        let driver = match case.kind {
            Kind::Native => native.as_ref().unwrap(),
            Kind::Wasm => &wasm,
        };
        // The library.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            library(driver, &bundle, &id)
        }));
        match r {
            Err(_) => failures.push(format!("{}: library panicked", case.name)),
            Ok(Ok(())) => failures.push(format!("{}: library ran it", case.name)),
            Ok(Err(e)) => {
                let msg = e.to_string();
                if !msg.contains(case.want) {
                    failures.push(format!(
                        "{}: library said {msg:?}, wanted {:?}",
                        case.name, case.want
                    ));
                }
            }
        }
        // The CLI (ids with NUL can't be argv).
        if id.contains('\0') {
            continue;
        }
        let out = Process::new(env!("CARGO_BIN_EXE_execdriver"))
            .arg("--root")
            .arg(&cli_root)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let line_ok = err.lines().count() == 1 && err.starts_with("execdriver: ");
        if out.status.code() != Some(1)
            || !line_ok
            || !err.contains(case.want)
            || err.contains("panicked")
        {
            failures.push(format!(
                "{}: CLI exited {:?} saying {err:?}, wanted 1 and {:?}",
                case.name,
                out.status.code(),
                case.want
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Nothing left: the library's process and the host (and the CLI's state root).
    if let Err(leaks) = settle(&before, &state) {
        panic!("left behind: {leaks:#?}");
    }
    let records: Vec<_> = std::fs::read_dir(cli_root.join("cli"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "CLI records left: {records:?}");
    let states: Vec<_> = std::fs::read_dir(cli_root.join("native"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(states.is_empty(), "CLI native state left: {states:?}");
    // The shared parent cgroup goes with the last driver: the CLI's (each process drops its
    // own) and the library's, dropped here.
    drop(native);
    let parents: Vec<_> = snapshot(&state)
        .parents
        .difference(&host_parents)
        .cloned()
        .collect();
    assert!(parents.is_empty(), "parent cgroups left: {parents:?}");
    eprintln!(
        "bad input: {} cases, library and CLI, all clear errors",
        cases.len()
    );
}
