//! exec, terminals, OCI hook binaries, seccomp and the secure defaults of the native driver.
//! Root; a failure under CI=true without it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use execdriver_api::oci_spec::runtime::{Process, Spec};
use execdriver_api::{
    ContainerId, Driver, DriverError, ExitStatus, Hooks, Pipes, RunHandle, Status,
};
use execdriver_tests::native::{driver, run_busybox};
use execdriver_tests::{busybox_command, busybox_rootfs, missing, runc_like_spec, unique_id};

fn setup(test: &str) -> Option<Arc<dyn Driver>> {
    match driver() {
        Ok(d) => Some(d),
        Err(why) => {
            missing(test, &why);
            None
        }
    }
}

fn edit(spec: &mut Spec, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = serde_json::to_value(&*spec).unwrap();
    f(&mut v);
    *spec = serde_json::from_value(v).unwrap();
}

/// A running container (a sleeping shell) and its init pid.
fn start(d: &Arc<dyn Driver>, edit_spec: impl FnOnce(&mut Spec)) -> (ContainerId, RunHandle, u32) {
    let id = unique_id("sec");
    let cmd = busybox_command(&id, &["sh", "-c", "sleep 1000 & wait"], edit_spec).unwrap();
    let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    let pid = h.wait_started().expect("started");
    (id, h, pid)
}

fn stop(d: &Arc<dyn Driver>, id: &ContainerId, h: RunHandle) {
    d.terminate(id).unwrap();
    h.wait().unwrap();
}

fn process(args: &[&str], f: impl FnOnce(&mut serde_json::Value)) -> Process {
    let rootfs = busybox_rootfs().unwrap();
    let mut p =
        serde_json::to_value(runc_like_spec(rootfs, args).process().clone().unwrap()).unwrap();
    f(&mut p);
    serde_json::from_value(p).unwrap()
}

fn exec(d: &Arc<dyn Driver>, id: &ContainerId, p: &Process) -> (ExitStatus, String, String) {
    let (pipes, cap) = Pipes::capture().unwrap();
    let st = d.exec(id, p, pipes, &Hooks::new()).unwrap();
    let (o, e) = cap.wait_strings();
    (st, o, e)
}

#[test]
fn exec_shares_the_init_namespaces_rootfs_and_cgroup() {
    let Some(d) = setup("exec_shares_the_init_namespaces_rootfs_and_cgroup") else {
        return;
    };
    let (id, h, pid) = start(&d, |_| {});
    let script = "echo $$; for l in self/ns/pid 1/ns/pid self/ns/net 1/ns/net self/ns/mnt 1/ns/mnt; do readlink /proc/$l; done; hostname; ls /; cat /proc/self/cgroup | sort; echo ---; cat /proc/1/cgroup | sort";
    let (st, out, err) = exec(&d, &id, &process(&["sh", "-c", script], |_| {}));
    let host_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    stop(&d, &id, h);
    assert!(st.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1", "the exec'd process is not the init");
    assert_eq!(lines[1], lines[2], "same pid namespace");
    assert_eq!(lines[3], lines[4], "same network namespace");
    assert_eq!(lines[5], lines[6], "same mount namespace");
    assert_eq!(lines[3], host_net.to_str().unwrap());
    assert_eq!(lines[7], "runc");
    assert_eq!(
        &lines[8..15],
        ["bin", "dev", "etc", "proc", "root", "sys", "tmp"]
    );
    let (own, init) = out.split_once("---\n").unwrap();
    let own: Vec<&str> = own.lines().skip(15).collect();
    assert_eq!(own, init.lines().collect::<Vec<_>>(), "same cgroups");
}

#[test]
fn exec_applies_user_env_cwd_and_returns_exit_codes() {
    let Some(d) = setup("exec_applies_user_env_cwd_and_returns_exit_codes") else {
        return;
    };
    let (id, h, _) = start(&d, |_| {});
    let p = process(&["sh", "-c", "id -u; id -g; echo $FOO; pwd"], |p| {
        p["user"] = serde_json::json!({"uid": 1000, "gid": 1001});
        p["env"] = serde_json::json!(["PATH=/bin", "FOO=from exec"]);
        p["cwd"] = serde_json::json!("/tmp");
    });
    let (st, out, err) = exec(&d, &id, &p);
    assert!(st.success(), "{err}");
    assert_eq!(out, "1000\n1001\nfrom exec\n/tmp\n");
    for code in [0, 3, 42] {
        let (st, _, _) = exec(
            &d,
            &id,
            &process(&["sh", "-c", &format!("exit {code}")], |_| {}),
        );
        assert_eq!(st, ExitStatus::exited(code));
    }
    let e = d
        .exec(
            &id,
            &process(&["no-such-program"], |_| {}),
            Pipes::null(),
            &Hooks::new(),
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"no-such-program\" not found in the container's PATH"),
        "{e}"
    );
    // Into a paused container: refused.
    d.pause(&id).unwrap();
    let e = d
        .exec(
            &id,
            &process(&["true"], |_| {}),
            Pipes::null(),
            &Hooks::new(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            DriverError::InvalidState {
                status: Status::Paused,
                ..
            }
        ),
        "{e}"
    );
    d.unpause(&id).unwrap();
    stop(&d, &id, h);
    // Into a stopped (gone) container: NotFound.
    let e = d
        .exec(
            &id,
            &process(&["true"], |_| {}),
            Pipes::null(),
            &Hooks::new(),
        )
        .unwrap_err();
    assert!(matches!(e, DriverError::NotFound { .. }), "{e}");
}

/// Reads the terminal until `want` appears (or it closes); returns everything read.
fn read_until(r: &mut dyn Read, want: &str) -> String {
    let mut all = String::new();
    let mut buf = [0u8; 256];
    while !all.contains(want) {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    all
}

#[test]
fn a_tty_run_gets_a_pty_and_the_engine_resizes_it() {
    let Some(d) = setup("a_tty_run_gets_a_pty_and_the_engine_resizes_it") else {
        return;
    };
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    let hooks = Hooks::new().on_start(move |ctx| {
        let term = ctx
            .terminal()
            .ok_or("no terminal in the start hook")?
            .clone();
        let o = o.clone();
        std::thread::spawn(move || {
            let mut r = term.reader().unwrap();
            let first = read_until(&mut *r, "ready");
            term.resize(40, 120).unwrap();
            term.writer().unwrap().write_all(b"go\n").unwrap();
            let rest = read_until(&mut *r, "done");
            *o.lock().unwrap() = first + &rest;
        });
        Ok(())
    });
    let id = unique_id("tty");
    let (st, _, _) = run_busybox(
        &*d,
        &id,
        &[
            "sh",
            "-c",
            "tty; stty size; echo ready; read x; stty size; echo done",
        ],
        &hooks,
        |spec| {
            edit(spec, |v| {
                v["process"]["terminal"] = true.into();
                v["process"]["consoleSize"] = serde_json::json!({"height": 24, "width": 80});
            });
        },
    )
    .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(100));
    let out = out.lock().unwrap().replace('\r', "");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out}");
    assert_eq!(lines[1], "24 80", "{out}");
    assert!(lines.contains(&"40 120"), "{out}");
}

#[test]
fn exec_with_a_tty() {
    let Some(d) = setup("exec_with_a_tty") else {
        return;
    };
    let (id, h, _) = start(&d, |_| {});
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    let hooks = Hooks::new().on_pre_start(move |ctx| {
        let term = ctx.terminal().ok_or("no terminal")?.clone();
        // Take the reader now: the process may be done (and its terminal closed) before a
        // thread started here gets to it.
        let mut r = term.reader()?;
        let o = o.clone();
        std::thread::spawn(move || {
            *o.lock().unwrap() = read_until(&mut *r, "end");
        });
        Ok(())
    });
    let p = process(&["sh", "-c", "tty; echo end"], |p| {
        p["terminal"] = true.into()
    });
    let st = d.exec(&id, &p, Pipes::null(), &hooks).unwrap();
    stop(&d, &id, h);
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        out.lock().unwrap().starts_with("/dev/pts/"),
        "{}",
        out.lock().unwrap()
    );
}

#[test]
fn oci_hooks_run_in_order_with_the_state_on_stdin() {
    let Some(d) = setup("oci_hooks_run_in_order_with_the_state_on_stdin") else {
        return;
    };
    let log = tempfile::tempdir().unwrap();
    let dir = log.path().display().to_string();
    // Each hook appends "<name> <status> <pid-present>" to the log; startContainer runs in the
    // container after pivot_root, so it writes through a bind mount at /tmp/hooks.
    let hook = |name: &str, logdir: &str| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("s=$(cat); st=$(echo \"$s\" | sed 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/'); echo \"{name} $st\" >> {logdir}/order")],
        })
    };
    let id = unique_id("hooks");
    let (st, _, err) = run_busybox(&*d, &id, &["true"], &Hooks::new(), |spec| {
        edit(spec, |v| {
            v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/tmp/hooks", "type": "bind", "source": dir, "options": ["bind"]}));
            v["hooks"] = serde_json::json!({
                "prestart": [hook("prestart", &dir)],
                "createRuntime": [hook("createRuntime", &dir)],
                "createContainer": [hook("createContainer", &dir)],
                "startContainer": [hook("startContainer", "/tmp/hooks")],
                "poststart": [hook("poststart", &dir)],
                "poststop": [hook("poststop", &dir)],
            });
        });
    })
    .unwrap();
    assert!(st.success(), "{err}");
    let order = std::fs::read_to_string(log.path().join("order")).unwrap();
    assert_eq!(
        order,
        "prestart creating\ncreateRuntime creating\ncreateContainer creating\nstartContainer created\npoststart running\npoststop stopped\n"
    );
}

#[test]
fn a_failing_prestart_hook_aborts_the_start_and_poststop_still_runs() {
    let Some(d) = setup("a_failing_prestart_hook_aborts_the_start_and_poststop_still_runs") else {
        return;
    };
    let log = tempfile::tempdir().unwrap();
    let ran = log.path().join("poststop-ran");
    let started = log.path().join("started");
    let id = unique_id("hookfail");
    let err = run_busybox(&*d, &id, &["sh", "-c", &format!("touch {}", started.display())], &Hooks::new(), |spec| {
        edit(spec, |v| {
            v["hooks"] = serde_json::json!({
                "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no network for you >&2; exit 1"]}],
                "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", ran.display())]}],
            });
        });
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("OCI hooks.prestart[0] (/bin/sh): exit status: 1: no network for you"),
        "{err}"
    );
    assert!(ran.exists(), "poststop hooks run when the start fails");
    assert!(!started.exists());
    assert!(matches!(d.info(&id), Err(DriverError::NotFound { .. })));
}

#[test]
fn a_seccomp_profile_denying_mkdir_makes_mkdir_fail_with_eperm() {
    let Some(d) = setup("a_seccomp_profile_denying_mkdir_makes_mkdir_fail_with_eperm") else {
        return;
    };
    let (st, out, err) = run_busybox(
        &*d,
        &unique_id("seccomp"),
        &["sh", "-c", "mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touch-ok"],
        &Hooks::new(),
        |spec| {
            edit(spec, |v| {
                v["linux"]["seccomp"] = serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
                });
            });
        },
    )
    .unwrap();
    assert!(st.success());
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(out.contains("mkdir=1") && out.contains("touch-ok"), "{out}");
}

/// runc execs the program right after loading the profile; we exec through the sealed
/// trampoline (`execveat` of its fd, then `fcntl` to close the setup socket on the program's
/// exec). A profile that allows `execve` but neither of those must still run programs — and
/// still deny them to the program itself.
#[test]
fn an_allow_list_without_execveat_or_fcntl_still_runs_the_program() {
    let Some(d) = setup("an_allow_list_without_execveat_or_fcntl_still_runs_the_program") else {
        return;
    };
    let mut profile =
        serde_json::to_value(execdriver::native::seccomp::default::profile(&[])).unwrap();
    for sc in profile["syscalls"].as_array_mut().unwrap() {
        if let Some(names) = sc["names"].as_array_mut() {
            names.retain(|n| n != "execveat" && n != "fcntl");
        }
    }
    let (st, out, err) = run_busybox(
        &*d,
        &unique_id("seccomp-allow"),
        &[
            "sh",
            "-c",
            "echo started; exec 3</dev/null; echo redirected=$?",
        ],
        &Hooks::new(),
        |spec| edit(spec, |v| v["linux"]["seccomp"] = profile.clone()),
    )
    .unwrap();
    assert!(st.success(), "{st} {err}");
    assert!(out.starts_with("started"), "{out} {err}");
}

#[test]
fn the_default_seccomp_profile_runs_ordinary_programs_and_denies_namespaces() {
    let Some(d) = setup("the_default_seccomp_profile_runs_ordinary_programs_and_denies_namespaces")
    else {
        return;
    };
    let (st, out, err) = run_busybox(
        &*d,
        &unique_id("dflt"),
        &["sh", "-c", "mkdir /tmp/a && ls / > /dev/null && echo ok; unshare -n true; echo unshare=$?; grep Seccomp: /proc/self/status"],
        &Hooks::new(),
        |spec| {
            let caps: Vec<_> = spec
                .process()
                .as_ref()
                .and_then(|p| p.capabilities().as_ref())
                .and_then(|c| c.bounding().clone())
                .map(|b| b.into_iter().collect())
                .unwrap_or_default();
            spec.linux_mut().as_mut().unwrap().set_seccomp(Some(execdriver::native::seccomp::default::profile(&caps)));
        },
    )
    .unwrap();
    assert!(st.success(), "{err}");
    assert!(out.contains("ok\n"), "{out}{err}");
    assert!(
        out.contains("unshare=1") || out.contains("unshare=2"),
        "{out}{err}"
    );
    assert!(out.contains("Seccomp:\t2"), "filter mode: {out}");
}

#[test]
fn the_container_sees_no_host_fds() {
    let Some(d) = setup("the_container_sees_no_host_fds") else {
        return;
    };
    // An fd of the engine without close-on-exec.
    let leaky = std::fs::File::open("/etc/hostname").unwrap();
    let flags = rustix::io::fcntl_getfd(&leaky).unwrap();
    rustix::io::fcntl_setfd(&leaky, flags - rustix::io::FdFlags::CLOEXEC).unwrap();
    let (st, out, _) = run_busybox(
        &*d,
        &unique_id("fds"),
        &["sh", "-c", "ls /proc/self/fd"],
        &Hooks::new(),
        |_| {},
    )
    .unwrap();
    drop(leaky);
    assert!(st.success());
    let fds: Vec<u32> = out
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // stdin, stdout, stderr, and the directory ls itself is reading.
    assert!(fds.iter().all(|f| *f <= 3), "{fds:?}");
}

#[test]
fn the_runtime_binary_is_out_of_reach_through_proc_exe() {
    let Some(d) = setup("the_runtime_binary_is_out_of_reach_through_proc_exe") else {
        return;
    };
    let (id, h, _) = start(&d, |_| {});
    // While an exec'd process waits in its pre_start hook (a copy of the engine that has not
    // exec'd yet), another process in the container tries to reach /proc/<it>/exe.
    let seen = Arc::new(Mutex::new(String::new()));
    let (d2, id2, s2) = (d.clone(), id.clone(), seen.clone());
    let hooks = Hooks::new().on_pre_start(move |ctx| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", ctx.pid()))?;
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last())
            .ok_or("no NSpid")?
            .to_owned();
        let probe = process(&["sh", "-c", &format!("readlink /proc/{inner}/exe || echo denied; cat /proc/{inner}/environ > /dev/null || echo environ-denied")], |_| {});
        let (pipes, cap) = Pipes::capture()?;
        d2.exec(&id2, &probe, pipes, &Hooks::new())?;
        let (o, e) = cap.wait_strings();
        *s2.lock().unwrap() = format!("{o}{e}");
        Ok(())
    });
    let st = d
        .exec(&id, &process(&["true"], |_| {}), Pipes::null(), &hooks)
        .unwrap();
    stop(&d, &id, h);
    assert!(st.success());
    let seen = seen.lock().unwrap().clone();
    let me = std::env::current_exe().unwrap();
    assert!(
        !seen.contains(me.file_name().unwrap().to_str().unwrap()),
        "the engine binary was reachable: {seen}"
    );
    assert!(seen.contains("denied"), "{seen}");
    assert!(seen.contains("environ-denied"), "{seen}");
}

#[test]
fn a_cwd_through_proc_fds_cannot_reach_the_host() {
    let Some(d) = setup("a_cwd_through_proc_fds_cannot_reach_the_host") else {
        return;
    };
    let (id, h, _) = start(&d, |_| {});
    for fd in 3..12 {
        let p = process(&["sh", "-c", "pwd; ls"], |p| {
            p["cwd"] = format!("/proc/self/fd/{fd}").into()
        });
        let (pipes, cap) = Pipes::capture().unwrap();
        let r = d.exec(&id, &p, pipes, &Hooks::new());
        let (out, _) = cap.wait_strings();
        match r {
            Err(e) => assert!(e.to_string().contains("process.cwd"), "fd {fd}: {e}"),
            Ok(st) => panic!("fd {fd}: ran in {out:?} ({st})"),
        }
    }
    stop(&d, &id, h);
}

#[test]
fn proc_and_sys_are_mounted_safely() {
    let Some(d) = setup("proc_and_sys_are_mounted_safely") else {
        return;
    };
    let (st, out, _) = run_busybox(
        &*d,
        &unique_id("procsys"),
        &["sh", "-c", "echo x > /proc/sys/kernel/hostname 2>/dev/null && echo proc-sys-writable; echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable; touch /sys/x 2>/dev/null && echo sys-writable; echo kcore=$(cat /proc/kcore | wc -c)"],
        &Hooks::new(),
        |_| {},
    )
    .unwrap();
    assert!(st.success());
    assert_eq!(out, "kcore=0\n");
}

/// A hook writing more than a pipe's worth to stderr must not hang `run` (its stderr was read
/// only after it exited), nor a hook that never reads its stdin block on a large state (it was
/// written before the timeout's clock ran).
#[test]
fn oci_hooks_with_large_stderr_or_unread_stdin_neither_hang_nor_escape_their_timeout() {
    let Some(d) =
        setup("oci_hooks_with_large_stderr_or_unread_stdin_neither_hang_nor_escape_their_timeout")
    else {
        return;
    };
    // 1 MiB on stderr, then success: the run goes on (a timeout only as a safety net).
    let id = unique_id("hookerr");
    let (st, _, err) = run_busybox(&*d, &id, &["true"], &Hooks::new(), |spec| {
        edit(spec, |v| {
            v["hooks"] = serde_json::json!({
                "prestart": [{"path": "/bin/sh", "timeout": 60,
                              "args": ["sh", "-c", "cat >/dev/null; head -c 1048576 /dev/zero | tr '\\0' x >&2"]}],
            });
        });
    })
    .unwrap();
    assert!(st.success(), "a hook's large stderr: {err}");
    // A state larger than a pipe (a 256 KiB annotation) to a hook that never reads it and
    // outlives its 2 s timeout: killed at the timeout, reported as such.
    let id = unique_id("hookin");
    let big = "a".repeat(256 * 1024);
    let e = run_busybox(&*d, &id, &["true"], &Hooks::new(), |spec| {
        edit(spec, |v| {
            v["annotations"] = serde_json::json!({"org.example.big": big});
            v["hooks"] = serde_json::json!({
                "prestart": [{"path": "/bin/sh", "timeout": 2, "args": ["sh", "-c", "sleep 20"]}],
            });
        });
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("timed out after 2s"), "{e}");
}

/// A hook in the container's namespaces that itself exits 126 is reported with its status, not
/// as a failure to join the namespaces.
#[test]
fn an_in_container_hook_exiting_126_is_reported_as_its_exit_status() {
    let Some(d) = setup("an_in_container_hook_exiting_126_is_reported_as_its_exit_status") else {
        return;
    };
    let id = unique_id("hook126");
    let e = run_busybox(&*d, &id, &["true"], &Hooks::new(), |spec| {
        edit(spec, |v| {
            v["hooks"] = serde_json::json!({
                "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 126"]}],
            });
        });
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("exit status: 126"), "{e}");
    assert!(!e.contains("could not join"), "{e}");
}
