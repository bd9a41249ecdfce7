//! Resources, OOM notification, stats, pause/unpause and update of the native driver, on the
//! real cgroups of this host (root; a failure under CI=true without it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use execdriver_api::oci_spec::runtime::{LinuxResources, Spec};
use execdriver_api::{Driver, ExitStatus, Hooks, OomReceiver, Pipes, Signal, Status};
use execdriver_tests::native::{driver, run_busybox};
use execdriver_tests::{busybox_command, missing, unique_id};

fn setup(test: &str) -> Option<Arc<dyn Driver>> {
    match driver() {
        Ok(d) => Some(d),
        Err(why) => {
            missing(test, &why);
            None
        }
    }
}

fn resources(json: serde_json::Value) -> impl FnOnce(&mut Spec) {
    move |spec: &mut Spec| {
        let r: LinuxResources = serde_json::from_value(json).unwrap();
        spec.linux_mut().as_mut().unwrap().set_resources(Some(r));
    }
}

const MIB: i64 = 1024 * 1024;

/// Allocates `mb` megabytes in one shell string (busybox tail keeps the whole line).
fn hog(mb: u32) -> String {
    format!(
        "head -c {}m /dev/zero | tail > /dev/null; echo survived",
        mb
    )
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed_and_every_hook_hears_it() {
    let Some(d) = setup("a_container_over_its_memory_limit_is_oom_killed_and_every_hook_hears_it")
    else {
        return;
    };
    let receivers: Arc<Mutex<Vec<(&str, OomReceiver)>>> = Arc::default();
    let (r1, r2) = (receivers.clone(), receivers.clone());
    let hooks = Hooks::new()
        .on_pre_start(move |ctx| {
            r1.lock().unwrap().push(("pre_start", ctx.oom()));
            Ok(())
        })
        .on_start(move |ctx| {
            r2.lock().unwrap().push(("start", ctx.oom()));
            Ok(())
        });
    let id = unique_id("oom");
    // The init shell itself grows a string towards 200 MB (2^24 × 16 bytes).
    let (st, out, _) = run_busybox(
        &*d,
        &id,
        &["sh", "-c", "x=0123456789abcdef; i=0; while [ $i -lt 24 ]; do x=$x$x; i=$((i+1)); done; echo survived"],
        &hooks,
        resources(serde_json::json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}})),
    )
    .unwrap();
    assert_eq!(st, ExitStatus::signaled(9).with_oom_killed(true));
    assert!(!out.contains("survived"), "{out}");
    let receivers = receivers.lock().unwrap();
    assert_eq!(receivers.len(), 2);
    for (stage, rx) in receivers.iter() {
        let ev = rx
            .try_recv()
            .unwrap_or_else(|_| panic!("{stage} hook's receiver got no OOM event"));
        assert_eq!(ev.id, id);
        assert!(ev.count >= 1);
        // The run is over: the channel is closed after the events.
        while rx.try_recv().is_ok() {}
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }
}

#[test]
fn a_kill_9_is_not_an_oom_kill() {
    let Some(d) = setup("a_kill_9_is_not_an_oom_kill") else {
        return;
    };
    let id = unique_id("oom-not");
    let d2 = d.clone();
    let id2 = id.clone();
    let hooks = Hooks::new().on_start(move |_| d2.kill(&id2, Signal::KILL).map_err(Into::into));
    let (st, _, _) = run_busybox(
        &*d,
        &id,
        &["sleep", "1000"],
        &hooks,
        resources(serde_json::json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}})),
    )
    .unwrap();
    assert_eq!(
        st,
        ExitStatus::signaled(9),
        "killed by signal 9 and not oom_killed"
    );
}

#[test]
fn a_pids_limit_of_8_contains_a_fork_storm() {
    let Some(d) = setup("a_pids_limit_of_8_contains_a_fork_storm") else {
        return;
    };
    // A nested shell forks until it can't (busybox sh then exits); its sleeps stay. The init
    // shell uses builtins only afterwards: they need no fork.
    let script = "sh -c 'while :; do sleep 100 & done'; echo storm-done; read x";
    let id = unique_id("pids");
    let cmd = busybox_command(
        &id,
        &["sh", "-c", script],
        resources(serde_json::json!({"pids": {"limit": 8}})),
    )
    .unwrap();
    let (stdin_r, stdin_w) = std::io::pipe().unwrap();
    let (out_r, out_w) = std::io::pipe().unwrap();
    let (err_r, err_w) = std::io::pipe().unwrap();
    let pipes = Pipes {
        stdin: stdin_r.into(),
        stdout: out_w.into(),
        stderr: err_w.into(),
        extra: Vec::new(),
    };
    let h = execdriver_api::spawn(d.clone(), cmd, pipes, Hooks::new()).unwrap();
    use std::io::{BufRead, Read};
    let mut line = String::new();
    std::io::BufReader::new(out_r).read_line(&mut line).unwrap();
    assert_eq!(line, "storm-done\n");
    let stats = d.stats(&id).unwrap();
    let pids = d.pids(&id).unwrap();
    drop(stdin_w);
    d.terminate(&id).unwrap();
    h.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::BufReader::new(err_r).read_to_string(&mut err);
    assert_eq!(stats.pids.limit, Some(8));
    assert!(
        stats.pids.current <= 8,
        "{} processes with pids.max = 8",
        stats.pids.current
    );
    assert!(pids.len() <= 8, "{pids:?}");
    assert!(err.contains("can't fork"), "{err}");
}

#[test]
fn a_cpu_quota_throttles_a_busy_loop() {
    let Some(d) = setup("a_cpu_quota_throttles_a_busy_loop") else {
        return;
    };
    let id = unique_id("cpu");
    let cmd = busybox_command(
        &id,
        &["sh", "-c", "while :; do :; done"],
        resources(serde_json::json!({"cpu": {"quota": 10000, "period": 100000}})),
    )
    .unwrap();
    let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    h.wait_started().unwrap();
    let first = d.stats(&id).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let second = d.stats(&id).unwrap();
    d.terminate(&id).unwrap();
    h.wait().unwrap();
    assert!(
        second.cpu.throttled_periods > first.cpu.throttled_periods,
        "{:?} -> {:?}",
        first.cpu,
        second.cpu
    );
    assert!(second.cpu.throttled_ns > 0, "{:?}", second.cpu);
    assert!(second.cpu.periods >= second.cpu.throttled_periods);
}

#[test]
fn pause_stops_a_counter_and_unpause_resumes_it() {
    let Some(d) = setup("pause_stops_a_counter_and_unpause_resumes_it") else {
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let counter = shared.path().join("n");
    let id = unique_id("pause");
    let cmd = busybox_command(&id, &["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /shared/n; done"], |spec| {
        let mut v = serde_json::to_value(&*spec).unwrap();
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/tmp/shared", "type": "bind", "source": shared.path(), "options": ["bind"]}));
        v["process"]["args"] = serde_json::json!(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/shared/n; done"]);
        *spec = serde_json::from_value(v).unwrap();
    })
    .unwrap();
    let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    h.wait_started().unwrap();
    let read = || {
        std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while read() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    d.pause(&id).unwrap();
    assert_eq!(d.info(&id).unwrap().status, Status::Paused);
    assert!(matches!(
        d.pause(&id),
        Err(execdriver_api::DriverError::InvalidState { .. })
    ));
    let frozen_at = read();
    std::thread::sleep(Duration::from_millis(300));
    // Frozen, the file can't change (not even from empty to written).
    assert_eq!(read(), frozen_at, "the counter advanced while paused");
    d.unpause(&id).unwrap();
    assert_eq!(d.info(&id).unwrap().status, Status::Running);
    // `echo >` truncates before it writes: a read can see an empty file, so keep the value
    // that showed progress.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = read();
    while after <= frozen_at && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        after = read();
    }
    // A paused container can be terminated too.
    d.pause(&id).unwrap();
    d.terminate(&id).unwrap();
    assert_eq!(h.wait().unwrap(), ExitStatus::signaled(9));
    assert!(after > frozen_at, "the counter did not resume");
}

#[test]
fn update_raises_the_memory_limit_of_a_running_container() {
    let Some(d) = setup("update_raises_the_memory_limit_of_a_running_container") else {
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let id = unique_id("update");
    let script = format!(
        "while [ ! -e /tmp/shared/go ]; do sleep 0.02; done; {}",
        hog(48)
    );
    let cmd = busybox_command(&id, &["sh", "-c", &script], |spec| {
        resources(serde_json::json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}}))(spec);
        let mut v = serde_json::to_value(&*spec).unwrap();
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/tmp/shared", "type": "bind", "source": shared.path(), "options": ["bind"]}));
        *spec = serde_json::from_value(v).unwrap();
    })
    .unwrap();
    let (pipes, captured) = Pipes::capture().unwrap();
    let h = execdriver_api::spawn(d.clone(), cmd, pipes, Hooks::new()).unwrap();
    h.wait_started().unwrap();
    assert_eq!(d.stats(&id).unwrap().memory.limit, 32 * MIB as u64);
    let raised: LinuxResources = serde_json::from_value(
        serde_json::json!({"memory": {"limit": 256 * MIB, "swap": 256 * MIB}}),
    )
    .unwrap();
    d.update(&id, &raised).unwrap();
    assert_eq!(d.stats(&id).unwrap().memory.limit, 256 * MIB as u64);
    std::fs::write(shared.path().join("go"), "").unwrap();
    let st = h.wait().unwrap();
    let (out, err) = captured.wait_strings();
    assert_eq!(st, ExitStatus::exited(0), "{out}{err}");
    assert_eq!(out, "survived\n");
    // Bad values are refused with the field named, and a stopped container can't be updated.
    let bad: LinuxResources =
        serde_json::from_value(serde_json::json!({"cpu": {"shares": 1}})).unwrap();
    assert!(matches!(
        d.update(&id, &bad),
        Err(execdriver_api::DriverError::NotFound { .. }
            | execdriver_api::DriverError::NotRunning { .. })
    ));
}

#[test]
fn stats_are_non_zero_and_monotonic() {
    let Some(d) = setup("stats_are_non_zero_and_monotonic") else {
        return;
    };
    let id = unique_id("stats");
    let cmd = busybox_command(
        &id,
        &[
            "sh",
            "-c",
            "x=0123456789; x=$x$x$x$x$x$x$x$x; while :; do y=$x; done",
        ],
        resources(serde_json::json!({"memory": {"limit": 64 * MIB}, "pids": {"limit": 50}})),
    )
    .unwrap();
    let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    h.wait_started().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let a = d.stats(&id).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b = d.stats(&id).unwrap();
    d.terminate(&id).unwrap();
    h.wait().unwrap();
    assert!(
        a.cpu.total_ns > 0 && b.cpu.total_ns > a.cpu.total_ns,
        "{:?} {:?}",
        a.cpu,
        b.cpu
    );
    assert!(b.cpu.user_ns + b.cpu.system_ns > 0, "{:?}", b.cpu);
    assert!(
        b.memory.usage > 0 && b.memory.max_usage >= b.memory.usage,
        "{:?}",
        b.memory
    );
    assert_eq!(b.memory.limit, 64 * MIB as u64);
    assert!(b.pids.current >= 1);
    assert_eq!(b.pids.limit, Some(50));
    assert!(b.network.is_some(), "the container has a network namespace");
    assert!(b.read_at > a.read_at);
    // Without a limit the host's memory is reported.
    let id = unique_id("stats2");
    let cmd = busybox_command(&id, &["sleep", "100"], |_| {}).unwrap();
    let h = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    h.wait_started().unwrap();
    let unlimited = d.stats(&id).unwrap();
    d.terminate(&id).unwrap();
    h.wait().unwrap();
    let host: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024;
    assert_eq!(unlimited.memory.limit, host);
    // A finished container has no stats.
    assert!(matches!(
        d.stats(&id),
        Err(execdriver_api::DriverError::NotFound { .. })
    ));
}

/// Whether this host is hybrid with hugetlb on its cgroup2 mount (no v1 hugetlb hierarchy).
fn hugetlb_only_on_hybrid_cgroup2() -> bool {
    let root = std::path::Path::new("/sys/fs/cgroup");
    !root.join("cgroup.controllers").exists() && !root.join("hugetlb").exists()
}

#[test]
fn bad_resources_are_rejected_before_anything_starts() {
    let Some(d) = setup("bad_resources_are_rejected_before_anything_starts") else {
        return;
    };
    for (json, want) in [
        (
            serde_json::json!({"memory": {"limit": -7}}),
            "linux.resources.memory.limit",
        ),
        (
            serde_json::json!({"cpu": {"quota": 5}}),
            "linux.resources.cpu.quota",
        ),
        (
            serde_json::json!({"cpu": {"cpus": "zero"}}),
            "linux.resources.cpu.cpus",
        ),
        (
            serde_json::json!({"pids": {"limit": 8}, "network": {"classID": 3}}),
            "linux.resources.network",
        ),
        // Refused on a hybrid host whose hugetlb controller sits on the cgroup2 mount (this
        // one); applied on v1 and on v2-only hosts (the cgroup-v2 VM checks the file).
        (
            serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}),
            "hugepageLimits",
        ),
    ]
    .into_iter()
    .filter(|(_, want)| *want != "hugepageLimits" || hugetlb_only_on_hybrid_cgroup2())
    {
        let id = unique_id("badres");
        let err = run_busybox(&*d, &id, &["true"], &Hooks::new(), resources(json.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{json}: {err}");
        assert!(matches!(
            d.info(&id),
            Err(execdriver_api::DriverError::NotFound { .. })
        ));
    }
}
