//! Nothing is left behind — fds, threads, child processes, mounts, cgroups, state — after
//! successful runs, failing hooks, bad input, kills and terminates. One test in its own binary
//! so that nothing else runs while the process-wide counts are compared.

use std::sync::Arc;

use execdriver_api::{Driver, Hooks, Pipes, Signal};
use execdriver_tests::leaks::{settle, snapshot};
use execdriver_tests::native::{driver, run_busybox, state_root};
use execdriver_tests::{busybox_command, missing, unique_id};

fn scenarios(d: &Arc<dyn Driver>) {
    // A plain run with output.
    let (st, out, _) = run_busybox(
        &**d,
        &unique_id("leak"),
        &["sh", "-c", "echo hi"],
        &Hooks::new(),
        |_| {},
    )
    .unwrap();
    assert!(st.success() && out == "hi\n");
    // A failing pre_start hook.
    let hooks = Hooks::new().on_pre_start(|_| Err("no".into()));
    assert!(run_busybox(&**d, &unique_id("leak"), &["true"], &hooks, |_| {}).is_err());
    // A panicking pre_start hook.
    let hooks = Hooks::new().on_pre_start(|_| panic!("hook panic"));
    assert!(run_busybox(&**d, &unique_id("leak"), &["true"], &hooks, |_| {}).is_err());
    // A failing start hook (the container is killed).
    let hooks = Hooks::new().on_start(|_| Err("no".into()));
    assert!(run_busybox(&**d, &unique_id("leak"), &["sleep", "100"], &hooks, |_| {}).is_err());
    // Bad input found by the child (program not found), and by the parent (bad cwd).
    assert!(run_busybox(&**d, &unique_id("leak"), &["nope"], &Hooks::new(), |_| {}).is_err());
    assert!(
        run_busybox(&**d, &unique_id("leak"), &["true"], &Hooks::new(), |s| {
            s.process_mut().as_mut().unwrap().set_cwd("rel".into());
        })
        .is_err()
    );
    // The container makes cgroups of its own below its cgroup (a writable cgroup mount, as
    // systemd in a container does) and moves itself into one: they go with it.
    let (st, out, err) = run_busybox(
        &**d,
        &unique_id("leak"),
        &[
            "sh",
            "-c",
            "for c in pids memory; do mkdir -p /sys/fs/cgroup/$c/a/b /sys/fs/cgroup/$c/c || exit 1; done; \
             echo $$ > /sys/fs/cgroup/pids/a/b/cgroup.procs && echo nested",
        ],
        &Hooks::new(),
        |s| {
            let mut v = serde_json::to_value(&*s).unwrap();
            for m in v["mounts"].as_array_mut().unwrap() {
                if m["destination"] == "/sys/fs/cgroup" {
                    m["options"] = serde_json::json!(["nosuid", "noexec", "nodev", "rw"]);
                }
            }
            *s = serde_json::from_value(v).unwrap();
        },
    )
    .unwrap();
    assert!(st.success() && out == "nested\n", "{st} {out:?} {err}");
    // Killed, and terminated with extra processes, from other threads.
    for terminate in [false, true] {
        let id = unique_id("leak");
        let cmd =
            busybox_command(&id, &["sh", "-c", "sleep 100 & sleep 100 & wait"], |_| {}).unwrap();
        let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
        h.wait_started().unwrap();
        if terminate {
            d.terminate(&id).unwrap();
        } else {
            d.kill(&id, Signal::KILL).unwrap();
        }
        h.wait().unwrap();
    }
}

#[test]
fn nothing_is_left_behind() {
    // Parents left by processes before this one (another engine's, or one that was killed)
    // are not this test's to judge; only those this driver made must go.
    let host_parents = snapshot(&state_root()).parents;
    let d = match driver() {
        Ok(d) => d,
        Err(why) => return missing("nothing_is_left_behind", &why),
    };
    // Warm up: lazily created process-wide resources (the driver's /dev/null fd, ...) exist
    // from the first run on.
    scenarios(&d);
    let root = state_root();
    let before = snapshot(&root);
    for _ in 0..3 {
        scenarios(&d);
    }
    if let Err(leaks) = settle(&before, &root) {
        panic!("left behind: {leaks:#?}");
    }
    // The shared parent cgroup stays while the driver lives (the next container reuses it)
    // and goes with the driver.
    assert!(
        before.parents.difference(&host_parents).next().is_some(),
        "no kept parent cgroup: {:?}",
        before.cgroups
    );
    drop(d);
    let left: Vec<_> = snapshot(&root)
        .parents
        .difference(&host_parents)
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "parent cgroups left after the driver was dropped: {left:?}"
    );
}
