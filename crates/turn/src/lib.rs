//! huddle's embedded TURN server (RFC 8656) for its own clients: TURN over
//! UDP, TCP and TLS, relaying only to the SFU's media addresses, with
//! short-lived credentials in the TURN REST API scheme
//! ([`credentials`]) that the signaling service hands each participant.
//!
//! The protocol is [`turn_server_proto`]'s (sans-IO). This crate adds the
//! policy in front of it ([`TurnRelay`]: credentials, peers, limits; also
//! sans-IO) and a tokio driver ([`driver::start`]) with the sockets.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use huddle_turn::{driver, PeerPolicy, RelayConfig, TurnLimits};
//! let sfu = "127.0.0.1:7882".parse().unwrap();
//! let turn = driver::start(driver::TurnConfig {
//!     relay: RelayConfig {
//!         realm: "huddle".into(),
//!         secret: "shared with the signaling service".into(),
//!         peers: PeerPolicy::new([(sfu, sfu)]),
//!         limits: TurnLimits::default(),
//!     },
//!     listen: Some("127.0.0.1:3478".parse().unwrap()),
//!     tls: None,
//!     relay_ip: None,
//! })
//! .await?;
//! println!("TURN on {:?}", turn.addrs());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod credentials;
pub mod driver;
pub mod peers;
pub mod relay;
mod screen;
pub mod tls;

/// Log filter directives for the TURN protocol crates: `stun_proto` logs
/// every 401 that asks a client for credentials (the first answer to every
/// allocation) at error level, and `turn-server-proto` each request at
/// info. huddle-turn logs allocations, refusals and revocations itself.
pub const TURN_LOG_FILTER: &str = "stun_proto=warn,stun_proto::auth=off,turn_server_proto=warn";

pub use peers::PeerPolicy;
pub use relay::{ClientTransport, Listener, Output, RelayConfig, TurnLimits, TurnRelay, TurnStats};
