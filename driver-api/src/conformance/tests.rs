//! Self-tests of the kit with an in-memory driver, no OS processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oci_spec::runtime::{Process, Spec};

use super::*;
use crate::{
    Capabilities, Command, ExitStatus, HookContext, HookStage, Hooks, Info, OomNotifier, Pipes,
    Signal, Status,
};

/// Runs `Program::Exit(n)` instantly; knows nothing else. Capabilities are configurable.
struct Instant {
    caps: Capabilities,
    live: Mutex<HashMap<ContainerId, ()>>,
}

impl Driver for Instant {
    fn name(&self) -> &str {
        "instant"
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn run(&self, cmd: &Command, _: Pipes, hooks: &Hooks) -> crate::Result<ExitStatus> {
        let code: i32 = cmd
            .spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get("exit"))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| DriverError::cant_handle("instant", "only Exit programs"))?;
        let process = cmd.process()?;
        let oom = OomNotifier::new();
        let ctx = HookContext::new(&cmd.id, process, 4242, &oom);
        hooks.run(HookStage::PreStart, &ctx)?;
        hooks.run(HookStage::Start, &ctx)?;
        let st = ExitStatus::exited(code);
        hooks.run_all(HookStage::PostStop, &ctx.with_exit(st));
        Ok(st)
    }
    fn kill(&self, id: &ContainerId, _: Signal) -> crate::Result<()> {
        Err(DriverError::not_found(id))
    }
    fn terminate(&self, id: &ContainerId) -> crate::Result<()> {
        Err(DriverError::not_found(id))
    }
    fn clean(&self, _: &ContainerId) -> crate::Result<()> {
        Ok(())
    }
    fn info(&self, id: &ContainerId) -> crate::Result<Info> {
        match self.live.lock().unwrap().get(id) {
            Some(()) => Ok(Info::new(
                id.clone(),
                "instant",
                Status::Running,
                "/".into(),
            )),
            None => Err(DriverError::not_found(id)),
        }
    }
    fn list(&self) -> crate::Result<Vec<ContainerId>> {
        Ok(self.live.lock().unwrap().keys().cloned().collect())
    }
}

struct InstantFixture;

impl Fixture for InstantFixture {
    fn command(&self, id: &ContainerId, program: &Program) -> crate::Result<Command> {
        let mut spec = Spec::default();
        if let Program::Exit(n) = program {
            spec.set_annotations(Some([("exit".to_owned(), n.to_string())].into()));
        }
        Command::new(id.clone(), "/nonexistent-bundle", spec)
    }
    fn exec_process(&self, _: &Program) -> crate::Result<Process> {
        Ok(Process::default())
    }
}

fn kit(caps: Capabilities) -> (Arc<dyn Driver>, Arc<dyn Fixture>) {
    (
        Arc::new(Instant {
            caps,
            live: Mutex::default(),
        }),
        Arc::new(InstantFixture),
    )
}

#[test]
fn checks_the_driver_passes_pass() {
    let (d, f) = kit(Capabilities::none());
    for name in [
        "exit_codes",
        "hook_order_and_pid",
        "invalid_ids_rejected",
        "unknown_id_not_found",
    ] {
        assert_eq!(
            run_check(d.clone(), f.clone(), name),
            Outcome::Passed,
            "{name}"
        );
    }
}

#[test]
fn unsupported_operations_are_skipped_not_failed() {
    let (d, f) = kit(Capabilities::none());
    for (name, op) in [
        ("pause_and_unpause", Operation::Pause),
        ("stats_while_running", Operation::Stats),
        ("pids_while_running", Operation::Pids),
        ("exec_into_running", Operation::Exec),
        ("oom_killed", Operation::Oom),
        ("host_files_out_of_reach", Operation::Isolation),
        ("engine_binary_never_runs", Operation::Isolation),
    ] {
        assert_eq!(
            run_check(d.clone(), f.clone(), name),
            Outcome::Skipped { missing: op },
            "{name}"
        );
    }
    let report = run_all(d, f);
    assert!(report.skipped().contains(&"pause_and_unpause"));
    assert!(
        !report
            .failures()
            .iter()
            .any(|(n, _)| *n == "pause_and_unpause")
    );
}

#[test]
fn claimed_but_broken_operations_fail() {
    // A driver that claims pause but returns Unsupported must fail the pause check.
    let (d, f) = kit(Capabilities::none().with(Operation::Pause));
    match run_check(d, f, "pause_and_unpause") {
        Outcome::Failed(why) => assert!(why.contains("only Exit programs"), "{why}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn failures_explain_themselves() {
    let (d, f) = kit(Capabilities::none());
    match run_check(d.clone(), f.clone(), "stdout_and_stderr") {
        Outcome::Failed(why) => assert!(why.contains("can't handle"), "{why}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(
        run_check(d, f, "no_such_check"),
        Outcome::Failed(_)
    ));
}

#[test]
fn the_test_macro_lists_every_check() {
    let src = include_str!("mod.rs");
    let start = src.find("@each $setup;\n").expect("macro list") + "@each $setup;\n".len();
    let end = start + src[start..].find(");").expect("end of list");
    let listed: Vec<&str> = src[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
    assert_eq!(listed, names);
}
