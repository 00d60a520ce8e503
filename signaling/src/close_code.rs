//! WebSocket close codes the server uses.

/// After `leave`, or when a WHIP/WHEP session ends.
pub const NORMAL: u16 = 1000;
/// The server is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// The join was refused or did not come in time.
pub const POLICY: u16 = 1008;
/// The server failed.
pub const INTERNAL: u16 = 1011;
/// The room or the server is full (`room_full`, `server_full`): try again
/// later.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// An administrator removed the participant.
pub const KICKED: u16 = 4001;
/// The SFU dropped the participant's media connections.
pub const MEDIA_GONE: u16 = 4002;
/// The participant negotiated no media within the media timeout.
pub const MEDIA_TIMEOUT: u16 = 4003;
/// A `resume` could not take the session back (unknown token, grace
/// period over, messages no longer held): join again.
pub const RESUME_FAILED: u16 = 4004;
