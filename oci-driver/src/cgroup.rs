//! Reading a container's cgroup files: the OOM-kill counter and resource statistics.
//!
//! The runtime binary creates the cgroups; this driver only reads them, found from
//! `/proc/<init>/cgroup` once the init exists, so whatever the binary made of
//! `linux.cgroupsPath` (relative to its own cgroup, absolute, systemd-style) is what is read.
//! Statistics come from these files rather than `events --stats` because crun has no
//! `events` command.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use execdriver_api::{CpuStats, MemoryStats, PidsStats, ResourceStats};

/// The directories of one container's cgroup.
#[derive(Debug, Clone, Default)]
pub(crate) struct Paths {
    /// cgroup v2: the unified directory (when the memory controller is not on v1).
    unified: Option<PathBuf>,
    /// cgroup v1: (controller, directory).
    v1: Vec<(String, PathBuf)>,
}

impl Paths {
    /// The cgroup directories of process `pid`, or empty when they can't be read.
    pub(crate) fn of_pid(pid: u32) -> Self {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return Self::default();
        };
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut paths = Self::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                paths.unified = mount_dir(&mounts, None, path);
            } else {
                for c in controllers.split(',') {
                    if let Some(dir) = mount_dir(&mounts, Some(c), path) {
                        paths.v1.push((c.to_owned(), dir));
                    }
                }
            }
        }
        paths
    }

    fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
    }

    /// Where memory is accounted: v1 `memory`, else the unified directory.
    fn memory(&self) -> Option<(&Path, bool)> {
        match self.v1("memory") {
            Some(d) => Some((d, true)),
            None => self.unified.as_deref().map(|d| (d, false)),
        }
    }

    /// Removes the parent directory the driver named by default (`…/execdriver-oci`) in every
    /// hierarchy once it is empty; the binary removed the container's own directory. A
    /// parent still holding other containers stays (rmdir refuses it).
    pub(crate) fn remove_default_parent(&self, parent: &str) {
        let dirs = self.v1.iter().map(|(_, d)| d).chain(self.unified.iter());
        for dir in dirs {
            if let Some(p) = dir.parent()
                && p.file_name().is_some_and(|n| n == parent)
            {
                let _ = fs::remove_dir(p);
            }
        }
    }

    /// An fd that becomes readable when the container's memory cgroup has an OOM event: v1 an
    /// eventfd registered through `cgroup.event_control` for `memory.oom_control`, v2 an
    /// inotify watch of `memory.events`. `None` without a memory cgroup.
    pub(crate) fn oom_watch(&self) -> Option<std::os::fd::OwnedFd> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (dir, v1) = self.memory()?;
        if v1 {
            let efd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .ok()?;
            let control = fs::File::open(dir.join("memory.oom_control")).ok()?;
            let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
            fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.event_control"))
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .ok()?;
            Some(efd)
        } else {
            use rustix::fs::inotify;
            let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
                .ok()?;
            inotify::add_watch(&fd, dir.join("memory.events"), inotify::WatchFlags::MODIFY).ok()?;
            Some(fd)
        }
    }

    /// How many processes the kernel OOM-killed in the container so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        let Some((dir, v1)) = self.memory() else {
            return 0;
        };
        let file = if v1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        keyed(&dir.join(file), "oom_kill").unwrap_or(0)
    }

    /// Current usage, from the memory, cpu and pids controllers.
    pub(crate) fn stats(&self) -> ResourceStats {
        let mut stats = ResourceStats::new();
        stats.read_at = SystemTime::now();
        let mut memory = MemoryStats::default();
        let mut cpu = CpuStats::default();
        let mut pids = PidsStats::default();
        match self.memory() {
            Some((dir, true)) => {
                memory.usage = number(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
                memory.max_usage = number(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
                memory.limit = number(&dir.join("memory.limit_in_bytes")).unwrap_or(0);
                memory.failcnt = number(&dir.join("memory.failcnt")).unwrap_or(0);
                let stat = dir.join("memory.stat");
                memory.cache = keyed(&stat, "cache").unwrap_or(0);
                memory.rss = keyed(&stat, "rss").unwrap_or(0);
                memory.swap = keyed(&stat, "swap").unwrap_or(0);
            }
            Some((dir, false)) => {
                memory.usage = number(&dir.join("memory.current")).unwrap_or(0);
                memory.max_usage = number(&dir.join("memory.peak")).unwrap_or(0);
                memory.limit = number(&dir.join("memory.max")).unwrap_or(0);
                memory.failcnt = keyed(&dir.join("memory.events"), "max").unwrap_or(0);
                let stat = dir.join("memory.stat");
                memory.cache = keyed(&stat, "file").unwrap_or(0);
                memory.rss = keyed(&stat, "anon").unwrap_or(0);
                memory.swap = number(&dir.join("memory.swap.current")).unwrap_or(0);
            }
            None => {}
        }
        if let Some(dir) = self.v1("cpuacct") {
            cpu.total_ns = number(&dir.join("cpuacct.usage")).unwrap_or(0);
            let tick_ns = 1_000_000_000 / rustix::param::clock_ticks_per_second();
            let stat = dir.join("cpuacct.stat");
            cpu.user_ns = keyed(&stat, "user").unwrap_or(0) * tick_ns;
            cpu.system_ns = keyed(&stat, "system").unwrap_or(0) * tick_ns;
        } else if let Some(dir) = &self.unified {
            let stat = dir.join("cpu.stat");
            cpu.total_ns = keyed(&stat, "usage_usec").unwrap_or(0) * 1000;
            cpu.user_ns = keyed(&stat, "user_usec").unwrap_or(0) * 1000;
            cpu.system_ns = keyed(&stat, "system_usec").unwrap_or(0) * 1000;
        }
        let throttle = self
            .v1("cpu")
            .map(|d| (d.join("cpu.stat"), 1))
            .or_else(|| self.unified.as_ref().map(|d| (d.join("cpu.stat"), 1000)));
        if let Some((stat, scale)) = throttle {
            cpu.periods = keyed(&stat, "nr_periods").unwrap_or(0);
            cpu.throttled_periods = keyed(&stat, "nr_throttled").unwrap_or(0);
            cpu.throttled_ns = keyed(&stat, "throttled_time")
                .or_else(|| keyed(&stat, "throttled_usec"))
                .unwrap_or(0)
                * scale;
        }
        if let Some(dir) = self.v1("pids").or(self.unified.as_deref()) {
            pids.current = number(&dir.join("pids.current")).unwrap_or(0);
            pids.limit = number(&dir.join("pids.max"));
        }
        stats.memory = memory;
        stats.cpu = cpu;
        stats.pids = pids;
        stats
    }
}

/// The host directory of cgroup `path` in the hierarchy of `controller` (`None`: cgroup2).
fn mount_dir(mountinfo: &str, controller: Option<&str>, path: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        // id parent maj:min root mountpoint options... - fstype source superoptions
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let matches = match controller {
            None => *fstype == "cgroup2",
            Some(c) => {
                *fstype == "cgroup"
                    && right
                        .get(2)
                        .is_some_and(|opts| opts.split(',').any(|o| o == c))
            }
        };
        if !matches {
            continue;
        }
        let rel = if *root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root)
        };
        if let Some(rel) = rel {
            return Some(Path::new(point).join(rel.trim_start_matches('/')));
        }
    }
    None
}

fn number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file.
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 1 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
31 1 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 1 0:29 /inner /mnt/cg rw - cgroup cgroup rw,pids";

    #[test]
    fn cgroup_directories_from_mountinfo() {
        assert_eq!(
            mount_dir(MOUNTINFO, Some("memory"), "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/a/b"))
        );
        assert_eq!(
            mount_dir(MOUNTINFO, None, "/x"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/x"))
        );
        assert_eq!(
            mount_dir(MOUNTINFO, Some("pids"), "/inner/c"),
            Some(PathBuf::from("/mnt/cg/c"))
        );
        assert_eq!(mount_dir(MOUNTINFO, Some("pids"), "/elsewhere"), None);
        assert_eq!(mount_dir(MOUNTINFO, Some("cpu"), "/a"), None);
    }

    #[test]
    fn keyed_files() {
        let dir = std::env::temp_dir().join(format!("oci-keyed-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("memory.events");
        fs::write(&f, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(keyed(&f, "oom_kill"), Some(2));
        assert_eq!(keyed(&f, "oom"), Some(1));
        assert_eq!(keyed(&f, "nope"), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
