//! runc's command line over both drivers, beyond what the runc differential compares: wasm
//! containers held by a hosting process, the driver choice, terminals over a console socket,
//! detached exec, `kill --all`, `update`, `events`, `spec`, `features`, logs and refused flags.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use execdriver_tests::{busybox_rootfs, is_root, missing, runc_like_spec};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_execdriver"))
}

/// A CLI with its own state root.
struct Cli {
    root: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            root: tempfile::Builder::new()
                .prefix("edtest-cli-root-")
                .tempdir()
                .unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    /// Runs a command whose stdio is not held by a container (those use `spawn_quiet`).
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs a command that leaves a container holding its stdio: output goes to files.
    fn run_quiet(&self, args: &[&str]) -> (i32, String) {
        let err = self.root.path().join(format!("err-{}", unique()));
        let status = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        (
            status.code().unwrap_or(-1),
            std::fs::read_to_string(&err).unwrap_or_default(),
        )
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let o = self.run(&["state", id]);
        assert!(o.status.success(), "state {id}: {}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn status(&self, id: &str) -> String {
        let o = self.run(&["state", id]);
        if !o.status.success() {
            return "(none)".into();
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["status"].as_str().unwrap().to_owned()
    }

    fn wait_status(&self, id: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.status(id);
            if s == want || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        // Whatever a failed test left running.
        let o = self.run(&["list", "-q"]);
        for id in text(&o.stdout).lines() {
            self.run(&["delete", "--force", id]);
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn id(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), unique())
}

/// A world-readable bundle over the wasm fixtures.
fn wasm_bundle(args: &[&str], annotations: Option<serde_json::Value>) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("edtest-cli-wasm-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-driver/tests/fixtures");
    for e in std::fs::read_dir(src).unwrap().flatten() {
        std::fs::copy(e.path(), root.join(e.file_name())).unwrap();
    }
    let mut spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "args": args, "env": [], "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
    });
    if let Some(a) = annotations {
        spec["annotations"] = a;
    }
    std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
    dir
}

/// A busybox bundle (root only); `edit` changes the spec.
fn native_bundle(
    test: &str,
    args: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> Option<tempfile::TempDir> {
    if !is_root() {
        missing(test, "needs root");
        return None;
    }
    let rootfs = match busybox_rootfs() {
        Ok(r) => r,
        Err(e) => {
            missing(test, &e);
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = serde_json::to_value(runc_like_spec(rootfs, args)).unwrap();
    edit(&mut spec);
    std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
    Some(dir)
}

fn path(d: &tempfile::TempDir) -> &str {
    d.path().to_str().unwrap()
}

/// Waits for `pid` (a process we did not start) to be gone.
fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its reaper.
        if stat.is_empty()
            || stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_wasm_container_goes_through_the_whole_lifecycle() {
    let cli = Cli::new();
    let b = wasm_bundle(&["/forever.wat"], Some(serde_json::json!({"k": "v"})));
    let c = id("w-life");
    let pid_file = cli.root.path().join("pid");
    let (code, err) = cli.run_quiet(&[
        "create",
        "--bundle",
        path(&b),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &c,
    ]);
    assert_eq!(code, 0, "{err}");
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let st = cli.state(&c);
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid, "the pid is the hosting process's");
    assert_eq!(st["driver"], "wasm");
    assert_eq!(st["annotations"]["k"], "v");
    assert_eq!(st["bundle"], path(&b));
    // The hosting process is a real, separate process.
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // Invalid transitions while created.
    assert!(!cli.run(&["resume", &c]).status.success());
    assert_eq!(cli.run_quiet(&["create", "--bundle", path(&b), &c]).0, 1);

    assert!(cli.run(&["start", &c]).status.success());
    assert_eq!(cli.status(&c), "running");
    let o = cli.run(&["start", &c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("can't start while running"),
        "{}",
        text(&o.stderr)
    );

    // exec: a new instance in the same container, its own exit code and output.
    let o = cli.run(&["exec", &c, "/exit.wat", "7"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let o = cli.run(&["exec", &c, "/hello.wat"]);
    assert_eq!(text(&o.stdout), "hello from wasm\n");
    let o = cli.run(&["ps", "--format", "json", &c]);
    let pids: Vec<u32> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(pids, vec![pid]);

    // pause / resume, reflected in state; refused twice.
    assert!(cli.run(&["pause", &c]).status.success());
    assert_eq!(cli.status(&c), "paused");
    assert!(!cli.run(&["pause", &c]).status.success());
    assert!(cli.run(&["resume", &c]).status.success());
    assert_eq!(cli.status(&c), "running");

    // events --stats: one runc-shaped stats object.
    let o = cli.run(&["events", "--stats", &c]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], c.as_str());
    assert!(ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);

    // update: a memory limit the instance's stats report.
    let o = cli.run(&["update", "--memory", "32m", &c]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = cli.run(&["events", "--stats", &c]);
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 32 << 20);

    // A running container is not deleted without --force.
    let o = cli.run(&["delete", &c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("can't delete while running"));

    // kill: the instance ends as SIGTERM would end it, the hosting process exits.
    assert!(cli.run(&["kill", &c, "TERM"]).status.success());
    assert_eq!(cli.wait_status(&c, "stopped"), "stopped");
    assert_eq!(cli.state(&c)["pid"], 0);
    assert!(wait_gone(pid), "the hosting process is gone");
    assert!(!cli.run(&["kill", &c, "KILL"]).status.success());
    assert!(!cli.run(&["start", &c]).status.success());
    assert!(cli.run(&["delete", &c]).status.success());
    assert!(!cli.run(&["state", &c]).status.success());
    // Nothing left in the CLI's directory.
    let left: Vec<_> = std::fs::read_dir(cli.root.path().join("cli"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_created_wasm_container_can_be_deleted_or_killed_before_start() {
    let cli = Cli::new();
    let b = wasm_bundle(&["/forever.wat"], None);
    let c = id("w-del");
    assert_eq!(cli.run_quiet(&["create", "--bundle", path(&b), &c]).0, 0);
    let pid = cli.state(&c)["pid"].as_u64().unwrap() as u32;
    assert!(cli.run(&["delete", &c]).status.success());
    assert!(wait_gone(pid));
    assert!(!cli.run(&["state", &c]).status.success());

    assert_eq!(cli.run_quiet(&["create", "--bundle", path(&b), &c]).0, 0);
    assert!(cli.run(&["kill", &c, "KILL"]).status.success());
    assert_eq!(cli.wait_status(&c, "stopped"), "stopped");
    assert!(cli.run(&["delete", &c]).status.success());
}

#[test]
fn run_detach_and_delete_force_for_wasm() {
    let cli = Cli::new();
    let b = wasm_bundle(&["/forever.wat"], None);
    let c = id("w-detach");
    let (code, err) = cli.run_quiet(&["run", "--detach", "--bundle", path(&b), &c]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli.status(&c), "running");
    let o = cli.run(&["list", "--format", "json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        list.iter()
            .any(|s| s["id"] == c.as_str() && s["driver"] == "wasm")
    );
    let o = cli.run(&["delete", "--force", &c]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!cli.run(&["state", &c]).status.success());
}

#[test]
fn a_bad_wasm_module_fails_create_with_its_reason_and_leaves_nothing() {
    let cli = Cli::new();
    let b = wasm_bundle(&["/unknown_import.wat"], None);
    let c = id("w-bad");
    let (code, err) = cli.run_quiet(&["create", "--bundle", path(&b), &c]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown_import.wat") || err.contains("import"),
        "{err}"
    );
    assert!(!cli.run(&["state", &c]).status.success());
    let left: Vec<_> = std::fs::read_dir(cli.root.path().join("cli"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_hosting_process_exits_with_the_containers_code() {
    // The pid a shim watches is the hosting process: its exit status is the container's.
    // We stand in for the shim as this process's subreaper.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let cli = Cli::new();
    let b = wasm_bundle(&["/exit.wat", "42"], None);
    let c = id("w-code");
    let pid_file = cli.root.path().join("pid");
    assert_eq!(
        cli.run_quiet(&[
            "create",
            "--bundle",
            path(&b),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &c,
        ])
        .0,
        0
    );
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(cli.run(&["start", &c]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let r = rustix::process::waitpid(
            rustix::process::Pid::from_raw(pid),
            rustix::process::WaitOptions::NOHANG,
        )
        .unwrap();
        if let Some((_, st)) = r {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the hosting process did not exit"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status.exit_status(), Some(42));
    assert_eq!(cli.status(&c), "stopped");
    assert!(cli.run(&["delete", &c]).status.success());
}

#[test]
fn a_foreground_wasm_run_answers_other_commands() {
    let cli = Cli::new();
    let b = wasm_bundle(&["/forever.wat"], None);
    let c = id("w-fg");
    let mut child = cli
        .cmd(&["run", "--bundle", path(&b), &c])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(cli.wait_status(&c, "running"), "running");
    assert_eq!(cli.state(&c)["pid"], child.id());
    assert!(cli.run(&["kill", &c, "INT"]).status.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(!cli.run(&["state", &c]).status.success(), "run removes it");
}

#[test]
fn the_driver_is_chosen_by_flag_then_operator_then_annotation_then_detection() {
    let cli = Cli::new();
    let cfg_dir = tempfile::tempdir().unwrap();
    let pin_wasm = cfg_dir.path().join("wasm.json");
    std::fs::write(&pin_wasm, r#"{"driver": "wasm"}"#).unwrap();
    let no_pin = cfg_dir.path().join("none.json");
    std::fs::write(&no_pin, r#"{"drivers": {"wasm": {"tick_us": 500}}}"#).unwrap();
    let bad = cfg_dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"driver": "wasm", "optoins": {}}"#).unwrap();

    // Detection: a .wat args[0] is wasm.
    let b = wasm_bundle(&["/forever.wat"], None);
    let c = id("w-pick");
    assert_eq!(
        cli.run_quiet(&[
            "--config",
            no_pin.to_str().unwrap(),
            "create",
            "--bundle",
            path(&b),
            &c
        ])
        .0,
        0
    );
    assert_eq!(cli.state(&c)["driver"], "wasm");
    assert!(cli.run(&["delete", &c]).status.success());

    // The annotation asks for a driver (one that does not exist, to show it was asked).
    let b = wasm_bundle(
        &["/forever.wat"],
        Some(serde_json::json!({"org.execdriver.driver": "nosuch"})),
    );
    let (code, err) = cli.run_quiet(&["create", "--bundle", path(&b), &c]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown driver \"nosuch\""), "{err}");
    // The flag beats the annotation.
    let (code, err) = cli.run_quiet(&["--driver", "wasm", "create", "--bundle", path(&b), &c]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli.state(&c)["driver"], "wasm");
    assert!(cli.run(&["delete", &c]).status.success());
    // An operator's pin beats the annotation ...
    let pin = pin_wasm.to_str().unwrap();
    let (code, err) = cli.run_quiet(&["--config", pin, "create", "--bundle", path(&b), &c]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli.state(&c)["driver"], "wasm");
    assert!(cli.run(&["delete", &c]).status.success());
    // ... and the flag beats the operator.
    let (code, err) = cli.run_quiet(&[
        "--config",
        pin,
        "--driver",
        "other",
        "create",
        "--bundle",
        path(&b),
        &c,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown driver \"other\""), "{err}");
    // A broken operator config is an error naming the file and the field.
    let (code, err) = cli.run_quiet(&[
        "--config",
        bad.to_str().unwrap(),
        "create",
        "--bundle",
        path(&b),
        &c,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.json") && err.contains("optoins"), "{err}");
}

#[test]
fn native_console_socket_gets_a_working_terminal() {
    let test = "native_console_socket_gets_a_working_terminal";
    let Some(b) = native_bundle(test, &["sh", "-c", "tty; stty size; echo bye"], |s| {
        s["process"]["terminal"] = true.into();
    }) else {
        return;
    };
    let cli = Cli::new();
    let c = id("n-tty");
    let sock = cli.root.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || -> Vec<OwnedFd> {
        let (s, _) = listener.accept().unwrap();
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 64];
        rustix::net::recvmsg(
            &s,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut anc,
            rustix::net::RecvFlags::empty(),
        )
        .unwrap();
        let mut fds = Vec::new();
        for m in anc.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(r) = m {
                fds.extend(r);
            }
        }
        fds
    });
    // Without a console socket, a terminal can't be handed to anyone.
    let (code, err) = cli.run_quiet(&["create", "--bundle", path(&b), &c]);
    assert_eq!(code, 1);
    assert!(err.contains("--console-socket"), "{err}");

    let (code, err) = cli.run_quiet(&[
        "create",
        "--bundle",
        path(&b),
        "--console-socket",
        sock.to_str().unwrap(),
        &c,
    ]);
    assert_eq!(code, 0, "{err}");
    let master = receiver.join().unwrap().pop().expect("a pty master");
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: 33,
            ws_col: 77,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    assert!(cli.run(&["start", &c]).status.success());
    let mut out = String::new();
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 1024];
    // EIO once the container side is closed.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
        if out.contains("bye") {
            break;
        }
    }
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("33 77"), "{out:?}");
    assert_eq!(cli.wait_status(&c, "stopped"), "stopped");
    assert!(cli.run(&["delete", &c]).status.success());
}

#[test]
fn native_exec_detach_kill_all_update_and_events() {
    let test = "native_exec_detach_kill_all_update_and_events";
    let hog = "x=0123456789abcdef; i=0; while [ $i -lt 24 ]; do x=$x$x; i=$((i+1)); done";
    let script = format!(
        "trap 'exit 0' TERM; while [ ! -e /tmp/go ]; do sleep 0.05; done; sh -c '{hog}'; sleep 1000 & wait"
    );
    // (`& wait`: a shell runs its TERM trap only after a foreground child ends, and `kill --all`
    // right after the OOM event may list the processes before that `sleep` exists.)
    let Some(b) = native_bundle(test, &["sh", "-c", &script], |s| {
        s["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 64 << 20, "swap": 64 << 20});
    }) else {
        return;
    };
    let cli = Cli::new();
    let c = id("n-ops");
    let (code, err) = cli.run_quiet(&["run", "--detach", "--bundle", path(&b), &c]);
    assert_eq!(code, 0, "{err}");

    // exec --detach: the pid file names a process of the container.
    let pid_file = cli.root.path().join("exec.pid");
    let (code, err) = cli.run_quiet(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &c,
        "sleep",
        "1000",
    ]);
    assert_eq!(code, 0, "{err}");
    let exec_pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let o = cli.run(&["ps", "--format", "json", &c]);
    let pids: Vec<u32> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(pids.contains(&exec_pid), "{pids:?} {exec_pid}");

    // exec --process FILE.
    let proc_file = cli.root.path().join("process.json");
    std::fs::write(
        &proc_file,
        r#"{"args": ["sh", "-c", "echo from-file $X; exit 9"], "cwd": "/", "env": ["X=1", "PATH=/bin"], "user": {"uid": 0, "gid": 0}}"#,
    )
    .unwrap();
    let o = cli.run(&["exec", "--process", proc_file.to_str().unwrap(), &c]);
    assert_eq!(o.status.code(), Some(9), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "from-file 1\n");

    // update raises the memory limit; stats report it.
    let o = cli.run(&["update", "--memory", "128m", "--memory-swap", "128m", &c]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = cli.run(&["events", "--stats", &c]);
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 128 << 20);
    // ... and back down, through --resources on stdin.
    let mut child = cli
        .cmd(&["update", "--resources", "-", &c])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory": {"limit": 33554432, "swap": 33554432}}"#)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));

    // events: stats lines, then an `oom` line when the hog is OOM-killed.
    let mut events = cli
        .cmd(&["events", "--interval", "100ms", &c])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let o = cli.run(&["exec", &c, "touch", "/tmp/go"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(events.stdout.take().unwrap()));
    let mut saw_stats = false;
    let saw_oom = loop {
        let Some(Ok(line)) = lines.next() else {
            break false;
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        saw_stats |= v["type"] == "stats";
        if v["type"] == "oom" {
            assert_eq!(v["id"], c.as_str());
            break true;
        }
    };
    assert!(saw_oom && saw_stats);

    // kill --all: TERM reaches the exec'd sleep too, not only the init.
    assert!(cli.run(&["kill", "--all", &c, "TERM"]).status.success());
    assert!(wait_gone(exec_pid), "the exec'd process got the signal");
    assert_eq!(cli.wait_status(&c, "stopped"), "stopped");
    // events ends with the container.
    assert!(events.wait().unwrap().success());
    assert!(cli.run(&["delete", &c]).status.success());
}

#[test]
fn spec_writes_a_bundle_config_that_runs() {
    let cli = Cli::new();
    let d = tempfile::tempdir().unwrap();
    let o = cli.run(&["spec", "--bundle", path(&d)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = cli.run(&["spec", "--bundle", path(&d)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("exists"));
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"][0], "sh");
    let test = "spec_writes_a_bundle_config_that_runs";
    if !is_root() {
        return missing(test, "needs root");
    }
    let rootfs = match busybox_rootfs() {
        Ok(r) => r,
        Err(e) => return missing(test, &e),
    };
    // The default spec, pointed at a rootfs, with a command instead of an interactive shell.
    let mut spec = spec;
    spec["root"]["path"] = rootfs.to_str().unwrap().into();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "echo $(hostname) $(id -u)"]);
    std::fs::write(d.path().join("config.json"), spec.to_string()).unwrap();
    let o = cli.run(&["run", "--bundle", path(&d), &id("n-spec")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "execdriver 0\n");
}

#[test]
fn features_describe_the_runtime_and_its_drivers() {
    let o = bin().arg("features").output().unwrap();
    assert!(o.status.success());
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["hooks"].as_array().unwrap().contains(&"poststop".into()));
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&"user".into())
    );
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    assert_eq!(
        f["annotations"]["org.execdriver.drivers"],
        "native,oci,wasm"
    );
}

#[test]
fn refused_flags_and_logs_as_containerd_reads_them() {
    let cli = Cli::new();
    let b = wasm_bundle(&["/hello.wat"], None);
    for (args, want) in [
        (
            vec!["--systemd-cgroup", "state", "x"],
            "--systemd-cgroup is not supported",
        ),
        (
            vec!["create", "--no-pivot", "--bundle", path(&b), "x"],
            "--no-pivot is not supported",
        ),
        (
            vec!["create", "--preserve-fds", "2", "--bundle", path(&b), "x"],
            "--preserve-fds",
        ),
        (vec!["run", "--keep", "--bundle", path(&b), "x"], "--keep"),
        (vec!["kill", "x", "SIGNOPE"], "signal"),
        (
            vec!["create", "--bundle", path(&b), "a/b"],
            "invalid container id",
        ),
    ] {
        let o = cli.run(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // A bad flag value is clap's usage error, which names the flag.
    let o = cli.run(&["events", "--interval", "soon", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("--interval") && err.contains("duration"),
        "{err}"
    );

    // --log --log-format json: logrus-style lines, the error among them.
    let log = cli.root.path().join("log.json");
    let o = cli.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let last = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    // runc's words first (containerd's shim matches "does not exist"), then ours.
    assert_eq!(
        last["msg"],
        "container nope does not exist: container nope: not found"
    );
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn native_create_start_from_another_process_and_pid_file() {
    let test = "native_create_start_from_another_process_and_pid_file";
    let Some(b) = native_bundle(
        test,
        &["sh", "-c", "echo started > /dev/shm/s; sleep 1000"],
        |_| {},
    ) else {
        return;
    };
    let cli = Cli::new();
    let c = id("n-cs");
    let pid_file: PathBuf = cli.root.path().join("init.pid");
    let (code, err) = cli.run_quiet(&[
        "create",
        "--bundle",
        path(&b),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &c,
    ]);
    assert_eq!(code, 0, "{err}");
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    // Created: the init exists (in the container's namespaces) and has not run the program.
    assert_eq!(cli.status(&c), "created");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(comm.trim(), "sh", "the program has not started");
    assert!(cli.run(&["start", &c]).status.success());
    assert_eq!(cli.status(&c), "running");
    let o = cli.run(&["exec", &c, "cat", "/dev/shm/s"]);
    assert_eq!(text(&o.stdout), "started\n");
    assert!(cli.run(&["delete", "--force", &c]).status.success());
    assert!(wait_gone(pid));
}
