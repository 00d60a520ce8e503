//! Counters shared between the workers and the main thread (the measured
//! window, live progress) and the per-stream reception bookkeeping.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Latency samples a worker keeps at most (the rest are counted, not kept).
pub const MAX_LATENCY_SAMPLES: usize = 16_000_000;

/// State every worker shares with the main thread.
#[derive(Debug)]
pub struct Shared {
    /// Origin of every timestamp in probes and of the window.
    pub epoch: Instant,
    /// Start of the measured window, ns since `epoch` (0: not set yet).
    window_start: AtomicU64,
    /// End of the measured window, ns since `epoch`.
    window_end: AtomicU64,
    /// Set when the workers must say goodbye and return.
    pub stop: AtomicBool,
}

impl Shared {
    /// Shared state with its epoch now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            window_start: AtomicU64::new(0),
            window_end: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Nanoseconds from the epoch to `t`.
    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Set the measured window (ns since the epoch).
    pub fn set_window(&self, start_ns: u64, end_ns: u64) {
        self.window_end.store(end_ns, Relaxed);
        self.window_start.store(start_ns, Relaxed);
    }

    /// Whether `ns` falls in the measured window.
    pub fn in_window(&self, ns: u64) -> bool {
        let start = self.window_start.load(Relaxed);
        start != 0 && ns >= start && ns < self.window_end.load(Relaxed)
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

/// Live counters of one worker, read by the main thread for the progress
/// line and the per-second timeline. Each worker writes only its own.
#[derive(Debug, Default)]
pub struct Progress {
    /// Participants whose WebSocket is joined.
    pub joined: AtomicU64,
    /// Participants that publish what they should and receive every stream
    /// they expect.
    pub ready: AtomicU64,
    /// Participants that failed (refused, connection failed, socket closed).
    pub failed: AtomicU64,
    /// RTP packets received by subscribers.
    pub rx_packets: AtomicU64,
    /// RTP bytes (header + payload) received by subscribers.
    pub rx_bytes: AtomicU64,
    /// RTP packets sent by publishers.
    pub tx_packets: AtomicU64,
    /// Sum of one-way latencies, µs.
    pub latency_sum_us: AtomicU64,
    /// Latency samples in `latency_sum_us`.
    pub latency_count: AtomicU64,
    /// Worst lateness of the send clock so far, µs (client overload sign).
    pub max_send_lag_us: AtomicU64,
}

impl Progress {
    /// Add to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// Reception of one stream (publisher, kind) at one subscriber: duplicates
/// (retransmissions of packets that did arrive) are not counted twice.
#[derive(Debug, Clone, Default)]
pub struct StreamRx {
    highest: Option<u32>,
    /// Bit i set: `highest - i` was seen.
    seen: u64,
    /// Distinct packets received in total.
    pub total: u64,
    /// Distinct packets received whose send time is in the window.
    pub in_window: u64,
}

impl StreamRx {
    /// Note packet `seq`; false when it is a duplicate.
    pub fn on_packet(&mut self, seq: u32, in_window: bool) -> bool {
        let fresh = match self.highest {
            None => {
                self.highest = Some(seq);
                self.seen = 1;
                true
            }
            Some(h) if seq > h => {
                let shift = seq - h;
                self.seen = if shift >= 64 { 0 } else { self.seen << shift };
                self.seen |= 1;
                self.highest = Some(seq);
                true
            }
            Some(h) => {
                let back = h - seq;
                // Older than the bitmap reaches: count it, it cannot be told apart.
                if back >= 64 {
                    true
                } else {
                    let bit = 1u64 << back;
                    let fresh = self.seen & bit == 0;
                    self.seen |= bit;
                    fresh
                }
            }
        };
        if fresh {
            self.total += 1;
            if in_window {
                self.in_window += 1;
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_reordering() {
        let mut s = StreamRx::default();
        assert!(s.on_packet(10, true));
        assert!(s.on_packet(12, true));
        assert!(s.on_packet(11, false), "late but new");
        assert!(!s.on_packet(11, true), "duplicate");
        assert!(!s.on_packet(12, true), "duplicate");
        assert!(s.on_packet(200, true));
        assert!(s.on_packet(100, true), "beyond the bitmap: counted");
        assert_eq!((s.total, s.in_window), (5, 4));
    }

    #[test]
    fn window() {
        let shared = Shared::new();
        assert!(!shared.in_window(5), "no window yet");
        shared.set_window(10, 20);
        assert!(shared.in_window(10) && shared.in_window(19));
        assert!(!shared.in_window(20) && !shared.in_window(9));
    }
}
