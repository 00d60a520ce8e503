//! What a participant receives: distinct packets per stream (publisher,
//! kind, simulcast layer), in and out of the window, and one-way latencies.

use crate::probe::{kind_byte, Probe};
use crate::stats::{Progress, Shared, StreamRx, MAX_LATENCY_SAMPLES};
use crate::subscriber::rtp_size;
use huddle_proto::TrackKind;
use rtc::rtp;
use std::collections::HashMap;
use std::time::Instant;

/// A received stream: publisher index, kind byte, simulcast layer.
pub type StreamKey = (u32, u8, u8);

/// Reception state of one participant.
pub struct Incoming {
    expected: Vec<(u32, u8)>,
    rx: HashMap<StreamKey, StreamRx>,
    first_media: Option<Instant>,
}

impl Incoming {
    /// Expecting the streams `expected` (publisher index, kind).
    pub fn new(expected: Vec<(u32, TrackKind)>) -> Self {
        Self {
            expected: expected
                .into_iter()
                .map(|(p, k)| (p, kind_byte(k)))
                .collect(),
            rx: HashMap::new(),
            first_media: None,
        }
    }

    /// Whether at least one packet of every expected stream arrived.
    pub fn complete(&self) -> bool {
        self.expected
            .iter()
            .all(|&(p, k)| self.rx.keys().any(|&(rp, rk, _)| (rp, rk) == (p, k)))
    }

    /// When the first media packet arrived.
    pub fn first_media(&self) -> Option<Instant> {
        self.first_media
    }

    /// Distinct packets received per stream whose send time is in the window.
    pub fn received_in_window(&self) -> HashMap<StreamKey, u64> {
        self.rx.iter().map(|(k, s)| (*k, s.in_window)).collect()
    }

    /// Account for one RTP packet received at `now`.
    pub fn on_packet(
        &mut self,
        now: Instant,
        packet: &rtp::Packet,
        shared: &Shared,
        progress: &Progress,
        latencies: &mut Vec<u32>,
    ) {
        let size = rtp_size(packet);
        self.on_media(now, &packet.payload, size, shared, progress, latencies);
    }

    /// Account for one RTP packet received at `now`, given its payload and
    /// its size (header plus payload, bytes).
    pub fn on_media(
        &mut self,
        now: Instant,
        payload: &[u8],
        size: usize,
        shared: &Shared,
        progress: &Progress,
        latencies: &mut Vec<u32>,
    ) {
        let Some(probe) = Probe::read(payload) else {
            return;
        };
        self.first_media.get_or_insert(now);
        let in_window = shared.in_window(probe.send_ns);
        let stream = self
            .rx
            .entry((probe.publisher, kind_byte(probe.kind), probe.layer()))
            .or_default();
        if !stream.on_packet(probe.seq, in_window) {
            return;
        }
        let latency_us = shared.ns(now).saturating_sub(probe.send_ns) / 1000;
        Progress::add(&progress.rx_packets, 1);
        Progress::add(&progress.rx_bytes, size as u64);
        Progress::add(&progress.latency_sum_us, latency_us);
        Progress::add(&progress.latency_count, 1);
        if in_window && latencies.len() < MAX_LATENCY_SAMPLES {
            latencies.push(latency_us.min(u64::from(u32::MAX)) as u32);
        }
    }
}
