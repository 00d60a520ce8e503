//! Scenarios: who joins which room, who publishes what, who subscribes.

use huddle_proto::TrackKind;
use serde::Serialize;

/// A named load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// N audio publishers (publish only) and M subscribe-only listeners per room.
    Audio,
    /// N participants per room, each publishing audio + video and receiving all others.
    Meeting,
    /// One publisher of audio + video and M viewers per room.
    Livestream,
}

/// One participant of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantPlan {
    /// Global index, also carried in every probe this participant sends.
    pub index: u32,
    /// Room name.
    pub room: String,
    /// Identity in the token.
    pub identity: String,
    /// Publishes an audio track.
    pub audio: bool,
    /// Publishes a video track.
    pub video: bool,
    /// Receives the others' tracks.
    pub subscribe: bool,
}

impl ParticipantPlan {
    /// Whether it publishes anything.
    pub fn publishes(&self) -> bool {
        self.audio || self.video
    }

    /// The kinds it publishes.
    pub fn kinds(&self) -> Vec<TrackKind> {
        let mut kinds = Vec::new();
        if self.audio {
            kinds.push(TrackKind::Audio);
        }
        if self.video {
            kinds.push(TrackKind::Video);
        }
        kinds
    }
}

/// Every participant of a run, in join order (per room, publishers first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Participants, indexed by [`ParticipantPlan::index`].
    pub participants: Vec<ParticipantPlan>,
}

impl Plan {
    /// `rooms` rooms of `publishers` audio publishers and `subscribers` listeners.
    pub fn audio(publishers: usize, subscribers: usize, rooms: usize) -> Self {
        Self::build(rooms, |plan, room| {
            for i in 0..publishers {
                plan.push(room, format!("pub{i}"), true, false, false);
            }
            for i in 0..subscribers {
                plan.push(room, format!("sub{i}"), false, false, true);
            }
        })
    }

    /// `rooms` rooms of `participants` who publish audio + video and subscribe.
    pub fn meeting(participants: usize, rooms: usize) -> Self {
        Self::build(rooms, |plan, room| {
            for i in 0..participants {
                plan.push(room, format!("member{i}"), true, true, true);
            }
        })
    }

    /// `rooms` rooms of one audio + video publisher and `viewers` viewers.
    pub fn livestream(viewers: usize, rooms: usize) -> Self {
        Self::build(rooms, |plan, room| {
            plan.push(room, "host".to_owned(), true, true, false);
            for i in 0..viewers {
                plan.push(room, format!("viewer{i}"), false, false, true);
            }
        })
    }

    fn build(rooms: usize, mut fill: impl FnMut(&mut Self, &str)) -> Self {
        let mut plan = Self {
            participants: Vec::new(),
        };
        for r in 0..rooms.max(1) {
            fill(&mut plan, &format!("bench-{r}"));
        }
        plan
    }

    fn push(&mut self, room: &str, identity: String, audio: bool, video: bool, subscribe: bool) {
        let index = self.participants.len() as u32;
        self.participants.push(ParticipantPlan {
            index,
            room: room.to_owned(),
            identity: format!("{room}-{identity}"),
            audio,
            video,
            subscribe,
        });
    }

    /// The streams (publisher index, kind) participant `index` should receive.
    pub fn expected_streams(&self, index: u32) -> Vec<(u32, TrackKind)> {
        let Some(me) = self.participants.get(index as usize) else {
            return Vec::new();
        };
        if !me.subscribe {
            return Vec::new();
        }
        self.participants
            .iter()
            .filter(|p| p.room == me.room && p.index != me.index)
            .flat_map(|p| p.kinds().into_iter().map(move |k| (p.index, k)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let a = Plan::audio(2, 3, 2);
        assert_eq!(a.participants.len(), 10);
        assert_eq!(a.expected_streams(0), vec![], "publishers do not subscribe");
        assert_eq!(
            a.expected_streams(2),
            vec![(0, TrackKind::Audio), (1, TrackKind::Audio)]
        );
        assert_eq!(a.expected_streams(7).len(), 2, "only its own room");
        let m = Plan::meeting(3, 1);
        assert_eq!(m.expected_streams(1).len(), 4);
        let l = Plan::livestream(2, 1);
        assert_eq!(l.expected_streams(0), vec![]);
        assert_eq!(l.expected_streams(2).len(), 2);
    }
}
