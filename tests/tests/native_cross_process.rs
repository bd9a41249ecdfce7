//! Containers are visible to and controllable from other processes through the state root:
//! `list`, `info`, `pids`, `kill`, `terminate`, `clean` from a second process.

use std::process::Command;

use execdriver_api::{ExitStatus, Hooks, Pipes, Status};
use execdriver_tests::native::{driver, state_root};
use execdriver_tests::{busybox_command, missing, unique_id};

fn ctl(args: &[&str]) -> (bool, String) {
    let root = state_root();
    let out = Command::new(env!("CARGO_BIN_EXE_edtest-ctl"))
        .arg(&root)
        .args(args)
        .output()
        .expect("edtest-ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

#[test]
fn another_process_lists_inspects_and_kills() {
    let d = match driver() {
        Ok(d) => d,
        Err(why) => return missing("another_process_lists_inspects_and_kills", &why),
    };
    let id = unique_id("xproc");
    let cmd = busybox_command(
        &id,
        &["sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"],
        |_| {},
    )
    .unwrap();
    let handle = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    let Some(pid) = handle.wait_started() else {
        panic!("did not start: {:?}", handle.wait());
    };

    let (ok, list) = ctl(&["list"]);
    assert!(ok && list.split(' ').any(|x| x == id.as_str()), "{list}");
    let (ok, info) = ctl(&["info", id.as_str()]);
    assert!(ok);
    assert_eq!(info, format!("{} {pid}", Status::Running));
    let (ok, pids) = ctl(&["pids", id.as_str()]);
    assert!(
        ok && pids.split(' ').any(|p| p == pid.to_string()),
        "{pids}"
    );
    // Cleaning a running container is refused.
    let (ok, out) = ctl(&["clean", id.as_str()]);
    assert!(!ok && out.contains("can't clean while running"), "{out}");
    // SIGTERM from the other process; the trap may not be installed yet, so repeat.
    for _ in 0..100 {
        let (_, _) = ctl(&["kill", id.as_str(), "TERM"]);
        if handle.is_finished() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(handle.wait().unwrap(), ExitStatus::exited(143));
    let (ok, out) = ctl(&["info", id.as_str()]);
    assert!(!ok && out.contains("not found"), "{out}");
    let (ok, out) = ctl(&["kill", id.as_str(), "KILL"]);
    assert!(!ok && out.contains("not found"), "{out}");
}

#[test]
fn another_process_terminates_and_a_reused_pid_is_never_signalled() {
    let d = match driver() {
        Ok(d) => d,
        Err(why) => {
            return missing(
                "another_process_terminates_and_a_reused_pid_is_never_signalled",
                &why,
            );
        }
    };
    let id = unique_id("xterm");
    let cmd =
        busybox_command(&id, &["sh", "-c", "sleep 1000 & sleep 1000 & wait"], |_| {}).unwrap();
    let handle = execdriver_api::spawn(d.clone(), cmd, Pipes::null(), Hooks::new()).unwrap();
    handle.wait_started().expect("started");
    let (ok, out) = ctl(&["terminate", id.as_str()]);
    assert!(ok, "{out}");
    assert_eq!(handle.wait().unwrap(), ExitStatus::signaled(9));

    // A state file whose pid now belongs to another process (start time differs) is stopped,
    // and signals to it are refused.
    let root = state_root();
    let fake = unique_id("xfake");
    std::fs::create_dir_all(root.join(fake.as_str())).unwrap();
    let me = std::process::id();
    let state = serde_json::json!({
        "version": 1, "id": fake, "pid": me, "start_time": 1, "bundle": "/", "rootfs": "/",
        "created": {"secs_since_epoch": 0, "nanos_since_epoch": 0}, "started": true,
        "cgroup": {"v2": false, "dirs": []}, "owner": 1, "netns": false
    });
    std::fs::write(
        root.join(fake.as_str()).join("state.json"),
        state.to_string(),
    )
    .unwrap();
    let (ok, info) = ctl(&["info", fake.as_str()]);
    assert!(ok);
    assert_eq!(info, "stopped -");
    let (ok, out) = ctl(&["kill", fake.as_str(), "KILL"]);
    assert!(!ok && out.contains("not running"), "{out}");
    let (ok, out) = ctl(&["clean", fake.as_str()]);
    assert!(ok, "{out}");
    assert!(!root.join(fake.as_str()).exists());
}
