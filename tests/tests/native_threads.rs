//! The native driver holds running containers without a thread each: one reaper thread (and
//! the OOM watcher) serves all of them. A test of its own, so that no other test's threads
//! change the count. Needs root (a failure under CI=true without it).

use std::sync::Arc;

use execdriver_api::{Driver, ExitStatus, Pipes, Signal};
use execdriver_tests::native::driver;
use execdriver_tests::{busybox_command, missing, unique_id};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn running_containers_cost_no_thread_each() {
    let d: Arc<dyn Driver> = match driver() {
        Ok(d) => d,
        Err(why) => return missing("running_containers_cost_no_thread_each", &why),
    };
    // The driver's own threads start with its first container.
    let warm = unique_id("threads");
    let cmd = busybox_command(&warm, &["true"], |_| {}).unwrap();
    let st = d
        .run(&cmd, Pipes::null(), &execdriver_api::Hooks::new())
        .unwrap();
    assert!(st.success());
    let before = threads();

    const N: usize = 40;
    let mut ids = Vec::new();
    for _ in 0..N {
        let id = unique_id("threads");
        let cmd = busybox_command(&id, &["sleep", "1000"], |_| {}).unwrap();
        let created = d.create(&cmd, Pipes::null()).unwrap();
        d.start(&id).unwrap();
        ids.push((id, created));
    }
    let during = threads();
    let exits: Vec<_> = ids.iter().map(|(id, _)| d.wait(id).unwrap()).collect();
    for (id, _) in &ids {
        d.kill(id, Signal::KILL).unwrap();
    }
    for ((id, created), exit) in ids.iter().zip(&exits) {
        assert_eq!(exit.wait(), ExitStatus::signaled(9), "{id}");
        created.oom.close();
        d.delete(id).unwrap();
    }
    assert!(
        during <= before,
        "{N} running containers took {} threads ({before} before)",
        during.saturating_sub(before)
    );
}
