//! huddle: the calling crate. Join a room on a huddle server, publish audio
//! and video, receive everyone else's.
//!
//! ```no_run
//! # async fn demo() -> Result<(), huddle::CallError> {
//! use huddle::{Call, CallEvent};
//! let (call, mut events) = huddle::Call::join("ws://127.0.0.1:7880/ws", "TOKEN").await?;
//! let mic = call.publish_audio().await?;
//! # let opus_frame: Vec<u8> = vec![];
//! mic.write_frame(&[&opus_frame], 960).await?; // one 20 ms Opus frame
//! while let Some(ev) = events.recv().await {
//!     if let CallEvent::TrackSubscribed(track) = ev {
//!         while let Some(rtp) = track.recv().await { /* decode rtp.payload */ }
//!     }
//! }
//! call.leave().await?;
//! # Ok(()) }
//! ```
//!
//! Each call holds two WebRTC peer connections to the server's SFU: one to
//! publish (this side offers) and one to receive (the server offers, again
//! whenever the set of tracks changes). See `docs/signaling.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod call;
mod error;
mod peer;
mod playout;
mod sender;
mod signal;
mod track;

pub use call::{Call, CallEvent, CallEvents, CallOptions};
pub use error::CallError;
pub use huddle_proto as proto;
pub use huddle_wire::codecs::{OPUS_PT, VP8_PT};
pub use playout::{ChannelSink, Playout};
/// RTP packet type handed out by [`RemoteTrack::recv`].
pub use rtc::rtp::Packet as RtpPacket;
pub use sender::AudioSender;
pub use track::{LocalTrack, RemoteTrack};
