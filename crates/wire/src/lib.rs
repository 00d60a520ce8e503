//! huddle-wire: the pieces of WebRTC's wire that huddle's SFU, its calling
//! crate and its load tool share, with no server code and no I/O.
//!
//! - [`codecs`]: the codec table and header extensions every huddle peer
//!   negotiates, and [`local_track`]: a track as `rtc` takes it.
//! - [`candidate`]: the host candidate of a UDP socket address.
//! - [`classify`]: what a datagram on a WebRTC port is (RFC 7983).
//! - [`feedback`]: what RTCP keyframe requests and NACKs ask for.
//! - [`red_distance`]: how many earlier frames a RED packet repeats, from
//!   the loss a receiver reports.
//! - [`turn_stream`]: TURN messages over a TCP or TLS stream.
//! - The SFU's own transport for subscriber connections, in parts a client
//!   can run the other end with: [`ice_lite`], [`dtls`] (DTLS-SRTP),
//!   [`srtp`] (protection into the caller's buffer), [`sdp`] (what DTLS
//!   needs from a session description).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod candidate;
pub mod classify;
pub mod codecs;
pub mod dtls;
mod error;
pub mod feedback;
pub mod ice_lite;
pub mod local_track;
pub mod red_distance;
pub mod sdp;
pub mod srtp;
pub mod turn_stream;

pub use error::WireError;
