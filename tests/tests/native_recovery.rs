//! Recovery after an engine restart (Nomad's RecoverTask): containers started by one process
//! keep running when that process is SIGKILLed; a new driver on the same state root lists
//! them, reports their status, stats and pids, kills and cleans them; one that died meanwhile
//! is reported as stopped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use execdriver_api::{Signal, Status};
use execdriver_tests::leaks::snapshot;
use execdriver_tests::native::{driver, state_root};
use execdriver_tests::{missing, unique_id};

#[test]
fn containers_outlive_a_killed_engine_and_a_new_driver_recovers_them() {
    let test = "containers_outlive_a_killed_engine_and_a_new_driver_recovers_them";
    let d = match driver() {
        Ok(d) => d,
        Err(why) => return missing(test, &why),
    };
    let root = state_root();
    std::fs::create_dir_all(&root).unwrap();
    let ids: Vec<String> = (0..3).map(|_| unique_id("recover").to_string()).collect();
    let mut engine = Command::new(env!("CARGO_BIN_EXE_edtest-ctl"))
        .arg(&root)
        .arg("engine")
        .args(&ids)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut started = Vec::new();
    let mut out = BufReader::new(engine.stdout.take().unwrap());
    for _ in &ids {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"started"), "engine said {line:?}");
        started.push((f[1].to_owned(), f[2].parse::<i32>().unwrap()));
    }

    // The engine dies without a chance to clean up.
    engine.kill().unwrap();
    engine.wait().unwrap();

    // Its containers run on.
    for (id, pid) in &started {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(!stat.contains(") Z"), "{id}: init {pid} is gone: {stat}");
    }
    // One of them dies while no engine watches (its init, by pid: we started it).
    let (dead_id, dead_pid) = &started[2];
    nix_kill(*dead_pid);

    // A new driver (this process's own, on the same root) recovers them.
    let list: Vec<String> = d.list().unwrap().iter().map(ToString::to_string).collect();
    for id in &ids {
        assert!(list.contains(id), "{id} not in {list:?}");
    }
    for (id, pid) in &started[..2] {
        let id = execdriver_api::ContainerId::new(id.clone()).unwrap();
        let info = d.info(&id).unwrap();
        assert_eq!(info.status, Status::Running, "{id}");
        assert_eq!(info.pid, Some(*pid as u32));
        assert_eq!(d.pids(&id).unwrap(), vec![*pid as u32]);
        let stats = d.stats(&id).unwrap();
        assert!(
            stats.pids.current >= 1 && stats.memory.usage > 0,
            "{stats:?}"
        );
        d.pause(&id).unwrap();
        assert_eq!(d.info(&id).unwrap().status, Status::Paused);
        d.unpause(&id).unwrap();
    }
    let dead = execdriver_api::ContainerId::new(dead_id.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.info(&dead).unwrap().status != Status::Stopped {
        assert!(
            Instant::now() < deadline,
            "the killed container is not reported stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(d.info(&dead).unwrap().pid, None);
    assert!(matches!(
        d.kill(&dead, Signal::TERM),
        Err(execdriver_api::DriverError::NotRunning { .. })
    ));
    d.clean(&dead).unwrap();

    // The running ones: killed and cleaned by the new driver; nothing of them is left.
    for (id, _) in &started[..2] {
        let id = execdriver_api::ContainerId::new(id.clone()).unwrap();
        assert!(
            d.clean(&id).is_err(),
            "clean of a running container is refused"
        );
        d.kill(&id, Signal::KILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.info(&id).unwrap().status != Status::Stopped {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        d.clean(&id).unwrap();
    }
    let after = snapshot(&root);
    for id in &ids {
        assert!(!after.state.contains(id), "state of {id} left");
        assert!(
            !after.cgroups.iter().any(|c| c.ends_with(id)),
            "cgroup of {id} left: {:?}",
            after.cgroups
        );
    }
}

fn nix_kill(pid: i32) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}
