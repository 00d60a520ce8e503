//! huddle-sfu: the selective forwarding unit.
//!
//! Each worker's participants share ONE UDP port. The [`endpoint::Endpoint`]
//! is the sans-IO core: it owns every participant's two peer connections
//! (negotiated by the `rtc` core of webrtc-rs; a subscriber connection's
//! ICE-lite, DTLS-SRTP and RTCP run on the SFU's own transport, `transport`,
//! built from `huddle_wire`'s parts), demultiplexes datagrams to them (STUN
//! username on first contact, then the source address), and hands RTP from
//! publishers to the media path and RTCP feedback back. Its `impl` blocks are
//! split by role under `endpoint/` (lifecycle, negotiation, tracks, media,
//! keyframes, reports, viewers).
//!
//! [`forward`] is the media path, one role per file: the track table, layers
//! and simulcast layer choice, each subscriber's leg and its sequence and
//! timestamp rewrite, sending on a leg, keyframe detection and request
//! merging, the retransmission store, padding and sender reports.
//!
//! The [`driver`] is the only tokio code: it owns the socket and one timer per
//! worker and runs the operations the signaling service asks for through the
//! [`Sfu`] handle ([`handle`]), each a closure on the owning worker's
//! endpoint; [`udp`] batches the socket's receives and sends. [`events`],
//! [`rights`], [`ids`] and [`transmit`] are the leaf types both sides share.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod congestion;
mod connection;
mod consent;
pub mod demux;
pub mod driver;
pub mod endpoint;
pub mod error;
pub mod events;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod forward;
pub mod handle;
pub mod ice_credentials;
pub mod ids;
pub mod log_limit;
mod out_buf;
mod participant;
mod payload_head;
mod placement;
pub mod rights;
pub mod speaker;
pub mod tcp;
pub mod transmit;
mod transport;
mod transport_cc;
pub mod udp;
pub mod view;

pub use config::SfuConfig;
pub use driver::start;
pub use error::SfuError;
pub use events::{SfuEvent, SfuEvents, SfuStats, SubscriberBandwidth, TrackAudioLevel};
pub use handle::Sfu;
pub use ice_credentials::IceCredentials;
pub use ids::{ParticipantId, RoomId};
pub use rights::Rights;
pub use transmit::Transmit;
pub use view::TrackView;
