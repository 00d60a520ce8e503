//! How often one subscriber gets the same packet again.
//!
//! A receiver asks again for a packet it still misses: webrtc-rs's NACK
//! generator every 100 ms with no limit, browsers about once per round trip.
//! When the SFU is behind, its answers arrive later than the next ask, and
//! answering every ask sends the same packet again and again: on a loaded
//! worker that extra load made the queues longer, the asks more, and a
//! 24-person meeting that held at 80 % of a core collapsed (seen: 800 000
//! retransmissions in 25 s, 20-30 % loss). So a leg resends one packet at
//! most [`MAX_RESENDS`] times and not twice within [`MIN_RESEND_INTERVAL`]:
//! retransmissions stay a bounded multiple of the loss.

use std::time::{Duration, Instant};

/// Most retransmissions of one packet to one subscriber.
pub const MAX_RESENDS: u8 = 2;
/// Least time between two retransmissions of one packet to one subscriber
/// (about a round trip on the networks calls run over).
pub const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(100);
/// Packets remembered per leg (recent sequence numbers): as many as the
/// track's store keeps ([`crate::forward::rtx::VIDEO_SLOTS`]), since older packets
/// cannot be resent anyway.
const SLOTS: usize = crate::forward::rtx::VIDEO_SLOTS;

#[derive(Debug, Clone, Copy)]
struct Resent {
    seq: u16,
    at: Instant,
    count: u8,
}

/// One leg's recent retransmissions, by the sequence number it sent them
/// under. Allocated at the leg's first retransmission.
#[derive(Debug, Default)]
pub struct ResendGuard {
    slots: Option<Box<[Option<Resent>]>>,
}

impl ResendGuard {
    /// Whether packet `seq` may be resent now; if so, it counts as resent.
    pub fn allow(&mut self, now: Instant, seq: u16) -> bool {
        let slots = self
            .slots
            .get_or_insert_with(|| vec![None; SLOTS].into_boxed_slice());
        let slot = &mut slots[usize::from(seq) % SLOTS];
        match slot {
            Some(r) if r.seq == seq => {
                if r.count >= MAX_RESENDS
                    || now.saturating_duration_since(r.at) < MIN_RESEND_INTERVAL
                {
                    return false;
                }
                r.count += 1;
                r.at = now;
            }
            // Never resent, or the slot held an older packet.
            _ => {
                *slot = Some(Resent {
                    seq,
                    at: now,
                    count: 1,
                })
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_is_resent_at_most_max_times_and_not_too_soon() {
        let t0 = Instant::now();
        let mut g = ResendGuard::default();
        assert!(g.allow(t0, 7), "first ask");
        assert!(
            !g.allow(t0 + Duration::from_millis(50), 7),
            "asked again before the interval"
        );
        let mut g = ResendGuard::default();
        let resent = (0..20u32)
            .filter(|&i| g.allow(t0 + MIN_RESEND_INTERVAL * i, 7))
            .count();
        assert_eq!(
            resent,
            usize::from(MAX_RESENDS),
            "asked 20 times, far apart"
        );
    }

    #[test]
    fn packets_are_counted_apart() {
        let t0 = Instant::now();
        let mut g = ResendGuard::default();
        for seq in 0..100u16 {
            assert!(g.allow(t0, seq), "each packet's first ask");
        }
        // 7 + SLOTS lands on 7's slot: a newer packet, its own count.
        let later = 7u16.wrapping_add(SLOTS as u16);
        assert!(g.allow(t0, later));
        assert!(
            g.allow(t0 + MIN_RESEND_INTERVAL, 7),
            "7 forgotten, so resent"
        );
    }

    #[test]
    fn wrapping_sequence_numbers_are_fine() {
        let t0 = Instant::now();
        let mut g = ResendGuard::default();
        assert!(g.allow(t0, u16::MAX));
        assert!(g.allow(t0, 0));
        assert!(!g.allow(t0, u16::MAX));
    }
}
