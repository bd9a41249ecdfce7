//! The same busybox bundle through `runc run` and `execdriver run`: the same stdout, exit code,
//! hostname, pid 1, user, capabilities, root filesystem and masked/read-only behaviour.
//! runc comes from Debian's package (installed by the test command); both run in a private
//! cgroup namespace so that their cgroups land under this process's own cgroup.

use std::path::Path;
use std::process::Command;

use execdriver_tests::cgns::in_private_cgroupns;
use execdriver_tests::{busybox_rootfs, is_root, missing, runc_like_spec};

const SCRIPT: &str = "echo pid=$$; echo host=$(hostname); id; ls /; ls /dev; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; \
    echo kcore=$(cat /proc/kcore | wc -c); touch /x 2>/dev/null || echo ro-root; \
    echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo ro-sys; ulimit -n; exit 3";

fn runc() -> Option<String> {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

#[test]
fn runc_and_execdriver_agree_on_the_same_bundle() {
    let test = "runc_and_execdriver_agree_on_the_same_bundle";
    if !is_root() {
        return missing(test, "needs root");
    }
    let Some(runc) = runc() else {
        return missing(test, "runc is not installed (apt-get install runc)");
    };
    let rootfs = match busybox_rootfs() {
        Ok(r) => r,
        Err(e) => return missing(test, &e),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = serde_json::to_value(runc_like_spec(rootfs, &["sh", "-c", SCRIPT])).unwrap();
    // runc takes cgroupsPath from the hierarchy root; in its private cgroup namespace that root
    // is our own cgroup.
    spec["linux"]["cgroupsPath"] =
        serde_json::json!(format!("/edtest-runc-{}", std::process::id()));
    std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
    let bundle = dir.path().to_str().unwrap();
    let id = format!("edtest-diff-{}", std::process::id());

    let runc_root = dir.path().join("runc-state");
    let inner = format!(
        "{runc} --root {} run --bundle {bundle} {id}",
        runc_root.display()
    );
    let args = in_private_cgroupns(&inner, false);
    let theirs = Command::new(&args[0]).args(&args[1..]).output().unwrap();

    // In the same kind of namespace: the bundle's absolute cgroupsPath then lands under our
    // own cgroup for execdriver too.
    let inner = format!(
        "{} --root {} run --bundle {bundle} {id}",
        env!("CARGO_BIN_EXE_execdriver"),
        dir.path().join("ed-state").display()
    );
    let args = in_private_cgroupns(&inner, false);
    let ours = Command::new(&args[0]).args(&args[1..]).output().unwrap();

    let t = String::from_utf8_lossy(&theirs.stdout);
    let o = String::from_utf8_lossy(&ours.stdout);
    assert_eq!(
        theirs.status.code(),
        Some(3),
        "runc: {t}{}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    assert_eq!(
        ours.status.code(),
        Some(3),
        "execdriver: {o}{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(o, t, "stdout differs:\n--- runc\n{t}\n--- execdriver\n{o}");
    assert!(
        o.starts_with("pid=1\nhost=runc\nuid=0(root) gid=0(root)"),
        "{o}"
    );
}
