//! The OOM notification channel: a broadcast of [`OomEvent`]s to every subscriber.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::id::ContainerId;

/// The receiving end handed to hooks and engines. It disconnects (iteration ends) when the
/// container's run is over and the driver dropped its notifier.
pub type OomReceiver = Receiver<OomEvent>;

/// The kernel's OOM killer (or the wasm driver's memory limit) killed a process of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OomEvent {
    /// The container.
    pub id: ContainerId,
    /// When the driver saw the event.
    pub at: SystemTime,
    /// How many OOM kills the container has had so far, this one included.
    pub count: u64,
}

impl OomEvent {
    /// An event for `id`, seen now, with the running `count`.
    pub fn new(id: ContainerId, count: u64) -> Self {
        Self {
            id,
            at: SystemTime::now(),
            count,
        }
    }
}

/// One container's OOM broadcaster, owned by the driver.
///
/// Every [`subscribe`](Self::subscribe) gets its own receiver and sees every event sent after it
/// subscribed — a crossbeam channel alone would hand each event to one receiver only. Cloning
/// the notifier shares it.
#[derive(Clone, Default)]
pub struct OomNotifier {
    inner: Arc<Mutex<Inner>>,
}

/// Called with every event, in the notifying thread (the registry's event stream).
pub(crate) type Watcher = Box<dyn Fn(&OomEvent) + Send + Sync>;

#[derive(Default)]
struct Inner {
    subscribers: Vec<Sender<OomEvent>>,
    watchers: Vec<Watcher>,
    count: u64,
}

impl OomNotifier {
    /// A notifier with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new receiver that sees every later event.
    pub fn subscribe(&self) -> OomReceiver {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.lock().subscribers.push(tx);
        rx
    }

    /// Counts one OOM kill for `id` and delivers the event to every live subscriber; returns
    /// the event. Receivers that were dropped are forgotten.
    pub fn notify(&self, id: &ContainerId) -> OomEvent {
        let mut inner = self.lock();
        inner.count += 1;
        let event = OomEvent::new(id.clone(), inner.count);
        inner
            .subscribers
            .retain(|tx| tx.send(event.clone()).is_ok());
        for w in &inner.watchers {
            w(&event);
        }
        event
    }

    /// Calls `watcher` with every later event, under the notifier's lock (it must not block
    /// or notify); forgotten at [`close`](Self::close).
    pub(crate) fn watch(&self, watcher: Watcher) {
        self.lock().watchers.push(watcher);
    }

    /// How many OOM kills were notified so far.
    pub fn count(&self) -> u64 {
        self.lock().count
    }

    /// Disconnects every subscriber (their iteration ends); later subscribers still work.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.subscribers.clear();
        inner.watchers.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections can't panic; recover the data if a caller's thread did.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for OomNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("OomNotifier")
            .field("subscribers", &inner.subscribers.len())
            .field("count", &inner.count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_sees_every_event() {
        let id = ContainerId::new("c").unwrap();
        let n = OomNotifier::new();
        let a = n.subscribe();
        let b = n.subscribe();
        n.notify(&id);
        let c = n.subscribe();
        n.notify(&id);
        assert_eq!(a.try_iter().map(|e| e.count).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(b.try_iter().count(), 2);
        assert_eq!(c.try_iter().map(|e| e.count).collect::<Vec<_>>(), [2]);
        assert_eq!(n.count(), 2);
    }

    #[test]
    fn dropped_receivers_are_forgotten_and_close_disconnects() {
        let id = ContainerId::new("c").unwrap();
        let n = OomNotifier::new();
        drop(n.subscribe());
        let live = n.subscribe();
        n.notify(&id);
        assert_eq!(n.inner.lock().unwrap().subscribers.len(), 1);
        n.close();
        assert_eq!(live.recv().unwrap().count, 1);
        assert!(
            live.recv().is_err(),
            "closed notifier disconnects receivers"
        );
    }
}
