//! Which worker owns which room.
//!
//! The SFU runs one worker per core (see the `driver` module); each worker is
//! an endpoint with its own media socket, and owns whole
//! rooms, so that forwarding never crosses threads. A room goes to the worker
//! with the fewest participants when its first participant arrives and stays
//! there until its last one leaves. This table is consulted on the control
//! path only (joins, offers, candidates, leaves), never per packet.

use crate::error::SfuError;
use crate::ids::{ParticipantId, RoomId};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock the shared table. It holds no invariant a panicking holder could
/// break halfway, so a poisoned lock is still usable.
pub(crate) fn lock(placement: &Mutex<Placement>) -> MutexGuard<'_, Placement> {
    placement.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The room -> worker table and the participants in each room.
#[derive(Debug)]
pub(crate) struct Placement {
    rooms: HashMap<RoomId, Place>,
    participants: HashMap<ParticipantId, (RoomId, usize)>,
    /// Participants per worker.
    load: Vec<usize>,
}

#[derive(Debug)]
struct Place {
    worker: usize,
    members: usize,
}

impl Placement {
    /// A table for `workers` workers (at least one).
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            participants: HashMap::new(),
            load: vec![0; workers.max(1)],
        }
    }

    /// Record `participant` joining `room` and return the worker that owns
    /// the room (choosing one if the room is new).
    pub(crate) fn join(
        &mut self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<usize, SfuError> {
        if self.participants.contains_key(participant) {
            return Err(SfuError::DuplicateParticipant(participant.0.clone()));
        }
        let worker = match self.rooms.get_mut(room) {
            Some(place) => {
                place.members += 1;
                place.worker
            }
            None => {
                let worker = self.least_loaded();
                self.rooms
                    .insert(room.clone(), Place { worker, members: 1 });
                worker
            }
        };
        self.load[worker] += 1;
        self.participants
            .insert(participant.clone(), (room.clone(), worker));
        Ok(worker)
    }

    /// The worker holding `participant`.
    pub(crate) fn worker_of(&self, participant: &ParticipantId) -> Result<usize, SfuError> {
        self.participants
            .get(participant)
            .map(|(_, worker)| *worker)
            .ok_or_else(|| SfuError::UnknownParticipant(participant.0.clone()))
    }

    /// Forget `participant`; the room is released when it was the last one.
    /// Leaving twice is harmless (the SFU may drop a participant on its own
    /// while signaling removes it too).
    pub(crate) fn leave(&mut self, participant: &ParticipantId) {
        let Some((room, worker)) = self.participants.remove(participant) else {
            return;
        };
        self.load[worker] = self.load[worker].saturating_sub(1);
        if let Some(place) = self.rooms.get_mut(&room) {
            place.members = place.members.saturating_sub(1);
            if place.members == 0 {
                self.rooms.remove(&room);
            }
        }
    }

    /// Rooms placed now.
    #[cfg(test)]
    pub(crate) fn rooms(&self) -> usize {
        self.rooms.len()
    }

    fn least_loaded(&self) -> usize {
        // Ties go to the lowest index, so one room on an idle server lands on
        // worker 0 and the second room on worker 1.
        let rooms_per_worker = |w: usize| self.rooms.values().filter(|p| p.worker == w).count();
        (0..self.load.len())
            .min_by_key(|&w| (self.load[w], rooms_per_worker(w), w))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomId {
        RoomId(s.into())
    }
    fn who(s: &str) -> ParticipantId {
        ParticipantId(s.into())
    }

    #[test]
    fn a_room_stays_on_one_worker_and_rooms_spread() {
        let mut p = Placement::new(2);
        let a = p.join(&room("a"), &who("a1")).expect("join");
        assert_eq!(p.join(&room("a"), &who("a2")).expect("join"), a);
        let b = p.join(&room("b"), &who("b1")).expect("join");
        assert_ne!(a, b, "the second room goes to the idle worker");
        // Worker of `a` has 2, of `b` has 1: a third room goes beside `b`.
        assert_eq!(p.join(&room("c"), &who("c1")).expect("join"), b);
        assert_eq!(p.worker_of(&who("a2")).expect("known"), a);
        assert_eq!(p.rooms(), 3);
    }

    #[test]
    fn leaving_releases_the_room_and_is_idempotent() {
        let mut p = Placement::new(2);
        p.join(&room("a"), &who("x")).expect("join");
        p.join(&room("a"), &who("y")).expect("join");
        p.leave(&who("x"));
        p.leave(&who("x"));
        assert_eq!(p.rooms(), 1, "y is still there");
        assert!(matches!(
            p.worker_of(&who("x")),
            Err(SfuError::UnknownParticipant(_))
        ));
        p.leave(&who("y"));
        assert_eq!(p.rooms(), 0);
        assert_eq!(p.load, vec![0, 0]);
    }

    #[test]
    fn a_duplicate_id_is_refused_and_changes_nothing() {
        let mut p = Placement::new(1);
        p.join(&room("a"), &who("x")).expect("join");
        assert!(matches!(
            p.join(&room("b"), &who("x")),
            Err(SfuError::DuplicateParticipant(_))
        ));
        assert_eq!(p.rooms(), 1);
        assert_eq!(p.load, vec![1]);
    }

    #[test]
    fn zero_workers_means_one() {
        let mut p = Placement::new(0);
        assert_eq!(p.join(&room("a"), &who("x")).expect("join"), 0);
    }
}
