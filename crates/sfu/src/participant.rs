//! A participant as the SFU holds it: its room, rights and two connections.

use crate::connection::Connection;
use crate::forward::allocator::AllocatorState;
use crate::forward::leg::SentMark;
use crate::ids::RoomId;
use crate::rights::Rights;
use huddle_proto::{PcRole, TrackKind};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use std::collections::HashMap;

/// One participant's SFU state.
pub(crate) struct Participant {
    pub room: RoomId,
    pub rights: Rights,
    /// Carries the participant's media to the SFU (the client offers).
    pub publisher: Option<Connection>,
    /// Carries others' media to the participant (the SFU offers).
    pub subscriber: Option<Connection>,
    /// A subscriber offer was sent and its answer has not come yet.
    pub offer_pending: bool,
    /// The subscriber connection's tracks changed since the last offer.
    pub needs_offer: bool,
    /// The client asked for an ICE restart of its subscriber connection:
    /// the next offer carries new ICE credentials.
    pub ice_restart: bool,
    /// Remote tracks opened on the publisher connection: track id -> receiver.
    pub incoming: HashMap<String, RTCRtpReceiverId>,
    /// `Some` for a WHEP viewer: its subscriber connection was negotiated
    /// once, from its own offer, and is never renegotiated; each offered
    /// m-line is a slot that one published track at a time feeds.
    pub slots: Option<Vec<Slot>>,
    /// The stream allocator's memory of this subscriber.
    pub allocator: AllocatorState,
    /// The video rate its last allocation gave it, bits per second.
    pub allocated_bps: u64,
    /// The video rate it would need for its next step up, when the last
    /// allocation held one back for want of bandwidth: what to probe.
    pub probe_bps: Option<u64>,
}

/// One receive m-line of a WHEP viewer's offer, answered with a sender of
/// fixed SSRC. Whatever track feeds it, the viewer sees one stream.
pub(crate) struct Slot {
    pub kind: TrackKind,
    pub sender_id: RTCRtpSenderId,
    pub ssrc: u32,
    /// Published track feeding the slot now.
    pub source: Option<String>,
    /// Last packet the slot sent, so the next source continues from it.
    pub last_sent: Option<SentMark>,
}

impl Participant {
    pub fn new(room: RoomId, rights: Rights) -> Self {
        Self {
            room,
            rights,
            publisher: None,
            subscriber: None,
            offer_pending: false,
            needs_offer: false,
            ice_restart: false,
            incoming: HashMap::new(),
            slots: None,
            allocator: AllocatorState::default(),
            allocated_bps: 0,
            probe_bps: None,
        }
    }

    pub fn conn(&self, role: PcRole) -> Option<&Connection> {
        match role {
            PcRole::Publisher => self.publisher.as_ref(),
            PcRole::Subscriber => self.subscriber.as_ref(),
        }
    }

    pub fn conn_mut(&mut self, role: PcRole) -> Option<&mut Connection> {
        match role {
            PcRole::Publisher => self.publisher.as_mut(),
            PcRole::Subscriber => self.subscriber.as_mut(),
        }
    }

    pub fn connections(&self) -> usize {
        self.publisher.is_some() as usize + self.subscriber.is_some() as usize
    }
}
