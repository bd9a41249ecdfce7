//! The wasm driver's fixtures: the `.wat` programs of `wasm-driver/tests/fixtures` in a
//! rootfs, and the conformance programs built from them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use execdriver_api::conformance::{Fixture, Program};
use execdriver_api::oci_spec::runtime::{Process, Spec};
use execdriver_api::{Command, ContainerId, Driver, DriverError};

/// The directory of the `.wat` fixtures in the repository.
pub fn fixtures_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-driver/tests/fixtures")
}

/// A rootfs holding every fixture at `/<name>.wat` (copied once per test process).
///
/// # Panics
/// When the fixtures can't be copied.
pub fn rootfs() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("edtest-wasm-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(&root).expect("rootfs");
        for e in std::fs::read_dir(fixtures_src()).expect("fixtures") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), root.join(e.file_name())).expect("copy fixture");
        }
        dir
    })
    .path()
    .join("rootfs")
    .leak()
}

/// A spec running `args` in the fixture rootfs.
pub fn spec(args: &[&str]) -> Spec {
    let json = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"cwd": "/", "args": args, "env": ["PATH=/", "GREETING=hi"], "user": {"uid": 0, "gid": 0}},
        "root": {"path": rootfs()},
    });
    execdriver_api::parse_spec(json.to_string().as_bytes()).expect("wasm spec")
}

fn argv(program: &Program) -> Vec<String> {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    match program {
        Program::Exit(n) => v(&["/exit.wat", &n.to_string()]),
        Program::Echo { stdout, stderr } => v(&["/echo.wat", stdout, stderr]),
        Program::Cat => v(&["/cat.wat"]),
        Program::RunForever => v(&["/forever.wat"]),
        Program::Ticker => v(&["/ticker.wat"]),
        Program::OomHog => v(&["/grow.wat"]),
        _ => v(&["/hello.wat"]),
    }
}

/// Conformance fixtures for the wasm driver.
#[derive(Debug, Default)]
pub struct WasmFixture;

impl Fixture for WasmFixture {
    fn command(&self, id: &ContainerId, program: &Program) -> Result<Command, DriverError> {
        let args = argv(program);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut spec = spec(&args);
        if *program == Program::OomHog {
            let mut v = serde_json::to_value(&spec).map_err(|e| DriverError::Internal {
                context: "fixture".into(),
                message: e.to_string(),
            })?;
            v["linux"] = serde_json::json!({"resources": {"memory": {"limit": 16 * 1024 * 1024}}});
            spec = serde_json::from_value(v).map_err(|e| DriverError::Internal {
                context: "fixture".into(),
                message: e.to_string(),
            })?;
        }
        Command::new(id.clone(), rootfs().parent().unwrap_or(rootfs()), spec)
    }

    fn exec_process(&self, program: &Program) -> Result<Process, DriverError> {
        let args = argv(program);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spec(&args)
            .process()
            .clone()
            .ok_or_else(|| DriverError::invalid_spec("process", "missing"))
    }
}

/// The wasm driver with default options.
///
/// # Errors
/// The factory's error, as text.
pub fn driver() -> Result<Arc<dyn Driver>, String> {
    execdriver::wasm::factory()
        .create(&serde_json::Value::Null)
        .map_err(|e| e.to_string())
}

/// Driver and fixture for the conformance kit.
///
/// # Errors
/// As [`driver`].
pub fn conformance_setup() -> execdriver_api::conformance::Setup {
    Ok((driver()?, Arc::new(WasmFixture)))
}
