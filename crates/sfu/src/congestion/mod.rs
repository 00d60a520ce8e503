//! Send-side congestion control for subscriber connections: the sans-IO
//! core the subscriber transport and the stream allocator call.
//!
//! - [`SendSideBwe`] (`estimator.rs`): per subscriber connection. The
//!   transport calls [`SendSideBwe::on_sent`] for every packet it sends
//!   (it returns the transport-wide sequence number to stamp) and
//!   [`SendSideBwe::on_twcc`] with the subscriber's TWCC feedback (or
//!   [`SendSideBwe::on_sent_rtp`] and [`SendSideBwe::on_ccfb`] for a peer
//!   that sends RFC 8888 feedback); the allocator reads
//!   [`SendSideBwe::estimate_bps`]. GoogCC: a trendline delay detector
//!   (`delay.rs`), AIMD with a link capacity estimate (`aimd.rs`), a
//!   loss-based bound (`loss.rs`), the delivered rate (`rate.rs`),
//!   feedback walking (`feedback.rs`, RFC 8888's in `ccfb.rs`), probe
//!   measurement (`cluster.rs`).
//! - [`Pacer`] (`pacer.rs`): a leaky bucket per subscriber; audio first
//!   and never held, bounded queue with a stated drop rule, padding only
//!   when asked.
//! - [`ProbeController`] (`probe.rs`): padding at a target rate for a
//!   short cluster, and whether the path carried it.
//! - [`padding_sizes`] (`padding.rs`): how many padding packets of which
//!   size.
//!
//! Everything takes `now: Instant` from the caller: no clock reads, no
//! I/O, no threads; a given input sequence gives one trajectory.
//!
//! # Cost
//!
//! [`SendSideBwe::on_sent`] is one store into a ring slot, a few integer
//! operations and two branches: no allocation, no hashing. Measured by
//! `examples/bwe_step.rs` (release, the shared 2-vCPU dev VM): 12 ns per
//! `on_sent`, 52 ns per [`Pacer`] push + pop. Against the 250-370 ns the
//! SFU spends per forwarded copy today (docs/benchmarks.md), `on_sent` is
//! about 5 %; the pacer's queue round trip would be about 20 % more, so a
//! packet that finds the queue empty and the budget positive should skip
//! the queue (not done yet). Feedback (every 50-100 ms) walks the feedback
//! packet in place, without allocating.
//!
//! # Memory per subscriber
//!
//! The send history is a ring of [`BweConfig::history_len`] slots of 16
//! bytes (default 2048: 32 KiB), enough for 2 s of feedback delay at 1000
//! packets/s (~10 Mb/s of 1200-byte packets); feedback about older packets
//! is ignored. The rest of [`SendSideBwe`] is 2.7 KiB (three rate windows
//! of 64 x 8 bytes, the trendline's 20 points), so about 35 KiB per
//! subscriber with the default history. A [`Pacer`]
//! pre-allocates [`PacerConfig::initial_capacity`] entries per class (4
//! queues plus the dropped queue) and holds at most
//! [`PacerConfig::max_queue_bytes`] of non-audio packets.

mod aimd;
mod ccfb;
mod cluster;
mod delay;
mod estimator;
mod feedback;
mod history;
mod loss;
mod pacer;
mod padding;
mod probe;
mod rate;

pub use cluster::ProbeResult;
pub use delay::Usage;
pub use estimator::{BweConfig, BweStats, SendSideBwe};
pub use history::PacketKind;
pub use pacer::{Pacer, PacerConfig, PacketClass, MIN_PADDING_BYTES};
pub use padding::{padding_sizes, PaddingSizes, MAX_PADDING_ONLY_PACKET};
pub use probe::{
    ProbeCluster, ProbeConfig, ProbeController, ProbeError, ProbeFailure, ProbeOutcome,
};
