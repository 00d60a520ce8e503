//! huddle-netem: reproducible network impairment for tests and examples.
//!
//! [`model::Model`] decides, from a seed, what happens to each packet: random
//! loss, bursty loss (Gilbert-Elliott), delay, jitter, reordering and
//! duplication. [`relay::Relay`] applies it to real UDP traffic on loopback.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod model;
pub mod relay;

pub use model::{Counters, GilbertElliott, Impairment, Model};
pub use relay::{Relay, RelayConfig, RelayStats};
