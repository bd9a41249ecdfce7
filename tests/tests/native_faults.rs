//! Fault injection on the native driver: each fault ends in a defined state with a clear
//! error, and nothing is left behind (fds, threads, processes, mounts, cgroups, state). The
//! tests run one after another in one test function, so that the process-wide leak counts of
//! one are not disturbed by another.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use execdriver_api::{Driver, DriverError, ExitStatus, Hooks, Pipes, Signal, Status};
use execdriver_tests::leaks::{settle, snapshot};
use execdriver_tests::native::{driver, run_busybox, state_root};
use execdriver_tests::{busybox_command, missing, unique_id};

/// A tmpfs we mount (and unmount when dropped).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(opts: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                opts,
                "edtest",
                dir.path().to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn native_on(root: &Path, extra: serde_json::Value) -> Result<Arc<dyn Driver>, DriverError> {
    let mut options = serde_json::json!({ "root": root });
    if let (Some(o), Some(e)) = (options.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    execdriver::native::factory().create(&options)
}

fn killed_while_pre_start_hooks_run(d: &Arc<dyn Driver>) {
    let hooks = Hooks::new().on_pre_start(|ctx| {
        nix_kill(ctx.pid() as i32);
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    });
    let r = run_busybox(
        &**d,
        &unique_id("fault"),
        &["echo", "never"],
        &hooks,
        |_| {},
    );
    // The init died before its program could run: the run says so, with how it ended.
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("its init ended (killed by signal 9")
            && msg.contains("before the program started"),
        "{msg}"
    );
}

fn hooks_that_panic(d: &Arc<dyn Driver>) {
    let hooks = Hooks::new().on_pre_start(|_| panic!("pre_start panics"));
    let e = run_busybox(&**d, &unique_id("fault"), &["true"], &hooks, |_| {}).unwrap_err();
    assert!(
        matches!(e, DriverError::Hook { .. }) && e.to_string().contains("pre_start panics"),
        "{e}"
    );
    let hooks = Hooks::new().on_start(|_| panic!("start panics"));
    let e = run_busybox(&**d, &unique_id("fault"), &["sleep", "100"], &hooks, |_| {}).unwrap_err();
    assert!(e.to_string().contains("start panics"), "{e}");
    // A post_stop panic is logged; the run's result stands.
    let hooks = Hooks::new().on_post_stop(|_| panic!("post_stop panics"));
    let (st, _, _) = run_busybox(&**d, &unique_id("fault"), &["true"], &hooks, |_| {}).unwrap();
    assert!(st.success());
}

fn program_exits_before_the_start_hooks(d: &Arc<dyn Driver>) {
    let seen = Arc::new(AtomicBool::new(false));
    let s = seen.clone();
    let hooks = Hooks::new()
        .on_start(move |ctx| {
            // `true` is long gone by now; the hook still gets its pid.
            std::thread::sleep(Duration::from_millis(100));
            s.store(ctx.pid() > 0, Ordering::SeqCst);
            Ok(())
        })
        .on_post_stop(|ctx| {
            assert_eq!(ctx.exit(), Some(ExitStatus::exited(0)));
            Ok(())
        });
    let (st, _, _) = run_busybox(&**d, &unique_id("fault"), &["true"], &hooks, |_| {}).unwrap();
    assert!(st.success());
    assert!(seen.load(Ordering::SeqCst));
}

fn state_root_unwritable_or_full() {
    // Read-only.
    let ro = Tmpfs::mount("size=1m,ro");
    let d = native_on(ro.path(), serde_json::json!({})).unwrap();
    let e = run_busybox(&*d, &unique_id("fault"), &["true"], &Hooks::new(), |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(ro.path().to_str().unwrap()) && msg.contains("Read-only file system"),
        "{msg}"
    );
    // Full.
    let full = Tmpfs::mount("size=64k");
    let filler = full.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
    let d = native_on(full.path(), serde_json::json!({})).unwrap();
    let e = run_busybox(&*d, &unique_id("fault"), &["true"], &Hooks::new(), |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    // Nothing but the filler is in it.
    let left: Vec<PathBuf> = std::fs::read_dir(full.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != &filler)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn cgroup_creation_fails() {
    // The container's cgroup exists, frozen, in the freezer hierarchy (the one v2 hierarchy):
    // joining it is refused, the directories made in the other hierarchies are removed again
    // and the frozen one is left as it was found.
    let parent = format!("edtest-fault-{}", std::process::id());
    let id = unique_id("fault");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let own = own_cgroup_dir(if v2 { "" } else { "freezer" });
    let squatter = own.join(&parent).join(id.as_str());
    std::fs::create_dir_all(&squatter).unwrap();
    let (file, value) = if v2 {
        ("cgroup.freeze", "1")
    } else {
        ("freezer.state", "FROZEN")
    };
    std::fs::write(squatter.join(file), value).unwrap();
    let d = native_on(
        &state_root(),
        serde_json::json!({ "cgroup_parent": parent }),
    )
    .unwrap();
    let r = run_busybox(&*d, &id, &["true"], &Hooks::new(), |_| {});
    let left_frozen = std::fs::read_to_string(squatter.join(file)).unwrap_or_default();
    let others = if v2 {
        Vec::new()
    } else {
        ["memory", "pids", "cpu,cpuacct"]
            .iter()
            .map(|c| own_cgroup_dir(c).join(&parent).join(id.as_str()))
            .filter(|p| p.exists())
            .collect()
    };
    let _ = std::fs::remove_dir(&squatter);
    let _ = std::fs::remove_dir(own.join(&parent));
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("linux.cgroupsPath") && msg.contains("container's cgroup unexpectedly frozen"),
        "{msg}"
    );
    assert_eq!(left_frozen.trim(), value);
    assert!(others.is_empty(), "left behind: {others:?}");
}

/// This process's cgroup directory in the v1 hierarchy of `controller` (the unified one for
/// `""` and on v2 hosts).
fn own_cgroup_dir(controller: &str) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if !controller.is_empty() && ctrl == controller {
            return Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'));
        }
    }
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/");
    Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
}

fn operations_racing_with_exit(d: &Arc<dyn Driver>) {
    for i in 0..30 {
        let id = unique_id("race");
        let cmd = busybox_command(
            &id,
            &["sh", "-c", &format!("usleep {}", 1000 * (i % 10))],
            |_| {},
        )
        .unwrap();
        let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let pokers: Vec<_> = (0..4)
            .map(|k| {
                let d = d.clone();
                let id = id.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    while !done.load(Ordering::SeqCst) {
                        let r = match k {
                            0 => d.kill(&id, Signal::TERM),
                            1 => d.pause(&id).and_then(|()| d.unpause(&id)),
                            2 => d.stats(&id).map(drop),
                            _ => d.info(&id).map(drop).and_then(|()| d.pids(&id).map(drop)),
                        };
                        match r {
                            Ok(())
                            | Err(DriverError::NotFound { .. })
                            | Err(DriverError::NotRunning { .. })
                            | Err(DriverError::InvalidState { .. }) => {}
                            Err(e) => panic!("op {k} racing with exit: {e}"),
                        }
                    }
                })
            })
            .collect();
        let st = h.wait();
        done.store(true, Ordering::SeqCst);
        for p in pokers {
            p.join().unwrap();
        }
        // Ended by its own exit or by the TERM (sh as pid 1 ignores TERM; usleep may not).
        let st = st.unwrap();
        assert!(st.code == 0 || st.signal.is_some(), "{st}");
        assert!(matches!(d.info(&id), Err(DriverError::NotFound { .. })));
    }
    // And a paused container that is terminated is not left frozen.
    let id = unique_id("race");
    let cmd = busybox_command(&id, &["sleep", "100"], |_| {}).unwrap();
    let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    h.wait_started().unwrap();
    d.pause(&id).unwrap();
    assert_eq!(d.info(&id).unwrap().status, Status::Paused);
    d.terminate(&id).unwrap();
    assert_eq!(h.wait().unwrap(), ExitStatus::signaled(9));
}

fn nix_kill(pid: i32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

#[test]
fn faults_end_in_a_defined_state_and_leave_nothing() {
    let test = "faults_end_in_a_defined_state_and_leave_nothing";
    let d = match driver() {
        Ok(d) => d,
        Err(why) => return missing(test, &why),
    };
    // Warm up: the driver's one-time threads and fds (OOM watcher, /dev/null).
    run_busybox(&*d, &unique_id("fault"), &["true"], &Hooks::new(), |_| {}).unwrap();
    let root = state_root();
    let steps: [(&str, &dyn Fn()); 6] = [
        ("killed while pre_start hooks run", &|| {
            killed_while_pre_start_hooks_run(&d)
        }),
        ("hooks that panic", &|| hooks_that_panic(&d)),
        ("program exits before the start hooks", &|| {
            program_exits_before_the_start_hooks(&d)
        }),
        (
            "state root unwritable or full",
            &state_root_unwritable_or_full,
        ),
        ("cgroup creation fails", &cgroup_creation_fails),
        ("operations racing with exit", &|| {
            operations_racing_with_exit(&d)
        }),
    ];
    for (name, step) in steps {
        let before = snapshot(&root);
        step();
        if let Err(leaks) = settle(&before, &root) {
            panic!("{name}: left behind: {leaks:#?}");
        }
    }
}
