//! Padding-only packets out of a forwarded stream.
//!
//! A publisher pads its stream to probe bandwidth (Chromium sends
//! padding-only packets on the media SSRC when no RTX is negotiated). Those
//! probes are about the publisher's link to the SFU: forwarding them would
//! spend every subscriber's bandwidth on nothing. The SFU drops them, and
//! renumbers what follows so that subscribers see no gap (a gap reads as
//! loss: NACKs, concealment). One filter per received stream (layer), ahead
//! of the retransmission store, so stored packets, forwarded copies and
//! resends all carry the same gap-free numbers.
//!
//! `rtc` strips padding from a packet's payload when it parses it but
//! leaves the header's P bit set; [`PaddingFilter::admit`] clears it, since
//! what is forwarded carries no padding.

use std::collections::VecDeque;

/// How many recent dropped sequence numbers the filter remembers: a media
/// packet reordered behind more padding than this is itself dropped (it
/// could not be renumbered with certainty, and is far too late to matter).
const REMEMBERED: usize = 128;

/// `a` comes after `b` in RTP sequence order (RFC 3550 wrapping).
fn after(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Drops padding-only packets of one stream and closes the gaps they leave.
#[derive(Debug, Default)]
pub(crate) struct PaddingFilter {
    /// Padding-only packets dropped so far (wrapping).
    dropped: u16,
    /// Sequence numbers of the most recent dropped ones, oldest first.
    recent: VecDeque<u16>,
    /// Whether older drops were forgotten (then packets older than every
    /// remembered drop cannot be renumbered).
    forgot: bool,
}

impl PaddingFilter {
    /// A packet with sequence number `seq` arrived, `padding_only` when its
    /// payload (padding stripped) is empty. Returns the sequence number to
    /// forward it with, or `None` to drop it.
    #[must_use]
    pub fn admit(&mut self, seq: u16, padding_only: bool) -> Option<u16> {
        if padding_only {
            if !self.recent.contains(&seq) {
                if self.recent.len() == REMEMBERED {
                    self.recent.pop_front();
                    self.forgot = true;
                }
                self.recent.push_back(seq);
                self.dropped = self.dropped.wrapping_add(1);
            }
            return None;
        }
        // Common case: no drop since this packet's place in the stream.
        match self.recent.back() {
            None => return Some(seq),
            Some(&newest) if after(seq, newest) => return Some(seq.wrapping_sub(self.dropped)),
            Some(_) => {}
        }
        if self.forgot
            && self
                .recent
                .front()
                .is_some_and(|&oldest| after(oldest, seq))
        {
            return None;
        }
        if self.recent.contains(&seq) {
            return None; // a media packet reusing a dropped number: not ours to guess
        }
        let later = self.recent.iter().filter(|&&d| after(d, seq)).count() as u16;
        Some(seq.wrapping_sub(self.dropped.wrapping_sub(later)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `(seq, padding_only)` and collect what is forwarded.
    fn run(f: &mut PaddingFilter, input: &[(u16, bool)]) -> Vec<Option<u16>> {
        input.iter().map(|&(s, p)| f.admit(s, p)).collect()
    }

    #[test]
    fn a_stream_without_padding_passes_unchanged() {
        let mut f = PaddingFilter::default();
        let seqs: Vec<(u16, bool)> = (65530..=65535).chain(0..5).map(|s| (s, false)).collect();
        let out = run(&mut f, &seqs);
        assert_eq!(out, seqs.iter().map(|&(s, _)| Some(s)).collect::<Vec<_>>());
    }

    #[test]
    fn padding_is_dropped_and_the_gap_closed() {
        let mut f = PaddingFilter::default();
        let out = run(
            &mut f,
            &[
                (10, false),
                (11, true),
                (12, true),
                (13, false),
                (14, false),
                (15, true),
                (16, false),
            ],
        );
        assert_eq!(
            out,
            vec![Some(10), None, None, Some(11), Some(12), None, Some(13)]
        );
    }

    #[test]
    fn across_the_wrap() {
        let mut f = PaddingFilter::default();
        let out = run(
            &mut f,
            &[(65534, false), (65535, true), (0, true), (1, false)],
        );
        assert_eq!(out, vec![Some(65534), None, None, Some(65535)]);
    }

    #[test]
    fn reordered_and_repeated_packets_keep_their_place() {
        let mut f = PaddingFilter::default();
        // 102 arrives after the probes that followed it; 101 is resent.
        let out = run(
            &mut f,
            &[
                (100, false),
                (101, false),
                (103, true),
                (104, true),
                (105, false),
                (102, false),
                (101, false),
                (104, true),
                (106, false),
            ],
        );
        assert_eq!(
            out,
            vec![
                Some(100),
                Some(101),
                None,
                None,
                Some(103),
                Some(102),
                Some(101),
                None,
                Some(104)
            ]
        );
    }

    #[test]
    fn a_packet_behind_forgotten_drops_is_dropped() {
        let mut f = PaddingFilter::default();
        assert_eq!(f.admit(0, false), Some(0));
        for s in 2..(2 + REMEMBERED as u16 + 10) {
            assert_eq!(f.admit(s, true), None);
        }
        // 1 is older than every remembered drop: its number is unknowable.
        assert_eq!(f.admit(1, false), None);
        // What follows the drops continues right after 0 and the lost 1.
        let next = 2 + REMEMBERED as u16 + 10;
        assert_eq!(f.admit(next, false), Some(2));
    }
}
