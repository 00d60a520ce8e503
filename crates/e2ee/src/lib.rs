//! End-to-end encryption for huddle calls, sans-IO.
//!
//! - [`sframe`]: SFrame (RFC 9605), the frame encryption every encoded
//!   audio and video frame gets before it is packetized, so that the SFU
//!   forwards what it cannot read. Header, key derivation, the RFC's five
//!   cipher suites, a sender and a receiver context (with replay
//!   protection and keys that expire).
//! - [`kid`]: the key IDs of RFC 9605 §5.2 for keys that come from an MLS
//!   epoch: who sent a frame, under which epoch.
//! - [`group`]: one member's side of a room's MLS group (RFC 9420, with
//!   openmls): key packages, commits, welcomes, the epoch's SFrame base
//!   key and the safety code.
//! - [`session`]: the two kept in step: each new epoch's SFrame keys in
//!   use, the previous epoch's retired after 2 s.
//! - [`client`]: the signaling around a session: the server's `e2ee_*`
//!   messages in, the client's answers out.
//!
//! Nothing here reads a clock or touches the network: times are passed in.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod error;
pub mod group;
pub mod kid;
pub mod session;
pub mod sframe;

pub use error::E2eeError;
