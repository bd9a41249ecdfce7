//! On a cgroup-v2-only host: an engine whose own cgroup delegates no controller (a service's
//! cgroup holding the engine's processes can't: v2 lets only leaves hold processes) gets a
//! clear `Unsupported` naming that cgroup's `cgroup.subtree_control` for a limit, changes
//! nothing there, and still runs containers without limits. One test in its own binary: it
//! moves this process between cgroups. `scripts/test-cgroup-v2.sh` runs it in a v2 VM; on a
//! v1 or hybrid host it says so and returns.

use std::path::Path;

use execdriver_api::Hooks;
use execdriver_tests::native::run_busybox;
use execdriver_tests::{is_root, missing, unique_id};

#[test]
fn a_limit_in_a_non_delegating_engine_cgroup_is_unsupported_naming_the_file() {
    let test = "a_limit_in_a_non_delegating_engine_cgroup_is_unsupported_naming_the_file";
    let mount = Path::new("/sys/fs/cgroup");
    if !mount.join("cgroup.controllers").exists() {
        eprintln!(
            "SKIP {test}: not a cgroup-v2-only host (scripts/test-cgroup-v2.sh runs it in a v2 VM)"
        );
        return;
    }
    if !is_root() {
        return missing(test, "needs root");
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let home = mount.join(&own);
    // A leaf below this process's own cgroup becomes the engine's cgroup.
    let engine = home.join(format!("edv2-engine-{}", std::process::id()));
    std::fs::create_dir(&engine).unwrap();
    let me = std::process::id().to_string();
    std::fs::write(engine.join("cgroup.procs"), &me).unwrap();
    let outcome = std::panic::catch_unwind(|| {
        let d = execdriver_tests::native::driver().unwrap();
        let id = unique_id("v2deleg");
        let err = run_busybox(&*d, &id, &["true"], &Hooks::new(), |spec| {
            let mut v = serde_json::to_value(&*spec).unwrap();
            v["linux"]["resources"] = serde_json::json!({"memory": {"limit": 67_108_864}});
            *spec = serde_json::from_value(v).unwrap();
        })
        .expect_err("a memory limit the engine's cgroup doesn't delegate")
        .to_string();
        let file = engine.join("cgroup.subtree_control");
        assert!(
            err.contains(&file.display().to_string()) && err.contains("memory"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "");
        // Without limits the container runs (its cgroup only groups and accounts).
        let id = unique_id("v2deleg");
        let (st, out, err) =
            run_busybox(&*d, &id, &["echo", "ran"], &Hooks::new(), |_| {}).unwrap();
        assert!(st.success() && out == "ran\n", "{st} {out} {err}");
    });
    // Back home; the engine's cgroup (and what the driver left in it) goes.
    std::fs::write(home.join("cgroup.procs"), &me).unwrap();
    if let Ok(entries) = std::fs::read_dir(&engine) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    std::fs::remove_dir(&engine).unwrap();
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
