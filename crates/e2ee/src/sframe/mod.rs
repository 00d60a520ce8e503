//! SFrame (RFC 9605): encryption of whole media frames, end to end.
//!
//! A frame becomes `header || AEAD(plaintext)`, the header carrying the
//! key ID (KID) and a per-key counter (CTR); the AEAD authenticates the
//! header and any metadata the application sends in clear beside it (RTP
//! header fields, for example). The SFU sees the header and the metadata,
//! never the frame.
//!
//! - [`header`]: the header's encoding (§4.3).
//! - [`suite`]: the cipher suites (§4.5).
//! - [`keys`]: key and salt from a base key (§4.4.2).
//! - [`aead`]: the AEADs, AES-GCM and AES-CTR with HMAC (§4.5.1).
//! - [`context`]: a sender's and a receiver's state (§4.4).
//! - [`replay`]: which counters a receiver has seen.

pub mod aead;
pub mod context;
pub mod header;
pub mod keys;
pub mod replay;
pub mod suite;

pub use context::{ReceiverStats, SframeReceiver, SframeSender};
pub use header::Header;
pub use suite::CipherSuite;
