//! The checks themselves.

use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{Check, Kit, Program};
use crate::command::{Pipes, Stdio};
use crate::driver::Operation;
use crate::error::DriverError;
use crate::handle::{RunHandle, spawn};
use crate::hooks::{HookStage, Hooks};
use crate::id::ContainerId;
use crate::signal::Signal;
use crate::status::{ExitStatus, Status};

type CheckResult = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Every check, in the order [`run_all`](super::run_all) runs them.
pub static CHECKS: &[Check] = &[
    Check {
        name: "exit_codes",
        requires: &[],
        description: "exit codes 0, 3 and 42 come back in ExitStatus.code with no signal",
        run: exit_codes,
    },
    Check {
        name: "stdout_and_stderr",
        requires: &[],
        description: "stdout and stderr reach the pipes given in Pipes, separately and exactly",
        run: stdout_and_stderr,
    },
    Check {
        name: "stdin",
        requires: &[],
        description: "stdin from Pipes reaches the program; end of file reaches it too",
        run: stdin,
    },
    Check {
        name: "hook_order_and_pid",
        requires: &[],
        description: "pre_start, start, post_stop run in order, each list in order, with one pid; post_stop sees the exit status",
        run: hook_order_and_pid,
    },
    Check {
        name: "failing_pre_start_aborts",
        requires: &[],
        description: "a failing pre_start hook aborts with Hook{pre_start}, later hooks do not run, nothing is left and the id is free",
        run: failing_pre_start_aborts,
    },
    Check {
        name: "panicking_pre_start_aborts",
        requires: &[],
        description: "a panicking pre_start hook is an error of its stage, not a crash, and leaves nothing",
        run: panicking_pre_start_aborts,
    },
    Check {
        name: "failing_start_hook_kills",
        requires: &[],
        description: "a failing start hook kills the container, post_stop still runs, run returns Hook{start}",
        run: failing_start_hook_kills,
    },
    Check {
        name: "kill_with_sigkill",
        requires: &[],
        description: "kill(SIGKILL) of a long-running container: code 137, signal 9, not oom_killed",
        run: kill_with_sigkill,
    },
    Check {
        name: "kill_with_sigterm",
        requires: &[],
        description: "kill(SIGTERM) of a long-running container ends it with code 143",
        run: kill_with_sigterm,
    },
    Check {
        name: "terminate",
        requires: &[],
        description: "terminate ends a running container and returns once it is gone; terminating again is harmless",
        run: terminate,
    },
    Check {
        name: "info_and_list_while_running",
        requires: &[],
        description: "info says running with the started pid; list contains the id; both forget it after the run",
        run: info_and_list_while_running,
    },
    Check {
        name: "pause_and_unpause",
        requires: &[Operation::Pause],
        description: "pause stops progress and says paused, pausing twice is refused, unpause resumes",
        run: pause_and_unpause,
    },
    Check {
        name: "stats_while_running",
        requires: &[Operation::Stats],
        description: "stats are readable while running and CPU time does not go backwards",
        run: stats_while_running,
    },
    Check {
        name: "pids_while_running",
        requires: &[Operation::Pids],
        description: "pids of a running container include its init pid",
        run: pids_while_running,
    },
    Check {
        name: "exec_into_running",
        requires: &[Operation::Exec],
        description: "exec runs a process in a running container: its exit code, its output, its hooks",
        run: exec_into_running,
    },
    Check {
        name: "terminal",
        requires: &[Operation::Terminal],
        description: "process.terminal gives run (and exec) a pty in every hook context: the console size, input, resize, output, hangup at exit",
        run: terminal,
    },
    Check {
        name: "clean_then_reuse",
        requires: &[],
        description: "clean is idempotent and an id can be reused right after its run returned",
        run: clean_then_reuse,
    },
    Check {
        name: "concurrent_runs",
        requires: &[],
        description: "8 concurrent runs from 8 threads each get their own output and exit code",
        run: concurrent_runs,
    },
    Check {
        name: "duplicate_live_id_rejected",
        requires: &[],
        description: "running a second container with a live id is AlreadyExists and leaves the first alone",
        run: duplicate_live_id_rejected,
    },
    Check {
        name: "unknown_id_not_found",
        requires: &[],
        description: "kill, info, terminate (and pause, stats, pids, exec where supported) of an unknown id are NotFound; clean is Ok",
        run: unknown_id_not_found,
    },
    Check {
        name: "invalid_ids_rejected",
        requires: &[],
        description: "ids with '/', '..', NUL, spaces, empty or 10 kB long can't be built",
        run: invalid_ids_rejected,
    },
    Check {
        name: "host_files_out_of_reach",
        requires: &[Operation::Isolation],
        description: "a file the engine just made on the host does not exist in the container (its root does)",
        run: host_files_out_of_reach,
    },
    Check {
        name: "engine_binary_never_runs",
        requires: &[Operation::Isolation],
        description: "a container whose program is /proc/self/exe never runs the engine's executable (CVE-2019-5736 class)",
        run: engine_binary_never_runs,
    },
    Check {
        name: "oom_killed",
        requires: &[Operation::Oom],
        description: "a container over its memory limit is OOM-killed: oom_killed set, every hook's receiver got the event",
        run: oom_killed,
    },
    Check {
        name: "events_in_order",
        requires: &[],
        description: "the event stream has Created, Started, (Paused, Resumed), (ExecStarted, ExecExited), Exited, Deleted in that order with the init's pid; a late subscriber gets Created and Started first",
        run: events_in_order,
    },
    Check {
        name: "two_phase_lifecycle",
        requires: &[Operation::TwoPhase],
        description: "create leaves the program unstarted (info: created, same pid), start runs it, wait's Exit gives its status (sync and async), delete frees the id; start twice, delete before the exit and a second create are refused",
        run: two_phase_lifecycle,
    },
    Check {
        name: "two_phase_exec",
        requires: &[Operation::TwoPhaseExec, Operation::Exec],
        description: "exec_create leaves the process unstarted (a second one with the same exec id refused), exec_start runs it (a second start refused), exec_wait gives its status, exec_delete forgets it; an unstarted one deleted never runs; exec with a failing pre_start never runs the program and skips post_stop",
        run: two_phase_exec,
    },
];

fn host_files_out_of_reach(kit: &Kit) -> CheckResult {
    let marker = std::env::temp_dir().join(format!("execdriver-conformance-{}", kit.id()));
    std::fs::write(&marker, b"host").map_err(|err| format!("{}: {err}", marker.display()))?;
    let path = marker.display().to_string();
    let inside = run(
        kit,
        &Program::PathExists(path.clone()),
        Pipes::null(),
        &Hooks::new(),
    );
    let root = run(
        kit,
        &Program::PathExists("/".into()),
        Pipes::null(),
        &Hooks::new(),
    );
    let _ = std::fs::remove_file(&marker);
    let (inside, root) = (inside?, root?);
    ensure!(
        root == ExitStatus::exited(0),
        "PathExists(\"/\") gave {root:?}"
    );
    ensure!(
        inside == ExitStatus::exited(1),
        "the host file {path} is visible in the container: {inside:?}"
    );
    Ok(())
}

fn engine_binary_never_runs(kit: &Kit) -> CheckResult {
    let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
    let st = run(kit, &Program::EngineBinary, pipes, &Hooks::new());
    let (out, _) = captured.wait_strings();
    // Refusing to start is fine too; what must never happen is the engine's binary running.
    ensure!(
        out.is_empty(),
        "the engine's executable ran in the container: {out:?}"
    );
    if let Ok(st) = st {
        ensure!(
            !st.success(),
            "/proc/self/exe --help succeeded in the container"
        );
    }
    Ok(())
}

fn e(err: DriverError) -> String {
    err.to_string()
}

fn command(kit: &Kit, id: &ContainerId, p: &Program) -> Result<crate::Command, String> {
    kit.fixture
        .command(id, p)
        .map_err(|err| format!("fixture can't build {p:?}: {err}"))
}

fn run(kit: &Kit, p: &Program, pipes: Pipes, hooks: &Hooks) -> Result<ExitStatus, String> {
    let id = kit.id();
    let cmd = command(kit, &id, p)?;
    kit.driver.run(&cmd, pipes, hooks).map_err(e)
}

fn start(kit: &Kit, p: &Program, pipes: Pipes, hooks: Hooks) -> Result<(RunHandle, u32), String> {
    let id = kit.id();
    start_as(kit, &id, p, pipes, hooks)
}

fn start_as(
    kit: &Kit,
    id: &ContainerId,
    p: &Program,
    pipes: Pipes,
    hooks: Hooks,
) -> Result<(RunHandle, u32), String> {
    let cmd = command(kit, id, p)?;
    let handle = spawn(kit.driver.clone(), cmd, pipes, hooks).map_err(e)?;
    match handle.wait_started() {
        Some(pid) => Ok((handle, pid)),
        None => Err(match handle.wait() {
            Ok(st) => format!("{p:?} ended before its start hooks ran: {st}"),
            Err(err) => format!("{p:?} failed to start: {err}"),
        }),
    }
}

/// Terminates a container a check started, ignoring errors (cleanup path).
fn stop(kit: &Kit, handle: RunHandle) -> Result<ExitStatus, String> {
    let _ = kit.driver.terminate(handle.id());
    handle.wait().map_err(e)
}

fn expect_gone(kit: &Kit, id: &ContainerId) -> CheckResult {
    match kit.driver.info(id) {
        Err(DriverError::NotFound { .. }) => {}
        Ok(info) => return Err(format!("{id} still known after its run: {:?}", info.status)),
        Err(err) => return Err(format!("info({id}) after the run: {err}")),
    }
    let ids = kit.driver.list().map_err(e)?;
    ensure!(!ids.contains(id), "list still has {id} after its run");
    Ok(())
}

fn exit_codes(kit: &Kit) -> CheckResult {
    for code in [0, 3, 42] {
        let st = run(kit, &Program::Exit(code), Pipes::null(), &Hooks::new())?;
        ensure!(st == ExitStatus::exited(code), "Exit({code}) gave {st:?}");
    }
    Ok(())
}

fn stdout_and_stderr(kit: &Kit) -> CheckResult {
    let p = Program::Echo {
        stdout: "hello out\n".into(),
        stderr: "hello err\n".into(),
    };
    let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
    let st = run(kit, &p, pipes, &Hooks::new())?;
    let (out, err) = captured.wait_strings();
    ensure!(st.success(), "echo exited with {st}");
    ensure!(out == "hello out\n", "stdout was {out:?}");
    ensure!(err == "hello err\n", "stderr was {err:?}");
    Ok(())
}

fn stdin(kit: &Kit) -> CheckResult {
    let (in_r, mut in_w) = std::io::pipe().map_err(|e| e.to_string())?;
    let (mut pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
    pipes.stdin = Stdio::from(in_r);
    let writer = std::thread::spawn(move || {
        let r = in_w.write_all(b"ping 1\nping 2\n");
        drop(in_w);
        r
    });
    let st = run(kit, &Program::Cat, pipes, &Hooks::new())?;
    let wrote = writer.join().map_err(|_| "writer panicked".to_string())?;
    let (out, _) = captured.wait_strings();
    ensure!(wrote.is_ok(), "writing stdin failed: {wrote:?}");
    ensure!(st.success(), "cat exited with {st}");
    ensure!(out == "ping 1\nping 2\n", "cat echoed {out:?}");
    Ok(())
}

type Log = Arc<Mutex<Vec<(String, u32, Option<ExitStatus>)>>>;

fn recording_hooks(log: &Log) -> Hooks {
    let mut hooks = Hooks::new();
    for (stage, tag) in [
        (HookStage::PreStart, "pre_start#0"),
        (HookStage::PreStart, "pre_start#1"),
        (HookStage::Start, "start#0"),
        (HookStage::Start, "start#1"),
        (HookStage::PostStop, "post_stop#0"),
        (HookStage::PostStop, "post_stop#1"),
    ] {
        let log = log.clone();
        let f = move |ctx: &crate::HookContext<'_>| {
            log.lock()
                .map_err(|_| "poisoned")?
                .push((tag.to_owned(), ctx.pid(), ctx.exit()));
            Ok(())
        };
        hooks = match stage {
            HookStage::PreStart => hooks.on_pre_start(f),
            HookStage::Start => hooks.on_start(f),
            HookStage::PostStop => hooks.on_post_stop(f),
        };
    }
    hooks
}

fn hook_order_and_pid(kit: &Kit) -> CheckResult {
    let log = Log::default();
    let st = run(
        kit,
        &Program::Exit(5),
        Pipes::null(),
        &recording_hooks(&log),
    )?;
    ensure!(st == ExitStatus::exited(5), "exit status {st:?}");
    let log = log.lock().map_err(|_| "poisoned")?.clone();
    let order: Vec<_> = log.iter().map(|(t, _, _)| t.as_str()).collect();
    ensure!(
        order
            == [
                "pre_start#0",
                "pre_start#1",
                "start#0",
                "start#1",
                "post_stop#0",
                "post_stop#1"
            ],
        "hooks ran as {order:?}"
    );
    let pid = log[0].1;
    ensure!(pid > 0, "pre_start saw pid 0");
    ensure!(
        log.iter().all(|(_, p, _)| *p == pid),
        "hooks saw different pids: {log:?}"
    );
    ensure!(
        log[4].2 == Some(st) && log[5].2 == Some(st),
        "post_stop saw exit {:?}, run returned {st:?}",
        log[4].2
    );
    ensure!(log[0].2.is_none(), "pre_start saw an exit status");
    Ok(())
}

fn pre_start_aborts(kit: &Kit, fail: fn() -> Result<(), crate::HookError>) -> CheckResult {
    let id = kit.id();
    let later = Arc::new(Mutex::new(Vec::<&str>::new()));
    let (l1, l2, l3) = (later.clone(), later.clone(), later.clone());
    let pid_seen = Arc::new(Mutex::new(0u32));
    let ps = pid_seen.clone();
    let hooks = Hooks::new()
        .on_pre_start(move |ctx| {
            *ps.lock().map_err(|_| "poisoned")? = ctx.pid();
            fail()
        })
        .on_pre_start(move |_| {
            l1.lock().map_err(|_| "poisoned")?.push("pre_start#1");
            Ok(())
        })
        .on_start(move |_| {
            l2.lock().map_err(|_| "poisoned")?.push("start");
            Ok(())
        })
        .on_post_stop(move |_| {
            l3.lock().map_err(|_| "poisoned")?.push("post_stop");
            Ok(())
        });
    let cmd = command(kit, &id, &Program::RunForever)?;
    match kit.driver.run(&cmd, Pipes::null(), &hooks) {
        Err(DriverError::Hook {
            stage: HookStage::PreStart,
            index: 0,
            ..
        }) => {}
        other => return Err(format!("expected Hook{{pre_start, #0}}, got {other:?}")),
    }
    let ran = later.lock().map_err(|_| "poisoned")?.clone();
    ensure!(ran.is_empty(), "hooks after the failure ran: {ran:?}");
    ensure!(
        *pid_seen.lock().map_err(|_| "poisoned")? > 0,
        "pre_start saw pid 0"
    );
    expect_gone(kit, &id)?;
    // The id is free again at once.
    let cmd = command(kit, &id, &Program::Exit(0))?;
    let st = kit
        .driver
        .run(&cmd, Pipes::null(), &Hooks::new())
        .map_err(e)?;
    ensure!(st.success(), "rerun with the same id gave {st}");
    Ok(())
}

fn failing_pre_start_aborts(kit: &Kit) -> CheckResult {
    pre_start_aborts(kit, || Err("refused by the engine".into()))
}

fn panicking_pre_start_aborts(kit: &Kit) -> CheckResult {
    pre_start_aborts(kit, || panic!("hook panicked on purpose"))
}

fn failing_start_hook_kills(kit: &Kit) -> CheckResult {
    let id = kit.id();
    let post = Arc::new(Mutex::new(None));
    let p2 = post.clone();
    let hooks = Hooks::new()
        .on_start(|_| Err("engine lost track".into()))
        .on_post_stop(move |ctx| {
            *p2.lock().map_err(|_| "poisoned")? = ctx.exit();
            Ok(())
        });
    let cmd = command(kit, &id, &Program::RunForever)?;
    match kit.driver.run(&cmd, Pipes::null(), &hooks) {
        Err(DriverError::Hook {
            stage: HookStage::Start,
            ..
        }) => {}
        other => return Err(format!("expected Hook{{start}}, got {other:?}")),
    }
    ensure!(
        post.lock().map_err(|_| "poisoned")?.is_some(),
        "post_stop did not run after the start hook failed"
    );
    expect_gone(kit, &id)
}

fn kill_with(kit: &Kit, sig: Signal) -> Result<ExitStatus, String> {
    let (handle, _) = start(kit, &Program::RunForever, Pipes::null(), Hooks::new())?;
    // A container's pid 1 ignores signals it has no handler for, and the program may not have
    // installed its handler yet when the start hooks ran: repeat the signal, as an engine's
    // stop loop does, until the container is gone.
    for _ in 0..60 {
        match kit.driver.kill(handle.id(), sig) {
            Ok(()) => {}
            Err(DriverError::NotRunning { .. }) => break,
            Err(err) => {
                let _ = stop(kit, handle);
                return Err(format!("kill({sig}): {err}"));
            }
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if handle.is_finished() {
            break;
        }
    }
    let id = handle.id().clone();
    let st = handle.wait().map_err(e)?;
    expect_gone(kit, &id)?;
    Ok(st)
}

fn kill_with_sigkill(kit: &Kit) -> CheckResult {
    let st = kill_with(kit, Signal::KILL)?;
    ensure!(
        st == ExitStatus::signaled(9),
        "SIGKILL gave {st:?}, want code 137, signal 9, not oom_killed"
    );
    Ok(())
}

fn kill_with_sigterm(kit: &Kit) -> CheckResult {
    let st = kill_with(kit, Signal::TERM)?;
    ensure!(st.code == 143, "SIGTERM gave {st:?}, want code 143");
    ensure!(!st.oom_killed, "SIGTERM reported as OOM");
    Ok(())
}

fn terminate(kit: &Kit) -> CheckResult {
    let (handle, _) = start(kit, &Program::RunForever, Pipes::null(), Hooks::new())?;
    let id = handle.id().clone();
    kit.driver.terminate(&id).map_err(e)?;
    let st = handle.wait().map_err(e)?;
    ensure!(
        !st.success(),
        "terminated container exited successfully: {st}"
    );
    match kit.driver.terminate(&id) {
        Ok(()) | Err(DriverError::NotFound { .. }) => {}
        Err(err) => return Err(format!("second terminate: {err}")),
    }
    expect_gone(kit, &id)
}

fn info_and_list_while_running(kit: &Kit) -> CheckResult {
    // The spec's annotations come back in `info` (an engine's labels, OCI `state`).
    let id = kit.id();
    let mut cmd = command(kit, &id, &Program::RunForever)?;
    let mut annotations = cmd.spec.annotations().clone().unwrap_or_default();
    annotations.insert("org.execdriver.conformance".into(), "info".into());
    cmd.spec.set_annotations(Some(annotations));
    let handle = spawn(kit.driver.clone(), cmd, Pipes::null(), Hooks::new()).map_err(e)?;
    let Some(pid) = handle.wait_started() else {
        return Err(match handle.wait() {
            Ok(st) => format!("RunForever ended before its start hooks ran: {st}"),
            Err(err) => format!("RunForever failed to start: {err}"),
        });
    };
    let checked = (|| {
        let info = kit.driver.info(&id).map_err(e)?;
        ensure!(info.status == Status::Running, "status {}", info.status);
        ensure!(
            info.pid == Some(pid),
            "info pid {:?}, start hook pid {pid}",
            info.pid
        );
        ensure!(info.id == id, "info id {}", info.id);
        ensure!(
            info.driver == kit.driver.name(),
            "info driver {}",
            info.driver
        );
        ensure!(
            info.annotations
                .get("org.execdriver.conformance")
                .map(String::as_str)
                == Some("info"),
            "info annotations {:?} lack the spec's",
            info.annotations
        );
        let ids = kit.driver.list().map_err(e)?;
        ensure!(ids.contains(&id), "list {ids:?} lacks {id}");
        Ok(())
    })();
    stop(kit, handle)?;
    checked?;
    expect_gone(kit, &id)
}

fn lines(pipes_stdout: std::io::PipeReader) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(pipes_stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

fn wait_line(rx: &Receiver<String>, within: Duration) -> Result<String, String> {
    rx.recv_timeout(within).map_err(|err| match err {
        RecvTimeoutError::Timeout => format!("no output for {within:?}"),
        RecvTimeoutError::Disconnected => "the program's stdout closed".to_string(),
    })
}

fn pause_and_unpause(kit: &Kit) -> CheckResult {
    let (out_r, out_w) = std::io::pipe().map_err(|e| e.to_string())?;
    let pipes = Pipes {
        stdin: Stdio::Null,
        stdout: out_w.into(),
        stderr: Stdio::Null,
        extra: Vec::new(),
    };
    let (handle, _) = start(kit, &Program::Ticker, pipes, Hooks::new())?;
    let id = handle.id().clone();
    let rx = lines(out_r);
    let checked = (|| {
        wait_line(&rx, Duration::from_secs(30))?;
        kit.driver
            .pause(&id)
            .map_err(|err| format!("pause: {err}"))?;
        let info = kit.driver.info(&id).map_err(e)?;
        ensure!(
            info.status == Status::Paused,
            "status after pause: {}",
            info.status
        );
        match kit.driver.pause(&id) {
            Err(DriverError::InvalidState { .. }) => {}
            other => return Err(format!("pausing twice gave {other:?}, want InvalidState")),
        }
        // Lines already in flight may still arrive; after that, nothing while paused.
        std::thread::sleep(Duration::from_millis(300));
        while rx.try_recv().is_ok() {}
        let quiet = rx.recv_timeout(Duration::from_millis(700));
        ensure!(quiet.is_err(), "output while paused: {quiet:?}");
        kit.driver
            .unpause(&id)
            .map_err(|err| format!("unpause: {err}"))?;
        let info = kit.driver.info(&id).map_err(e)?;
        ensure!(
            info.status == Status::Running,
            "status after unpause: {}",
            info.status
        );
        wait_line(&rx, Duration::from_secs(30)).map_err(|w| format!("after unpause: {w}"))?;
        match kit.driver.unpause(&id) {
            Err(DriverError::InvalidState { .. }) => {}
            other => return Err(format!("unpausing a running container gave {other:?}")),
        }
        Ok(())
    })();
    // A paused container must still be killable.
    if checked.is_err() {
        let _ = kit.driver.unpause(&id);
    }
    stop(kit, handle)?;
    checked
}

fn stats_while_running(kit: &Kit) -> CheckResult {
    let (handle, _) = start(kit, &Program::Ticker, Pipes::null(), Hooks::new())?;
    let id = handle.id().clone();
    let checked = (|| {
        let a = kit.driver.stats(&id).map_err(e)?;
        std::thread::sleep(Duration::from_millis(200));
        let b = kit.driver.stats(&id).map_err(e)?;
        ensure!(b.read_at >= a.read_at, "read_at went backwards");
        ensure!(
            b.cpu.total_ns >= a.cpu.total_ns,
            "cpu time went backwards: {} then {}",
            a.cpu.total_ns,
            b.cpu.total_ns
        );
        ensure!(b.memory.usage > 0, "memory usage is 0 while running");
        ensure!(b.pids.current >= 1, "pids.current is {}", b.pids.current);
        Ok(())
    })();
    stop(kit, handle)?;
    checked
}

fn pids_while_running(kit: &Kit) -> CheckResult {
    let (handle, pid) = start(kit, &Program::RunForever, Pipes::null(), Hooks::new())?;
    let pids = kit.driver.pids(handle.id());
    stop(kit, handle)?;
    let pids = pids.map_err(e)?;
    ensure!(pids.contains(&pid), "pids {pids:?} lack init pid {pid}");
    Ok(())
}

/// Hooks that take the pty in `pre_start`; a thread reads what the program writes and, once
/// its first line (the size) is complete, resizes the pty to 40x120 and types `hello`. The
/// thread returns everything read until the terminal hung up.
fn terminal_hooks() -> (Hooks, Arc<Mutex<Option<std::thread::JoinHandle<String>>>>) {
    let output = Arc::new(Mutex::new(None));
    let slot = output.clone();
    let hooks = Hooks::new()
        .on_pre_start(move |ctx| {
            let term = ctx
                .terminal()
                .ok_or("no terminal in the pre_start context")?
                .clone();
            let mut reader = term.reader()?;
            let mut writer = term.writer()?;
            let reading = std::thread::spawn(move || {
                let mut all = Vec::new();
                let mut buf = [0u8; 1024];
                let mut typed = false;
                // EIO once the last process on the terminal is gone.
                while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                    if !typed && all.contains(&b'\n') {
                        typed = true;
                        let _ = term.resize(40, 120);
                        let _ = writer.write_all(b"hello\n");
                    }
                }
                String::from_utf8_lossy(&all).replace('\r', "")
            });
            *slot.lock().map_err(|_| "poisoned")? = Some(reading);
            Ok(())
        })
        .on_start(|ctx| {
            ctx.terminal().ok_or("no terminal in the start context")?;
            Ok(())
        });
    (hooks, output)
}

fn terminal_output(
    slot: &Arc<Mutex<Option<std::thread::JoinHandle<String>>>>,
) -> Result<String, String> {
    let reading = slot.lock().map_err(|_| "poisoned")?.take();
    let reading = reading.ok_or("the pre_start hook never ran")?;
    reading
        .join()
        .map_err(|_| "the reader panicked".to_string())
}

fn terminal_dialogue_ok(what: &str, out: &str) -> CheckResult {
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    ensure!(
        lines.first() == Some(&"24 80"),
        "{what}: the console size is not 24x80 at start: {out:?}"
    );
    ensure!(
        lines.contains(&"40 120"),
        "{what}: the resize to 40x120 did not reach the program: {out:?}"
    );
    ensure!(
        lines.contains(&"got:hello"),
        "{what}: the typed line did not reach the program: {out:?}"
    );
    Ok(())
}

fn terminal(kit: &Kit) -> CheckResult {
    let (hooks, output) = terminal_hooks();
    let st = run(kit, &Program::Terminal, Pipes::null(), &hooks)?;
    let out = terminal_output(&output)?;
    ensure!(
        st.success(),
        "run with a terminal exited with {st}: {out:?}"
    );
    terminal_dialogue_ok("run", &out)?;
    if !kit.driver.capabilities().supports(Operation::Exec) {
        return Ok(());
    }
    let (handle, _) = start(kit, &Program::RunForever, Pipes::null(), Hooks::new())?;
    let id = handle.id().clone();
    let checked = (|| {
        let p = kit.fixture.exec_process(&Program::Terminal).map_err(e)?;
        let (hooks, output) = terminal_hooks();
        let st = kit.driver.exec(&id, &p, Pipes::null(), &hooks).map_err(e)?;
        let out = terminal_output(&output)?;
        ensure!(
            st.success(),
            "exec with a terminal exited with {st}: {out:?}"
        );
        terminal_dialogue_ok("exec", &out)
    })();
    let _ = kit.driver.terminate(&id);
    let _ = handle.wait();
    checked
}

fn exec_into_running(kit: &Kit) -> CheckResult {
    let (handle, _) = start(kit, &Program::RunForever, Pipes::null(), Hooks::new())?;
    let id = handle.id().clone();
    let checked = (|| {
        let proc7 = kit.fixture.exec_process(&Program::Exit(7)).map_err(e)?;
        let log = Log::default();
        let st = kit
            .driver
            .exec(&id, &proc7, Pipes::null(), &recording_hooks(&log))
            .map_err(|err| format!("exec: {err}"))?;
        ensure!(st == ExitStatus::exited(7), "exec Exit(7) gave {st:?}");
        let log = log.lock().map_err(|_| "poisoned")?.clone();
        let order: Vec<_> = log.iter().map(|(t, _, _)| t.as_str()).collect();
        ensure!(
            order.first() == Some(&"pre_start#0") && order.last() == Some(&"post_stop#1"),
            "exec hooks ran as {order:?}"
        );
        ensure!(log.iter().all(|(_, p, _)| *p > 0), "exec hook saw pid 0");

        let echo = kit
            .fixture
            .exec_process(&Program::Echo {
                stdout: "from exec\n".into(),
                stderr: String::new(),
            })
            .map_err(e)?;
        let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
        let st = kit
            .driver
            .exec(&id, &echo, pipes, &Hooks::new())
            .map_err(e)?;
        let (out, _) = captured.wait_strings();
        ensure!(st.success(), "exec echo: {st}");
        ensure!(out == "from exec\n", "exec stdout {out:?}");
        let info = kit.driver.info(&id).map_err(e)?;
        ensure!(
            info.status == Status::Running,
            "after exec the container is {}",
            info.status
        );
        Ok(())
    })();
    stop(kit, handle)?;
    checked
}

fn clean_then_reuse(kit: &Kit) -> CheckResult {
    let id = kit.id();
    for round in 0..3 {
        let cmd = command(kit, &id, &Program::Exit(round))?;
        let st = kit
            .driver
            .run(&cmd, Pipes::null(), &Hooks::new())
            .map_err(e)?;
        ensure!(st.code == round, "round {round}: {st}");
        kit.driver
            .clean(&id)
            .map_err(|err| format!("clean: {err}"))?;
        kit.driver
            .clean(&id)
            .map_err(|err| format!("second clean: {err}"))?;
        expect_gone(kit, &id)?;
    }
    Ok(())
}

fn concurrent_runs(kit: &Kit) -> CheckResult {
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || -> CheckResult {
                    let want = format!("worker {i}\n");
                    let p = Program::Echo {
                        stdout: want.clone(),
                        stderr: String::new(),
                    };
                    let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
                    let st = run(kit, &p, pipes, &Hooks::new())?;
                    let (out, _) = captured.wait_strings();
                    ensure!(st.success(), "worker {i}: {st}");
                    ensure!(out == want, "worker {i} got {out:?}");
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .collect()
    });
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

fn duplicate_live_id_rejected(kit: &Kit) -> CheckResult {
    let (handle, pid) = start(kit, &Program::RunForever, Pipes::null(), Hooks::new())?;
    let id = handle.id().clone();
    let checked = (|| {
        let cmd = command(kit, &id, &Program::Exit(0))?;
        match kit.driver.run(&cmd, Pipes::null(), &Hooks::new()) {
            Err(DriverError::AlreadyExists { .. }) => {}
            other => return Err(format!("second run of a live id gave {other:?}")),
        }
        let info = kit.driver.info(&id).map_err(e)?;
        ensure!(
            info.status == Status::Running && info.pid == Some(pid),
            "the first container was disturbed: {info:?}"
        );
        Ok(())
    })();
    stop(kit, handle)?;
    checked
}

fn unknown_id_not_found(kit: &Kit) -> CheckResult {
    let id = kit.id();
    let d = &kit.driver;
    let caps = d.capabilities();
    let mut results: Vec<(&str, Result<(), DriverError>)> = vec![
        ("kill", d.kill(&id, Signal::KILL)),
        ("info", d.info(&id).map(drop)),
        ("terminate", d.terminate(&id)),
    ];
    if caps.supports(Operation::Pause) {
        results.push(("pause", d.pause(&id)));
        results.push(("unpause", d.unpause(&id)));
    }
    if caps.supports(Operation::Stats) {
        results.push(("stats", d.stats(&id).map(drop)));
    }
    if caps.supports(Operation::Pids) {
        results.push(("pids", d.pids(&id).map(drop)));
    }
    if caps.supports(Operation::Exec) {
        let p = kit.fixture.exec_process(&Program::Exit(0)).map_err(e)?;
        results.push((
            "exec",
            d.exec(&id, &p, Pipes::null(), &Hooks::new()).map(drop),
        ));
    }
    for (op, r) in results {
        ensure!(
            matches!(r, Err(DriverError::NotFound { .. })),
            "{op} of an unknown id gave {r:?}"
        );
    }
    d.clean(&id)
        .map_err(|err| format!("clean of an unknown id: {err}"))?;
    Ok(())
}

fn invalid_ids_rejected(_: &Kit) -> CheckResult {
    let long = "a".repeat(10 * 1024);
    for bad in ["", ".", "..", "a/b", "../x", "a\0b", "a b", long.as_str()] {
        ensure!(
            matches!(ContainerId::new(bad), Err(DriverError::InvalidId { .. })),
            "id {bad:?} was accepted"
        );
    }
    Ok(())
}

fn oom_killed(kit: &Kit) -> CheckResult {
    let receivers = Arc::new(Mutex::new(Vec::new()));
    let post_exit = Arc::new(Mutex::new(None));
    let (r1, r2, pe) = (receivers.clone(), receivers.clone(), post_exit.clone());
    let hooks = Hooks::new()
        .on_pre_start(move |ctx| {
            r1.lock().map_err(|_| "poisoned")?.push(ctx.oom());
            Ok(())
        })
        .on_start(move |ctx| {
            r2.lock().map_err(|_| "poisoned")?.push(ctx.oom());
            Ok(())
        })
        .on_post_stop(move |ctx| {
            *pe.lock().map_err(|_| "poisoned")? = Some((ctx.exit(), ctx.oom()));
            Ok(())
        });
    let started = Instant::now();
    let st = run(kit, &Program::OomHog, Pipes::null(), &hooks)?;
    ensure!(
        st.oom_killed,
        "OomHog ended without oom_killed: {st:?} after {:?}",
        started.elapsed()
    );
    ensure!(
        st.code == 137,
        "OOM-killed container's code is {}, want 137",
        st.code
    );
    let receivers = std::mem::take(&mut *receivers.lock().map_err(|_| "poisoned")?);
    ensure!(
        receivers.len() == 2,
        "expected 2 receivers, got {}",
        receivers.len()
    );
    for (i, rx) in receivers.iter().enumerate() {
        let ev = rx
            .try_recv()
            .map_err(|_| format!("hook receiver #{i} got no OOM event"))?;
        ensure!(ev.count >= 1, "event count {}", ev.count);
    }
    let post = post_exit.lock().map_err(|_| "poisoned")?.take();
    let Some((exit, _)) = post else {
        return Err("post_stop did not run".into());
    };
    ensure!(
        exit == Some(st),
        "post_stop saw {exit:?}, run returned {st:?}"
    );
    Ok(())
}

/// The events of `id` on `rx` up to its `Deleted` (or what came within 60 s).
fn events_of(rx: &crate::EventReceiver, id: &ContainerId) -> Vec<crate::Event> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while let Ok(ev) = rx.recv_deadline(deadline) {
        if ev.id != *id {
            continue;
        }
        let done = ev.kind == crate::EventKind::Deleted;
        got.push(ev);
        if done {
            break;
        }
    }
    got
}

fn events_in_order(kit: &Kit) -> CheckResult {
    use crate::EventKind as K;
    let driver = crate::with_events(kit.driver.clone());
    let early = driver.subscribe().map_err(e)?;
    let id = kit.id();
    let cmd = command(kit, &id, &Program::RunForever)?;
    let handle = spawn(driver.clone(), cmd, Pipes::null(), Hooks::new()).map_err(e)?;
    let Some(pid) = handle.wait_started() else {
        return Err(format!("RunForever did not start: {:?}", handle.wait()));
    };
    let late = driver.subscribe().map_err(e)?;
    let caps = driver.capabilities();
    let mut want = vec![K::Created { pid }, K::Started { pid }];
    let acted = (|| {
        if caps.supports(Operation::Pause) {
            driver.pause(&id).map_err(|err| format!("pause: {err}"))?;
            driver
                .unpause(&id)
                .map_err(|err| format!("unpause: {err}"))?;
            want.extend([K::Paused, K::Resumed]);
        }
        if caps.supports(Operation::Exec) {
            let p = kit.fixture.exec_process(&Program::Exit(7)).map_err(e)?;
            let log = Log::default();
            let st = driver
                .exec(&id, &p, Pipes::null(), &recording_hooks(&log))
                .map_err(|err| format!("exec: {err}"))?;
            let exec_pid = log
                .lock()
                .map_err(|_| "poisoned")?
                .first()
                .map(|(_, p, _)| *p)
                .unwrap_or(0);
            want.extend([
                K::ExecStarted { pid: exec_pid },
                K::ExecExited {
                    pid: exec_pid,
                    status: st,
                },
            ]);
        }
        Ok::<(), String>(())
    })();
    driver.kill(&id, Signal::KILL).map_err(e)?;
    let status = handle.wait().map_err(e)?;
    acted?;
    want.extend([K::Exited { status }, K::Deleted]);

    let got = events_of(&early, &id);
    let kinds: Vec<K> = got.iter().map(|ev| ev.kind.clone()).collect();
    ensure!(kinds == want, "events {kinds:?}, want {want:?}");
    ensure!(
        got.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequence numbers do not increase: {:?}",
        got.iter().map(|ev| ev.seq).collect::<Vec<_>>()
    );
    // The late subscriber joined a running container: the same story, from Created.
    let late_kinds: Vec<K> = events_of(&late, &id)
        .into_iter()
        .map(|ev| ev.kind)
        .collect();
    ensure!(
        late_kinds == want,
        "a late subscriber saw {late_kinds:?}, want {want:?}"
    );
    // A failed pre_start: created, then deleted — never started, never exited.
    let failing = Hooks::new().on_pre_start(|_| Err("refused".into()));
    let id2 = kit.id();
    let cmd = command(kit, &id2, &Program::Exit(0))?;
    match driver.run(&cmd, Pipes::null(), &failing) {
        Err(DriverError::Hook { index: 0, .. }) => {}
        other => return Err(format!("a failing pre_start hook #0 gave {other:?}")),
    }
    let kinds: Vec<K> = events_of(&early, &id2)
        .into_iter()
        .map(|ev| ev.kind)
        .collect();
    ensure!(
        matches!(kinds.as_slice(), [K::Created { .. }, K::Deleted]),
        "after a failed pre_start: {kinds:?}"
    );
    Ok(())
}

fn two_phase_lifecycle(kit: &Kit) -> CheckResult {
    let id = kit.id();
    let cmd = command(
        kit,
        &id,
        &Program::Echo {
            stdout: "two-phase\n".into(),
            stderr: String::new(),
        },
    )?;
    // A driver with an event stream (a registry's) publishes the two-phase path's events too.
    let events = kit.driver.subscribe().ok();
    let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
    let created = kit
        .driver
        .create(&cmd, pipes)
        .map_err(|err| format!("create: {err}"))?;
    let checked = (|| {
        ensure!(created.pid > 0, "create gave pid 0");
        let info = kit.driver.info(&id).map_err(e)?;
        ensure!(
            info.status == Status::Created && info.pid == Some(created.pid),
            "after create: {:?} pid {:?}, want created with pid {}",
            info.status,
            info.pid,
            created.pid
        );
        match kit.driver.create(&cmd, Pipes::null()) {
            Err(DriverError::AlreadyExists { .. }) => {}
            other => return Err(format!("a second create of {id} gave {other:?}")),
        }
        let exit = kit.driver.wait(&id).map_err(|err| format!("wait: {err}"))?;
        ensure!(
            exit.status().is_none(),
            "exited before start: {:?}",
            exit.status()
        );
        match kit.driver.delete(&id) {
            Err(DriverError::InvalidState { .. }) => {}
            other => return Err(format!("delete of an unstarted container gave {other:?}")),
        }
        kit.driver
            .start(&id)
            .map_err(|err| format!("start: {err}"))?;
        match kit.driver.start(&id) {
            Err(DriverError::InvalidState { .. }) => {}
            other => return Err(format!("a second start gave {other:?}")),
        }
        let st = crate::lifecycle::block_on(exit.exited());
        ensure!(st == ExitStatus::exited(0), "the program ended with {st}");
        ensure!(
            exit.wait_timeout(Duration::ZERO) == Some(st),
            "the blocking wait disagrees"
        );
        let again = kit.driver.wait(&id).map_err(e)?.status();
        ensure!(again == Some(st), "a later wait gave {again:?}");
        kit.driver
            .delete(&id)
            .map_err(|err| format!("delete: {err}"))?;
        expect_gone(kit, &id)
    })();
    if checked.is_err() {
        let _ = kit.driver.terminate(&id);
        let _ = kit.driver.delete(&id);
    }
    created.oom.close();
    let (out, _) = captured.wait_strings();
    checked?;
    ensure!(out == "two-phase\n", "stdout {out:?}");
    if let Some(rx) = events {
        use crate::EventKind as K;
        let kinds: Vec<K> = events_of(&rx, &id).into_iter().map(|ev| ev.kind).collect();
        let want = vec![
            K::Created { pid: created.pid },
            K::Started { pid: created.pid },
            K::Exited {
                status: ExitStatus::exited(0),
            },
            K::Deleted,
        ];
        ensure!(kinds == want, "two-phase events {kinds:?}, want {want:?}");
    }
    Ok(())
}

fn two_phase_exec(kit: &Kit) -> CheckResult {
    let (handle, _) = start(kit, &Program::RunForever, Pipes::null(), Hooks::new())?;
    let id = handle.id().clone();
    let events = kit.driver.subscribe().ok();
    let echo = |text: &str| {
        kit.fixture.exec_process(&Program::Echo {
            stdout: text.into(),
            stderr: String::new(),
        })
    };
    let mut made: Vec<(String, u32)> = Vec::new();
    let checked = (|| {
        // Created, started, waited for, deleted.
        let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
        let first = "two-phase-1";
        let created = kit
            .driver
            .exec_create(&id, first, &echo("two-phase exec\n").map_err(e)?, pipes)
            .map_err(|err| format!("exec_create: {err}"))?;
        made.push((first.to_owned(), created.pid));
        ensure!(created.pid > 0, "exec_create gave pid 0");
        match kit
            .driver
            .exec_create(&id, first, &echo("again\n").map_err(e)?, Pipes::null())
        {
            Err(DriverError::AlreadyExists { .. }) => {}
            other => return Err(format!("a second exec_create of {first} gave {other:?}")),
        }
        let exit = kit
            .driver
            .exec_wait(&id, first)
            .map_err(|err| format!("exec_wait: {err}"))?;
        ensure!(
            exit.status().is_none(),
            "the exec'd process ended before its start: {:?}",
            exit.status()
        );
        kit.driver
            .exec_start(&id, first)
            .map_err(|err| format!("exec_start: {err}"))?;
        match kit.driver.exec_start(&id, first) {
            Err(DriverError::InvalidState { .. }) => {}
            other => return Err(format!("a second exec_start gave {other:?}")),
        }
        let st = crate::lifecycle::block_on(exit.exited());
        ensure!(
            st == ExitStatus::exited(0),
            "the exec'd program ended with {st}"
        );
        let (out, _) = captured.wait_strings();
        ensure!(out == "two-phase exec\n", "exec stdout {out:?}");
        kit.driver
            .exec_delete(&id, first)
            .map_err(|err| format!("exec_delete: {err}"))?;
        match kit.driver.exec_wait(&id, first) {
            Err(DriverError::NotFound { .. }) => {}
            other => return Err(format!("exec_wait after exec_delete gave {other:?}")),
        }

        // Created and deleted unstarted: its program never runs.
        let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
        let second = "two-phase-2";
        let created = kit
            .driver
            .exec_create(&id, second, &echo("must not run\n").map_err(e)?, pipes)
            .map_err(|err| format!("exec_create: {err}"))?;
        made.push((second.to_owned(), created.pid));
        let exit = kit.driver.exec_wait(&id, second).map_err(e)?;
        kit.driver
            .exec_delete(&id, second)
            .map_err(|err| format!("exec_delete of an unstarted process: {err}"))?;
        ensure!(
            exit.status().is_some(),
            "exec_delete returned before the process was gone"
        );
        let (out, _) = captured.wait_strings();
        ensure!(out.is_empty(), "an unstarted exec ran: {out:?}");

        // The provided exec: a refused pre_start means the program never runs.
        let ran = Arc::new(Mutex::new(Vec::<&str>::new()));
        let (r1, r2) = (ran.clone(), ran.clone());
        let hooks = Hooks::new()
            .on_pre_start(|_| Err("refused by the engine".into()))
            .on_start(move |_| {
                r1.lock().map_err(|_| "poisoned")?.push("start");
                Ok(())
            })
            .on_post_stop(move |_| {
                r2.lock().map_err(|_| "poisoned")?.push("post_stop");
                Ok(())
            });
        let (pipes, captured) = Pipes::capture().map_err(|e| e.to_string())?;
        match kit
            .driver
            .exec(&id, &echo("refused\n").map_err(e)?, pipes, &hooks)
        {
            Err(DriverError::Hook {
                stage: HookStage::PreStart,
                index: 0,
                ..
            }) => {}
            other => return Err(format!("exec with a refusing pre_start gave {other:?}")),
        }
        let (out, _) = captured.wait_strings();
        ensure!(out.is_empty(), "a refused exec ran: {out:?}");
        let later = ran.lock().map_err(|_| "poisoned")?.clone();
        ensure!(later.is_empty(), "hooks after the refusal ran: {later:?}");
        let info = kit.driver.info(&id).map_err(e)?;
        ensure!(
            info.status == Status::Running,
            "after the execs the container is {}",
            info.status
        );
        Ok(())
    })();
    if checked.is_err() {
        for (exec_id, _) in &made {
            let _ = kit.driver.exec_delete(&id, exec_id);
        }
    }
    stop(kit, handle)?;
    checked?;
    if let Some(rx) = events {
        use crate::EventKind as K;
        let execs: Vec<K> = events_of(&rx, &id)
            .into_iter()
            .map(|ev| ev.kind)
            .filter(|k| matches!(k, K::ExecStarted { .. } | K::ExecExited { .. }))
            .collect();
        let want = vec![
            K::ExecStarted { pid: made[0].1 },
            K::ExecExited {
                pid: made[0].1,
                status: ExitStatus::exited(0),
            },
        ];
        ensure!(execs == want, "exec events {execs:?}, want {want:?}");
    }
    Ok(())
}
