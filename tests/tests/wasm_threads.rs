//! Started wasm instances are tasks on a few shared worker threads, not a thread each — and
//! an instance waiting for its stdio (an empty stdin pipe, a full stdout pipe nobody drains)
//! holds none of those workers and still dies when killed. A test binary of its own, so that
//! no other test's threads change the count. No root needed.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

use execdriver::wasm::{WasmDriver, WasmOptions};
use execdriver_api::{Command, ContainerId, Driver, ExitStatus, Hooks, Pipes, Signal, Stdio};
use execdriver_tests::unique_id;
use execdriver_tests::wasm::{rootfs, spec};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn cmd(id: &ContainerId, args: &[&str]) -> Command {
    Command::new(id.clone(), rootfs().parent().unwrap(), spec(args)).unwrap()
}

/// Runs hello to its end: the driver's runtimes exist afterwards.
fn hello(d: &WasmDriver) -> String {
    let (pipes, cap) = Pipes::capture().unwrap();
    let st = d
        .run(
            &cmd(&unique_id("hello"), &["/hello.wat"]),
            pipes,
            &Hooks::new(),
        )
        .unwrap();
    assert_eq!(st, ExitStatus::exited(0));
    cap.wait_strings().0
}

/// Waits for `id` to end, for at most a minute (a liveness bound, not a timing assertion).
fn ended(d: &WasmDriver, id: &ContainerId) -> ExitStatus {
    d.wait(id)
        .unwrap()
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{id} did not end"))
}

#[test]
fn running_instances_cost_no_thread_each() {
    let d = WasmDriver::new(WasmOptions::default());
    assert!(hello(&d).contains("hello"));
    let before = threads();

    const N: usize = 40;
    let mut ids = Vec::new();
    for _ in 0..N {
        let id = unique_id("forever");
        let created = d
            .create(&cmd(&id, &["/forever.wat"]), Pipes::null())
            .unwrap();
        d.start(&id).unwrap();
        ids.push((id, created));
    }
    let during = threads();
    for (id, _) in &ids {
        d.kill(id, Signal::KILL).unwrap();
    }
    for (id, created) in &ids {
        assert_eq!(ended(&d, id), ExitStatus::signaled(9), "{id}");
        created.oom.close();
        d.delete(id).unwrap();
    }
    assert!(
        during <= before,
        "{N} running instances took {} threads ({before} before)",
        during.saturating_sub(before)
    );
}

#[test]
fn instances_waiting_for_stdio_hold_no_worker_and_die_when_killed() {
    let d = WasmDriver::new(WasmOptions::default());
    hello(&d);
    // More waiting instances than the runtime has workers, of both kinds.
    let n = std::thread::available_parallelism().map_or(1, |n| n.get()) + 2;
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..n {
        // cat of a pipe nobody writes to: it waits for stdin.
        let (r, w) = std::io::pipe().unwrap();
        let id = unique_id("stdin");
        let pipes = Pipes {
            stdin: Stdio::Fd(OwnedFd::from(r)),
            ..Pipes::null()
        };
        d.create(&cmd(&id, &["/cat.wat"]), pipes).unwrap();
        d.start(&id).unwrap();
        readers.push((id, w));
        // cat of /dev/zero into a pipe nobody reads: it waits for stdout to drain.
        let (r, w) = std::io::pipe().unwrap();
        let id = unique_id("stdout");
        let pipes = Pipes {
            stdin: Stdio::Fd(OwnedFd::from(std::fs::File::open("/dev/zero").unwrap())),
            stdout: Stdio::Fd(OwnedFd::from(w)),
            ..Pipes::null()
        };
        d.create(&cmd(&id, &["/cat.wat"]), pipes).unwrap();
        d.start(&id).unwrap();
        writers.push((id, r));
    }
    // The waiting instances leave the workers to others.
    assert!(hello(&d).contains("hello"));
    // A waiting instance is killed where it waits.
    for (id, _) in &writers {
        d.kill(id, Signal::KILL).unwrap();
        assert_eq!(ended(&d, id), ExitStatus::signaled(9), "{id}");
        d.delete(id).unwrap();
    }
    let (killed, _) = readers.remove(0);
    d.kill(&killed, Signal::KILL).unwrap();
    assert_eq!(ended(&d, &killed), ExitStatus::signaled(9), "{killed}");
    d.delete(&killed).unwrap();
    // The others read what comes and end at end of file.
    for (_, w) in &mut readers {
        w.write_all(b"some input").unwrap();
    }
    for (id, w) in readers {
        drop(w);
        assert_eq!(ended(&d, &id), ExitStatus::exited(0), "{id}");
        d.delete(&id).unwrap();
    }
}
