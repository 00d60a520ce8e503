//! The connections' next deadlines, cached so that
//! the endpoint's `poll_timeout` does not walk every connection on every
//! driver turn.
//!
//! A connection's deadline (its protocol timer, its consent check, the end
//! of its grace period while connecting or down) changes only when the
//! endpoint touches the connection: a datagram for it, a drain of what it
//! produced, a timeout run, its close. Each of those marks the connection
//! touched; the next poll recomputes only the touched ones and keeps the
//! rest in a min-heap, whose entries that no longer match a connection's
//! deadline are dropped when they reach the top.

use crate::config::SfuConfig;
use crate::connection::{Connection, Liveness};
use crate::ids::{ConnKey, ParticipantId};
use huddle_proto::PcRole;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The earliest instant a connection's timers have work.
pub(crate) fn conn_deadline(conn: &Connection, config: &SfuConfig) -> Option<Instant> {
    let liveness = match conn.liveness {
        Liveness::Connecting { since } => Some(since + config.connect_timeout),
        Liveness::Down { since } => Some(since + config.disconnect_timeout),
        _ => None,
    };
    [conn.timer, conn.consent_deadline(), liveness]
        .into_iter()
        .flatten()
        .min()
}

/// A heap entry: a deadline and whose it is (the role as an index:
/// `PcRole` is not ordered).
type Entry = (Instant, ParticipantId, usize);

fn role_index(role: PcRole) -> usize {
    match role {
        PcRole::Publisher => 0,
        PcRole::Subscriber => 1,
    }
}

/// Every connection's deadline, and which connections to look at again.
#[derive(Default)]
pub(crate) struct Deadlines {
    /// (deadline, connection), earliest first; stale entries included.
    heap: BinaryHeap<Reverse<Entry>>,
    /// The current deadline of each participant's connections, by role
    /// index.
    current: FxHashMap<ParticipantId, [Option<Instant>; 2]>,
    /// How many deadlines `current` holds.
    live: usize,
    /// Connections whose deadline may have changed since the last poll.
    touched: Vec<ConnKey>,
}

impl Deadlines {
    /// `key`'s deadline may have changed (or it is gone).
    pub fn touch(&mut self, key: ConnKey) {
        self.touched.push(key);
    }

    /// The connections touched since the last call.
    pub fn take_touched(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.touched)
    }

    /// `key`'s deadline is now `deadline` (`None`: it has none, or is gone).
    pub fn set(&mut self, key: ConnKey, deadline: Option<Instant>) {
        let (id, role) = (key.0, role_index(key.1));
        let old = match self.current.get_mut(&id) {
            Some(slots) => std::mem::replace(&mut slots[role], deadline),
            None if deadline.is_none() => return,
            None => {
                let mut slots = [None; 2];
                slots[role] = deadline;
                self.current.insert(id.clone(), slots);
                None
            }
        };
        self.live = self.live + usize::from(deadline.is_some()) - usize::from(old.is_some());
        if let Some(slots) = self.current.get(&id) {
            if slots == &[None, None] {
                self.current.remove(&id);
            }
        }
        if let Some(t) = deadline.filter(|&t| old != Some(t)) {
            self.heap.push(Reverse((t, id, role)));
        }
        // Stale entries surface only as time passes: rebuild when they
        // outnumber the live ones.
        if self.heap.len() > 2 * self.live + 64 {
            self.heap = self
                .current
                .iter()
                .flat_map(|(id, slots)| {
                    slots
                        .iter()
                        .enumerate()
                        .filter_map(move |(role, t)| t.map(|t| Reverse((t, id.clone(), role))))
                })
                .collect();
        }
    }

    /// The earliest deadline of any connection.
    #[must_use]
    pub fn earliest(&mut self) -> Option<Instant> {
        while let Some(Reverse((t, id, role))) = self.heap.peek() {
            if self.current.get(id).and_then(|slots| slots[*role]) == Some(*t) {
                return Some(*t);
            }
            self.heap.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: &str) -> ConnKey {
        (ParticipantId(n.into()), PcRole::Publisher)
    }

    #[test]
    fn the_earliest_current_deadline_wins_and_stale_ones_are_skipped() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::default();
        assert_eq!(d.earliest(), None);
        d.set(key("a"), Some(t0 + s * 5));
        d.set(key("b"), Some(t0 + s * 3));
        assert_eq!(d.earliest(), Some(t0 + s * 3));
        // b moves later: a's is now the earliest.
        d.set(key("b"), Some(t0 + s * 9));
        assert_eq!(d.earliest(), Some(t0 + s * 5));
        // a moves earlier, then goes.
        d.set(key("a"), Some(t0 + s));
        assert_eq!(d.earliest(), Some(t0 + s));
        d.set(key("a"), None);
        assert_eq!(d.earliest(), Some(t0 + s * 9));
        d.set(key("b"), None);
        assert_eq!(d.earliest(), None);
    }

    #[test]
    fn a_participants_two_connections_are_kept_apart() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let publisher = key("a");
        let subscriber = (publisher.0.clone(), PcRole::Subscriber);
        let mut d = Deadlines::default();
        d.set(publisher.clone(), Some(t0 + s));
        d.set(subscriber.clone(), Some(t0 + s * 2));
        d.set(publisher, None);
        assert_eq!(d.earliest(), Some(t0 + s * 2));
        d.set(subscriber, None);
        assert_eq!(d.earliest(), None);
        assert_eq!(d.live, 0);
    }

    #[test]
    fn many_moves_of_one_deadline_keep_the_heap_small() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        for i in 0..10_000u64 {
            d.set(key("a"), Some(t0 + Duration::from_millis(i)));
        }
        assert!(d.heap.len() <= 2 + 64, "{}", d.heap.len());
        assert_eq!(d.earliest(), Some(t0 + Duration::from_millis(9_999)));
    }
}
