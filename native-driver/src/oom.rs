//! OOM notification: one watcher thread for all containers of a driver.
//!
//! - cgroup v1: an eventfd registered through `cgroup.event_control` for `memory.oom_control`;
//! - cgroup v2: an inotify watch on `memory.events`.
//!
//! Either only says "something happened"; the truth is the kernel's `oom_kill` counter, so the
//! watcher delivers one [`OomEvent`](execdriver_api::OomEvent) per increase of the counter
//! (never inferring an OOM kill from exit code 137). [`Watch::sync`] does the same on demand,
//! so that after a container exits every OOM kill has been delivered before `run` returns.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use execdriver_api::{ContainerId, OomNotifier};
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::cgroups::{Cgroup, CgroupFs, stats};

const INOTIFY_TOKEN: u64 = 0;
const STOP_TOKEN: u64 = 1;

struct Entry {
    id: ContainerId,
    notifier: OomNotifier,
    cgroup: Cgroup,
    /// OOM kills counted by the kernel that have been delivered (from the baseline).
    delivered: Arc<Mutex<u64>>,
    /// v1: the eventfd and the oom_control file it is bound to.
    eventfd: Option<(EventFd, File)>,
    /// v2: the inotify watch.
    wd: Option<WatchDescriptor>,
}

struct Shared {
    epoll: Epoll,
    inotify: Mutex<Inotify>,
    watches: Mutex<Watches>,
    entries: Mutex<HashMap<u64, Entry>>,
    by_wd: Mutex<HashMap<WatchDescriptor, u64>>,
    next: AtomicU64,
    stop: EventFd,
    fs: Arc<dyn CgroupFs>,
}

/// The watcher of one driver. The thread starts with the first container.
pub(crate) struct OomWatcher {
    shared: OnceLock<Result<Arc<Shared>, String>>,
    fs: Arc<dyn CgroupFs>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// One container's registration; dropping it unregisters.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    token: u64,
    delivered: Arc<Mutex<u64>>,
    baseline: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OomWatcher {
    pub fn new(fs: Arc<dyn CgroupFs>) -> Self {
        Self {
            shared: OnceLock::new(),
            fs,
            thread: Mutex::new(None),
        }
    }

    fn shared(&self) -> Result<&Arc<Shared>, String> {
        self.shared
            .get_or_init(|| {
                let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
                    .map_err(|e| format!("epoll_create: {e}"))?;
                let inotify = Inotify::init().map_err(|e| format!("inotify_init: {e}"))?;
                epoll
                    .add(
                        inotify.as_fd(),
                        EpollEvent::new(EpollFlags::EPOLLIN, INOTIFY_TOKEN),
                    )
                    .map_err(|e| format!("epoll_ctl: {e}"))?;
                let stop = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
                    .map_err(|e| format!("eventfd: {e}"))?;
                epoll
                    .add(
                        stop.as_fd(),
                        EpollEvent::new(EpollFlags::EPOLLIN, STOP_TOKEN),
                    )
                    .map_err(|e| format!("epoll_ctl: {e}"))?;
                let shared = Arc::new(Shared {
                    epoll,
                    watches: Mutex::new(inotify.watches()),
                    inotify: Mutex::new(inotify),
                    entries: Mutex::new(HashMap::new()),
                    by_wd: Mutex::new(HashMap::new()),
                    next: AtomicU64::new(2),
                    stop,
                    fs: self.fs.clone(),
                });
                let worker = shared.clone();
                let handle = std::thread::Builder::new()
                    .name("execdriver-oom".into())
                    .spawn(move || worker.run())
                    .map_err(|e| format!("spawn the OOM watcher: {e}"))?;
                *lock(&self.thread) = Some(handle);
                Ok(shared)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Starts watching a container's memory cgroup; events go to `notifier`.
    ///
    /// # Errors
    /// When the cgroup has no memory controller or registration fails (the container then
    /// has no OOM notification, which the caller reports).
    pub fn watch(
        &self,
        id: &ContainerId,
        cgroup: &Cgroup,
        notifier: &OomNotifier,
    ) -> Result<Watch, String> {
        let shared = self.shared()?.clone();
        let dir = cgroup
            .dir_of("memory")
            .ok_or("no memory cgroup")?
            .path
            .clone();
        let baseline = stats::oom_kills(cgroup, &*shared.fs).unwrap_or(0);
        let token = shared.next.fetch_add(1, Ordering::Relaxed);
        let delivered = Arc::new(Mutex::new(baseline));
        let mut entry = Entry {
            id: id.clone(),
            notifier: notifier.clone(),
            cgroup: cgroup.clone(),
            delivered: delivered.clone(),
            eventfd: None,
            wd: None,
        };
        if cgroup.v2 {
            let events = dir.join("memory.events");
            let wd = lock(&shared.watches)
                .add(&events, WatchMask::MODIFY)
                .map_err(|e| format!("inotify {}: {e}", events.display()))?;
            lock(&shared.by_wd).insert(wd.clone(), token);
            entry.wd = Some(wd);
        } else {
            let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
                .map_err(|e| format!("eventfd: {e}"))?;
            let control = dir.join("memory.oom_control");
            let oc = File::open(&control).map_err(|e| format!("{}: {e}", control.display()))?;
            let line = format!("{} {}", efd.as_fd().as_raw_fd(), oc.as_raw_fd());
            let ec = dir.join("cgroup.event_control");
            shared
                .fs
                .write(&ec, &line)
                .map_err(|e| format!("{}: {e}", ec.display()))?;
            shared
                .epoll
                .add(efd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
                .map_err(|e| format!("epoll_ctl: {e}"))?;
            entry.eventfd = Some((efd, oc));
        }
        lock(&shared.entries).insert(token, entry);
        Ok(Watch {
            shared,
            token,
            delivered,
            baseline,
        })
    }
}

impl Drop for OomWatcher {
    fn drop(&mut self) {
        if let Some(Ok(shared)) = self.shared.get() {
            let _ = shared.stop.write(1);
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut events = [EpollEvent::empty(); 64];
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(err = %e, "OOM watcher: epoll_wait failed; OOM events stop");
                    return;
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    STOP_TOKEN => return,
                    INOTIFY_TOKEN => {
                        let tokens: Vec<u64> = {
                            let mut ino = lock(&self.inotify);
                            let by_wd = lock(&self.by_wd);
                            match ino.read_events(&mut buf) {
                                Ok(evs) => evs.filter_map(|e| by_wd.get(&e.wd).copied()).collect(),
                                Err(_) => Vec::new(),
                            }
                        };
                        for t in tokens {
                            self.sync(t, false);
                        }
                    }
                    token => self.sync(token, true),
                }
            }
        }
    }

    /// Delivers the OOM kills the kernel counted beyond those delivered; returns the total
    /// delivered since the baseline's start.
    fn sync(&self, token: u64, eventfd: bool) {
        let entries = lock(&self.entries);
        let Some(e) = entries.get(&token) else { return };
        let mut signalled = 0;
        if eventfd && let Some((efd, _)) = &e.eventfd {
            // The count of notifications since the last read.
            signalled = efd.read().unwrap_or(0);
        }
        deliver(e, &*self.fs, signalled);
    }
}

fn deliver(e: &Entry, fs: &dyn CgroupFs, signalled: u64) {
    let mut delivered = lock(&e.delivered);
    match stats::oom_kills(&e.cgroup, fs) {
        Some(count) => {
            while *delivered < count {
                *delivered += 1;
                e.notifier.notify(&e.id);
            }
        }
        // A kernel without the counter: every v1 notification is one event.
        None => {
            for _ in 0..signalled {
                *delivered += 1;
                e.notifier.notify(&e.id);
            }
        }
    }
}

impl Watch {
    /// Delivers every OOM kill counted so far and returns how many there were since the watch
    /// began.
    pub fn sync(&self) -> u64 {
        if let Some(e) = lock(&self.shared.entries).get(&self.token) {
            deliver(e, &*self.shared.fs, 0);
        }
        lock(&self.delivered).saturating_sub(self.baseline)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(e) = lock(&self.shared.entries).remove(&self.token) else {
            return;
        };
        if let Some((efd, _)) = &e.eventfd {
            let _ = self.shared.epoll.delete(efd.as_fd());
        }
        if let Some(wd) = e.wd {
            lock(&self.shared.by_wd).remove(&wd);
            let _ = lock(&self.shared.watches).remove(wd);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::cgroups::CgroupDir;
    use crate::cgroups::fs::fake::FakeFs;

    /// The v2 path on any host: inotify works on the fixture's memory.events file.
    #[test]
    fn v2_memory_events_are_delivered_once_per_oom_kill() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        let events = dir.join("memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n").unwrap();
        let cg = Cgroup {
            v2: true,
            dirs: vec![CgroupDir {
                name: String::new(),
                controllers: vec![],
                path: dir.clone(),
                stop: tmp.path().to_owned(),
            }],
        };
        let watcher = OomWatcher::new(Arc::new(FakeFs::default()));
        let notifier = OomNotifier::new();
        let rx = notifier.subscribe();
        let id = ContainerId::new("v2").unwrap();
        let watch = watcher.watch(&id, &cg, &notifier).unwrap();

        // Something else changes (max), no OOM kill: no event.
        std::fs::write(&events, "low 0\nhigh 0\nmax 4\noom 0\noom_kill 0\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err());

        // Two OOM kills at once: two events, delivered by the watcher thread.
        std::fs::write(&events, "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < 2 && Instant::now() < deadline {
            if let Ok(ev) = rx.recv_timeout(Duration::from_millis(100)) {
                got.push(ev.count);
            }
        }
        assert_eq!(got, [1, 2]);
        assert_eq!(watch.sync(), 2);
        // sync does not deliver twice.
        assert!(rx.try_recv().is_err());
        drop(watch);
        drop(watcher);
    }

    #[test]
    fn sync_catches_what_the_thread_has_not_seen_yet() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("memory.events"), "oom_kill 3\n").unwrap();
        let cg = Cgroup {
            v2: true,
            dirs: vec![CgroupDir {
                name: String::new(),
                controllers: vec![],
                path: dir.clone(),
                stop: tmp.path().to_owned(),
            }],
        };
        let watcher = OomWatcher::new(Arc::new(FakeFs::default()));
        let notifier = OomNotifier::new();
        let rx = notifier.subscribe();
        let watch = watcher
            .watch(&ContainerId::new("s").unwrap(), &cg, &notifier)
            .unwrap();
        // The baseline (3 kills before the watch) is not reported.
        assert_eq!(watch.sync(), 0);
        std::fs::write(dir.join("memory.events"), "oom_kill 4\n").unwrap();
        assert_eq!(watch.sync(), 1);
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap().count, 1);
    }
}
