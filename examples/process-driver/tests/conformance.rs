//! The whole conformance kit against the `process` driver (no root needed).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use execdriver_api::conformance::{Fixture, Program};
use execdriver_api::oci_spec::runtime::{Process, Spec};
use execdriver_api::{Command, ContainerId, DriverConfig, DriverError, Registry};

struct HostShell {
    bundle: PathBuf,
}

fn argv(program: &Program) -> Result<Vec<String>, DriverError> {
    let sh = |script: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
    Ok(match program {
        Program::Exit(n) => sh(&format!("exit {n}")),
        Program::Echo { stdout, stderr } => {
            let mut v = sh(r#"printf '%s' "$1"; printf '%s' "$2" >&2"#);
            v.extend(["sh".to_owned(), stdout.clone(), stderr.clone()]);
            v
        }
        Program::Cat => vec!["cat".to_owned()],
        Program::RunForever => vec!["sleep".to_owned(), "100000".to_owned()],
        Program::Ticker => sh("while :; do echo tick; sleep 0.05; done"),
        other => {
            return Err(DriverError::cant_handle(
                "process",
                format!("no fixture for {other:?}"),
            ));
        }
    })
}

fn process(program: &Program) -> Result<Process, DriverError> {
    let mut p = Process::default();
    p.set_args(Some(argv(program)?))
        .set_env(Some(vec!["PATH=/usr/bin:/bin".to_owned()]))
        .set_terminal(Some(false));
    Ok(p)
}

impl Fixture for HostShell {
    fn command(&self, id: &ContainerId, program: &Program) -> Result<Command, DriverError> {
        let mut spec = Spec::default();
        spec.set_process(Some(process(program)?));
        Command::new(id.clone(), &self.bundle, spec)
    }

    fn exec_process(&self, program: &Program) -> Result<Process, DriverError> {
        process(program)
    }
}

fn setup() -> execdriver_api::conformance::Setup {
    static BUNDLE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let bundle = BUNDLE.get_or_init(|| tempfile::tempdir().expect("temp bundle"));
    let registry = Registry::new();
    registry
        .register(execdriver_example_process::factory())
        .map_err(|e| e.to_string())?;
    let driver = registry
        .create(&DriverConfig::new("process"))
        .map_err(|e| e.to_string())?;
    Ok((
        driver,
        Arc::new(HostShell {
            bundle: bundle.path().to_owned(),
        }),
    ))
}

execdriver_api::conformance_tests!(setup);
