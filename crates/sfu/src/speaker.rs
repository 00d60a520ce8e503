//! Active-speaker detection per room, from the audio levels publishers put
//! in their packets (RFC 6464), with no decoding.
//!
//! Each publisher's loudness (127 minus the level in -dBov, so 0 is silence)
//! is followed by an envelope that rises fast ([`ATTACK`]) and falls slowly
//! ([`RELEASE`]), so speech keeps its level through the gaps between
//! syllables and a beep counts for what it is; a publisher whose packets
//! stop (DTX, mute, gone) decays as if silent. Every [`TICK`] the
//! room's loudest publisher above [`SPEAKING`] becomes the active speaker
//! when there is none yet, when the current one has gone quiet, or when it is
//! louder than the current one by [`MARGIN`]; never sooner than [`DWELL`]
//! after the last change, so a cough does not steal the floor. The last
//! speaker stays active through silence, as a dominant-speaker view wants;
//! when it leaves, the room has none until someone speaks.

use crate::ids::{ParticipantId, RoomId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often rooms are evaluated.
pub const TICK: Duration = Duration::from_millis(100);
/// Time constant of the envelope while the loudness rises.
pub const ATTACK: Duration = Duration::from_millis(60);
/// Time constant of the envelope while the loudness falls.
pub const RELEASE: Duration = Duration::from_millis(600);
/// Smoothed loudness a speaker must reach: 127 - 50, i.e. louder than -50 dBov.
pub const SPEAKING: f32 = 77.0;
/// How much louder (dB) a challenger must be than a still-speaking current speaker.
pub const MARGIN: f32 = 6.0;
/// Shortest time between two changes of speaker in a room.
pub const DWELL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Loudness {
    score: f32,
    at: Instant,
}

/// Longer than this without a packet counts as silence (packets come every
/// 20 ms; DTX sends one every 400 ms).
const GAP: Duration = Duration::from_millis(60);

impl Loudness {
    /// The smoothed loudness at `now`: decayed toward silence for the time
    /// beyond [`GAP`] since the last packet.
    fn at(&self, now: Instant) -> f32 {
        let idle = now
            .saturating_duration_since(self.at)
            .saturating_sub(GAP)
            .as_secs_f32();
        self.score * (-idle / RELEASE.as_secs_f32()).exp()
    }
}

#[derive(Debug, Default)]
struct Room {
    loudness: HashMap<ParticipantId, Loudness>,
    current: Option<ParticipantId>,
    changed_at: Option<Instant>,
}

/// A change of active speaker in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerChange {
    /// The room.
    pub room: RoomId,
    /// The new active speaker, `None` when the last one left.
    pub participant: Option<ParticipantId>,
}

/// The detector for every room.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    rooms: HashMap<RoomId, Room>,
    next_tick: Option<Instant>,
    changes: Vec<SpeakerChange>,
}

impl SpeakerDetector {
    /// A publisher's packet carried `level` (-dBov, 0 loudest, 127 silence).
    pub fn observe(&mut self, now: Instant, room: &RoomId, who: &ParticipantId, level: u8) {
        let loud = f32::from(127 - level.min(127));
        let r = self.rooms.entry(room.clone()).or_default();
        let l = r.loudness.entry(who.clone()).or_insert(Loudness {
            score: 0.0,
            at: now,
        });
        let prev = l.at(now);
        // The first packet after a gap counts as one 20 ms frame at least.
        let dt = now
            .saturating_duration_since(l.at)
            .clamp(Duration::from_millis(20), GAP)
            .as_secs_f32();
        let tau = if loud > prev { ATTACK } else { RELEASE };
        let alpha = 1.0 - (-dt / tau.as_secs_f32()).exp();
        l.score = prev + (loud - prev) * alpha;
        l.at = now;
        self.next_tick.get_or_insert(now + TICK);
    }

    /// A participant left the room (or stopped publishing audio).
    pub fn forget(&mut self, room: &RoomId, who: &ParticipantId) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.loudness.remove(who);
        if r.current.as_ref() == Some(who) {
            r.current = None;
            r.changed_at = None;
            self.changes.push(SpeakerChange {
                room: room.clone(),
                participant: None,
            });
        }
        if r.loudness.is_empty() && r.current.is_none() {
            self.rooms.remove(room);
        }
    }

    /// When [`SpeakerDetector::handle_timeout`] next has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Evaluate every room if a tick is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_none_or(|t| t > now) {
            return;
        }
        for (id, r) in &mut self.rooms {
            if let Some(p) = decide(r, now) {
                r.current = Some(p.clone());
                r.changed_at = Some(now);
                self.changes.push(SpeakerChange {
                    room: id.clone(),
                    participant: Some(p),
                });
            }
        }
        self.next_tick = (!self.rooms.is_empty()).then_some(now + TICK);
    }

    /// The next change to report.
    #[must_use = "a change polled and dropped is lost"]
    pub fn poll_change(&mut self) -> Option<SpeakerChange> {
        (!self.changes.is_empty()).then(|| self.changes.remove(0))
    }

    /// The active speaker of `room`, if any.
    pub fn current(&self, room: &RoomId) -> Option<&ParticipantId> {
        self.rooms.get(room).and_then(|r| r.current.as_ref())
    }
}

/// Who should become the room's active speaker now, if anyone new.
fn decide(r: &Room, now: Instant) -> Option<ParticipantId> {
    if r.changed_at
        .is_some_and(|t| now.saturating_duration_since(t) < DWELL)
    {
        return None;
    }
    let (loudest, score) = r
        .loudness
        .iter()
        .map(|(p, l)| (p, l.at(now)))
        .filter(|(_, s)| *s >= SPEAKING)
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    match &r.current {
        Some(c) if c == loudest => None,
        Some(c) => {
            let current = r.loudness.get(c).map_or(0.0, |l| l.at(now));
            (current < SPEAKING || score >= current + MARGIN).then(|| loudest.clone())
        }
        None => Some(loudest.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParticipantId {
        ParticipantId(s.into())
    }

    struct Sim {
        d: SpeakerDetector,
        now: Instant,
        room: RoomId,
        seen: Vec<Option<String>>,
    }

    impl Sim {
        fn new() -> Self {
            Self {
                d: SpeakerDetector::default(),
                now: Instant::now(),
                room: RoomId("r".into()),
                seen: Vec::new(),
            }
        }

        /// Run `ms` of time in 20 ms packets, each talker at its level
        /// (`None`: sends nothing, as with DTX).
        fn run(&mut self, ms: u64, talkers: &[(&str, Option<u8>)]) {
            for _ in 0..ms / 20 {
                for (who, level) in talkers {
                    if let Some(level) = level {
                        self.d.observe(self.now, &self.room, &p(who), *level);
                    }
                }
                self.now += Duration::from_millis(20);
                while self.d.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.d.handle_timeout(self.now);
                }
                while let Some(c) = self.d.poll_change() {
                    assert_eq!(c.room, self.room);
                    self.seen.push(c.participant.map(|x| x.0));
                }
            }
        }

        fn current(&self) -> Option<&str> {
            self.d.current(&self.room).map(|x| x.0.as_str())
        }
    }

    #[test]
    fn the_one_who_talks_becomes_active_and_stays_through_silence() {
        let mut s = Sim::new();
        s.run(1000, &[("alice", Some(127)), ("bob", Some(127))]);
        assert_eq!(s.current(), None, "silence makes nobody active");
        s.run(500, &[("alice", Some(20)), ("bob", Some(127))]);
        assert_eq!(s.current(), Some("alice"));
        // DTX: alice sends nothing; she stays the active speaker.
        s.run(3000, &[("alice", None), ("bob", Some(127))]);
        assert_eq!(s.current(), Some("alice"));
        assert_eq!(s.seen, vec![Some("alice".to_owned())]);
    }

    #[test]
    fn a_louder_talker_takes_over_but_not_a_short_cough() {
        let mut s = Sim::new();
        s.run(1000, &[("alice", Some(40)), ("bob", Some(127))]);
        assert_eq!(s.current(), Some("alice"));
        // bob coughs for 60 ms while alice keeps talking: no change.
        s.run(60, &[("alice", Some(40)), ("bob", Some(5))]);
        s.run(500, &[("alice", Some(40)), ("bob", Some(127))]);
        assert_eq!(s.current(), Some("alice"));
        // bob talks, slightly quieter than alice: still alice (margin).
        s.run(1000, &[("alice", Some(40)), ("bob", Some(43))]);
        assert_eq!(s.current(), Some("alice"));
        // alice stops; bob goes on: bob.
        s.run(1500, &[("alice", Some(127)), ("bob", Some(43))]);
        assert_eq!(s.current(), Some("bob"));
        // bob is much louder while alice talks again at her old level: bob stays.
        s.run(1000, &[("alice", Some(40)), ("bob", Some(20))]);
        assert_eq!(s.current(), Some("bob"));
        assert_eq!(s.seen, vec![Some("alice".into()), Some("bob".into())]);
    }

    #[test]
    fn changes_are_at_least_the_dwell_time_apart() {
        let mut s = Sim::new();
        let mut changes_at = Vec::new();
        // Alternate who talks every 200 ms, loudly.
        for i in 0..20 {
            let (a, b) = if i % 2 == 0 {
                (Some(10), Some(127))
            } else {
                (Some(127), Some(10))
            };
            let before = s.seen.len();
            s.run(200, &[("alice", a), ("bob", b)]);
            if s.seen.len() > before {
                changes_at.push(s.now);
            }
        }
        assert!(changes_at.len() >= 2, "{changes_at:?}");
        for w in changes_at.windows(2) {
            assert!(w[1] - w[0] >= DWELL, "changes {:?} apart", w[1] - w[0]);
        }
    }

    #[test]
    fn periodic_beeps_make_a_speaker() {
        // Chromium's fake microphone: a loud 100 ms beep every second.
        let mut s = Sim::new();
        for _ in 0..3 {
            s.run(100, &[("alice", Some(10)), ("bob", Some(127))]);
            s.run(900, &[("alice", Some(127)), ("bob", Some(127))]);
        }
        assert_eq!(s.current(), Some("alice"));
    }

    #[test]
    fn leaving_speaker_clears_the_room() {
        let mut s = Sim::new();
        s.run(600, &[("alice", Some(20))]);
        assert_eq!(s.current(), Some("alice"));
        s.d.forget(&s.room.clone(), &p("alice"));
        s.run(100, &[]);
        assert_eq!(s.current(), None);
        assert_eq!(s.seen, vec![Some("alice".into()), None]);
        assert!(s.d.rooms.is_empty(), "nothing kept for an empty room");
        assert_eq!(s.d.poll_timeout(), None, "no ticks without rooms");
        // Forgetting someone unknown changes nothing.
        s.d.forget(&RoomId("other".into()), &p("x"));
        assert!(s.d.poll_change().is_none());
    }
}
