//! End-to-end tests of the `execdriver` binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use execdriver_tests::{busybox_rootfs, is_root, missing, runc_like_spec};

fn execdriver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_execdriver"))
}

/// Runs the CLI; without a `--root` in `args`, on a private one removed afterwards, so that
/// the tests leave nothing in the machine's default root.
fn run(args: &[&str]) -> Output {
    if args.contains(&"--root") {
        return execdriver().args(args).output().expect("run execdriver");
    }
    let root = tempfile::tempdir().unwrap();
    execdriver()
        .arg("--root")
        .arg(root.path())
        .args(args)
        .output()
        .expect("run execdriver")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn drivers_lists_the_builtin_drivers() {
    let out = run(&["drivers"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("native"), "{s}");
    assert!(s.contains("wasm"), "{s}");
    assert!(s.contains("oci"), "{s}");
    assert!(s.lines().next().unwrap_or("").ends_with("HEALTH"), "{s}");
}

/// `drivers --format json` carries every driver's health checks; on this machine (and CI's)
/// native and wasm are healthy, and a driver that can't be made says why.
#[test]
fn drivers_report_their_health() {
    let out = run(&["drivers", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| {
        doc.as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {doc}"))
    };
    let wasm = by_name("wasm");
    assert_eq!(wasm["level"], "ok", "{wasm}");
    assert_eq!(wasm["health"]["checks"][0]["name"], "engine");
    assert!(
        wasm["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"exec".into())
    );
    let native = by_name("native");
    let checks: Vec<&str> = native["health"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(checks.contains(&"cgroup delegation"), "{native}");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(native["level"], "ok", "{native}");
    }
    let oci = by_name("oci");
    if oci["capabilities"].is_null() {
        assert_eq!(oci["level"], "failed", "{oci}");
        assert!(
            oci["health"]["checks"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("binary")
        );
    }
}

#[test]
fn unknown_driver_names_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let out = run(&[
        "run",
        "--driver",
        "nope",
        "--bundle",
        dir.path().to_str().unwrap(),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err.trim(),
        "execdriver: unknown driver \"nope\"; available drivers: native, oci, wasm"
    );
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().to_str().unwrap();
    for (args, want) in [
        (
            vec!["run", "--bundle", "/nonexistent-bundle", "x"],
            "config.json: can't read /nonexistent-bundle/config.json",
        ),
        (
            vec!["run", "--bundle", bundle, "a/b"],
            "invalid container id \"a/b\": must not contain '/'",
        ),
        (
            vec!["run", "--bundle", bundle, ".."],
            "invalid container id \"..\"",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let out = run(&["run", "--bundle", bundle, "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid spec: config.json: "),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        dir.path().join("conf.json"),
        r#"{"driver": "native", "options": {"bogus": 1}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let conf = dir.path().join("conf.json");
    let out = run(&[
        "run",
        "--config",
        conf.to_str().unwrap(),
        "--bundle",
        bundle,
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown field `bogus`"),
        "{}",
        text(&out.stderr)
    );
}

/// A bundle over the shared busybox rootfs with `args`, optionally without a pid namespace.
fn bundle(dir: &Path, args: &[&str], pid_ns: bool) -> bool {
    if !is_root() {
        missing("cli native run", "needs root");
        return false;
    }
    let rootfs = match busybox_rootfs() {
        Ok(r) => r,
        Err(e) => {
            missing("cli native run", &e);
            return false;
        }
    };
    let mut spec = serde_json::to_value(runc_like_spec(rootfs, args)).unwrap();
    if !pid_ns {
        let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        // /proc of the host pid namespace can't be mounted without CAP_SYS_ADMIN over it;
        // bind it instead.
        let mounts = spec["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/proc");
    }
    std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
    true
}

fn root_args(dir: &Path) -> String {
    dir.join("state").to_str().unwrap().to_owned()
}

#[test]
fn native_run_prints_and_exits_with_the_container_code() {
    let dir = tempfile::tempdir().unwrap();
    if !bundle(
        dir.path(),
        &["sh", "-c", "echo hello from $(hostname) as pid $$; exit 42"],
        true,
    ) {
        return;
    }
    let id = format!("cli-run-{}", std::process::id());
    let out = run(&[
        "run",
        "--root",
        &root_args(dir.path()),
        "--bundle",
        dir.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(out.status.code(), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from runc as pid 1\n");
}

#[test]
fn oci_run_with_runc_prints_and_exits_with_the_container_code() {
    let dir = tempfile::tempdir().unwrap();
    if !bundle(
        dir.path(),
        &["sh", "-c", "echo hello from $(hostname) as pid $$; exit 42"],
        true,
    ) {
        return;
    }
    if !execdriver_tests::have("runc") {
        missing("cli oci run", "runc is not installed");
        return;
    }
    let id = format!("cli-oci-run-{}", std::process::id());
    let root = root_args(dir.path());
    let out = run(&[
        "--driver",
        "oci",
        "run",
        "--root",
        &root,
        "--bundle",
        dir.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(out.status.code(), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from runc as pid 1\n");
    // The driver's state went below --root, and nothing of the container is left there.
    let bundles = Path::new(&root).join("oci/bundles");
    assert!(bundles.is_dir(), "{} is missing", bundles.display());
    assert_eq!(std::fs::read_dir(&bundles).unwrap().count(), 0);
}

/// The operator's config pins the oci driver and its binary (crun); a binary that isn't there
/// is a clear error naming the option, and nothing is left.
#[test]
fn the_operator_config_pins_oci_with_crun() {
    let dir = tempfile::tempdir().unwrap();
    if !bundle(dir.path(), &["sh", "-c", "echo pinned; exit 7"], true) {
        return;
    }
    if !execdriver_tests::have("crun") {
        missing("cli oci config", "crun is not installed");
        return;
    }
    let crun = execdriver_tests::oci::crun_binary().unwrap();
    let config = dir.path().join("operator.json");
    let root = root_args(dir.path());
    let id = format!("cli-oci-pin-{}", std::process::id());
    let run_with = |options: serde_json::Value| {
        let text = serde_json::json!({"driver": "oci", "options": options}).to_string();
        std::fs::write(&config, text).unwrap();
        run(&[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--root",
            &root,
            "--bundle",
            dir.path().to_str().unwrap(),
            &id,
        ])
    };
    let out = run_with(serde_json::json!({ "binary": crun }));
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "pinned\n");
    // crun's state directory under the driver's root is where the container lived.
    let state = Path::new(&root).join("oci/runtime");
    assert!(state.is_dir(), "{} is missing", state.display());
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);

    let out = run_with(serde_json::json!({"binary": "/nonexistent/crun"}));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("binary: /nonexistent/crun not found"), "{err}");
}

#[test]
fn native_run_exits_128_plus_signal() {
    let dir = tempfile::tempdir().unwrap();
    if !bundle(dir.path(), &["sh", "-c", "kill -KILL $$"], false) {
        return;
    }
    let id = format!("cli-sig-{}", std::process::id());
    let out = run(&[
        "run",
        "--root",
        &root_args(dir.path()),
        "--bundle",
        dir.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn sigterm_to_the_cli_reaches_the_container() {
    let dir = tempfile::tempdir().unwrap();
    if !bundle(
        dir.path(),
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; sleep 1000 & wait",
        ],
        true,
    ) {
        return;
    }
    let id = format!("cli-fwd-{}", std::process::id());
    let mut child = execdriver()
        .args([
            "run",
            "--root",
            &root_args(dir.path()),
            "--bundle",
            dir.path().to_str().unwrap(),
            &id,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader};
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id() as i32;
    // SIGTERM to the CLI, by pid: the container's trap answers.
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got TERM\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
}

#[test]
fn an_oom_killed_container_exits_137_with_an_oom_killed_line() {
    let dir = tempfile::tempdir().unwrap();
    let hog = "x=0123456789abcdef; i=0; while [ $i -lt 24 ]; do x=$x$x; i=$((i+1)); done";
    if !bundle(dir.path(), &["sh", "-c", hog], true) {
        return;
    }
    let cfg = dir.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 33554432, "swap": 33554432});
    std::fs::write(&cfg, spec.to_string()).unwrap();
    let id = format!("cli-oom-{}", std::process::id());
    let out = run(&[
        "run",
        "--root",
        &root_args(dir.path()),
        "--bundle",
        dir.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(out.status.code(), Some(137));
    let err = text(&out.stderr);
    assert!(err.contains("oom-killed"), "{err}");
    assert!(err.contains(&id), "{err}");
}

#[test]
fn exec_reaches_a_container_started_by_another_execdriver_process() {
    let dir = tempfile::tempdir().unwrap();
    if !bundle(
        dir.path(),
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo ready; sleep 1000 & wait",
        ],
        true,
    ) {
        return;
    }
    let root = root_args(dir.path());
    let id = format!("cli-exec-{}", std::process::id());
    let mut runner = execdriver()
        .args([
            "run",
            "--root",
            &root,
            "--bundle",
            dir.path().to_str().unwrap(),
            &id,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(runner.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");

    let out = run(&[
        "exec",
        "--root",
        &root,
        &id,
        "--",
        "sh",
        "-c",
        "echo hi from $(hostname); exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi from runc\n");
    let out = run(&[
        "exec",
        "--root",
        &root,
        "--user",
        "1000:1000",
        "--env",
        "X=y",
        &id,
        "--",
        "sh",
        "-c",
        "echo $(id -u) $X",
    ]);
    assert_eq!(text(&out.stdout), "1000 y\n", "{}", text(&out.stderr));
    let out = run(&["exec", "--tty", "--root", &root, &id, "--", "tty"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("/dev/pts/"),
        "{:?}",
        text(&out.stdout)
    );
    let out = run(&["exec", "--root", &root, "nope-such-container", "--", "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("container nope-such-container: not found"),
        "{}",
        text(&out.stderr)
    );

    let st = Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(runner.wait().unwrap().code(), Some(0));
}
