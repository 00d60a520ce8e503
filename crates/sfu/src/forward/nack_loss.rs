//! Loss on a subscriber's leg before any repair, counted from its NACKs.
//!
//! A receiver report's fraction lost counts a packet that a NACK resend
//! brought in time for the report as received. With audio NACK on a link
//! losing 40 % in bursts, the resends made the reports read 2-3 % for the
//! first seconds of a call, while half the resends came too late to be
//! played (huddle's audio_quality `--timeline`). RED is there so that
//! nothing waits for a resend, so its distance wants the loss before
//! repair: the packets the leg sent that its subscriber asked for again.

/// How many of the newest sequence numbers the counter remembers (sent,
/// and NACKed once already). A NACK about an older packet is not counted.
const WINDOW: u16 = 128;

/// What a leg sent and what its subscriber NACKed of that, since the last
/// [`NackLoss::take`].
#[derive(Debug, Default, Clone)]
pub(crate) struct NackLoss {
    /// The newest sequence number sent.
    newest: Option<u16>,
    /// Bit `i`: `newest - i` was sent.
    sent_marks: u128,
    /// Bit `i`: `newest - i` was NACKed (counted once).
    nacked_marks: u128,
    sent: u32,
    nacked: u32,
}

impl NackLoss {
    /// The leg sent a fresh packet (not a resend) numbered `seq`.
    pub fn on_sent(&mut self, seq: u16) {
        self.sent = self.sent.saturating_add(1);
        let Some(newest) = self.newest else {
            self.newest = Some(seq);
            self.sent_marks = 1;
            self.nacked_marks = 0;
            return;
        };
        let ahead = seq.wrapping_sub(newest);
        if ahead == 0 {
            return;
        }
        if ahead < 0x8000 {
            let (sent, nacked) = if ahead >= WINDOW {
                (0, 0)
            } else {
                (self.sent_marks << ahead, self.nacked_marks << ahead)
            };
            self.sent_marks = sent | 1;
            self.nacked_marks = nacked;
            self.newest = Some(seq);
        } else {
            // Older than the newest (the publisher's packets came out of
            // order): mark it where it belongs.
            let back = newest.wrapping_sub(seq);
            if back < WINDOW {
                self.sent_marks |= 1 << back;
            }
        }
    }

    /// The subscriber asked for `seq` again. Counted once per packet, and
    /// only for a packet the leg sent (not one lost before the SFU).
    pub fn on_nack(&mut self, seq: u16) {
        let Some(newest) = self.newest else {
            return;
        };
        let back = newest.wrapping_sub(seq);
        if back >= WINDOW {
            return;
        }
        let bit = 1u128 << back;
        if self.sent_marks & bit != 0 && self.nacked_marks & bit == 0 {
            self.nacked_marks |= bit;
            self.nacked = self.nacked.saturating_add(1);
        }
    }

    /// The fraction of the packets sent since the last call that were
    /// NACKed (lost / 256, as RTCP), or `None` when none were sent; starts
    /// counting again.
    pub fn take(&mut self) -> Option<u8> {
        let (sent, nacked) = (self.sent, self.nacked.min(self.sent));
        self.sent = 0;
        self.nacked = 0;
        if sent == 0 {
            return None;
        }
        let fraction = u64::from(nacked) * 256 / u64::from(sent);
        Some(u8::try_from(fraction).unwrap_or(u8::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_lost_packet_once() {
        let mut n = NackLoss::default();
        for i in 0..100u16 {
            n.on_sent(65_500u16.wrapping_add(i));
        }
        // 40 lost in two bursts, the second across the wrap, each asked
        // for three times.
        for _ in 0..3 {
            for seq in (65_510..65_520).chain(65_526..=65_535).chain(0..20) {
                n.on_nack(seq);
            }
        }
        assert_eq!(n.take(), Some(102), "40 of 100: 102 / 256");
        assert_eq!(n.take(), None, "nothing sent since");
        n.on_sent(100);
        n.on_nack(100);
        n.on_nack(65_515);
        assert_eq!(n.take(), Some(255), "1 of 1 (the old one was counted)");
    }

    #[test]
    fn packets_the_leg_never_sent_are_not_its_loss() {
        let mut n = NackLoss::default();
        n.on_nack(7); // before anything was sent
        for seq in (0..50).filter(|s| s % 5 != 0) {
            n.on_sent(seq); // every fifth lost before the SFU
        }
        for seq in (0..50).filter(|s| s % 5 == 0) {
            n.on_nack(seq);
        }
        n.on_nack(60); // ahead of anything sent
        assert_eq!(n.take(), Some(0));
    }

    #[test]
    fn late_and_reordered_packets() {
        let mut n = NackLoss::default();
        n.on_sent(10);
        n.on_sent(12);
        n.on_sent(11); // out of order
        n.on_sent(12); // twice
        n.on_nack(11);
        n.on_nack(12);
        assert_eq!(n.take(), Some(128), "2 of 4 sends");
        n.on_sent(500); // a jump past the window forgets the rest
        n.on_nack(12);
        assert_eq!(n.take(), Some(0));
    }
}
