//! huddle: the calling crate. Join a room on a huddle server, publish audio
//! and video, receive everyone else's.
//!
//! Everything an app needs is reachable from this crate: the call
//! ([`Call`], [`CallEvent`]), tracks ([`LocalTrack`], [`RemoteTrack`],
//! [`MediaPacket`]), audio in and out as PCM ([`PcmSender`], [`PcmStream`])
//! or through sources and sinks ([`AudioSource`], [`Playout`], [`AudioSink`]),
//! and the sound devices ([`Microphone`], [`Speaker`], feature `devices`).
//! The whole media toolbox is under [`media`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), huddle::CallError> {
//! use huddle::{Call, CallEvent, SpeechLike};
//! // The server's base URL (or its WebSocket, `ws://127.0.0.1:7880/ws`).
//! let (call, mut events) = Call::join("http://127.0.0.1:7880", "TOKEN").await?;
//! // Send 10 s of a synthetic voice; a `Microphone` works the same way.
//! let sending = call
//!     .send_audio(Box::new(SpeechLike::new(1).with_frames(500)), Default::default())
//!     .await?;
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         CallEvent::TrackSubscribed(track) => {
//!             // One task per track: this loop keeps handling events.
//!             tokio::spawn(async move {
//!                 let who = track.participant().name().to_owned();
//!                 let Ok(mut pcm) = track.into_pcm(Default::default()) else {
//!                     return; // video
//!                 };
//!                 while let Some(frame) = pcm.recv().await {
//!                     println!("{who}: {} samples", frame.len());
//!                 }
//!             });
//!         }
//!         CallEvent::ActiveSpeaker { speaker: Some(p) } => println!("{} speaks", p.name()),
//!         CallEvent::Disconnected => break,
//!         _ => {}
//!     }
//! }
//! drop(sending);
//! call.leave().await?;
//! # Ok(()) }
//! ```
//!
//! Each call holds two WebRTC peer connections to the server's SFU: one to
//! publish (this side offers) and one to receive (the server offers, again
//! whenever the set of tracks changes). See `docs/signaling.md`.
//!
//! Audio goes out as Opus (in-band FEC, DTX). The connections also offer
//! RED (RFC 2198, `audio/red`, listed after Opus): when the peer's answer
//! takes it, each Opus frame goes out with copies of the frames before it
//! (1 to 3, from the loss the peer reports), and a received RED track is
//! split before its jitter buffer, whose copies stand in for lost packets.
//! The SFU takes RED and forwards it as it is to subscribers that took it
//! (this crate always does) and as plain Opus to the others. So an app that
//! reads packets itself ([`RemoteTrack::recv`]) gets RED audio packets
//! (payload type [`RED_PT`]) whose primary block is the Opus frame
//! (`huddle::media::rtp::parse_red`); [`Playout`] and [`PcmStream`] handle
//! that for it. A peer without RED gets plain Opus.
//!
//! The media connections reach the server over UDP, or over TCP when UDP
//! does not get through (ICE-TCP: tried when a connection is still down a
//! second after its description). [`CallOptions`] adds STUN and TURN
//! servers ([`IceServer`]), can allow relayed paths only
//! ([`CallOptions::relay_only`]) and sets how long to wait for the server.
//!
//! # End-to-end encryption
//!
//! In a room whose tokens say `e2ee` (`huddle-server token --e2ee`), join
//! with [`CallOptions::e2ee`]: the participants form an MLS group (RFC
//! 9420) through the signaling server, which relays its messages and
//! holds no secret, and every Opus frame and every VP8 frame is encrypted
//! with SFrame (RFC 9605) under the sender's key of the group's current
//! epoch before it is packetized (a VP8 frame's first bytes, which the
//! SFU needs to tell keyframes, stay in clear and are authenticated). The
//! SFU forwards what it cannot read; a receiver drops any frame that does
//! not authenticate, or that comes from another member than the track's.
//! Each join and leave starts a new epoch with new keys
//! ([`CallEvent::E2eeEpoch`]), and its safety code, equal for every member,
//! is for people to compare ([`Call::e2ee`]). The app writes and reads
//! media as without E2EE. See `docs/e2ee.md`.
//!
//! Media is forwarded, not stored: a listener hears a track from its
//! [`CallEvent::TrackSubscribed`] on, and what was sent before that (while
//! its subscription was being set up) does not reach it.
//!
//! # Cargo features and system packages
//!
//! - `devices` (default): [`Microphone`] and [`Speaker`] through the
//!   system's sound API. On Linux it links ALSA: install `libasound2-dev`
//!   (Debian/Ubuntu) or `alsa-lib-devel` (Fedora) and `pkg-config`. Build
//!   with `default-features = false` for an app that brings its own audio
//!   I/O (PCM in and out) and needs no sound library.
//! - Always: libopus (`libopus-dev`, or built from source with `cmake` and a
//!   C compiler when `pkg-config` does not find it).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod call;
mod e2ee;
mod e2ee_recv;
mod e2ee_stats;
mod e2ee_video;
mod endpoint;
mod error;
mod event;
mod ice;
mod ids;
mod level;
mod loss_reports;
mod media_path;
mod packet;
mod participant;
mod pcm_recv;
mod pcm_send;
mod peer;
mod playout;
mod red;
mod red_recv;
mod red_send;
mod rtp_clock;
mod sender;
mod signal;
mod simulcast;
mod track;
mod turn_doorway;

pub use call::{Call, CallOptions};
pub use error::CallError;
pub use event::{CallEvent, CallEvents};
pub use ice::IceServer;
pub use ids::{ParticipantId, SeqNum, Ssrc, TrackId};
pub use level::AudioLevel;
pub use packet::{AudioFrame, MediaPacket};
pub use participant::Participant;
pub use pcm_recv::PcmStream;
pub use pcm_send::PcmSender;
pub use playout::{ChannelSink, Playout};
pub use sender::AudioSender;
pub use simulcast::SimulcastTrack;
pub use track::{LocalTrack, RemoteTrack};

pub use e2ee_stats::E2eeStats;
pub use huddle_e2ee::client::EpochInfo as E2eeEpoch;
pub use huddle_proto as proto;
pub use huddle_proto::{ErrorCode, PauseReason, TrackKind};
pub use huddle_wire::codecs::{OPUS_PT, RED_PT, VP8_PT};

/// The media toolbox (codecs, jitter buffer, mixer, WAV, analysis).
pub use huddle_media as media;
#[cfg(feature = "devices")]
pub use huddle_media::device::{DeviceError, Microphone, Speaker};
pub use huddle_media::jitter::{JitterConfig, JitterStats};
pub use huddle_media::opus_codec::EncoderConfig;
pub use huddle_media::sink::{AudioSink, NullSink};
pub use huddle_media::source::{AudioSource, Noise, SpeechLike, Tone};
pub use huddle_media::wav::{WavSink, WavSource};
pub use huddle_media::{Channels, FRAME_SAMPLES, SAMPLE_RATE};

/// A byte buffer (the payload of a [`MediaPacket`]).
pub use bytes::Bytes;
