//! Reading a TWCC feedback packet, one packet status at a time.
//!
//! `rtc`'s `convert_twcc` builds a `Vec` per feedback and reads every
//! symbol of the last status-vector chunk, including the ones past
//! `packet_status_count` that only pad the chunk (it reports them as
//! lost). This walks the parsed [`TransportLayerCc`] in place, stops at
//! `packet_status_count`, and never panics on a malformed one: a status
//! that claims a delta the packet does not carry comes out as received
//! without a time.

use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};

/// TWCC's reference time counts 64 ms ticks.
pub(crate) const REFERENCE_TICK_US: i64 = 64_000;

/// What one status says about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not received (yet).
    Lost,
    /// Received; at this time on the receiver's clock (microseconds, from
    /// the unwrapped reference time), if the feedback carries one.
    Received(Option<i64>),
}

/// Iterator over `(transport-wide sequence number, status)` of a feedback.
pub(crate) struct Statuses<'a> {
    feedback: &'a TransportLayerCc,
    /// Index of the current chunk.
    chunk: usize,
    /// Index of the next symbol within the current chunk.
    symbol: usize,
    /// Statuses produced so far.
    produced: u16,
    /// Index of the next receive delta.
    delta: usize,
    /// Running arrival time (microseconds on the receiver's clock).
    arrival_us: i64,
    /// Whether a status claimed a delta the packet does not carry.
    malformed: bool,
}

impl<'a> Statuses<'a> {
    /// Walks `feedback`, whose reference time, unwrapped by the caller, is
    /// `reference_us` microseconds.
    pub fn new(feedback: &'a TransportLayerCc, reference_us: i64) -> Self {
        Self {
            feedback,
            chunk: 0,
            symbol: 0,
            produced: 0,
            delta: 0,
            arrival_us: reference_us,
            malformed: false,
        }
    }

    /// Whether the feedback was inconsistent (a delta was missing).
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// The next symbol of the chunks, if any remain.
    fn next_symbol(&mut self) -> Option<SymbolTypeTcc> {
        loop {
            let chunk = self.feedback.packet_chunks.get(self.chunk)?;
            let (len, symbol) = match chunk {
                PacketStatusChunk::RunLengthChunk(run) => {
                    (usize::from(run.run_length), run.packet_status_symbol)
                }
                PacketStatusChunk::StatusVectorChunk(vector) => {
                    let symbol = vector
                        .symbol_list
                        .get(self.symbol)
                        .copied()
                        .unwrap_or_default();
                    (vector.symbol_list.len(), symbol)
                }
            };
            if self.symbol < len {
                self.symbol += 1;
                return Some(symbol);
            }
            self.chunk += 1;
            self.symbol = 0;
        }
    }
}

impl Iterator for Statuses<'_> {
    type Item = (u16, Status);

    fn next(&mut self) -> Option<Self::Item> {
        if self.produced >= self.feedback.packet_status_count {
            return None;
        }
        let symbol = self.next_symbol()?;
        let seq = self
            .feedback
            .base_sequence_number
            .wrapping_add(self.produced);
        self.produced += 1;
        let status = match symbol {
            SymbolTypeTcc::PacketNotReceived => Status::Lost,
            SymbolTypeTcc::PacketReceivedWithoutDelta => Status::Received(None),
            SymbolTypeTcc::PacketReceivedSmallDelta | SymbolTypeTcc::PacketReceivedLargeDelta => {
                match self.feedback.recv_deltas.get(self.delta) {
                    Some(delta) => {
                        self.delta += 1;
                        self.arrival_us = self.arrival_us.saturating_add(delta.delta);
                        Status::Received(Some(self.arrival_us))
                    }
                    None => {
                        self.malformed = true;
                        Status::Received(None)
                    }
                }
            }
        };
        Some((seq, status))
    }
}

/// Unwraps a wrapping counter of `bits` bits (TWCC's 24-bit reference
/// time in 64 ms ticks; RFC 8888's 32-bit report timestamp in 1/65536 s)
/// into a continuous count.
#[derive(Debug)]
pub(crate) struct Unwrapper {
    bits: u32,
    last: Option<(u32, i64)>,
}

impl Unwrapper {
    /// TWCC's reference time: 24 bits.
    pub const fn twcc_reference() -> Self {
        Self::new(24)
    }

    /// A counter of `bits` bits (1..=32).
    pub const fn new(bits: u32) -> Self {
        Self { bits, last: None }
    }

    fn mask(&self) -> u32 {
        u32::MAX >> (32 - self.bits)
    }

    /// The unwrapped count of `raw` (the low `bits` bits), taken as the
    /// nearest to the last committed one. Does not commit it: a feedback
    /// that turns out to say nothing usable (garbage, a replay) must not
    /// move the reference.
    pub fn peek(&self, raw: u32) -> i64 {
        let raw = raw & self.mask();
        let span = i64::from(self.mask()) + 1;
        match self.last {
            None => i64::from(raw),
            Some((last, unwrapped)) => {
                let mut diff = i64::from(raw) - i64::from(last);
                if diff > span / 2 {
                    diff -= span;
                } else if diff < -span / 2 {
                    diff += span;
                }
                unwrapped + diff
            }
        }
    }

    /// Makes `raw`, unwrapped to `unwrapped`, the one to compare with.
    pub fn commit(&mut self, raw: u32, unwrapped: i64) {
        self.last = Some((raw & self.mask(), unwrapped));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        RecvDelta, RunLengthChunk, StatusVectorChunk, SymbolSizeTypeTcc,
    };

    fn delta(us: i64) -> RecvDelta {
        RecvDelta {
            type_tcc_packet: SymbolTypeTcc::PacketReceivedSmallDelta,
            delta: us,
        }
    }

    #[test]
    fn stops_at_the_status_count() {
        use SymbolTypeTcc::*;
        let feedback = TransportLayerCc {
            base_sequence_number: 65_534,
            packet_status_count: 3,
            packet_chunks: vec![PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                symbol_size: SymbolSizeTypeTcc::TwoBit,
                symbol_list: vec![
                    PacketReceivedSmallDelta,
                    PacketNotReceived,
                    PacketReceivedSmallDelta,
                    PacketNotReceived,
                    PacketNotReceived,
                    PacketNotReceived,
                    PacketNotReceived,
                ],
                ..Default::default()
            })],
            recv_deltas: vec![delta(1000), delta(500)],
            ..Default::default()
        };
        let statuses: Vec<_> = Statuses::new(&feedback, 64_000).collect();
        assert_eq!(
            statuses,
            vec![
                (65_534, Status::Received(Some(65_000))),
                (65_535, Status::Lost),
                (0, Status::Received(Some(65_500))),
            ]
        );
    }

    #[test]
    fn a_missing_delta_is_received_without_time() {
        let feedback = TransportLayerCc {
            packet_status_count: 2,
            packet_chunks: vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
                run_length: 2,
                ..Default::default()
            })],
            recv_deltas: vec![delta(250)],
            ..Default::default()
        };
        let mut statuses = Statuses::new(&feedback, 0);
        assert_eq!(statuses.next(), Some((0, Status::Received(Some(250)))));
        assert_eq!(statuses.next(), Some((1, Status::Received(None))));
        assert_eq!(statuses.next(), None);
        assert!(statuses.malformed());
    }

    #[test]
    fn more_count_than_chunks_ends_quietly() {
        let feedback = TransportLayerCc {
            packet_status_count: 500,
            ..Default::default()
        };
        assert_eq!(Statuses::new(&feedback, 0).count(), 0);
    }

    #[test]
    fn reference_time_unwraps_both_ways() {
        let mut unwrapper = Unwrapper::twcc_reference();
        let mut step = |reference: u32| {
            let unwrapped = unwrapper.peek(reference);
            unwrapper.commit(reference, unwrapped);
            unwrapped
        };
        assert_eq!(step(0xFF_FFFE), 0xFF_FFFE);
        assert_eq!(step(1), 0x100_0001);
        assert_eq!(step(0xFF_FFFF), 0xFF_FFFF);
    }

    #[test]
    fn a_32_bit_timestamp_unwraps_both_ways() {
        let mut unwrapper = Unwrapper::new(32);
        let mut step = |raw: u32| {
            let unwrapped = unwrapper.peek(raw);
            unwrapper.commit(raw, unwrapped);
            unwrapped
        };
        assert_eq!(step(0xFFFF_FFF0), 0xFFFF_FFF0);
        assert_eq!(step(0x10), 0x1_0000_0010);
        assert_eq!(step(0xFFFF_FFFF), 0xFFFF_FFFF);
    }
}
