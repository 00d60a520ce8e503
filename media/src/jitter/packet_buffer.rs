//! The packet buffer: received packets ordered by extended sequence number,
//! with duplicates and too-late packets refused and the size bounded.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How many recently played sequence numbers are remembered, to tell a
/// duplicate of an already played packet from a packet that came too late.
const PLAYED_MEMORY: usize = 128;

/// A packet waiting for its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredPacket {
    /// Extended RTP timestamp.
    pub ts: i64,
    /// Codec payload.
    pub payload: Vec<u8>,
    /// When it arrived (caller's clock).
    pub arrival: Duration,
    /// A redundant (RED) copy carried by a later packet, standing in for a
    /// packet that has not arrived; the packet itself replaces it if it
    /// comes before its turn.
    pub redundant: bool,
    /// A later sequence number had arrived before it (a resend after a NACK,
    /// a reordered packet, or a redundant copy): if its time has been filled
    /// by concealment, the stream has already moved past it.
    pub overtaken: bool,
}

/// What [`PacketBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BufferInsert {
    /// Stored; `flushed` older packets were dropped to respect the size bound
    /// (the new packet itself may be among them).
    Stored { flushed: usize },
    /// The same sequence number is buffered or was played recently.
    Duplicate,
    /// Its turn has passed (it was concealed, recovered or skipped).
    Late,
}

/// Packets by extended sequence number, at most `max_packets` of them.
#[derive(Debug, Clone)]
pub(crate) struct PacketBuffer {
    packets: BTreeMap<i64, StoredPacket>,
    max_packets: usize,
    played: VecDeque<i64>,
}

impl PacketBuffer {
    /// An empty buffer holding at most `max_packets` (at least 1).
    pub(crate) fn new(max_packets: usize) -> Self {
        PacketBuffer {
            packets: BTreeMap::new(),
            max_packets: max_packets.max(1),
            played: VecDeque::with_capacity(PLAYED_MEMORY),
        }
    }

    /// Store `packet` under `seq` unless it is a duplicate or older than
    /// `next_seq` (the next sequence number to play, once playout has started).
    /// A packet replaces a redundant copy of itself; a redundant copy never
    /// replaces anything.
    pub(crate) fn insert(
        &mut self,
        seq: i64,
        packet: StoredPacket,
        next_seq: Option<i64>,
    ) -> BufferInsert {
        if let Some(stored) = self.packets.get_mut(&seq) {
            if stored.redundant && !packet.redundant {
                *stored = packet;
                return BufferInsert::Stored { flushed: 0 };
            }
            return BufferInsert::Duplicate;
        }
        if next_seq.is_some_and(|next| seq < next) {
            return if self.played.contains(&seq) {
                BufferInsert::Duplicate
            } else {
                BufferInsert::Late
            };
        }
        self.packets.insert(seq, packet);
        let mut flushed = 0;
        while self.packets.len() > self.max_packets {
            self.packets.pop_first();
            flushed += 1;
        }
        BufferInsert::Stored { flushed }
    }

    /// Remember that `seq` was played, so a copy arriving later is a duplicate.
    pub(crate) fn mark_played(&mut self, seq: i64) {
        if self.played.len() == PLAYED_MEMORY {
            self.played.pop_front();
        }
        self.played.push_back(seq);
    }

    /// The lowest buffered sequence number and its packet.
    pub(crate) fn first(&self) -> Option<(i64, &StoredPacket)> {
        self.packets.first_key_value().map(|(s, p)| (*s, p))
    }

    /// The packet with sequence number `seq`, if buffered.
    pub(crate) fn get(&self, seq: i64) -> Option<&StoredPacket> {
        self.packets.get(&seq)
    }

    /// Take the packet with sequence number `seq` out of the buffer.
    pub(crate) fn remove(&mut self, seq: i64) -> Option<StoredPacket> {
        self.packets.remove(&seq)
    }

    /// Number of buffered packets.
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// Drop everything, including the memory of played packets.
    pub(crate) fn clear(&mut self) {
        self.packets.clear();
        self.played.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ts: i64) -> StoredPacket {
        StoredPacket {
            ts,
            payload: vec![1],
            arrival: Duration::ZERO,
            redundant: false,
            overtaken: false,
        }
    }

    fn copy(ts: i64) -> StoredPacket {
        StoredPacket {
            payload: vec![2],
            redundant: true,
            ..pkt(ts)
        }
    }

    #[test]
    fn a_packet_replaces_its_redundant_copy_never_the_reverse() {
        let mut b = PacketBuffer::new(10);
        assert_eq!(
            b.insert(1, pkt(1), None),
            BufferInsert::Stored { flushed: 0 }
        );
        assert_eq!(b.insert(1, copy(1), None), BufferInsert::Duplicate);
        assert_eq!(b.get(1).map(|p| p.payload[0]), Some(1));
        assert_eq!(
            b.insert(2, copy(2), None),
            BufferInsert::Stored { flushed: 0 }
        );
        assert_eq!(b.insert(2, copy(2), None), BufferInsert::Duplicate);
        assert_eq!(
            b.insert(2, pkt(2), None),
            BufferInsert::Stored { flushed: 0 }
        );
        let stored = b.get(2).expect("stored");
        assert_eq!((stored.payload[0], stored.redundant), (1, false));
        assert_eq!(b.insert(2, pkt(2), None), BufferInsert::Duplicate);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn orders_and_refuses_duplicates_and_late() {
        let mut b = PacketBuffer::new(10);
        assert_eq!(
            b.insert(3, pkt(3), None),
            BufferInsert::Stored { flushed: 0 }
        );
        assert_eq!(
            b.insert(1, pkt(1), None),
            BufferInsert::Stored { flushed: 0 }
        );
        assert_eq!(b.insert(3, pkt(3), None), BufferInsert::Duplicate);
        assert_eq!(b.first().map(|(s, _)| s), Some(1));
        assert!(b.remove(1).is_some());
        b.mark_played(1);
        assert_eq!(b.insert(1, pkt(1), Some(2)), BufferInsert::Duplicate);
        assert_eq!(b.insert(0, pkt(0), Some(2)), BufferInsert::Late);
        assert_eq!(b.len(), 1);
        assert!(b.get(3).is_some());
    }

    #[test]
    fn bounded_by_dropping_oldest() {
        let mut b = PacketBuffer::new(3);
        for s in 0..3 {
            b.insert(s, pkt(s), None);
        }
        assert_eq!(
            b.insert(10, pkt(10), None),
            BufferInsert::Stored { flushed: 1 }
        );
        assert_eq!(b.len(), 3);
        assert_eq!(b.first().map(|(s, _)| s), Some(1));
    }

    #[test]
    fn played_memory_is_bounded() {
        let mut b = PacketBuffer::new(3);
        for s in 0..1000 {
            b.mark_played(s);
        }
        assert_eq!(b.insert(5, pkt(5), Some(1000)), BufferInsert::Late);
        assert_eq!(b.insert(999, pkt(999), Some(1000)), BufferInsert::Duplicate);
    }
}
