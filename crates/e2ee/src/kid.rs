//! Key IDs for keys that come from an MLS group (RFC 9605 §5.2).
//!
//! Every member derives the same `base_key` from an epoch (the MLS
//! exporter with [`MLS_EXPORTER_LABEL`]); what makes each sender's key its
//! own is its KID, which goes into the key derivation:
//!
//! ```text
//!   64-S-E bits   S bits   E bits
//! +-------------+--------+-------+
//! | context     | index  | epoch |
//! +-------------+--------+-------+
//! ```
//!
//! `index` is the sender's leaf index in the group, `epoch` the low `E`
//! bits of the epoch (a receiver keeps at most 2^E epochs apart), and
//! `context` a number the sender chooses (one per stream it sends, so two
//! streams never share a counter).

use crate::E2eeError;

/// The MLS exporter label of SFrame's base key (RFC 9605 §5.2):
/// `base_key = MLS-Exporter(MLS_EXPORTER_LABEL, "", AEAD.Nk)`.
pub const MLS_EXPORTER_LABEL: &str = "SFrame 1.0 Base Key";

/// Where a KID keeps the sender index and the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KidLayout {
    /// `E`: low bits of the epoch in a KID.
    pub epoch_bits: u8,
    /// `S`: bits of the sender index (a group of up to 2^S members).
    pub index_bits: u8,
}

/// A KID taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KidParts {
    /// The sender's choice (its stream).
    pub context: u64,
    /// The sender's leaf index.
    pub index: u64,
    /// The epoch's low `E` bits.
    pub epoch_low: u64,
}

impl KidLayout {
    /// A layout of `epoch_bits` and `index_bits`; together at most 63, so
    /// that at least one bit is left for the context.
    pub fn new(epoch_bits: u8, index_bits: u8) -> Result<Self, E2eeError> {
        if u32::from(epoch_bits) + u32::from(index_bits) > 63 {
            return Err(E2eeError::KidLayout("epoch and index bits exceed 63"));
        }
        Ok(KidLayout {
            epoch_bits,
            index_bits,
        })
    }

    fn mask(bits: u8) -> u64 {
        if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        }
    }

    /// The KID of stream `context` of the member at leaf `index` in
    /// `epoch`.
    pub fn kid(&self, context: u64, index: u64, epoch: u64) -> Result<u64, E2eeError> {
        if index > Self::mask(self.index_bits) {
            return Err(E2eeError::KidLayout(
                "sender index too large for the layout",
            ));
        }
        let shift = u32::from(self.epoch_bits) + u32::from(self.index_bits);
        if context > Self::mask(64 - shift as u8) {
            return Err(E2eeError::KidLayout("context too large for the layout"));
        }
        Ok((context << shift) | (index << self.epoch_bits) | (epoch & Self::mask(self.epoch_bits)))
    }

    /// `kid` taken apart.
    pub fn parts(&self, kid: u64) -> KidParts {
        let shift = u32::from(self.epoch_bits) + u32::from(self.index_bits);
        KidParts {
            context: kid >> shift,
            index: (kid >> self.epoch_bits) & Self::mask(self.index_bits),
            epoch_low: kid & Self::mask(self.epoch_bits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9605 §5.2, "An Example Sequence of KIDs" (E = 4, S = 6).
    #[test]
    fn the_rfc_example() {
        let l = KidLayout::new(4, 6).expect("layout");
        let kid = |context, index, epoch| l.kid(context, index, epoch).expect("fits");
        assert_eq!(kid(0, 3, 14), 0x3e);
        assert_eq!(kid(0, 7, 14), 0x7e);
        assert_eq!(kid(0, 20, 14), 0x14e);
        assert_eq!(kid(0, 3, 15), 0x3f);
        assert_eq!(kid(0, 5, 15), 0x5f);
        assert_eq!(kid(2, 2, 16), 0x820);
        assert_eq!(kid(3, 2, 16), 0xc20);
        assert_eq!(kid(0, 33, 17), 0x211);
        assert_eq!(kid(0, 51, 17), 0x331);
        assert_eq!(
            l.parts(0xc20),
            KidParts {
                context: 3,
                index: 2,
                epoch_low: 0
            }
        );
    }

    #[test]
    fn what_does_not_fit_is_an_error() {
        let l = KidLayout::new(4, 6).expect("layout");
        assert!(l.kid(0, 64, 0).is_err(), "index needs 7 bits");
        assert!(l.kid(1 << 54, 0, 0).is_err(), "context needs 55 bits");
        assert_eq!(
            l.kid((1 << 54) - 1, 63, 15).map(|k| k == u64::MAX),
            Ok(true)
        );
        assert!(KidLayout::new(32, 32).is_err());
    }
}
