//! `execdriver run` with the wasm driver: output and exit codes, auto-detection, a non-root
//! user with no flags, SIGTERM to the CLI, the OOM contract.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use execdriver_tests::{is_root, missing};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-driver/tests/fixtures")
}

/// A bundle (world-readable, for the non-root test) running `args` over the fixtures.
fn bundle(args: &[&str], resources: Option<serde_json::Value>) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("edtest-wasm-cli-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    for e in std::fs::read_dir(fixtures()).unwrap().flatten() {
        std::fs::copy(e.path(), root.join(e.file_name())).unwrap();
    }
    let mut spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "args": args, "env": [], "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
    });
    if let Some(r) = resources {
        spec["linux"] = serde_json::json!({ "resources": r });
    }
    std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
    dir
}

/// The CLI with its state (and wasm cache) in `<bundle>/state`, removed with the bundle, so
/// that the tests leave nothing in the machine's default root.
fn cli(bundle: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_execdriver"));
    c.arg("--root").arg(bundle.path().join("state"));
    c
}

fn execdriver(bundle: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    cli(bundle).args(args).output().unwrap()
}

#[test]
fn wasm_run_prints_and_exits_with_the_module_code() {
    let b = bundle(&["/echo.wat", "out text\n", "err text\n"], None);
    let p = b.path().to_str().unwrap();
    let out = execdriver(&b, &["run", "--driver", "wasm", "--bundle", p, "w1"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out text\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err text\n");
    let b = bundle(&["/exit.wat", "42"], None);
    let out = execdriver(
        &b,
        &[
            "run",
            "--driver",
            "wasm",
            "--bundle",
            b.path().to_str().unwrap(),
            "w2",
        ],
    );
    assert_eq!(out.status.code(), Some(42));
}

#[test]
fn a_wat_or_wasm_bundle_picks_the_wasm_driver_by_itself() {
    let b = bundle(&["/hello.wat"], None);
    let out = execdriver(&b, &["run", "--bundle", b.path().to_str().unwrap(), "w3"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from wasm\n");
}

#[test]
fn a_non_root_user_runs_wasm_with_no_flags() {
    if !is_root() {
        // Already not root: run directly.
        let b = bundle(&["/hello.wat"], None);
        let out = execdriver(&b, &["run", "--bundle", b.path().to_str().unwrap(), "w4"]);
        assert_eq!(out.status.code(), Some(0));
        return;
    }
    let b = bundle(&["/hello.wat"], None);
    // "No flags": the default root, which for a non-root user is under $XDG_RUNTIME_DIR — a
    // private one here, so that nothing stays behind.
    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_execdriver"))
        .args(["run", "--bundle", b.path().to_str().unwrap(), "w4"])
        .env("HOME", "/nonexistent")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return missing(
                "a_non_root_user_runs_wasm_with_no_flags",
                &format!("setpriv: {e}"),
            );
        }
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from wasm\n");
}

#[test]
fn sigterm_to_the_cli_ends_the_instance() {
    let b = bundle(&["/ticker.wat"], None);
    let mut child = cli(&b)
        .args(["run", "--bundle", b.path().to_str().unwrap(), "w5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader};
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "tick\n");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
}

#[test]
fn an_oom_killed_module_exits_137_with_an_oom_killed_line() {
    let b = bundle(
        &["/grow.wat"],
        Some(serde_json::json!({"memory": {"limit": 8388608}})),
    );
    let out = execdriver(&b, &["run", "--bundle", b.path().to_str().unwrap(), "w6"]);
    assert_eq!(out.status.code(), Some(137));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oom-killed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_http_component_serves_through_the_cli_and_stops_on_sigterm() {
    let b = bundle(&["/http_hello.wat"], None);
    let config = b.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["annotations"] = serde_json::json!({"org.execdriver.wasm.http": "127.0.0.1:0"});
    std::fs::write(&config, spec.to_string()).unwrap();
    let p = b.path().to_str().unwrap();
    // The server holds its stdio: the CLI's stderr goes to a file, not a pipe read to its end.
    let log = b.path().join("run.log");
    let st = cli(&b)
        .args(["run", "--detach", "--bundle", p, "h1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap());
    // Whatever fails below, the hosting process goes with the test.
    struct Delete<'a>(&'a tempfile::TempDir);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = execdriver(self.0, &["delete", "--force", "h1"]);
        }
    }
    let _delete = Delete(&b);
    let state = |b: &tempfile::TempDir| -> serde_json::Value {
        serde_json::from_slice(&execdriver(b, &["state", "h1"]).stdout).unwrap()
    };
    let st = state(&b);
    assert_eq!(st["status"], "running", "{st}");
    // The address the kernel picked, in the state's annotations.
    let addr: std::net::SocketAddr = st["annotations"]["org.execdriver.wasm.http.address"]
        .as_str()
        .unwrap_or_else(|| panic!("no bound address in {st}"))
        .parse()
        .unwrap();
    let long = std::time::Duration::from_secs(30);
    for _ in 0..3 {
        let r = execdriver_tests::http::get(addr, "/", long).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello from wasm\n"));
    }
    let ev = execdriver(&b, &["events", "--stats", "h1"]);
    let ev: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert_eq!(ev["data"]["http"]["requests"], 3, "{ev}");
    assert_eq!(ev["data"]["http"]["inFlight"], 0, "{ev}");
    let out = execdriver(&b, &["kill", "h1", "TERM"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + long;
    while state(&b)["status"] != "stopped" {
        assert!(
            std::time::Instant::now() < deadline,
            "still serving after TERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        execdriver_tests::http::get(addr, "/", std::time::Duration::from_secs(2)).is_err(),
        "still listening"
    );
    let out = execdriver(&b, &["delete", "h1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
