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

/// A rootfs holding every fixture at `/<name>.wat`: `$TMPDIR/edtest-fixtures/wasm-<hash of
/// the fixtures>/rootfs`, built once (atomically) and reused by every test process and run —
/// a per-process copy would be left behind by each (statics are never dropped).
///
/// # Panics
/// When the fixtures can't be copied.
pub fn rootfs() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_src())
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let mut h = std::hash::DefaultHasher::new();
        for f in &files {
            f.file_name().hash(&mut h);
            std::fs::read(f).expect("read fixture").hash(&mut h);
        }
        let base = crate::fixtures_dir();
        let target = base.join(format!("wasm-{:016x}", h.finish()));
        let root = target.join("rootfs");
        if root.is_dir() {
            return root;
        }
        std::fs::create_dir_all(&base).expect("fixtures dir");
        let tmp = tempfile::Builder::new()
            .prefix("wasm-building-")
            .tempdir_in(&base)
            .expect("tempdir");
        let building = tmp.path().join("rootfs");
        std::fs::create_dir_all(&building).expect("rootfs");
        for f in &files {
            std::fs::copy(f, building.join(f.file_name().expect("name"))).expect("copy fixture");
        }
        // Another test process may have won the race: its copy is the same.
        let built = tmp.keep();
        if std::fs::rename(&built, &target).is_err() {
            let _ = std::fs::remove_dir_all(&built);
        }
        root
    })
    .as_path()
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
