//! Churn: N containers (native and wasm, mixed), 16 at a time — plain runs, kills, pause and
//! resume, OOM kills, failing pre_start hooks, execs — and nothing left behind afterwards (fds,
//! threads, child processes, mounts, cgroups, state). N is 200, or `EXECDRIVER_CHURN`.
//! One test in its own binary, so that the process-wide counts are this test's alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use execdriver_api::conformance::{Fixture, Program};
use execdriver_api::{ContainerId, Driver, DriverError, ExitStatus, Hooks, Pipes, Signal, Status};
use execdriver_tests::leaks::{settle, snapshot};
use execdriver_tests::native::{NativeFixture, state_root};
use execdriver_tests::wasm::WasmFixture;
use execdriver_tests::{missing, unique_id};

const WORKERS: usize = 16;

/// One driver under churn.
struct Subject {
    name: &'static str,
    driver: Arc<dyn Driver>,
    fixture: Arc<dyn Fixture>,
}

/// What one container does, by its index.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Plain,
    Killed,
    PausedResumed,
    OomKilled,
    FailingHook,
    Exec,
}

const FATES: [Fate; 6] = [
    Fate::Plain,
    Fate::Killed,
    Fate::PausedResumed,
    Fate::OomKilled,
    Fate::FailingHook,
    Fate::Exec,
];

fn live(s: &Subject, id: &ContainerId) -> Result<execdriver_api::RunHandle, String> {
    let cmd = s
        .fixture
        .command(id, &Program::RunForever)
        .map_err(|e| e.to_string())?;
    let h = execdriver_api::spawn(s.driver.clone(), cmd, Pipes::null(), Hooks::new())
        .map_err(|e| e.to_string())?;
    if h.wait_started().is_none() {
        return Err(format!("did not start: {:?}", h.wait()));
    }
    Ok(h)
}

fn one(s: &Subject, fate: Fate) -> Result<(), String> {
    let id = unique_id("churn");
    let d = &*s.driver;
    match fate {
        Fate::Plain => {
            let cmd = s
                .fixture
                .command(
                    &id,
                    &Program::Echo {
                        stdout: "out".into(),
                        stderr: "err".into(),
                    },
                )
                .map_err(|e| e.to_string())?;
            let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
            let st = d
                .run(&cmd, pipes, &Hooks::new())
                .map_err(|e| e.to_string())?;
            let (out, err) = captured.wait_strings();
            if !st.success() || out != "out" || err != "err" {
                return Err(format!("plain: {st} {out:?} {err:?}"));
            }
        }
        Fate::Killed => {
            let h = live(s, &id)?;
            d.kill(&id, Signal::KILL).map_err(|e| e.to_string())?;
            let st = h.wait().map_err(|e| e.to_string())?;
            if st != ExitStatus::signaled(9) {
                return Err(format!("killed: {st}"));
            }
        }
        Fate::PausedResumed => {
            let h = live(s, &id)?;
            d.pause(&id).map_err(|e| e.to_string())?;
            let paused = d.info(&id).map_err(|e| e.to_string())?.status;
            d.unpause(&id).map_err(|e| e.to_string())?;
            let resumed = d.info(&id).map_err(|e| e.to_string())?.status;
            d.terminate(&id).map_err(|e| e.to_string())?;
            h.wait().map_err(|e| e.to_string())?;
            if (paused, resumed) != (Status::Paused, Status::Running) {
                return Err(format!("pause: {paused} then {resumed}"));
            }
        }
        Fate::OomKilled => {
            let cmd = s
                .fixture
                .command(&id, &Program::OomHog)
                .map_err(|e| e.to_string())?;
            let st = d
                .run(&cmd, Pipes::null(), &Hooks::new())
                .map_err(|e| e.to_string())?;
            if !st.oom_killed {
                return Err(format!("oom: {st}"));
            }
        }
        Fate::FailingHook => {
            let cmd = s
                .fixture
                .command(&id, &Program::RunForever)
                .map_err(|e| e.to_string())?;
            let hooks = Hooks::new().on_pre_start(|_| Err("churn says no".into()));
            match d.run(&cmd, Pipes::null(), &hooks) {
                Err(DriverError::Hook { .. }) => {}
                other => return Err(format!("failing hook: {other:?}")),
            }
        }
        Fate::Exec => {
            let h = live(s, &id)?;
            let p = s
                .fixture
                .exec_process(&Program::Exit(3))
                .map_err(|e| e.to_string())?;
            let st = d
                .exec(&id, &p, Pipes::null(), &Hooks::new())
                .map_err(|e| e.to_string())?;
            d.terminate(&id).map_err(|e| e.to_string())?;
            h.wait().map_err(|e| e.to_string())?;
            if st.code != 3 {
                return Err(format!("exec: {st}"));
            }
        }
    }
    // Gone from the driver once its run returned.
    match d.info(&id) {
        Err(DriverError::NotFound { .. }) => Ok(()),
        other => Err(format!("{id} still known: {other:?}")),
    }
}

#[test]
fn churn_leaves_nothing_behind() {
    let n: usize = std::env::var("EXECDRIVER_CHURN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut subjects = Vec::new();
    match execdriver_tests::native::driver() {
        Ok(driver) => subjects.push(Subject {
            name: "native",
            driver,
            fixture: Arc::new(NativeFixture),
        }),
        Err(why) => missing("churn_leaves_nothing_behind (native half)", &why),
    }
    subjects.push(Subject {
        name: "wasm",
        driver: execdriver_tests::wasm::driver().expect("wasm driver"),
        fixture: Arc::new(WasmFixture),
    });
    // Warm up: each driver's one-time threads, fds and caches exist before the snapshot.
    for s in &subjects {
        for fate in FATES {
            one(s, fate).unwrap_or_else(|e| panic!("{} warm-up {fate:?}: {e}", s.name));
        }
    }
    let root = state_root();
    let before = snapshot(&root);
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let s = &subjects[i % subjects.len()];
                    let fate = FATES[(i / subjects.len()) % FATES.len()];
                    if let Err(e) = one(s, fate) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("#{i} {} {fate:?}: {e}", s.name));
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if let Err(leaks) = settle(&before, &root) {
        panic!("after {n} containers, left behind: {leaks:#?}");
    }
    let drivers: Vec<&str> = subjects.iter().map(|s| s.name).collect();
    eprintln!(
        "churn: {n} containers ({}), {WORKERS} at a time, in {:.1?} ({:.0}/s), nothing left behind",
        drivers.join(" + "),
        elapsed,
        n as f64
            / elapsed
                .as_secs_f64()
                .max(Duration::from_millis(1).as_secs_f64())
    );
}
