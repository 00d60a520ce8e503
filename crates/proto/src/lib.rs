//! huddle signaling protocol: the JSON messages exchanged over the WebSocket
//! between a participant and the signaling service.
//!
//! Every message is a JSON object with a `"type"` field naming the variant in
//! `snake_case`; the other fields are the variant's. The full protocol, with
//! examples and the meaning of every error code, is in `docs/signaling.md`.
//!
//! Each participant has two peer connections to the SFU, so that offers never
//! cross (no glare):
//! - the **publisher** connection, where the client offers and the server answers;
//! - the **subscriber** connection, where the server offers (again every time the
//!   set of tracks the participant receives changes) and the client answers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

pub mod throttle;

/// Largest signaling message, in bytes, the server accepts. Larger ones are
/// refused with [`ErrorCode::MessageTooLarge`].
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Which of a participant's two peer connections a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcRole {
    /// The connection the participant sends media on (client offers).
    Publisher,
    /// The connection the participant receives media on (server offers).
    Subscriber,
}

/// Kind of a media track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Audio (Opus).
    Audio,
    /// Video (VP8 or H.264).
    Video,
}

/// A trickle ICE candidate, in the shape of the browser's `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IceCandidate {
    /// The `candidate:` attribute line (without the `a=` prefix).
    pub candidate: String,
    /// The media stream identification tag the candidate belongs to.
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The index of the m-line the candidate belongs to.
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    /// The ICE username fragment the candidate belongs to.
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// A published track as other participants see it.
///
/// On the subscriber connection the track arrives with the publisher's
/// participant id as its media stream id (`msid`) and [`TrackInfo::id`] as its
/// track id, so a client can tell whose track is whose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Track id, unique within the room.
    pub id: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Codec MIME type, e.g. `audio/opus`, `video/VP8`.
    pub mime_type: String,
    /// Whether the publisher has muted it.
    #[serde(default)]
    pub muted: bool,
    /// The track id the publisher's own peer connection gave it (its SDP
    /// `msid`), so a publisher can tell which of its tracks this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_track_id: Option<String>,
}

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Server-assigned id, unique within the server's lifetime.
    pub id: String,
    /// The identity from the participant's token.
    pub identity: String,
    /// The display name from the participant's token (its `name` claim), if
    /// it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tracks the participant publishes.
    #[serde(default)]
    pub tracks: Vec<TrackInfo>,
}

/// Messages a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on a connection: join the room the token grants.
    Join {
        /// Signed access token (JWT). A missing token reads as empty and is
        /// refused with [`ErrorCode::TokenMissing`].
        #[serde(default)]
        token: String,
        /// The client takes part in end-to-end encryption (docs/e2ee.md).
        /// A room whose tokens say `e2ee` refuses clients that do not
        /// ([`ErrorCode::E2eeRequired`]).
        #[serde(default, skip_serializing_if = "is_false")]
        e2ee: bool,
    },
    /// SDP offer for the publisher connection (first one or a renegotiation).
    Offer {
        /// Session description.
        sdp: String,
    },
    /// SDP answer to the server's subscriber-connection offer.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// A trickle ICE candidate of the client's.
    Candidate {
        /// Which connection it belongs to.
        pc: PcRole,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Mute or unmute one of the client's published tracks.
    Mute {
        /// Track id as announced in `track_published`.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// How this client shows a video it receives: whether at all, and at
    /// what size (CSS pixels of its tile; the server sends the smallest
    /// simulcast layer that fills it). A hidden video is not sent; sent
    /// again (for any track id it receives) whenever that changes.
    TrackSettings {
        /// Track id as announced in `track_published`.
        track_id: String,
        /// Whether it is shown at all.
        #[serde(default = "shown")]
        visible: bool,
        /// Width of its tile, if known.
        #[serde(default)]
        width: Option<u32>,
        /// Height of its tile, if known.
        #[serde(default)]
        height: Option<u32>,
    },
    /// Restart ICE on the subscriber connection (the client's network
    /// changed, or the connection went `disconnected`/`failed`): the server
    /// sends a new `offer` with new ICE credentials, to answer as any
    /// other. The publisher connection restarts with an ICE-restart
    /// `offer` of the client's own.
    RestartIce,
    /// Keep-alive; the server answers `pong`.
    Ping,
    /// Leave the room; the server closes the connection afterwards.
    Leave,
    /// E2EE room: this client's MLS key package (base64 of an
    /// `MlsMessage`), for a member of the group to add it. A new one
    /// replaces the last.
    E2eeKeyPackage {
        /// Base64 (standard, padded) of the key package.
        key_package: String,
    },
    /// E2EE room: an MLS commit this client made in `epoch`, for the
    /// server to order (the first for each epoch is taken).
    E2eeCommit {
        /// The epoch the commit was made in.
        epoch: u64,
        /// Base64 of the commit (`MlsMessage`).
        commit: String,
        /// Base64 of the welcome for the participants it adds, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        welcome: Option<String>,
        /// Participant ids the commit adds.
        #[serde(default)]
        added: Vec<String>,
        /// Participant ids the commit removes.
        #[serde(default)]
        removed: Vec<String>,
    },
    /// First message on a new connection after the previous one dropped
    /// without a `leave`: take the session back (same participant, same
    /// tracks and subscriptions; the room sees nothing). Answered by
    /// `resumed` and then every server message the client missed, or by
    /// the error `resume_failed` (join again).
    Resume {
        /// The token from `joined`'s `resume`.
        token: String,
        /// Server messages (text frames) this client has received in the
        /// session, on every connection of it, `resumed` not counted.
        received: u64,
    },
}

/// Messages the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded.
    Joined {
        /// The room joined.
        room: String,
        /// This participant as others see it.
        participant: ParticipantInfo,
        /// Everyone else already in the room.
        others: Vec<ParticipantInfo>,
        /// Whether the token allows publishing.
        can_publish: bool,
        /// Whether the token allows subscribing.
        can_subscribe: bool,
        /// How to take the session back if this connection drops; absent
        /// when the server does not keep sessions through a drop.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeInfo>,
        /// STUN/TURN servers for this participant's media connections,
        /// with short-lived TURN credentials; absent when the server has
        /// none configured.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServerInfo>,
        /// The room is end-to-end encrypted (docs/e2ee.md).
        #[serde(default, skip_serializing_if = "is_false")]
        e2ee: bool,
    },
    /// New TURN credentials, sent before those in `joined` (or in the last
    /// `ice_servers`) expire, and after a `resumed`: the servers to gather
    /// with from now on (the next ICE restart). Expired credentials open no
    /// new allocation; one made before they expired goes on.
    IceServers {
        /// As in `joined`.
        ice_servers: Vec<IceServerInfo>,
    },
    /// The session was taken back (answer to `resume`). The messages the
    /// client missed follow, then the session goes on as before.
    Resumed {
        /// The participant, as before.
        participant_id: String,
        /// Client messages (text frames) the server has received in the
        /// session, `resume` not counted: send again those after these.
        received: u64,
    },
    /// SDP answer for the client's publisher-connection offer.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// SDP offer for the subscriber connection; the client must answer.
    Offer {
        /// Session description.
        sdp: String,
    },
    /// A trickle ICE candidate of the server's.
    Candidate {
        /// Which connection it belongs to.
        pc: PcRole,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Someone joined the room.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left, disconnected or timed out.
    ParticipantLeft {
        /// Who.
        participant_id: String,
    },
    /// Several participants joined and/or left at about the same time (a
    /// meeting starting or ending): the server coalesces such changes into
    /// one message instead of one `participant_joined`/`participant_left`
    /// each. No id appears in both lists; apply `joined`, then `left`.
    ParticipantsChanged {
        /// Who joined, in join order.
        #[serde(default)]
        joined: Vec<ParticipantInfo>,
        /// Ids of who left.
        #[serde(default)]
        left: Vec<String>,
    },
    /// A participant (possibly this one) published a track.
    TrackPublished {
        /// Publisher.
        participant_id: String,
        /// The track.
        track: TrackInfo,
    },
    /// A participant's track went away.
    TrackUnpublished {
        /// Publisher.
        participant_id: String,
        /// Track id.
        track_id: String,
    },
    /// A participant muted or unmuted a track.
    MuteChanged {
        /// Publisher.
        participant_id: String,
        /// Track id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// The room's active speaker changed: the participant whose voice
    /// dominates now (from the audio levels publishers send), or `null` when
    /// the last one left and nobody has spoken since.
    ActiveSpeaker {
        /// The speaker, if any.
        participant_id: Option<String>,
    },
    /// A video this client receives is no longer sent to it (see
    /// [`PauseReason`]); audio never is paused.
    TrackPaused {
        /// Track id.
        track_id: String,
        /// Why.
        reason: PauseReason,
    },
    /// A video paused for this client is sent again.
    TrackResumed {
        /// Track id.
        track_id: String,
    },
    /// Dynacast: which simulcast layers of one of this client's own video
    /// tracks someone receives. Send those marked active; the others may
    /// be turned off (nobody receives them) until a later `publish_layers`
    /// turns them on again.
    PublishLayers {
        /// The client's track, by its room-wide id.
        track_id: String,
        /// Every layer of the track.
        layers: Vec<LayerActivity>,
    },
    /// E2EE: this client is the first in the group: create it (epoch 0).
    E2eeCreate,
    /// E2EE: commit adding these joiners (this client is the group member
    /// the server asks). Those already in the group are left out.
    E2eeAdd {
        /// Who to add, with their key packages.
        joiners: Vec<E2eeJoiner>,
    },
    /// E2EE: commit removing these participants (they left).
    E2eeRemove {
        /// Who to remove.
        participants: Vec<E2eeLeaver>,
    },
    /// E2EE: the answer to this client's `e2ee_commit`: taken (apply it:
    /// the group is in `epoch + 1`), or not (drop it; another commit for
    /// that epoch came first, and `epoch` is the current one).
    E2eeCommitResult {
        /// The commit's epoch if accepted, else the room's current one.
        epoch: u64,
        /// Whether it was the first for its epoch.
        accepted: bool,
    },
    /// E2EE: another member's commit the server took: apply it.
    E2eeCommit {
        /// The epoch it was made in.
        epoch: u64,
        /// Who made it (participant id).
        from: String,
        /// Base64 of the commit.
        commit: String,
    },
    /// E2EE: join the group from this welcome.
    E2eeWelcome {
        /// Base64 of the welcome.
        welcome: String,
    },
    /// Answer to `ping`.
    Pong,
    /// Something went wrong; see [`ErrorCode`].
    Error {
        /// Stable machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

/// How a session outlives its connection (in `joined`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeInfo {
    /// Secret that takes the session back in a `resume` message. Anyone
    /// holding it can act as this participant: keep it like the access
    /// token.
    pub token: String,
    /// How long after a drop the server keeps the session, in
    /// milliseconds; after that the participant has left.
    pub grace_ms: u64,
}

/// A STUN or TURN server a client should use (in `joined`), as WebRTC's
/// `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServerInfo {
    /// Its URLs (`turn:host:port?transport=udp`, `turns:host:port`, ...).
    pub urls: Vec<String>,
    /// TURN username (`<expiry>:<participant id>`), if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password for that username, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A joiner in `e2ee_add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct E2eeJoiner {
    /// Its participant id.
    pub participant_id: String,
    /// The identity its token gives, which its key package must name.
    pub identity: String,
    /// Base64 of its key package.
    pub key_package: String,
}

/// A participant to remove in `e2ee_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct E2eeLeaver {
    /// Its participant id.
    pub participant_id: String,
    /// The identity its token gave (its MLS credential's).
    pub identity: String,
}

/// One simulcast layer in `publish_layers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerActivity {
    /// Its RTP stream id (`q`, `h`, `f`...).
    pub rid: String,
    /// Whether anyone receives it (send it) or not (it may stop).
    pub active: bool,
}

/// Why a video is paused for a subscriber (`track_paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PauseReason {
    /// Even its lowest layer does not fit in the subscriber's estimated
    /// bandwidth, after the videos that go first (a screen share, the
    /// active speaker).
    Bandwidth,
}

fn shown() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Stable error codes of the signaling protocol (see `docs/signaling.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No token was given.
    TokenMissing,
    /// The token is not a well-formed JWT or its signature does not verify.
    TokenInvalid,
    /// The token has expired.
    TokenExpired,
    /// The token, or its identity, was banned by an administrator.
    TokenRevoked,
    /// The token grants a different room than the one asked for.
    WrongRoom,
    /// The token does not grant the right needed (publish or subscribe).
    Forbidden,
    /// The message is not valid JSON or lacks required fields.
    BadMessage,
    /// The message type is not known.
    UnknownType,
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    MessageTooLarge,
    /// An SDP offer or answer did not parse or could not be applied.
    BadSdp,
    /// An ICE candidate did not parse or could not be applied.
    BadCandidate,
    /// The message needs a joined session and there is none.
    NotJoined,
    /// `join` was sent twice on one connection.
    AlreadyJoined,
    /// The named track does not exist or is not this participant's.
    UnknownTrack,
    /// The client sends faster than the server accepts.
    RateLimited,
    /// The room has as many participants as the server allows.
    RoomFull,
    /// The server has as many participants as it allows.
    ServerFull,
    /// The token's identity already has as many sessions in the room as the
    /// server allows.
    TooManySessions,
    /// The participant did not negotiate media in time after joining.
    MediaTimeout,
    /// A `resume` could not take the session back: unknown or expired
    /// token, or messages the server no longer holds. Join again.
    ResumeFailed,
    /// The room is end-to-end encrypted and the client did not say it
    /// takes part (`join` without `e2ee`, or a WHIP/WHEP session), or its
    /// token disagrees with the room's (docs/e2ee.md).
    E2eeRequired,
    /// An E2EE message the server cannot take: not an E2EE room, not a
    /// member of the group, or fields that do not fit.
    E2eeRefused,
    /// The server failed; the message was not applied.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::TokenMissing => "token_missing",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::WrongRoom => "wrong_room",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::BadSdp => "bad_sdp",
            ErrorCode::BadCandidate => "bad_candidate",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::UnknownTrack => "unknown_track",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::MediaTimeout => "media_timeout",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::E2eeRequired => "e2ee_required",
            ErrorCode::E2eeRefused => "e2ee_refused",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text frame could not be read as a [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// `bad_message`, `unknown_type` or `message_too_large`.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

/// Parse a client text frame, telling an unknown `type` apart from malformed JSON.
pub fn decode_client_message(text: &str) -> Result<ClientMessage, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError {
            code: ErrorCode::MessageTooLarge,
            message: format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES}",
                text.len()
            ),
        });
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError {
        code: ErrorCode::BadMessage,
        message: format!("not valid JSON: {e}"),
    })?;
    let ty = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| DecodeError {
            code: ErrorCode::BadMessage,
            message: "message must be a JSON object with a string \"type\" field".into(),
        })?;
    const KNOWN: &[&str] = &[
        "join",
        "offer",
        "answer",
        "candidate",
        "mute",
        "track_settings",
        "ping",
        "leave",
        "resume",
        "restart_ice",
        "e2ee_key_package",
        "e2ee_commit",
    ];
    if !KNOWN.contains(&ty.as_str()) {
        return Err(DecodeError {
            code: ErrorCode::UnknownType,
            message: format!("unknown message type {ty:?}"),
        });
    }
    if let Some(field) = unknown_field(&value, &ty) {
        return Err(DecodeError {
            code: ErrorCode::BadMessage,
            message: format!("invalid {ty:?} message: unknown field `{field}`"),
        });
    }
    serde_json::from_value(value).map_err(|e| DecodeError {
        code: ErrorCode::BadMessage,
        message: format!("invalid {ty:?} message: {e}"),
    })
}

/// A field of a client message that serde's `deny_unknown_fields` lets
/// through: any field of a message without fields (`ping`, `leave`,
/// `restart_ice`: serde
/// ignores extras on unit variants of an internally tagged enum) and any
/// field of a `candidate`'s candidate object beyond `RTCIceCandidateInit`'s
/// four ([`IceCandidate`] stays lenient so clients can read server messages
/// from newer servers).
fn unknown_field<'a>(value: &'a serde_json::Value, ty: &str) -> Option<&'a str> {
    let (object, known): (_, &[&str]) = match ty {
        "ping" | "leave" | "restart_ice" => (value.as_object()?, &["type"]),
        "candidate" => (
            value.get("candidate")?.as_object()?,
            &["candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"],
        ),
        _ => return None,
    };
    object
        .keys()
        .map(String::as_str)
        .find(|k| !known.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_settings_default_to_shown_at_no_particular_size() {
        let m = decode_client_message(r#"{"type":"track_settings","track_id":"TR_1"}"#)
            .expect("decodes");
        assert_eq!(
            m,
            ClientMessage::TrackSettings {
                track_id: "TR_1".into(),
                visible: true,
                width: None,
                height: None,
            }
        );
        let m = decode_client_message(
            r#"{"type":"track_settings","track_id":"TR_1","visible":false,"width":320,"height":180}"#,
        )
        .expect("decodes");
        assert!(matches!(
            m,
            ClientMessage::TrackSettings {
                visible: false,
                height: Some(180),
                ..
            }
        ));
        let e = decode_client_message(r#"{"type":"track_settings","track_id":"TR_1","size":1}"#)
            .expect_err("unknown field");
        assert_eq!(e.code, ErrorCode::BadMessage);
        let e = decode_client_message(r#"{"type":"track_settings","visible":true}"#)
            .expect_err("no track");
        assert_eq!(e.code, ErrorCode::BadMessage);
        let paused = ServerMessage::TrackPaused {
            track_id: "TR_1".into(),
            reason: PauseReason::Bandwidth,
        };
        let json = serde_json::to_string(&paused).expect("encodes");
        assert_eq!(
            json,
            r#"{"type":"track_paused","track_id":"TR_1","reason":"bandwidth"}"#
        );
    }

    #[test]
    fn round_trips_tagged_json() {
        let m = ClientMessage::Candidate {
            pc: PcRole::Subscriber,
            candidate: IceCandidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
                username_fragment: None,
            },
        };
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.contains(r#""type":"candidate""#), "{s}");
        assert!(s.contains(r#""pc":"subscriber""#), "{s}");
        assert!(s.contains(r#""sdpMid":"0""#), "{s}");
        assert_eq!(decode_client_message(&s).unwrap(), m);
    }

    #[test]
    fn classifies_bad_input() {
        assert_eq!(
            decode_client_message("{not json").unwrap_err().code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            decode_client_message(r#"{"type":"teleport"}"#)
                .unwrap_err()
                .code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            decode_client_message(r#"{"type":"offer"}"#)
                .unwrap_err()
                .code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            decode_client_message(r#"[1,2]"#).unwrap_err().code,
            ErrorCode::BadMessage
        );
        let big = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(
            decode_client_message(&big).unwrap_err().code,
            ErrorCode::MessageTooLarge
        );
    }

    #[test]
    fn refuses_unknown_fields_of_every_client_message() {
        let extra = [
            r#"{"type":"join","token":"t","x":1}"#,
            r#"{"type":"offer","sdp":"v=0","x":1}"#,
            r#"{"type":"answer","sdp":"v=0","x":1}"#,
            r#"{"type":"candidate","pc":"publisher","candidate":{"candidate":"c"},"x":1}"#,
            r#"{"type":"candidate","pc":"publisher","candidate":{"candidate":"c","x":1}}"#,
            r#"{"type":"mute","track_id":"t","muted":true,"x":1}"#,
            r#"{"type":"ping","x":1}"#,
            r#"{"type":"leave","x":null}"#,
            r#"{"type":"resume","token":"t","received":3,"x":1}"#,
            r#"{"type":"restart_ice","x":1}"#,
        ];
        for text in extra {
            let e = decode_client_message(text).expect_err(text);
            assert_eq!(e.code, ErrorCode::BadMessage, "{text}");
            assert!(
                e.message.contains("unknown field `x`"),
                "{text}: {}",
                e.message
            );
        }
        // Every field the protocol defines is still accepted.
        for text in [
            r#"{"type":"ping"}"#,
            r#"{"type":"leave"}"#,
            r#"{"type":"restart_ice"}"#,
            r#"{"type":"join","token":"t","e2ee":true}"#,
            r#"{"type":"e2ee_key_package","key_package":"AAE="}"#,
            r#"{"type":"e2ee_commit","epoch":3,"commit":"AAE=","added":["PA_x"]}"#,
            r#"{"type":"candidate","pc":"subscriber","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u"}}"#,
        ] {
            assert!(decode_client_message(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn error_code_wire_names_match_serde() {
        for c in [
            ErrorCode::TokenExpired,
            ErrorCode::TokenRevoked,
            ErrorCode::WrongRoom,
            ErrorCode::BadSdp,
            ErrorCode::RoomFull,
            ErrorCode::ServerFull,
            ErrorCode::TooManySessions,
            ErrorCode::MediaTimeout,
            ErrorCode::ResumeFailed,
            ErrorCode::E2eeRequired,
            ErrorCode::E2eeRefused,
        ] {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }
}
