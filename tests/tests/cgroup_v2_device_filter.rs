//! The cgroup v2 device filter (an eBPF program) in the real kernel. This host runs cgroup v1
//! with a cgroup2 mount beside it (hybrid), so the filter can be attached to a throwaway v2
//! cgroup under this process's own and a process in it refused a device.

use std::path::PathBuf;
use std::process::Command;

use execdriver_api::oci_spec::runtime::LinuxDeviceCgroup;
use execdriver_tests::{is_root, missing};

/// (cgroup2 mount point, this process's v2 cgroup relative to it).
fn cgroup2() -> Option<(PathBuf, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.starts_with("cgroup2 ") {
            pre.split(' ').nth(4).map(PathBuf::from)
        } else {
            None
        }
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_start_matches('/')
        .to_owned();
    Some((mount, own))
}

#[test]
fn the_ebpf_device_filter_denies_what_the_rules_deny() {
    let test = "the_ebpf_device_filter_denies_what_the_rules_deny";
    if !is_root() {
        return missing(test, "needs root");
    }
    let Some((mount, own)) = cgroup2() else {
        return missing(test, "no cgroup2 mount on this host");
    };
    let dir = mount
        .join(own)
        .join(format!("edtest-bpf-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let rules: Vec<LinuxDeviceCgroup> =
        serde_json::from_str(r#"[{"allow": false, "access": "rwm"}]"#).unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs && head -c 1 /dev/zero | wc -c && ( (: < /dev/kmsg) 2>/dev/null && echo kmsg-allowed || echo kmsg-denied)",
        dir.display()
    );
    let probe = || Command::new("sh").args(["-c", &script]).output().unwrap();
    // Control: the same cgroup without the filter lets root read /dev/kmsg.
    let before = probe();
    let attached = execdriver::native::__private::attach_v2_device_filter(&dir, &rules);
    let out = attached.as_ref().ok().map(|()| probe());
    std::fs::remove_dir(&dir).unwrap();
    attached.unwrap();
    assert_eq!(String::from_utf8_lossy(&before.stdout), "1\nkmsg-allowed\n");
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // /dev/zero (1:5) is one of the default devices; /dev/kmsg (1:11) is not.
    assert_eq!(
        text,
        "1\nkmsg-denied\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
