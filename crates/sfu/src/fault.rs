//! Fault injection, for tests only (the `fault-injection` feature, off by
//! default): a hook that sees every RTP packet a publisher sends, after the
//! SFU removed its SRTP and before it stores and forwards it, and may
//! rewrite its payload. That is what a compromised SFU could do to media;
//! the end-to-end encryption tests use it to play one. Nothing reaches the
//! hook from the network: only code linked into the server can set it.

use crate::ids::{ParticipantId, RoomId};
use huddle_proto::TrackKind;
use std::sync::Arc;

/// What a [`Tamper`] hook is told of one packet.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The room of the track.
    pub room: &'a RoomId,
    /// Who publishes it.
    pub publisher: &'a ParticipantId,
    /// Audio or video.
    pub kind: TrackKind,
}

/// A hook that may rewrite a publisher's packet (see the module docs):
/// its payload, its timestamp, anything but its sequence number, which
/// the SFU sets after. It runs on the worker's thread, once per packet.
pub type Tamper = Arc<dyn Fn(&Seen<'_>, &mut rtc::rtp::Packet) + Send + Sync>;
