//! The native driver's fixtures: its conformance programs over the busybox rootfs.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use execdriver_api::conformance::{Fixture, Program};
use execdriver_api::oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder, Process};
use execdriver_api::{Command, ContainerId, Driver, DriverError};

use crate::{busybox_command, busybox_rootfs, is_root, runc_like_spec};

/// The shell line of each conformance program.
pub fn argv(program: &Program) -> Vec<String> {
    let sh = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
    match program {
        Program::Exit(n) => sh(&format!("exit {n}")),
        Program::Echo { stdout, stderr } => {
            let mut v = sh(r#"printf '%s' "$1"; printf '%s' "$2" >&2"#);
            v.extend(["sh".to_owned(), stdout.clone(), stderr.clone()]);
            v
        }
        Program::Cat => vec!["cat".to_owned()],
        // pid 1 ignores SIGTERM without a handler.
        Program::RunForever => sh("trap 'exit 143' TERM; sleep 100000 & wait"),
        Program::Ticker => sh("while :; do echo tick; sleep 0.05; done"),
        // Doubling a shell string grows memory without bound.
        Program::OomHog => sh("x=0123456789abcdef; while :; do x=$x$x; done"),
        Program::PathExists(p) => vec!["test".to_owned(), "-e".to_owned(), p.clone()],
        Program::EngineBinary => vec!["/proc/self/exe".to_owned(), "--help".to_owned()],
        Program::Terminal => sh("stty size; read x; stty size; echo got:$x"),
        other => sh(&format!("echo 'no fixture for {other:?}' >&2; exit 99")),
    }
}

/// Conformance fixtures for the native driver.
#[derive(Debug, Default)]
pub struct NativeFixture;

impl Fixture for NativeFixture {
    fn command(&self, id: &ContainerId, program: &Program) -> Result<Command, DriverError> {
        let args = argv(program);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        busybox_command(id, &args, |spec| {
            if *program == Program::Terminal
                && let Some(p) = spec.process_mut()
            {
                with_terminal(p);
            }
            if *program == Program::OomHog {
                let mem = LinuxMemoryBuilder::default()
                    .limit(32 * 1024 * 1024_i64)
                    .swap(32 * 1024 * 1024_i64)
                    .build()
                    .expect("memory");
                let res = LinuxResourcesBuilder::default()
                    .memory(mem)
                    .build()
                    .expect("resources");
                if let Some(linux) = spec.linux_mut() {
                    linux.set_resources(Some(res));
                }
            }
        })
    }

    fn exec_process(&self, program: &Program) -> Result<Process, DriverError> {
        let rootfs = busybox_rootfs().map_err(|e| DriverError::Internal {
            context: "fixture".into(),
            message: e,
        })?;
        let args = argv(program);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut process = runc_like_spec(rootfs, &args)
            .process()
            .clone()
            .ok_or_else(|| DriverError::invalid_spec("process", "missing"))?;
        if *program == Program::Terminal {
            with_terminal(&mut process);
        }
        Ok(process)
    }
}

/// `process.terminal` with the kit's console size (24x80).
fn with_terminal(p: &mut Process) {
    p.set_terminal(Some(true));
    p.set_console_size(Some(
        execdriver_api::oci_spec::runtime::BoxBuilder::default()
            .height(24_u64)
            .width(80_u64)
            .build()
            .expect("console size"),
    ));
}

/// A state root private to this test process, under [`fixtures_dir`](crate::fixtures_dir);
/// roots of test processes that are gone are swept (their containers cleaned themselves up).
pub fn state_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let states = crate::fixtures_dir().join("state");
        if let Ok(entries) = std::fs::read_dir(&states) {
            for e in entries.flatten() {
                let gone = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    // Only empty roots: a container left running by a killed test keeps its state.
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        states.join(std::process::id().to_string())
    })
    .clone()
}

/// The native driver on a private state root, or why it can't run here.
///
/// # Errors
/// Not root, or no busybox.
pub fn driver() -> Result<Arc<dyn Driver>, String> {
    if !is_root() {
        return Err("the native driver needs root".into());
    }
    busybox_rootfs()?;
    let options = execdriver_api::serde_json::json!({ "root": state_root() });
    execdriver::native::factory()
        .create(&options)
        .map_err(|e| e.to_string())
}

/// Driver and fixture for the conformance kit.
///
/// # Errors
/// As [`driver`].
pub fn conformance_setup() -> execdriver_api::conformance::Setup {
    Ok((driver()?, Arc::new(NativeFixture)))
}

/// Runs `args` in a busybox container (runc-like spec changed by `edit`) on `driver` and
/// returns (status, stdout, stderr).
///
/// # Errors
/// The driver's error.
pub fn run_busybox(
    driver: &dyn Driver,
    id: &ContainerId,
    args: &[&str],
    hooks: &execdriver_api::Hooks,
    edit: impl FnOnce(&mut execdriver_api::oci_spec::runtime::Spec),
) -> Result<(execdriver_api::ExitStatus, String, String), DriverError> {
    let cmd = busybox_command(id, args, edit)?;
    let (pipes, captured) =
        execdriver_api::Pipes::capture().map_err(|e| DriverError::io("capture", e))?;
    let status = driver.run(&cmd, pipes, hooks);
    let (out, err) = captured.wait_strings();
    Ok((status?, out, err))
}
