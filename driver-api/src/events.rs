//! The lifecycle event stream of a driver: [`Event`]s per container in containerd's order.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::id::ContainerId;
use crate::status::ExitStatus;

/// What happened to a container.
///
/// Per container the order is containerd's: `Created` first, then `Started` (unless a
/// `pre_start` hook refused it), `Exited` once its init is gone, `Deleted` last (its
/// resources released, the id free) — always in that order, each at most once. `Oom`,
/// `Paused`/`Resumed` and `ExecStarted`/`ExecExited` come between `Started` and `Exited`, in the
/// order they happened (every OOM kill before `Exited`, each exec's start before its exit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum EventKind {
    /// The isolation and the init exist (the `pre_start` stage); its pid.
    Created {
        /// The init's pid.
        pid: u32,
    },
    /// The program started (the `start` stage).
    Started {
        /// The init's pid.
        pid: u32,
    },
    /// The OOM killer (or the wasm memory limit) killed a process of the container.
    Oom {
        /// OOM kills so far, this one included.
        count: u64,
    },
    /// `pause` succeeded.
    Paused,
    /// `unpause` succeeded.
    Resumed,
    /// An exec'd process started.
    ExecStarted {
        /// Its pid.
        pid: u32,
    },
    /// An exec'd process exited.
    ExecExited {
        /// Its pid.
        pid: u32,
        /// How.
        status: ExitStatus,
    },
    /// The init exited (the `post_stop` stage).
    Exited {
        /// How.
        status: ExitStatus,
    },
    /// Every resource of the container is released; the id is free.
    Deleted,
}

/// One event of a driver's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The container.
    pub id: ContainerId,
    /// Position in the driver's stream: strictly increasing across all its containers.
    pub seq: u64,
    /// When the driver saw it.
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// The receiving end of [`Driver::subscribe`](crate::Driver::subscribe). It disconnects when
/// the driver is dropped.
pub type EventReceiver = Receiver<Event>;

/// What a late subscriber is told first about a container it joined in the middle of: the
/// events that brought it to where it is now.
#[derive(Default)]
struct Live {
    created: Option<Event>,
    started: Option<Event>,
    paused: Option<Event>,
    /// Execs that started and have not exited.
    execs: Vec<Event>,
}

impl Live {
    fn replay(&self) -> impl Iterator<Item = &Event> {
        self.created
            .iter()
            .chain(&self.started)
            .chain(&self.paused)
            .chain(&self.execs)
    }
}

#[derive(Default)]
struct Inner {
    seq: u64,
    subscribers: Vec<Sender<Event>>,
    live: HashMap<ContainerId, Live>,
}

/// A driver's broadcaster: every subscriber sees every event published after it subscribed,
/// preceded by a replay, per running container, of the events that brought it to its current
/// state (`Created`, `Started`, `Paused` if paused, `ExecStarted` of running execs) — so a
/// late subscriber still sees each container's events in order from `Created`.
#[derive(Default)]
pub(crate) struct EventBus {
    inner: Mutex<Inner>,
}

impl EventBus {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new receiver: the replay first, then every later event.
    pub(crate) fn subscribe(&self) -> EventReceiver {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut inner = self.lock();
        let mut replay: Vec<&Event> = inner.live.values().flat_map(Live::replay).collect();
        replay.sort_by_key(|e| e.seq);
        for e in replay {
            let _ = tx.send(e.clone());
        }
        inner.subscribers.push(tx);
        rx
    }

    /// Publishes one event for `id`; subscribers that went away are forgotten.
    pub(crate) fn publish(&self, id: &ContainerId, kind: EventKind) {
        let mut inner = self.lock();
        inner.seq += 1;
        let event = Event {
            id: id.clone(),
            seq: inner.seq,
            at: SystemTime::now(),
            kind,
        };
        match &event.kind {
            EventKind::Created { .. } => {
                inner.live.insert(
                    id.clone(),
                    Live {
                        created: Some(event.clone()),
                        ..Live::default()
                    },
                );
            }
            EventKind::Deleted => {
                inner.live.remove(id);
            }
            kind => {
                if let Some(live) = inner.live.get_mut(id) {
                    match kind {
                        EventKind::Started { .. } => live.started = Some(event.clone()),
                        EventKind::Paused => live.paused = Some(event.clone()),
                        EventKind::Resumed => live.paused = None,
                        EventKind::ExecStarted { .. } => live.execs.push(event.clone()),
                        EventKind::ExecExited { pid, .. } => live.execs.retain(
                            |e| !matches!(e.kind, EventKind::ExecStarted { pid: p } if p == *pid),
                        ),
                        _ => {}
                    }
                }
            }
        }
        inner
            .subscribers
            .retain(|tx| tx.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(rx: &EventReceiver) -> Vec<EventKind> {
        rx.try_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn late_subscribers_get_each_containers_state_first() {
        let bus = EventBus::default();
        let a = ContainerId::new("a").unwrap();
        let b = ContainerId::new("b").unwrap();
        let early = bus.subscribe();
        bus.publish(&a, EventKind::Created { pid: 1 });
        bus.publish(&a, EventKind::Started { pid: 1 });
        bus.publish(&b, EventKind::Created { pid: 2 });
        bus.publish(&a, EventKind::Paused);
        bus.publish(&a, EventKind::ExecStarted { pid: 5 });
        bus.publish(&a, EventKind::ExecStarted { pid: 6 });
        bus.publish(
            &a,
            EventKind::ExecExited {
                pid: 5,
                status: ExitStatus::exited(0),
            },
        );
        let late = bus.subscribe();
        let replayed: Vec<(String, EventKind)> = late
            .try_iter()
            .map(|e| (e.id.to_string(), e.kind))
            .collect();
        assert_eq!(
            replayed,
            [
                ("a".into(), EventKind::Created { pid: 1 }),
                ("a".into(), EventKind::Started { pid: 1 }),
                ("b".into(), EventKind::Created { pid: 2 }),
                ("a".into(), EventKind::Paused),
                ("a".into(), EventKind::ExecStarted { pid: 6 }),
            ]
        );
        bus.publish(&a, EventKind::Resumed);
        bus.publish(
            &a,
            EventKind::Exited {
                status: ExitStatus::exited(3),
            },
        );
        bus.publish(&a, EventKind::Deleted);
        assert_eq!(
            kinds(&late),
            [
                EventKind::Resumed,
                EventKind::Exited {
                    status: ExitStatus::exited(3)
                },
                EventKind::Deleted
            ]
        );
        assert_eq!(kinds(&early).len(), 10);
        // A deleted container is not replayed; a resumed one is not replayed as paused.
        let later = bus.subscribe();
        assert_eq!(kinds(&later), [EventKind::Created { pid: 2 }]);
        drop(early);
        bus.publish(&b, EventKind::Deleted);
        assert_eq!(bus.lock().subscribers.len(), 2);
    }

    #[test]
    fn sequence_numbers_increase_across_containers() {
        let bus = EventBus::default();
        let rx = bus.subscribe();
        for n in ["x", "y", "x"] {
            bus.publish(&ContainerId::new(n).unwrap(), EventKind::Paused);
        }
        let seqs: Vec<u64> = rx.try_iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let json = serde_json::to_value(EventKind::Exited {
            status: ExitStatus::exited(1),
        })
        .unwrap();
        assert_eq!(json["type"], "exited");
    }
}
