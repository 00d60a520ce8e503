//! Per-track retransmission store.
//!
//! The SFU answers NACKs from subscribers itself, from ONE store per published
//! track: the packets it forwarded, by their (unchanged) sequence number. A
//! subscriber leg keeps no copy; memory grows with tracks, not with
//! subscribers. Packets share their payload (`Bytes`) with the forwarded copies.

use rtc::rtp::Packet;

/// How many recent packets a video track keeps (about 1-2 s of 2 Mbit/s video).
pub const VIDEO_SLOTS: usize = 512;

/// How many recent packets an audio track keeps: 1.28 s of 20 ms packets,
/// past any round trip a resent frame could still be played after. Only
/// subscribers that negotiated NACK for audio ask (the calling crate, and
/// Chromium, which takes the SFU's offer of it).
pub const AUDIO_SLOTS: usize = 64;

/// A ring of the last packets of one track, indexed by sequence number.
#[derive(Debug)]
pub struct RtxStore {
    slots: Vec<Option<Packet>>,
}

impl RtxStore {
    /// A store keeping the last `slots` packets (0 keeps nothing).
    pub fn new(slots: usize) -> Self {
        Self {
            slots: vec![None; slots],
        }
    }

    /// Remember a forwarded packet.
    pub fn insert(&mut self, packet: &Packet) {
        if self.slots.is_empty() {
            return;
        }
        let i = packet.header.sequence_number as usize % self.slots.len();
        self.slots[i] = Some(packet.clone());
    }

    /// The packet with sequence number `seq`, if still kept.
    pub fn get(&self, seq: u16) -> Option<&Packet> {
        if self.slots.is_empty() {
            return None;
        }
        self.slots[seq as usize % self.slots.len()]
            .as_ref()
            .filter(|p| p.header.sequence_number == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16) -> Packet {
        let mut p = Packet::default();
        p.header.sequence_number = seq;
        p.payload = bytes::Bytes::from(vec![seq as u8; 4]);
        p
    }

    #[test]
    fn keeps_the_last_packets_and_forgets_older_ones() {
        let mut s = RtxStore::new(8);
        for seq in 65530..=65535u16 {
            s.insert(&packet(seq));
        }
        for seq in 0..6u16 {
            s.insert(&packet(seq)); // wraps
        }
        assert_eq!(s.get(5).map(|p| p.header.sequence_number), Some(5));
        assert_eq!(s.get(65535).map(|p| p.header.sequence_number), Some(65535));
        assert!(s.get(65530).is_none(), "overwritten by seq 2");
        assert!(s.get(100).is_none(), "never seen");
        assert!(RtxStore::new(0).get(1).is_none());
    }
}
