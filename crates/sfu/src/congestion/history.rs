//! What was sent, indexed by transport-wide sequence number: a ring buffer.
//!
//! `rtc`'s `rtpfb::History` keeps three `HashMap`s per packet; at the
//! SFU's packet rates (every forwarded packet, up to a million a second
//! per worker) that is hashing and allocation on the hot path. Here a
//! packet is one 16-byte slot of a fixed power-of-two ring, indexed by the
//! low bits of its (unwrapped) sequence number: recording is a store,
//! looking up a fed-back number is a subtraction and a compare. A slot
//! remembers the low 32 bits of the full sequence number, so a slot that
//! has been reused by a newer packet is recognised and feedback about the
//! older one is ignored.

/// What a sent packet carried, as far as congestion control cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum PacketKind {
    /// Forwarded media (audio or video).
    #[default]
    Media = 0,
    /// A retransmission answering a NACK (RTX or same-SSRC).
    Retransmission = 1,
    /// Padding or a probe packet: carries no media.
    Padding = 2,
}

/// What feedback has said about a slot's packet so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub(crate) enum Fate {
    /// No feedback has mentioned it yet.
    #[default]
    Unreported = 0,
    /// Reported as not received (it may still be reported received later).
    Lost = 1,
    /// Reported as received.
    Received = 2,
}

/// One sent packet: 16 bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sent {
    /// When it left, in microseconds since the estimator's epoch.
    pub sent_us: u64,
    /// Low 32 bits of the unwrapped sequence number: tells a reused slot.
    tag: u32,
    /// Size on the wire in bytes (saturated at 65535; UDP cannot carry more).
    pub size: u16,
    /// What it carried.
    pub kind: PacketKind,
    /// What feedback said about it.
    pub fate: Fate,
}

/// Sent packets by unwrapped transport-wide sequence number.
#[derive(Debug)]
pub(crate) struct SendHistory {
    slots: Box<[Sent]>,
    mask: u64,
    /// The first sequence number ever handed out (unwrapped).
    first: u64,
    /// The next sequence number to hand out (unwrapped).
    next: u64,
}

impl SendHistory {
    /// A ring of `len` slots (rounded up to a power of two, at least 64 and
    /// at most 32768: a 16-bit sequence number must identify a slot
    /// unambiguously), whose first packet gets `first_sequence`.
    pub fn new(len: usize, first_sequence: u16) -> Self {
        let len = len.clamp(64, 1 << 15).next_power_of_two();
        Self {
            slots: vec![Sent::default(); len].into_boxed_slice(),
            mask: (len - 1) as u64,
            first: u64::from(first_sequence),
            next: u64::from(first_sequence),
        }
    }

    /// How many packets the ring remembers.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Records a packet and returns its unwrapped sequence number. O(1),
    /// no allocation.
    #[inline]
    pub fn record(&mut self, sent_us: u64, size: usize, kind: PacketKind) -> u64 {
        let seq = self.next;
        self.next += 1;
        // Indexing cannot fail: the mask keeps the index inside the slice.
        self.slots[(seq & self.mask) as usize] = Sent {
            sent_us,
            tag: seq as u32,
            size: size.min(usize::from(u16::MAX)) as u16,
            kind,
            fate: Fate::Unreported,
        };
        seq
    }

    /// The next unwrapped sequence number to be handed out.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// The unwrapped sequence number of a packet fed back as `seq`: the
    /// most recent packet sent with those 16 bits, if it is still in the
    /// ring. `None` for a number not sent yet (ahead of the newest), more
    /// than half the sequence space behind, or already overwritten.
    pub fn unwrap(&self, seq: u16) -> Option<u64> {
        let newest = self.next.checked_sub(1)?;
        if newest < self.first {
            return None;
        }
        let behind = u64::from((newest as u16).wrapping_sub(seq));
        if behind >= 0x8000 || behind >= self.slots.len() as u64 {
            return None;
        }
        let unwrapped = newest.checked_sub(behind)?;
        (unwrapped >= self.first).then_some(unwrapped)
    }

    /// The slot of unwrapped sequence number `seq`, if it still holds that
    /// packet.
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Sent> {
        if seq < self.first || seq >= self.next || self.next - seq > self.slots.len() as u64 {
            return None;
        }
        let slot = self.slots.get_mut((seq & self.mask) as usize)?;
        (slot.tag == seq as u32).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Sent>(), 16);
    }

    #[test]
    fn records_and_finds_across_the_16_bit_wrap() {
        let mut history = SendHistory::new(128, 65_500);
        for i in 0..200u64 {
            let seq = history.record(i, 1200, PacketKind::Media);
            assert_eq!(seq, 65_500 + i);
        }
        // Newest: 65_699 -> wire number 163.
        let newest = history.unwrap(163).expect("newest");
        assert_eq!(newest, 65_699);
        assert_eq!(history.get_mut(newest).map(|s| s.sent_us), Some(199));
        // 100 behind the newest is outside a 128-slot ring? No: inside.
        let older = history.unwrap(63).expect("inside the ring");
        assert_eq!(older, 65_599);
        // 150 behind: overwritten.
        assert_eq!(history.unwrap(13), None);
        // Ahead of the newest: never sent.
        assert_eq!(history.unwrap(164), None);
    }

    #[test]
    fn nothing_sent_finds_nothing() {
        let history = SendHistory::new(64, 0);
        assert_eq!(history.unwrap(0), None);
        assert_eq!(history.unwrap(65_535), None);
    }

    #[test]
    fn numbers_before_the_first_are_unknown() {
        let mut history = SendHistory::new(64, 10);
        history.record(0, 100, PacketKind::Media);
        assert_eq!(history.unwrap(10), Some(10));
        assert_eq!(history.unwrap(9), None);
        assert!(history.get_mut(9).is_none());
    }

    #[test]
    fn capacity_is_a_power_of_two_within_bounds() {
        assert_eq!(SendHistory::new(0, 0).capacity(), 64);
        assert_eq!(SendHistory::new(1000, 0).capacity(), 1024);
        assert_eq!(SendHistory::new(1 << 20, 0).capacity(), 1 << 15);
    }
}
