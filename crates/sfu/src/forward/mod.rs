//! The media path: what happens to a publisher's RTP between arriving and
//! leaving for each subscriber, one role per file.
//!
//! - `track`: the table of published tracks and everyone each goes to.
//! - `layer`: one encoding of a track (a simulcast layer) and what is
//!   kept of it.
//! - [`simulcast`]: which layer each subscriber gets, switched at keyframes.
//! - `leg`: a subscriber's copy of a track, and the rewrite of sequence
//!   numbers and timestamps that keeps its stream continuous.
//! - `send`: one packet out on one leg (rewritten, SRTP-protected).
//! - [`keyframe`] detects keyframes; `keyframe_gate` merges keyframe
//!   requests toward a publisher.
//! - [`rtx`] keeps recent packets for NACKs; `resend` bounds how often one
//!   is resent.
//! - `padding`: drops padding-only packets and renumbers what follows.
//! - `red`: RED (RFC 2198) audio as it is to legs that took it, plain
//!   Opus (recovering lost packets from the redundancy) to legs that did
//!   not; `red_payload` reads a RED payload's blocks; `red_send` sends a
//!   RED track's packet on one leg.
//! - `sender_report`: the RTCP sender reports of each leg.
//!
//! The endpoint decides when each runs; nothing here knows the
//! endpoint.

pub mod allocator;
pub mod dynacast;
pub mod keyframe;
pub(crate) mod keyframe_gate;
pub(crate) mod layer;
pub(crate) mod leg;
pub(crate) mod nack_loss;
pub(crate) mod pad_log;
pub(crate) mod padding;
pub(crate) mod rate;
pub(crate) mod red;
pub(crate) mod red_boost;
pub(crate) mod red_payload;
pub(crate) mod red_send;
pub(crate) mod resend;
pub mod rtx;
pub(crate) mod send;
pub(crate) mod sender_report;
pub mod simulcast;
pub(crate) mod track;
pub(crate) mod vp8;
