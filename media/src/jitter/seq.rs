//! Extending wrapping RTP counters (16-bit sequence numbers, 32-bit timestamps)
//! to monotonic 64-bit values.

/// Unwraps a `BITS`-bit wrapping counter into an `i64`.
///
/// Each value is placed at the extended position nearest to the highest value
/// seen so far (a step of at most half the counter range, either way), so
/// `65535 -> 0` continues as `65536` and a packet reordered across the wrap
/// (`0`, then `65535`) lands just below. The first value is taken as is; values
/// before it may come out negative, which is why the result is signed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unwrapper<const BITS: u32> {
    highest: Option<i64>,
}

/// Unwrapper for RTP sequence numbers.
pub(crate) type SeqUnwrapper = Unwrapper<16>;
/// Unwrapper for RTP timestamps.
pub(crate) type TsUnwrapper = Unwrapper<32>;

impl<const BITS: u32> Unwrapper<BITS> {
    const MODULUS: i64 = 1 << BITS;

    /// The highest extended value seen so far.
    pub(crate) fn highest(&self) -> Option<i64> {
        self.highest
    }

    /// The extended value of `value` (only its low `BITS` bits are used).
    pub(crate) fn unwrap(&mut self, value: u32) -> i64 {
        let v = i64::from(value) & (Self::MODULUS - 1);
        let Some(highest) = self.highest else {
            self.highest = Some(v);
            return v;
        };
        let mut diff = v - highest.rem_euclid(Self::MODULUS);
        if diff > Self::MODULUS / 2 {
            diff -= Self::MODULUS;
        } else if diff <= -Self::MODULUS / 2 {
            diff += Self::MODULUS;
        }
        let extended = highest.saturating_add(diff);
        if extended > highest {
            self.highest = Some(extended);
        }
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wraps_forward_and_back() {
        let mut u = SeqUnwrapper::default();
        assert_eq!(u.unwrap(65534), 65534);
        assert_eq!(u.unwrap(65535), 65535);
        assert_eq!(u.unwrap(0), 65536);
        assert_eq!(u.unwrap(65535), 65535, "reordered across the wrap");
        assert_eq!(u.unwrap(1), 65537);
        for _ in 0..3 {
            for s in 2..=65535u32 {
                u.unwrap(s);
            }
            u.unwrap(0);
        }
        assert_eq!(u.unwrap(5), 4 * 65536 + 5);
    }

    #[test]
    fn first_value_then_older() {
        let mut u = SeqUnwrapper::default();
        assert_eq!(u.unwrap(0), 0);
        assert_eq!(u.unwrap(65535), -1);
        assert_eq!(u.unwrap(1), 1);
    }

    #[test]
    fn timestamp_wraps_at_2_pow_32() {
        let mut u = TsUnwrapper::default();
        let start = u32::MAX - 959;
        assert_eq!(u.unwrap(start), i64::from(start));
        assert_eq!(u.unwrap(start.wrapping_add(960)), 1 << 32);
        assert_eq!(u.unwrap(start.wrapping_add(1920)), (1 << 32) + 960);
        assert_eq!(u.unwrap(start), i64::from(start), "older stays older");
    }
}
