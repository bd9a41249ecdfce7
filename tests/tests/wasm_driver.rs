//! The wasm driver beyond the conformance kit: entry points, formats, caches, limits, kill
//! and pause of code that never calls the host. No root needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use execdriver::wasm::{TRAP_EXIT_CODE, WasmDriver, WasmOptions};
use execdriver_api::{
    Command, ContainerId, Driver, DriverError, ExitStatus, Hooks, Pipes, Signal, Status,
};
use execdriver_tests::unique_id;
use execdriver_tests::wasm::{rootfs, spec};

fn cmd(id: &ContainerId, args: &[&str]) -> Command {
    Command::new(id.clone(), rootfs().parent().unwrap(), spec(args)).unwrap()
}

fn run(d: &dyn Driver, args: &[&str]) -> Result<(ExitStatus, String, String), DriverError> {
    let (pipes, cap) = Pipes::capture().unwrap();
    let r = d.run(&cmd(&unique_id("w"), args), pipes, &Hooks::new());
    let (o, e) = cap.wait_strings();
    r.map(|st| (st, o, e))
}

fn driver() -> Arc<WasmDriver> {
    Arc::new(WasmDriver::new(WasmOptions::default()))
}

#[test]
fn hello_prints_and_exit_codes_propagate() {
    let d = driver();
    let (st, out, _) = run(&*d, &["/hello.wat"]).unwrap();
    assert_eq!(
        (st, out.as_str()),
        (ExitStatus::exited(0), "hello from wasm\n")
    );
    for code in [0, 1, 7, 125] {
        let (st, _, _) = run(&*d, &["/exit.wat", &code.to_string()]).unwrap();
        assert_eq!(st, ExitStatus::exited(code));
    }
    // WASI reserves exit codes from 126 up: proc_exit(126..) is an error, not a trap, and
    // exits 1 as with the wasmtime CLI (cli/tests/wasmtime_differential.rs compares them).
    for code in [126, 200, 255] {
        let (st, _, _) = run(&*d, &["/exit.wat", &code.to_string()]).unwrap();
        assert_eq!(st, ExitStatus::exited(1), "proc_exit({code})");
    }
    let (st, _, _) = run(&*d, &["/trap.wat"]).unwrap();
    assert_eq!(st, ExitStatus::exited(TRAP_EXIT_CODE));
}

#[test]
fn path_hash_func_selects_the_entry() {
    let d = driver();
    assert_eq!(run(&*d, &["/funcs.wat"]).unwrap().1, "start\n");
    assert_eq!(run(&*d, &["/funcs.wat#main"]).unwrap().1, "main\n");
    assert_eq!(
        run(&*d, &["/funcs.wat#answer"]).unwrap().0,
        ExitStatus::exited(42)
    );
    for (arg, want) in [
        (
            "/funcs.wat#nope",
            "process.args[0]: /funcs.wat exports no function \"nope\"",
        ),
        (
            "/funcs.wat#with_param",
            "with_param in /funcs.wat must take no parameters",
        ),
        (
            "/funcs.wat#",
            "process.args[0]: \"/funcs.wat#\" has an empty function name",
        ),
        ("#main", "has an empty module path"),
    ] {
        let e = run(&*d, &[arg]).unwrap_err().to_string();
        assert!(e.contains(want), "{arg}: {e}");
    }
}

#[test]
fn args_and_env_reach_the_module() {
    let d = driver();
    let (st, out, _) = run(&*d, &["/env.wat", "one", "two words"]).unwrap();
    assert!(st.success());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["/env.wat", "one", "two words"]);
    // Exactly the spec's environment: nothing injected (no PWD), as the wasmtime CLI.
    assert_eq!(&lines[3..], ["PATH=/", "GREETING=hi"], "{out}");
}

#[test]
fn components_run_their_wasi_cli_run_export() {
    let d = driver();
    assert_eq!(
        run(&*d, &["/component.wat"]).unwrap().0,
        ExitStatus::exited(0)
    );
    assert_eq!(
        run(&*d, &["/component_err.wat"]).unwrap().0,
        ExitStatus::exited(1)
    );
    let e = run(&*d, &["/component.wat#run"]).unwrap_err();
    assert!(matches!(e, DriverError::CantHandle { .. }), "{e}");
}

/// WASI 0.3 (p3, `wasi:*@0.3.0` as wasmtime-wasi 48 implements it): a command component's
/// async `run` is called in the store's event loop; cli (arguments, environment), clocks and
/// random reach it, sockets are refused; kill and pause work as for p1/p2.
#[test]
fn wasi_0_3_components_run_and_are_killed_and_paused() {
    let d = driver();
    assert_eq!(
        run(&*d, &["/p3_component.wat"]).unwrap().0,
        ExitStatus::exited(0)
    );
    assert_eq!(
        run(&*d, &["/p3_component_err.wat"]).unwrap().0,
        ExitStatus::exited(1)
    );
    // Three arguments and the spec's two variables, PATH first: ok; otherwise its run fails.
    assert_eq!(
        run(&*d, &["/p3_cli.wat", "a", "b"]).unwrap().0,
        ExitStatus::exited(0)
    );
    assert_eq!(
        run(&*d, &["/p3_cli.wat", "a"]).unwrap().0,
        ExitStatus::exited(1)
    );
    // Sockets follow the network policy: no address is allowed, so bind is refused with
    // access-denied (the component exits 0 where binding is allowed: see the wasmtime
    // differential).
    assert_eq!(
        run(&*d, &["/p3_socket.wat"]).unwrap().0,
        ExitStatus::exited(1)
    );
    let e = run(&*d, &["/p3_component.wat#run"]).unwrap_err();
    assert!(matches!(e, DriverError::CantHandle { .. }), "{e}");

    let id = unique_id("p3spin");
    let h = execdriver_api::spawn(
        d.clone(),
        cmd(&id, &["/p3_spin.wat"]),
        Pipes::null(),
        Hooks::new(),
    )
    .unwrap();
    h.wait_started().unwrap();
    let busy = |d: &WasmDriver| {
        let before = d.stats(&id).unwrap().cpu.total_ns;
        std::thread::sleep(Duration::from_millis(200));
        d.stats(&id).unwrap().cpu.total_ns - before
    };
    assert!(busy(&d) > 20_000_000, "the spinning component runs");
    d.pause(&id).unwrap();
    assert_eq!(d.info(&id).unwrap().status, Status::Paused);
    std::thread::sleep(Duration::from_millis(100));
    assert!(busy(&d) < 50_000_000, "CPU used while paused");
    d.unpause(&id).unwrap();
    d.kill(&id, Signal::KILL).unwrap();
    assert_eq!(h.wait().unwrap(), ExitStatus::signaled(9));
}

#[test]
fn bad_modules_give_clear_errors() {
    let d = driver();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("junk.wasm"), b"\x7fELF not wasm at all").unwrap();
    std::fs::write(root.join("truncated.wasm"), b"\0asm\x01\0\0\0\x01\x05").unwrap();
    std::fs::write(root.join("magic.wasm"), b"\0asm\x09\0\0\0").unwrap();
    std::fs::copy(
        execdriver_tests::wasm::fixtures_src().join("unknown_import.wat"),
        root.join("unknown_import.wat"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("escape.wasm")).unwrap();
    let run_in = |args: &[&str]| {
        let mut s = spec(args);
        s.root_mut().as_mut().unwrap().set_path(root.clone());
        d.run(
            &Command::new(unique_id("bad"), dir.path(), s).unwrap(),
            Pipes::null(),
            &Hooks::new(),
        )
    };
    for (arg, kind_cant, want) in [
        (
            "/junk.wasm",
            true,
            "/junk.wasm is not a WebAssembly module, component or .wat text",
        ),
        ("/truncated.wasm", true, "/truncated.wasm: invalid module"),
        (
            "/magic.wasm",
            true,
            "/magic.wasm: an unsupported WebAssembly binary version",
        ),
        (
            "/unknown_import.wat",
            true,
            "unknown import: `env::launch_missiles`",
        ),
        (
            "/missing.wasm",
            false,
            "process.args[0]: module /missing.wasm in the rootfs: No such file",
        ),
        ("/escape.wasm", false, "resolves outside the rootfs"),
    ] {
        let e = run_in(&[arg]).unwrap_err();
        assert_eq!(
            matches!(e, DriverError::CantHandle { .. }),
            kind_cant,
            "{arg}: {e}"
        );
        assert!(e.to_string().contains(want), "{arg}: {e}");
        assert!(d.list().unwrap().is_empty(), "{arg}: left behind");
    }
}

#[test]
fn a_spinning_module_is_killed_and_paused_through_epochs() {
    let d = driver();
    let id = unique_id("spin");
    let (out_r, out_w) = std::io::pipe().unwrap();
    let pipes = Pipes {
        stdin: execdriver_api::Stdio::Null,
        stdout: out_w.into(),
        stderr: execdriver_api::Stdio::Null,
        extra: Vec::new(),
    };
    let h =
        execdriver_api::spawn(d.clone(), cmd(&id, &["/spin.wat"]), pipes, Hooks::new()).unwrap();
    h.wait_started().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out_r).lines() {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("progress")
        .unwrap();
    d.pause(&id).unwrap();
    assert_eq!(d.info(&id).unwrap().status, Status::Paused);
    std::thread::sleep(Duration::from_millis(200));
    while rx.try_recv().is_ok() {}
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "progress while paused"
    );
    let cpu_paused = d.stats(&id).unwrap().cpu.total_ns;
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        d.stats(&id).unwrap().cpu.total_ns - cpu_paused < 50_000_000,
        "CPU used while paused"
    );
    d.unpause(&id).unwrap();
    rx.recv_timeout(Duration::from_secs(30))
        .expect("progress after unpause")
        .unwrap();
    let killed_at = Instant::now();
    d.kill(&id, Signal::KILL).unwrap();
    assert_eq!(h.wait().unwrap(), ExitStatus::signaled(9));
    // Generous: the benchmark reports the real latency.
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        d.kill(&id, Signal::KILL),
        Err(DriverError::NotFound { .. })
    ));
}

#[test]
fn only_kill_term_and_int_can_be_delivered() {
    let d = driver();
    let id = unique_id("sig");
    let h = execdriver_api::spawn(
        d.clone(),
        cmd(&id, &["/forever.wat"]),
        Pipes::null(),
        Hooks::new(),
    )
    .unwrap();
    h.wait_started().unwrap();
    let e = d.kill(&id, Signal::USR1).unwrap_err();
    assert!(matches!(e, DriverError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("signal SIGUSR1"), "{e}");
    d.kill(&id, Signal::INT).unwrap();
    assert_eq!(h.wait().unwrap(), ExitStatus::signaled(2));
}

#[test]
fn a_warm_start_does_not_compile_again() {
    let d = driver();
    let before = d.cache_stats();
    run(&*d, &["/hello.wat"]).unwrap();
    let after_first = d.cache_stats();
    run(&*d, &["/hello.wat"]).unwrap();
    let after_second = d.cache_stats();
    assert_eq!(after_first.compiles, before.compiles + 1);
    assert_eq!(
        after_second.compiles, after_first.compiles,
        "compiled again"
    );
    assert_eq!(after_second.memory_hits, after_first.memory_hits + 1);
}

#[test]
fn the_disk_cache_is_reused_and_corrupt_entries_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let opts = WasmOptions {
        cache_dir: Some(cache.clone()),
        ..WasmOptions::default()
    };
    let first = WasmDriver::new(opts.clone());
    run(&first, &["/funcs.wat#main"]).unwrap();
    assert_eq!(first.cache_stats().compiles, 1);
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    // A new driver (as after a restart) loads the precompiled artifact.
    let second = WasmDriver::new(opts.clone());
    assert_eq!(run(&second, &["/funcs.wat#main"]).unwrap().1, "main\n");
    assert_eq!(
        (
            second.cache_stats().disk_hits,
            second.cache_stats().compiles
        ),
        (1, 0)
    );
    // A corrupted artifact is never loaded: compiled again and replaced.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&entries[0], bytes).unwrap();
    let third = WasmDriver::new(opts.clone());
    assert_eq!(run(&third, &["/funcs.wat#main"]).unwrap().1, "main\n");
    assert_eq!(
        (third.cache_stats().disk_hits, third.cache_stats().compiles),
        (0, 1)
    );
    let fourth = WasmDriver::new(opts);
    run(&fourth, &["/funcs.wat#main"]).unwrap();
    assert_eq!(
        fourth.cache_stats().disk_hits,
        1,
        "the replaced entry is good again"
    );
    // A directory others can write to is not trusted.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let fifth = WasmDriver::new(WasmOptions {
        cache_dir: Some(cache),
        ..WasmOptions::default()
    });
    run(&fifth, &["/funcs.wat#main"]).unwrap();
    assert_eq!(
        (fifth.cache_stats().disk_hits, fifth.cache_stats().compiles),
        (0, 1)
    );
}

#[test]
fn a_memory_limit_oom_kills_and_update_raises_it() {
    let d = driver();
    let id = unique_id("mem");
    let mut s = spec(&["/grow.wat"]);
    let mut v = serde_json::to_value(&s).unwrap();
    v["linux"] = serde_json::json!({"resources": {"memory": {"limit": 8 * 1024 * 1024}}});
    s = serde_json::from_value(v).unwrap();
    let rx_slot = Arc::new(std::sync::Mutex::new(None));
    let slot = rx_slot.clone();
    let hooks = Hooks::new().on_pre_start(move |ctx| {
        *slot.lock().unwrap() = Some(ctx.oom());
        Ok(())
    });
    let st = d
        .run(
            &Command::new(id, rootfs().parent().unwrap(), s).unwrap(),
            Pipes::null(),
            &hooks,
        )
        .unwrap();
    assert_eq!(st, ExitStatus::signaled(9).with_oom_killed(true));
    let ev = rx_slot
        .lock()
        .unwrap()
        .take()
        .unwrap()
        .try_recv()
        .expect("an OOM event");
    assert_eq!(ev.count, 1);
}

#[test]
fn a_cpu_quota_throttles_a_spinning_module() {
    let d = driver();
    let id = unique_id("quota");
    let mut v = serde_json::to_value(spec(&["/spin.wat"])).unwrap();
    v["linux"] = serde_json::json!({"resources": {"cpu": {"quota": 10000, "period": 100000}}});
    let c = Command::new(
        id.clone(),
        rootfs().parent().unwrap(),
        serde_json::from_value(v).unwrap(),
    )
    .unwrap();
    let h = execdriver_api::spawn(d.clone(), c, Pipes::null(), Hooks::new()).unwrap();
    h.wait_started().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.stats(&id).unwrap().cpu.throttled_periods < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let throttled = d.stats(&id).unwrap().cpu;
    d.terminate(&id).unwrap();
    h.wait().unwrap();
    assert!(throttled.throttled_periods >= 3, "{throttled:?}");
    assert!(throttled.throttled_ns > 0);
    // Without a quota nothing is throttled.
    let id = unique_id("noquota");
    let h = execdriver_api::spawn(
        d.clone(),
        cmd(&id, &["/spin.wat"]),
        Pipes::null(),
        Hooks::new(),
    )
    .unwrap();
    h.wait_started().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let free = d.stats(&id).unwrap().cpu;
    d.terminate(&id).unwrap();
    h.wait().unwrap();
    assert_eq!(free.throttled_periods, 0);
    assert!(free.total_ns > 0);
}

#[test]
fn resources_a_wasm_container_cannot_honour_are_refused() {
    let d = driver();
    let mut v = serde_json::to_value(spec(&["/hello.wat"])).unwrap();
    v["linux"] = serde_json::json!({"resources": {"blockIO": {"weight": 500}}});
    let c = Command::new(
        unique_id("res"),
        rootfs().parent().unwrap(),
        serde_json::from_value(v).unwrap(),
    )
    .unwrap();
    let e = d.run(&c, Pipes::null(), &Hooks::new()).unwrap_err();
    assert!(matches!(e, DriverError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("linux.resources.blockIO"), "{e}");
}

/// A rootfs of its own with the three `open` fixtures, a regular file `plain`, a directory `d`,
/// a symlink `link` to `plain`, a FIFO `fifo` and a bound unix socket `sock`.
fn special_rootfs() -> (tempfile::TempDir, std::os::unix::net::UnixListener) {
    let dir = tempfile::Builder::new()
        .prefix("edtest-wasm-special-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("d")).unwrap();
    for f in ["open.wat", "open_component.wat", "p3_open.wat"] {
        std::fs::copy(execdriver_tests::wasm::fixtures_src().join(f), root.join(f)).unwrap();
    }
    std::fs::write(root.join("plain"), "x").unwrap();
    std::os::unix::fs::symlink("plain", root.join("link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
    let sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    (dir, sock)
}

fn run_in(d: &dyn Driver, dir: &std::path::Path, args: &[&str]) -> (ExitStatus, String, String) {
    let mut v = serde_json::to_value(spec(args)).unwrap();
    v["root"]["path"] = serde_json::json!(dir.join("rootfs"));
    let c = Command::new(unique_id("sp"), dir, serde_json::from_value(v).unwrap()).unwrap();
    let (pipes, cap) = Pipes::capture().unwrap();
    let r = d.run(&c, pipes, &Hooks::new());
    let (o, e) = cap.wait_strings();
    (r.unwrap(), o, e)
}

#[test]
fn fifos_and_sockets_of_the_image_are_refused_with_eacces() {
    let d = driver();
    let (dir, _sock) = special_rootfs();
    // Preview 1. Read-write opens first: a FIFO opened O_RDWR doesn't block, so without the
    // guard this fails on the assertion rather than hanging. WASI errno 2 is `acces`.
    let (st, out, err) = run_in(
        &*d,
        dir.path(),
        &["/open.wat", "rw", "fifo", "sock", "plain"],
    );
    assert_eq!(st, ExitStatus::exited(0), "{err}");
    assert_eq!(out, "02\n02\n00\n", "fifo, sock, plain (read-write)");
    // Read-only: a FIFO without a writer would block the instance's thread in open(2).
    let (st, out, err) = run_in(
        &*d,
        dir.path(),
        &["/open.wat", "r", "fifo", "sock", "plain", "link", "d"],
    );
    assert_eq!(st, ExitStatus::exited(0), "{err}");
    assert_eq!(
        out, "02\n02\n00\n00\n00\n",
        "fifo, sock, plain, link, d (read-only)"
    );
    // Preview 2 and WASI 0.3 (`open-at`): 0 = opened, 1 = refused with `access`, a trap
    // otherwise.
    let root = dir.path().join("rootfs");
    for (node, want) in [("fifo", 1), ("sock", 1), ("plain", 0)] {
        let _ = std::fs::remove_file(root.join("special"));
        std::fs::hard_link(root.join(node), root.join("special")).unwrap();
        for c in ["/open_component.wat", "/p3_open.wat"] {
            let (st, _, err) = run_in(&*d, dir.path(), &[c]);
            assert_eq!(st, ExitStatus::exited(want), "{c}, {node}: {err}");
        }
    }
}
