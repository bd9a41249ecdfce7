//! Leak accounting: what the engine process and the host hold, before and after.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a test could leak.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// This process's open fds, as `fd -> target`.
    pub fds: BTreeSet<String>,
    /// This process's threads.
    pub threads: usize,
    /// Children of this process (pid, state), zombies included.
    pub children: BTreeSet<(u32, char)>,
    /// Mount points of this process's mount namespace.
    pub mounts: BTreeSet<String>,
    /// Cgroup directories named like ours, anywhere under /sys/fs/cgroup, except `parents`.
    pub cgroups: BTreeSet<PathBuf>,
    /// Empty cgroup directories named `execdriver`: the default shared parent, which a live
    /// native driver keeps for its next container and removes when dropped. Not a leak while
    /// some driver lives, so [`Snapshot::leaks_since`] leaves them out; tests that drop their
    /// drivers check them explicitly.
    pub parents: BTreeSet<PathBuf>,
    /// Entries of the state root.
    pub state: BTreeSet<String>,
}

fn read_link(p: &Path) -> String {
    std::fs::read_link(p)
        .map(|t| t.display().to_string())
        .unwrap_or_default()
}

/// Takes a snapshot; `state_root` is the driver's state directory.
pub fn snapshot(state_root: &Path) -> Snapshot {
    let me = std::process::id();
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .map(|e| {
                    format!(
                        "{} -> {}",
                        e.file_name().to_string_lossy(),
                        read_link(&e.path())
                    )
                })
                // The read_dir handle itself.
                .filter(|s| !s.ends_with(&format!("/proc/{me}/fd")))
                .collect()
        })
        .unwrap_or_default();
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    let mut children = BTreeSet::new();
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
            let ppid: u32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            if ppid == me {
                children.insert((pid, state));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut cgroups = BTreeSet::new();
    find_cgroups(Path::new("/sys/fs/cgroup"), 0, &mut cgroups);
    let (parents, cgroups): (BTreeSet<PathBuf>, BTreeSet<PathBuf>) =
        cgroups.into_iter().partition(|p| is_empty_parent(p));
    let state = std::fs::read_dir(state_root)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    Snapshot {
        fds,
        threads,
        children,
        mounts,
        cgroups,
        parents,
        state,
    }
}

fn is_empty_parent(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "execdriver")
        && std::fs::read_dir(p)
            .is_ok_and(|d| !d.flatten().any(|e| e.file_type().is_ok_and(|t| t.is_dir())))
}

/// Cgroup directories named for execdriver or a test, and everything below them (container
/// cgroups under a parent, and the cgroups a container made inside its own).
fn find_cgroups(dir: &Path, depth: usize, out: &mut BTreeSet<PathBuf>) {
    find_cgroups_in(dir, depth, false, out);
}

fn find_cgroups_in(dir: &Path, depth: usize, inside: bool, out: &mut BTreeSet<PathBuf>) {
    if depth > 12 {
        return;
    }
    let Ok(d) = std::fs::read_dir(dir) else {
        return;
    };
    for e in d.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().to_lowercase();
        let ours = inside || name.contains("execdriver") || name.contains("edtest");
        if ours {
            out.insert(e.path());
        }
        find_cgroups_in(&e.path(), depth + 1, ours, out);
    }
}

impl Snapshot {
    /// What `self` has that `before` had not, in words.
    pub fn leaks_since(&self, before: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let extra = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> Vec<String> {
            a.difference(b).cloned().collect()
        };
        let fds = extra(&self.fds, &before.fds);
        if !fds.is_empty() {
            out.push(format!("fds: {fds:?}"));
        }
        if self.threads > before.threads {
            out.push(format!("threads: {} -> {}", before.threads, self.threads));
        }
        let children: Vec<_> = self.children.difference(&before.children).collect();
        if !children.is_empty() {
            out.push(format!("child processes: {children:?}"));
        }
        let mounts = extra(&self.mounts, &before.mounts);
        if !mounts.is_empty() {
            out.push(format!("mounts: {mounts:?}"));
        }
        let cgroups: Vec<_> = self.cgroups.difference(&before.cgroups).collect();
        if !cgroups.is_empty() {
            out.push(format!("cgroups: {cgroups:?}"));
        }
        let state = extra(&self.state, &before.state);
        if !state.is_empty() {
            out.push(format!("state entries: {state:?}"));
        }
        out
    }
}

/// Waits (up to 5 s, for threads and processes that are on their way out) until nothing is
/// left over compared to `before`, or returns what still is.
pub fn settle(before: &Snapshot, state_root: &Path) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let leaks = snapshot(state_root).leaks_since(before);
        if leaks.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(leaks);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_fds_children_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let before = snapshot(dir.path());
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        std::fs::create_dir(dir.path().join("c1")).unwrap();
        let leaks = snapshot(dir.path()).leaks_since(&before);
        child.kill().unwrap();
        child.wait().unwrap();
        drop(file);
        let text = format!("{leaks:?}");
        assert!(text.contains("fds:") && text.contains("/proc/"), "{text}");
        assert!(text.contains("child processes"), "{text}");
        assert!(
            leaks
                .iter()
                .any(|l| l.starts_with("state entries") && l.contains("c1")),
            "{text}"
        );
        std::fs::remove_dir(dir.path().join("c1")).unwrap();
        assert_eq!(settle(&before, dir.path()), Ok(()));
    }
}
