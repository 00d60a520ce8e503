//! [`PayloadHead`]: a payload's first bytes as one subscriber gets them.

/// The first bytes of an RTP payload as one subscriber gets them (a VP8
/// descriptor rewritten for its leg, `forward::vp8`), sent in front of the
/// rest of the payload shared by every leg. Inline: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadHead {
    bytes: [u8; PayloadHead::MAX],
    len: u8,
}

impl PayloadHead {
    /// The longest head.
    pub const MAX: usize = 8;

    /// A head holding `bytes`; `None` when longer than [`Self::MAX`].
    pub fn copy_of(bytes: &[u8]) -> Option<Self> {
        let mut head = Self {
            bytes: [0; Self::MAX],
            len: u8::try_from(bytes.len()).ok()?,
        };
        head.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(head)
    }

    /// Its bytes, to rewrite.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..usize::from(self.len)]
    }

    /// `payload` with its first bytes replaced by this head: the head and
    /// the rest of the payload after it.
    pub fn split<'a>(&'a self, payload: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let n = usize::from(self.len).min(payload.len());
        (&self.bytes[..n], &payload[n..])
    }
}
