//! Running a peer runtime (runc, crun) so that the cgroups it creates at "absolute" paths land
//! under this process's own cgroups: in a private mount + cgroup namespace, with the cgroup
//! filesystems mounted again (so that `/` of each hierarchy is our own cgroup).

/// A shell script that re-mounts every cgroup hierarchy of this host inside a new mount and
/// cgroup namespace. With `hide_unified`, the cgroup2 mount of a hybrid host is covered by an
/// empty tmpfs instead (crun 1.8 refuses hybrid layouts).
pub fn remount_script(hide_unified: bool) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut s = String::from("set -e; ");
    let mut base = None;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(mp), Some(fstype), Some(opts)) = (pre.get(4), post.first(), post.get(2)) else {
            continue;
        };
        match *fstype {
            "tmpfs" if mp.ends_with("/cgroup") => base = Some((*mp).to_owned()),
            "cgroup" => {
                let o: Vec<&str> = opts
                    .split(',')
                    .filter(|o| !["rw", "ro", "relatime", "nosuid", "nodev", "noexec"].contains(o))
                    .collect();
                let o = if o.iter().all(|x| x.starts_with("name=")) {
                    format!("none,{}", o.join(","))
                } else {
                    o.join(",")
                };
                s.push_str(&format!(
                    "umount -l {mp}; mount -t cgroup -o {o} cgroup {mp}; "
                ));
            }
            "cgroup2" if hide_unified => {
                s.push_str(&format!("umount -l {mp}; mount -t tmpfs none {mp}; "))
            }
            "cgroup2" => s.push_str(&format!("umount -l {mp}; mount -t cgroup2 cgroup2 {mp}; ")),
            _ => {}
        }
    }
    let _ = base;
    s
}

/// `unshare` arguments that run `script` (after the remount) in a private mount + cgroup
/// namespace.
pub fn in_private_cgroupns(script: &str, hide_unified: bool) -> Vec<String> {
    vec![
        "unshare".into(),
        "--mount".into(),
        "--cgroup".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        format!("{} {script}", remount_script(hide_unified)),
    ]
}
