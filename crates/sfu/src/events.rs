//! What the SFU reports: events for the signaling service, counts of what
//! it holds, and publishers' audio levels.

use crate::ids::{ParticipantId, RoomId};
use huddle_proto::{IceCandidate, PauseReason, PcRole, TrackInfo};
use tokio::sync::mpsc;

/// Events the SFU reports to the signaling service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SfuEvent {
    /// A (re)offer for the participant's subscriber connection; send it to the
    /// client, which answers with `Sfu::subscriber_answer`.
    SubscriberOffer {
        /// Whose connection.
        participant: ParticipantId,
        /// Session description.
        sdp: String,
    },
    /// A server ICE candidate for one of the participant's connections.
    Candidate {
        /// Whose connection.
        participant: ParticipantId,
        /// Which connection.
        pc: PcRole,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// The participant's publisher connection started receiving a track.
    TrackPublished {
        /// Room.
        room: RoomId,
        /// Publisher.
        participant: ParticipantId,
        /// Track as others will see it.
        track: TrackInfo,
    },
    /// A published track went away.
    TrackUnpublished {
        /// Room.
        room: RoomId,
        /// Publisher.
        participant: ParticipantId,
        /// Track id.
        track_id: String,
    },
    /// A video the participant receives stopped being forwarded to it
    /// (see [`PauseReason`]); its audio never is.
    TrackPaused {
        /// Room.
        room: RoomId,
        /// The subscriber.
        participant: ParticipantId,
        /// The video.
        track_id: String,
        /// Why.
        reason: PauseReason,
    },
    /// A video paused for the participant is forwarded again.
    TrackResumed {
        /// Room.
        room: RoomId,
        /// The subscriber.
        participant: ParticipantId,
        /// The video.
        track_id: String,
    },
    /// Dynacast: which simulcast layers of one of the participant's tracks
    /// someone receives. The participant should send those marked `true`
    /// and may stop the others (the web client turns their encodings off);
    /// a layer is asked for again as soon as a subscriber needs it.
    PublisherLayers {
        /// Room.
        room: RoomId,
        /// The publisher.
        participant: ParticipantId,
        /// Its track.
        track_id: String,
        /// Every layer of the track: its RID and whether to send it.
        layers: Vec<(String, bool)>,
    },
    /// The room's active speaker changed (see the `speaker` module): `None`
    /// when the last one left and nobody has spoken since.
    ActiveSpeaker {
        /// Room.
        room: RoomId,
        /// The participant now speaking.
        participant: Option<ParticipantId>,
    },
    /// The participant's connections failed or stopped answering (ICE consent,
    /// DTLS close), or never came up; the SFU has already dropped it.
    ParticipantGone {
        /// Room.
        room: RoomId,
        /// Who.
        participant: ParticipantId,
        /// Why, for logs.
        reason: String,
    },
}

/// The receiving end of [`SfuEvent`]s.
pub type SfuEvents = mpsc::UnboundedReceiver<SfuEvent>;

/// Counts of what the SFU holds, for tests, metrics and the REST API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Participants known to the SFU.
    pub participants: usize,
    /// Peer connections alive (two per participant at most).
    pub connections: usize,
    /// Published tracks being forwarded.
    pub tracks: usize,
    /// Entries in the source-address demux table.
    pub addresses: usize,
    /// ICE ufrags the demux table routes by (one per connection; two for
    /// a connection whose ICE restart is not answered yet).
    pub ufrags: usize,
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets sent to subscribers.
    pub rtp_out: u64,
    /// Packets resent to subscribers that reported them lost (NACK).
    pub rtx_sent: u64,
    /// Padding-only packets sent to subscribers (bandwidth probes).
    pub padding_sent: u64,
    /// Keyframe requests (PLI) sent to publishers, merged per layer and
    /// spaced per track.
    pub keyframe_requests: u64,
    /// Packets a RED publisher's link lost that the SFU rebuilt from the
    /// redundancy of the packets after them and sent, as plain Opus, to
    /// subscribers without RED (each counted once, however many got it).
    pub red_recovered: u64,
    /// RED packets dropped as malformed (a header cut short, a block past
    /// the end, too many blocks, blocks that are not the track's Opus).
    pub red_malformed: u64,
    /// RED packets sent with copies of earlier frames the SFU added,
    /// because the subscriber's loss called for more redundancy than the
    /// publisher sent (`forward::red_boost`).
    pub red_boosted: u64,
    /// Datagrams that matched no connection or did not parse.
    pub dropped_datagrams: u64,
}

impl SfuStats {
    /// Add `other`'s counts to these (one worker's to the total).
    pub(crate) fn add(&mut self, other: &SfuStats) {
        self.participants += other.participants;
        self.connections += other.connections;
        self.tracks += other.tracks;
        self.addresses += other.addresses;
        self.ufrags += other.ufrags;
        self.rtp_in += other.rtp_in;
        self.rtp_out += other.rtp_out;
        self.rtx_sent += other.rtx_sent;
        self.padding_sent += other.padding_sent;
        self.keyframe_requests += other.keyframe_requests;
        self.red_recovered += other.red_recovered;
        self.red_malformed += other.red_malformed;
        self.red_boosted += other.red_boosted;
        self.dropped_datagrams += other.dropped_datagrams;
    }
}

/// What the SFU knows of the path toward one subscriber and what it sends
/// it (`Sfu::subscriber_bandwidth`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberBandwidth {
    /// Whether the subscriber reports arrivals (transport-wide congestion
    /// control negotiated on its connection).
    pub feedback_negotiated: bool,
    /// Whether it reports with RFC 8888 congestion control feedback (it
    /// answered the SFU's `a=rtcp-fb:* ack ccfb`, or offered it).
    pub rfc8888: bool,
    /// Packets sent to it under congestion control (each with a
    /// transport-wide sequence number, when TWCC was negotiated).
    pub packets_stamped: u64,
    /// Feedback packets (TWCC or RFC 8888) it sent.
    pub feedback_packets: u64,
    /// The bandwidth estimate toward it, bits per second, once there is one.
    pub estimate_bps: Option<u64>,
    /// The round trip time its feedback implies, once known.
    pub rtt: Option<std::time::Duration>,
    /// The video rate the stream allocator gave it, bits per second.
    pub allocated_video_bps: u64,
    /// Per video it receives: track id, the layer index it gets (`None`:
    /// paused, hidden or waiting for a keyframe).
    pub videos: Vec<(String, Option<usize>)>,
    /// Video track ids paused for it for want of bandwidth.
    pub paused: Vec<String>,
    /// The rate its packets are paced at (the estimate, or a running
    /// probe's rate; the pacer lets out up to 1.25 times it): `None` while
    /// nothing is paced (no feedback, or the estimate still settling).
    pub pacing_bps: Option<u64>,
    /// Packets waiting in its pacer now.
    pub paced_queued: usize,
    /// Video packets its pacer dropped so far (more waited than leaves in
    /// half a second at the estimate).
    pub paced_dropped: u64,
}

/// The audio level a publisher reports for one of its tracks (RFC 6464).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackAudioLevel {
    /// Publisher.
    pub participant: ParticipantId,
    /// Track id.
    pub track_id: String,
    /// Loudness of the last packet in -dBov: 0 loudest, 127 silence.
    pub level: u8,
    /// The publisher's voice activity flag.
    pub voice: bool,
}
