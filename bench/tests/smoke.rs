//! The benchmark harness in smoke mode (every scenario once, tiny counts), so that it never
//! rots. No timing is asserted: only that every scenario ran and reported.

use std::path::Path;

use execdriver_tests::{is_root, missing};

#[test]
fn every_scenario_runs_once() {
    let bench = Path::new(env!("CARGO_BIN_EXE_execdriver-bench"));
    let cli = bench.with_file_name("execdriver");
    if !cli.is_file() {
        return missing(
            "every_scenario_runs_once",
            "the execdriver CLI is not built next to the harness (cargo test --workspace builds it)",
        );
    }
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bench)
        .args(["--smoke", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{stderr}\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    let mut want = vec![
        "7a. wasm starts",
        "7b. wasm starts per second",
        "8. engine-side memory",
        "10a. wasi:http: one kept-alive connection",
        "10b. wasi:http:",
        "11. scale",
    ];
    if is_root() {
        want.extend([
            "1. native lifecycle",
            "2. native lifecycle without",
            "3. throughput",
            "4. exec",
            "5a. stats",
            "5b. pause",
            "6. OOM notification latency",
        ]);
    } else {
        missing("every_scenario_runs_once (native scenarios)", "needs root");
    }
    for w in want {
        assert!(md.contains(w), "no {w:?} in:\n{md}");
    }
    assert!(!md.contains("**failed**"), "{md}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["smoke"], true);
}
