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
use std::time::{Duration, Instant};

use execdriver_api::{ContainerId, OomNotifier};
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags, EpollTimeout};
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
    /// v1: the eventfd bound to the cgroup's oom_control (the kernel keeps no reference to the
    /// control file's fd, which is closed once the eventfd is registered).
    eventfd: Option<EventFd>,
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
    /// v1 containers notified of an OOM whose kill the counter does not show yet (the
    /// eventfd fires when the cgroup runs out, a moment before the victim dies): re-read
    /// every 100 µs until it does, or for [`RECHECK_FOR`].
    pending: Mutex<HashMap<u64, Instant>>,
}

/// How long a v1 OOM notification is followed by re-reads of the kill counter.
const RECHECK_FOR: Duration = Duration::from_millis(200);

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
                let (epoll, stop) = crate::reaper::epoll_with_stop(STOP_TOKEN)?;
                let inotify = Inotify::init().map_err(|e| format!("inotify_init: {e}"))?;
                epoll
                    .add(
                        inotify.as_fd(),
                        EpollEvent::new(EpollFlags::EPOLLIN, INOTIFY_TOKEN),
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
                    pending: Mutex::new(HashMap::new()),
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
            drop(oc);
            entry.eventfd = Some(efd);
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
            // With a notification pending, look every 100 µs (epoll's finest timeout is 1 ms).
            let rechecking = !lock(&self.pending).is_empty();
            let timeout = if rechecking {
                EpollTimeout::ZERO
            } else {
                EpollTimeout::NONE
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(0) if rechecking => {
                    std::thread::sleep(Duration::from_micros(100));
                    0
                }
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
            self.recheck();
        }
    }

    /// Re-reads the counters of the pending v1 notifications.
    fn recheck(&self) {
        let now = Instant::now();
        let tokens: Vec<(u64, Instant)> =
            lock(&self.pending).iter().map(|(t, d)| (*t, *d)).collect();
        for (token, deadline) in tokens {
            let done = {
                let entries = lock(&self.entries);
                match entries.get(&token) {
                    None => true,
                    Some(e) => deliver(e, &*self.fs, 0) > 0 || now >= deadline,
                }
            };
            if done {
                lock(&self.pending).remove(&token);
            }
        }
    }

    /// Delivers the OOM kills the kernel counted beyond those delivered; returns the total
    /// delivered since the baseline's start.
    fn sync(&self, token: u64, eventfd: bool) {
        let entries = lock(&self.entries);
        let Some(e) = entries.get(&token) else { return };
        let mut signalled = 0;
        if eventfd && let Some(efd) = &e.eventfd {
            // The count of notifications since the last read.
            signalled = efd.read().unwrap_or(0);
        }
        let new = deliver(e, &*self.fs, signalled);
        if signalled > 0 && new == 0 {
            lock(&self.pending).insert(token, Instant::now() + RECHECK_FOR);
        }
    }
}

/// Delivers what the counter shows beyond what was delivered; returns how many that was.
fn deliver(e: &Entry, fs: &dyn CgroupFs, signalled: u64) -> u64 {
    let mut delivered = lock(&e.delivered);
    let before = *delivered;
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
    *delivered - before
}

impl Watch {
    /// Delivers every OOM kill counted so far and returns how many there were since the watch
    /// began.
    pub fn sync(&self) -> u64 {
        if let Some(e) = lock(&self.shared.entries).get(&self.token) {
            let _ = deliver(e, &*self.shared.fs, 0);
        }
        lock(&self.delivered).saturating_sub(self.baseline)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        lock(&self.shared.pending).remove(&self.token);
        let Some(e) = lock(&self.shared.entries).remove(&self.token) else {
            return;
        };
        if let Some(efd) = &e.eventfd {
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

    /// v1: the eventfd fires when the cgroup runs out of memory, a moment before the kernel
    /// kills the victim and counts it. The kill is delivered as soon as the counter shows it,
    /// not only at the final sync (found by the OOM-latency benchmark).
    #[test]
    fn v1_a_kill_counted_after_the_notification_is_still_delivered_live() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("memory").join("c");
        std::fs::create_dir_all(&dir).unwrap();
        let control = dir.join("memory.oom_control");
        std::fs::write(&control, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        std::fs::write(dir.join("cgroup.event_control"), "").unwrap();
        let cg = Cgroup {
            v2: false,
            dirs: vec![CgroupDir {
                name: "memory".into(),
                controllers: vec!["memory".into()],
                path: dir.clone(),
                stop: tmp.path().join("memory"),
                joined: false,
            }],
        };
        let watcher = OomWatcher::new(Arc::new(FakeFs::default()));
        let notifier = OomNotifier::new();
        let rx = notifier.subscribe();
        let id = ContainerId::new("v1").unwrap();
        let watch = watcher.watch(&id, &cg, &notifier).unwrap();
        // The kernel's notification (as cgroup.event_control would arrange) ...
        {
            let entries = lock(&watch.shared.entries);
            let efd = entries[&watch.token].eventfd.as_ref().unwrap();
            efd.write(1).unwrap();
        }
        // ... then, a little later, the kill is counted.
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            rx.try_recv().is_err(),
            "nothing to deliver before the count rises"
        );
        std::fs::write(&control, "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n").unwrap();
        let ev = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("delivered live");
        assert_eq!(ev.count, 1);
        assert_eq!(watch.sync(), 1);
        drop(watch);
        drop(watcher);
    }

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
                joined: false,
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
                joined: false,
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
