//! One spec validator for every driver (`execdriver_api::validate_spec`): an OCI-invalid spec
//! is refused alike by the wasm, process and (as root) native drivers — `InvalidSpec` naming
//! the same field — before anything is created. Before it, the wasm driver ran most of these.

use std::sync::Arc;

use execdriver_api::{Command, Driver, DriverError, Hooks, Pipes};
use execdriver_tests::{busybox_rootfs, runc_like_spec, unique_id};
use serde_json::{Value, json};

type Edit = fn(&mut Value);

fn cases() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        (
            "rlimit soft above hard",
            |v| v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]),
            "process.rlimits[0]",
        ),
        (
            "rlimit twice",
            |v| v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 5, "hard": 5}, {"type": "RLIMIT_NOFILE", "soft": 5, "hard": 5}]),
            "process.rlimits[1]",
        ),
        (
            "relative mount destination",
            |v| v["mounts"][0]["destination"] = json!("proc"),
            "mounts[0].destination",
        ),
        (
            "escaping mount destination",
            |v| v["mounts"][0]["destination"] = json!("/../../etc"),
            "mounts[0].destination",
        ),
        (
            "namespace twice",
            |v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "pid"}))
            },
            "linux.namespaces",
        ),
        (
            "escaping cgroupsPath",
            |v| v["linux"]["cgroupsPath"] = json!("../escape"),
            "linux.cgroupsPath",
        ),
        (
            "cgroupsPath at the root",
            |v| v["linux"]["cgroupsPath"] = json!("/"),
            "linux.cgroupsPath",
        ),
        (
            "cpuset that is no list",
            |v| v["linux"]["resources"] = json!({"cpu": {"cpus": "abc"}}),
            "linux.resources.cpu.cpus",
        ),
        (
            "swap below the memory limit",
            |v| {
                v["linux"]["resources"] =
                    json!({"memory": {"limit": 67_108_864, "swap": 1_048_576}})
            },
            "linux.resources.memory",
        ),
        (
            "oomScoreAdj too high",
            |v| v["process"]["oomScoreAdj"] = json!(1001),
            "process.oomScoreAdj",
        ),
        (
            "relative masked path",
            |v| v["linux"]["maskedPaths"] = json!(["proc/kcore"]),
            "linux.maskedPaths[0]",
        ),
        (
            "relative cwd",
            |v| v["process"]["cwd"] = json!("tmp"),
            "process.cwd",
        ),
    ]
}

/// `field` of the driver's refusal of the spec `base` edited by `edit`.
fn refusal(d: &dyn Driver, base: &Value, edit: Edit, bundle: &std::path::Path) -> String {
    let mut v = base.clone();
    edit(&mut v);
    let spec = serde_json::from_value(v).unwrap();
    let cmd = Command::new(unique_id("val"), bundle, spec).unwrap();
    match d.run(&cmd, Pipes::null(), &Hooks::new()) {
        Err(DriverError::InvalidSpec { field, .. }) => field,
        r => format!("not InvalidSpec: {r:?}"),
    }
}

#[test]
fn every_driver_refuses_oci_invalid_specs_alike() {
    let root = execdriver_tests::wasm::rootfs();
    let wasm_base = serde_json::to_value(execdriver_tests::wasm::spec(&["/hello.wat"])).unwrap();
    let mut wasm_base = wasm_base;
    // The fields the cases edit, on the wasm spec too.
    wasm_base["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    wasm_base["linux"] = json!({"namespaces": [{"type": "pid"}, {"type": "mount"}]});
    let wasm = execdriver_tests::wasm::driver().unwrap();
    let process: Arc<dyn Driver> = execdriver_example_process::factory()
        .create(&Value::Null)
        .unwrap();
    let mut drivers: Vec<(&str, Arc<dyn Driver>, Value, std::path::PathBuf)> = vec![
        (
            "wasm",
            wasm,
            wasm_base.clone(),
            root.parent().unwrap().to_owned(),
        ),
        (
            "process",
            process,
            wasm_base,
            root.parent().unwrap().to_owned(),
        ),
    ];
    if let (Ok(native), Ok(rootfs)) = (execdriver_tests::native::driver(), busybox_rootfs()) {
        let mut base = serde_json::to_value(runc_like_spec(rootfs, &["true"])).unwrap();
        // The cases edit mounts[0]: make it /proc, as in the others.
        base["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] == "/proc");
        drivers.push(("native", native, base, rootfs.parent().unwrap().to_owned()));
    } else {
        execdriver_tests::missing(
            "every_driver_refuses_oci_invalid_specs_alike (native)",
            "needs root and busybox",
        );
    }
    let mut wrong = Vec::new();
    for (name, edit, want) in cases() {
        for (driver, d, base, bundle) in &drivers {
            let got = refusal(&**d, base, edit, bundle);
            if !got.starts_with(want) {
                wrong.push(format!("{driver}, {name}: {got} (want {want})"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
