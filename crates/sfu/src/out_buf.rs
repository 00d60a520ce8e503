//! Where forwarded datagrams are written: one large buffer that each
//! protected packet is appended to and split off from (`BytesMut::split`),
//! so a forwarded copy costs no allocation of its own.
//!
//! The datagrams share the buffer's storage until the driver has sent and
//! dropped them; when the buffer runs short and every datagram carved from
//! it is gone, `BytesMut::reserve` takes the same storage back, and the
//! steady state allocates nothing at all. If some are still queued, a new
//! buffer is started and the old one is freed with its last datagram.

use bytes::BytesMut;

/// Size of one buffer: about 1 700 audio or 200 video datagrams.
const CHUNK: usize = 256 << 10;
/// Room kept for the next datagram: more than any that is forwarded
/// (a UDP datagram on a 1 500-octet MTU, with room to spare).
const ROOM: usize = 2048;

/// See the module docs.
#[derive(Default)]
pub(crate) struct OutBuf {
    buf: BytesMut,
}

impl OutBuf {
    /// The buffer to append the next datagram to, with spare capacity for
    /// it. Empty
    /// apart from a datagram appended and not yet [taken](OutBuf::take)
    /// (there is none unless a caller forgot to take one).
    pub fn spare(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < ROOM {
            self.buf.reserve(CHUNK);
        }
        &mut self.buf
    }

    /// The datagram appended since the last call, split off the buffer.
    pub fn take(&mut self) -> BytesMut {
        self.buf.split()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_carved_from_one_buffer_which_is_reused_once_they_are_dropped() {
        let mut out = OutBuf::default();
        let first = {
            let spare = out.spare();
            spare.extend_from_slice(&[1; 100]);
            out.take()
        };
        let second = {
            out.spare().extend_from_slice(&[2; 200]);
            out.take()
        };
        assert_eq!((&first[..], &second[..]), (&[1; 100][..], &[2; 200][..]));
        // Contiguous: the second starts where the first ends.
        assert_eq!(first.as_ptr().wrapping_add(100), second.as_ptr());
        let base = first.as_ptr();
        drop((first, second));
        // Fill the rest of the chunk; once it runs short, the storage (every
        // datagram from it dropped) is reused from its start.
        let mut reused = false;
        for _ in 0..CHUNK / 1000 + 2 {
            out.spare().extend_from_slice(&[3; 1000]);
            let d = out.take();
            reused |= d.as_ptr() == base;
        }
        assert!(reused, "the buffer's storage was taken back");
    }

    #[test]
    fn a_buffer_still_in_use_is_left_alone() {
        let mut out = OutBuf::default();
        out.spare().extend_from_slice(&[1; 10]);
        let kept = out.take();
        for _ in 0..CHUNK / 1000 + 2 {
            out.spare().extend_from_slice(&[3; 1000]);
            drop(out.take());
        }
        assert_eq!(
            &kept[..],
            &[1; 10][..],
            "a queued datagram is never overwritten"
        );
    }
}
