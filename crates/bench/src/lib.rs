//! huddle-bench: a load tool for the huddle SFU.
//!
//! It opens many WebRTC participants against a `huddle-server` (started as a
//! child process, or already running) through the real signaling protocol,
//! with real ICE, DTLS and SRTP. Participants are lightweight: each is the
//! sans-IO `rtc` core of webrtc-rs with one nonblocking UDP socket per peer
//! connection, many per thread, driven by one `mio` poll loop per worker
//! ([`worker`]). Publishers send Opus-sized audio and MTU-sized video whose
//! payload carries a [`probe`] (publisher, sequence, send time), so the
//! subscribers measure loss and one-way latency through the SFU.
//!
//! Subscriber connections receive on one of two paths ([`Receiver`]):
//! `rtc`'s whole receive pipeline ([`peer`]), or with `--receiver fast`
//! the tool's own transport ([`fast_transport`], driven by [`fast_peer`]):
//! the client end of the SFU's own subscriber transport, on the same
//! `huddle_wire` code (ICE as the controlling agent with consent
//! checks, DTLS-SRTP), batched reads ([`recv_batch`]), every RTP packet
//! SRTP-authenticated before it counts; no NACKs, receiver reports or
//! keyframe requests, so loss is measured before retransmission. `rtc`
//! still negotiates those connections but never sees their datagrams.
//! Publishers always run on `rtc`.
//!
//! A run ([`run::run`]) joins everyone, waits until every subscriber
//! receives every stream it should, warms up, measures a window of whole
//! seconds, and reports ([`report::Report`]) forwarded packets/s and bits/s,
//! loss per subscriber, latency quantiles, join times, and the server's CPU
//! time per forwarded packet and memory (from `/proc`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod e2ee;
pub mod error;
pub mod fast_peer;
pub mod fast_transport;
pub mod media;
pub mod participant;
pub mod peer;
pub mod plan;
pub mod plot;
pub mod probe;
pub mod procfs;
pub mod publish;
pub mod receive;
pub mod recv_batch;
pub mod report;
pub mod run;
pub mod server;
pub mod signal;
pub mod stats;
pub mod subscriber;
pub mod token;
pub mod worker;

pub use error::BenchError;
pub use plan::{Plan, Scenario};
pub use report::Report;
pub use run::{run, RunConfig};
pub use server::Server;
pub use subscriber::Receiver;
