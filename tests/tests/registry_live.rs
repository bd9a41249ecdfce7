//! The live registry with the real drivers: resolution by what a container is and needs,
//! unregistering a driver while its container runs (draining) and registering its successor
//! meanwhile, health of every built-in driver.

use std::time::Duration;

use execdriver::{
    DriverError, Hooks, Level, Operation, Pipes, Registry, Requirements, Signal, spawn,
};
use execdriver_tests::{busybox_command, is_root, missing, native, unique_id, wasm};

/// native (on this test process's state root) then wasm, as the default registry orders them.
fn registry() -> Option<Registry> {
    if !is_root() {
        missing("registry_live", "the native driver needs root");
        return None;
    }
    let r = Registry::new();
    r.register_with_options(
        execdriver::native::factory(),
        serde_json::json!({ "root": native::state_root() }),
    )
    .unwrap();
    r.register(execdriver::wasm::factory()).unwrap();
    Some(r)
}

fn wasm_command(prefix: &str, args: &[&str]) -> execdriver::Command {
    execdriver::Command::new(
        unique_id(prefix),
        wasm::rootfs().parent().unwrap(),
        wasm::spec(args),
    )
    .unwrap()
}

#[test]
fn resolve_runs_busybox_on_native_and_modules_on_wasm() {
    let Some(r) = registry() else { return };
    let bb = busybox_command(&unique_id("rl-bb"), &["/bin/echo", "from-native"], |_| {})
        .expect("busybox rootfs");
    let picked = r.resolve(&Requirements::new().command(&bb)).unwrap();
    assert_eq!(picked.name, "native");
    let (pipes, out) = Pipes::capture().unwrap();
    let st = picked.driver.run(&bb, pipes, &Hooks::new()).unwrap();
    assert_eq!((st.code, out.wait_strings().0.trim()), (0, "from-native"));

    let hello = wasm_command("rl-w", &["/hello.wat"]);
    let picked = r.resolve(&Requirements::new().command(&hello)).unwrap();
    assert_eq!(picked.name, "wasm");
    let (pipes, out) = Pipes::capture().unwrap();
    let st = picked.driver.run(&hello, pipes, &Hooks::new()).unwrap();
    assert_eq!(st.code, 0);
    assert!(!out.wait_strings().0.is_empty());

    // A module that needs a terminal: wasm has none, native does not run modules.
    let e = r
        .resolve(
            &Requirements::new()
                .command(&hello)
                .needs(Operation::Terminal),
        )
        .unwrap_err();
    assert!(matches!(e, DriverError::NoDriverFits { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("native: process.args[0] is a WebAssembly program")
            && msg.contains("wasm: does not support terminal"),
        "{msg}"
    );
    // The operator's pin wins.
    let pinned = r
        .resolve(&Requirements::new().command(&hello).pin(Some("native")))
        .unwrap();
    assert_eq!(pinned.name, "native");
}

#[test]
fn unregister_drains_a_running_wasm_container_while_its_successor_serves() {
    let Some(r) = registry() else { return };
    let old = r.driver("wasm").unwrap();
    let forever = wasm_command("rl-drain", &["/forever.wat"]);
    let id = forever.id.clone();
    let handle = spawn(old.clone(), forever, Pipes::null(), Hooks::new()).unwrap();
    assert!(
        handle.wait_started().is_some(),
        "the container did not start"
    );

    let drain = r.unregister("wasm").unwrap();
    assert_eq!(drain.in_use(), 1);
    assert!(!r.contains("wasm"));

    // The old driver takes no new container, but its running one is still served.
    let e = old
        .run(
            &wasm_command("rl-new", &["/hello.wat"]),
            Pipes::null(),
            &Hooks::new(),
        )
        .unwrap_err();
    assert!(matches!(e, DriverError::Draining { .. }), "{e}");
    assert_eq!(old.info(&id).unwrap().status.to_string(), "running");
    assert_eq!(old.health().level(), Level::Failed, "{}", old.health());

    // Its successor registers under the same name and runs containers meanwhile.
    r.register(execdriver::wasm::factory()).unwrap();
    let st = r
        .driver("wasm")
        .unwrap()
        .run(
            &wasm_command("rl-next", &["/exit.wat", "3"]),
            Pipes::null(),
            &Hooks::new(),
        )
        .unwrap();
    assert_eq!(st.code, 3);
    assert!(!drain.is_drained());

    old.kill(&id, Signal::KILL).unwrap();
    assert!(
        drain.wait_timeout(Duration::from_secs(60)),
        "still {} in use a minute after the kill",
        drain.in_use()
    );
    assert_eq!(handle.wait().unwrap().signal, Some(9));
}

#[test]
fn every_builtin_driver_reports_its_health() {
    let Some(r) = registry() else { return };
    let health = r.health();
    let names: Vec<&str> = health.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["native", "wasm"]);
    for (name, h) in &health {
        // This machine (and CI's) can run both.
        assert!(h.is_ok(), "{name}: {h}");
    }
    let native_checks: Vec<&str> = health[0].1.checks.iter().map(|c| c.name.as_str()).collect();
    for want in [
        "pidfd_open",
        "openat2",
        "cgroups",
        "cgroup delegation",
        "state root",
    ] {
        assert!(native_checks.contains(&want), "{native_checks:?}");
    }
    assert_eq!(health[1].1.checks[0].name, "engine");
}

/// An OOM kill reaches the stream as it happens, before `Exited` (with `oom_killed`).
#[test]
fn oom_kills_are_on_the_event_stream_before_the_exit() {
    use execdriver::EventKind;
    let r = Registry::new();
    r.register(execdriver::wasm::factory()).unwrap();
    let driver = r.driver("wasm").unwrap();
    let events = driver.subscribe().unwrap();
    let mut cmd = wasm_command("rl-oom", &["/grow.wat"]);
    let mut spec = serde_json::to_value(&cmd.spec).unwrap();
    spec["linux"] = serde_json::json!({"resources": {"memory": {"limit": 16 << 20}}});
    cmd.spec = serde_json::from_value(spec).unwrap();
    let st = driver.run(&cmd, Pipes::null(), &Hooks::new()).unwrap();
    assert!(st.oom_killed, "{st:?}");
    let kinds: Vec<EventKind> = events
        .try_iter()
        .filter(|e| e.id == cmd.id)
        .map(|e| e.kind)
        .collect();
    assert!(
        matches!(
            kinds.as_slice(),
            [
                EventKind::Created { .. },
                EventKind::Started { .. },
                EventKind::Oom { count: 1 },
                EventKind::Exited { status },
                EventKind::Deleted,
            ] if status.oom_killed
        ),
        "{kinds:?}"
    );
}
