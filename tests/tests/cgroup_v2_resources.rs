//! On a cgroup-v2-only host: every resource of a spec lands in the container's cgroup files
//! as runc puts it there — the same container run by the native driver and by runc (through
//! the `oci` driver), the files read from the host while each runs. On a v1 or hybrid host
//! (this machine) it has nothing to compare and says so; `scripts/test-cgroup-v2.sh` runs it in
//! a v2-only VM.

use std::sync::{Arc, Mutex};

use execdriver_api::{Driver, Hooks};
use execdriver_tests::native::run_busybox;
use execdriver_tests::{missing, unique_id};

/// The files each resource below is written to.
const FILES: &[&str] = &[
    "memory.max",
    "memory.swap.max",
    "memory.low",
    "cpu.max",
    "cpu.weight",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "io.weight",
    "io.max",
    "hugetlb.2MB.max",
];

fn pure_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn resources() -> serde_json::Value {
    serde_json::json!({
        "memory": {"limit": 67_108_864, "swap": 100_663_296, "reservation": 33_554_432},
        "cpu": {"shares": 512, "quota": 50_000, "period": 100_000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 32},
        // The loop driver's first device (7:0) exists once the loop module is loaded.
        "blockIO": {"weight": 200, "throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1_048_576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4_194_304}]
    })
}

/// Runs a short container with [`resources`] and returns each file's content, read from the
/// host in the start hook.
fn files_of(d: &dyn Driver) -> Vec<(String, String)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let hooks = Hooks::new().on_start(move |ctx| {
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", ctx.pid()))?;
        let rel = cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("no v2 cgroup")?
            .trim_start_matches('/')
            .to_owned();
        let dir = std::path::Path::new("/sys/fs/cgroup").join(rel);
        let mut out = s.lock().map_err(|_| "poisoned")?;
        for f in FILES {
            let v = std::fs::read_to_string(dir.join(f))
                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|e| format!("<{e}>"));
            out.push(((*f).to_owned(), v));
        }
        Ok(())
    });
    let id = unique_id("v2res");
    let (st, _, err) = run_busybox(d, &id, &["sleep", "0.2"], &hooks, |spec| {
        let mut v = serde_json::to_value(&*spec).unwrap();
        v["linux"]["resources"] = resources();
        *spec = serde_json::from_value(v).unwrap();
    })
    .unwrap_or_else(|e| panic!("{}: {e}", d.name()));
    assert!(st.success(), "{}: {st} {err}", d.name());
    seen.lock().unwrap().clone()
}

#[test]
fn every_resource_lands_in_the_v2_files_as_runc_writes_it() {
    let test = "every_resource_lands_in_the_v2_files_as_runc_writes_it";
    if !pure_v2() {
        eprintln!(
            "SKIP {test}: not a cgroup-v2-only host (scripts/test-cgroup-v2.sh runs it in a v2 VM)"
        );
        return;
    }
    let native = match execdriver_tests::native::driver() {
        Ok(d) => d,
        Err(why) => return missing(test, &why),
    };
    let runc = match execdriver_tests::oci::driver("runc") {
        Ok(d) => d,
        Err(why) => return missing(test, &why),
    };
    let ours = files_of(&*native);
    let theirs = files_of(&*runc);
    for (file, value) in &ours {
        assert!(!value.starts_with('<'), "native: {file}: {value}");
    }
    assert_eq!(ours, theirs, "native (left) and runc (right) differ");
    // And the values are the spec's, not two drivers' shared default.
    let get = |f: &str| ours.iter().find(|(n, _)| n == f).map(|(_, v)| v.as_str());
    assert_eq!(get("memory.max"), Some("67108864"));
    assert_eq!(get("memory.swap.max"), Some("33554432"));
    assert_eq!(get("cpu.max"), Some("50000 100000"));
    assert_eq!(get("pids.max"), Some("32"));
    assert_eq!(get("hugetlb.2MB.max"), Some("4194304"));
}
