//! Transport-wide congestion control on one subscriber connection: the
//! sequence number every packet the SFU sends carries
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01), and what the
//! client's TWCC feedback says of them.

use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use std::time::Instant;

/// One subscriber connection's transport-wide sequence numbers and the
/// feedback on them.
#[derive(Debug)]
pub(crate) struct TransportCc {
    /// The extension's id on this connection (`a=extmap`).
    id: u8,
    /// The sequence number the next packet gets.
    next: u16,
    /// Packets stamped so far.
    sent: u64,
    /// Feedback packets read so far.
    feedback: u64,
}

impl TransportCc {
    /// Stamping with extension id `id` from `now` on.
    pub fn new(_now: Instant, id: u8) -> Self {
        Self {
            id,
            next: 0,
            sent: 0,
            feedback: 0,
        }
    }

    /// The id the extension has on this connection.
    pub fn extension_id(&self) -> u8 {
        self.id
    }

    /// A renegotiation gave the extension another id (numbering goes on).
    pub fn set_extension_id(&mut self, id: u8) {
        self.id = id;
    }

    /// The sequence number for the packet about to be sent; the call that
    /// follows ([`TransportCc::on_sent`]) records it.
    pub fn next_sequence_number(&self) -> u16 {
        self.next
    }

    /// The packet stamped with [`TransportCc::next_sequence_number`] left
    /// at `now`, `size` octets on the wire.
    pub fn on_sent(&mut self, _now: Instant, _size: usize) {
        self.next = self.next.wrapping_add(1);
        self.sent += 1;
    }

    /// TWCC feedback from the client.
    pub fn on_feedback(&mut self, _now: Instant, _feedback: &TransportLayerCc) {
        self.feedback += 1;
    }

    /// The bandwidth estimate toward the client, bits per second, once
    /// there is one.
    pub fn estimate_bps(&self) -> Option<u64> {
        None
    }

    /// Packets stamped and feedback packets read so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.feedback)
    }
}
