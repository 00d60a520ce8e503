//! Padding inserted into a subscriber's video stream (bandwidth probes):
//! each padding packet takes a sequence number of the leg's output, so the
//! media that follows is renumbered one further. To map a NACK back to the
//! source packet, a leg remembers the output sequence numbers of its recent
//! padding packets ([`PadLog`]).

/// Padding packets remembered per leg. A NACK for a packet sent before the
/// oldest of them cannot be mapped once older ones were forgotten: it is
/// not answered (the subscriber asks for a keyframe instead).
const REMEMBERED: usize = 64;

/// The output sequence numbers of a leg's recent padding packets.
#[derive(Debug, Clone)]
pub(crate) struct PadLog {
    seqs: [u16; REMEMBERED],
    /// Entries written in all; the newest is at `(written - 1) % REMEMBERED`.
    written: usize,
}

impl Default for PadLog {
    fn default() -> Self {
        Self {
            seqs: [0; REMEMBERED],
            written: 0,
        }
    }
}

/// What a sequence number the leg sent was, as far as the log can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Media; this many padding packets were sent after it.
    Media { later_padding: u16 },
    /// A padding packet: nothing to resend.
    Padding,
    /// Older than what the log remembers: cannot be mapped.
    Unknown,
}

impl PadLog {
    /// Padding went out as `seq`.
    pub fn record(&mut self, seq: u16) {
        self.seqs[self.written % REMEMBERED] = seq;
        self.written += 1;
    }

    /// What `seq` was, with `newest` the newest sequence number sent
    /// (distances are counted back from it, so wrapping does not matter).
    pub fn classify(&self, seq: u16, newest: u16) -> Sent {
        let back = newest.wrapping_sub(seq);
        let kept = self.written.min(REMEMBERED);
        let mut later = 0u16;
        let mut oldest_back = 0u16;
        for i in 0..kept {
            let pad = self.seqs[(self.written - 1 - i) % REMEMBERED];
            let pad_back = newest.wrapping_sub(pad);
            oldest_back = oldest_back.max(pad_back);
            if pad_back == back {
                return Sent::Padding;
            }
            if pad_back < back {
                later += 1;
            }
        }
        if self.written > REMEMBERED && back > oldest_back {
            return Sent::Unknown;
        }
        Sent::Media {
            later_padding: later,
        }
    }
}

impl PadLog {
    /// Where a packet sent late belongs: `candidate` is its number at the
    /// leg's current offset, which counts every padding packet sent so
    /// far; a packet older than some of them (a publisher's resend, or
    /// reordering) takes its number from before them, one less for each
    /// padding packet at or after it (`newest` as in
    /// [`PadLog::classify`]). `None` when the log no longer reaches back
    /// that far.
    pub fn place(&self, candidate: u16, newest: u16) -> Option<u16> {
        let kept = self.written.min(REMEMBERED);
        let mut seq = candidate;
        for i in 0..kept {
            let pad = self.seqs[(self.written - 1 - i) % REMEMBERED];
            if newest.wrapping_sub(pad) > newest.wrapping_sub(seq) {
                return Some(seq); // this padding and all before it are older
            }
            seq = seq.wrapping_sub(1);
        }
        (self.written <= REMEMBERED).then_some(seq)
    }
}

/// A padding-only RTP payload of `len` octets (1 to 255; RFC 3550 §5.1:
/// the last octet counts the padding, itself included), in `buf`.
pub(crate) fn padding_payload(buf: &mut [u8; 255], len: u8) -> &[u8] {
    let len = usize::from(len.max(1));
    buf[..len].fill(0);
    buf[len - 1] = len as u8;
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_and_padding_are_told_apart_across_a_wrap() {
        let mut log = PadLog::default();
        // Media 65534, padding 65535 and 0, media 1 and 2, padding 3.
        log.record(65535);
        log.record(0);
        log.record(3);
        let newest = 3;
        assert_eq!(
            log.classify(65534, newest),
            Sent::Media { later_padding: 3 }
        );
        assert_eq!(log.classify(65535, newest), Sent::Padding);
        assert_eq!(log.classify(0, newest), Sent::Padding);
        assert_eq!(log.classify(1, newest), Sent::Media { later_padding: 1 });
        assert_eq!(log.classify(3, newest), Sent::Padding);
    }

    #[test]
    fn what_is_older_than_the_log_remembers_is_unknown() {
        let mut log = PadLog::default();
        for i in 0..(REMEMBERED as u16 + 10) {
            log.record(1000 + 2 * i); // media at the odd numbers
        }
        let newest = 1000 + 2 * (REMEMBERED as u16 + 9);
        assert_eq!(log.classify(1001, newest), Sent::Unknown);
        assert_eq!(
            log.classify(newest - 1, newest),
            Sent::Media { later_padding: 1 }
        );
    }

    #[test]
    fn a_late_packet_is_placed_before_the_padding_sent_after_it() {
        let mut log = PadLog::default();
        // Media 8, padding 9, media 10, padding 11 and 12, media 13: the
        // offset grew by three since media 8 was numbered.
        for pad in [9, 11, 12] {
            log.record(pad);
        }
        let newest = 13;
        // Numbered at today's offset, media 10 would read 12 and media 8
        // would read 11.
        assert_eq!(log.place(12, newest), Some(10));
        assert_eq!(log.place(11, newest), Some(8));
        // Media 13 itself (the newest) is not moved.
        assert_eq!(log.place(13, newest), Some(13));
    }

    #[test]
    fn a_late_packet_older_than_the_log_is_not_placed() {
        let mut log = PadLog::default();
        for i in 0..(REMEMBERED as u16 + 10) {
            log.record(1000 + 2 * i);
        }
        let newest = 1000 + 2 * (REMEMBERED as u16 + 9) + 1;
        assert_eq!(log.place(newest - 2, newest), Some(newest - 4));
        assert_eq!(log.place(1001 + 74, newest), None, "forgotten padding");
    }

    #[test]
    fn padding_payloads_count_themselves() {
        let mut buf = [7u8; 255];
        assert_eq!(padding_payload(&mut buf, 4), &[0, 0, 0, 4]);
        assert_eq!(padding_payload(&mut buf, 0), &[1]);
        assert_eq!(padding_payload(&mut buf, 255).len(), 255);
    }
}
