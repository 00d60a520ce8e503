//! TURN over a stream (TCP, TLS; RFC 8656 §12.5): STUN messages and
//! ChannelData messages back to back, each found by its header. Over a
//! stream a ChannelData message is padded to a multiple of four bytes
//! (libwebrtc pads, and expects padding); a STUN message always is one.
//!
//! Both ends use it: huddle's TURN server on the streams its clients open,
//! and the calling crate, which carries webrtc-rs's TURN datagrams over a
//! stream to a server it cannot reach over UDP.

/// The longest message taken from a stream. A STUN header's length field
/// allows 64 KiB, but nothing a TURN client or server sends comes near:
/// a relayed datagram is at most a path MTU.
pub const MAX_FRAME: usize = 8 * 1024;

/// A STUN header's length (RFC 8489 §5).
const STUN_HEADER: usize = 20;

/// STUN's magic cookie (RFC 8489 §5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// Why a stream is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes start with neither a STUN header nor a channel number.
    #[error("neither a STUN message nor ChannelData")]
    Garbage,
    /// A message longer than [`MAX_FRAME`].
    #[error("a message of {0} bytes (at most {MAX_FRAME})")]
    TooLong(usize),
}

/// Where the next message at the front of `bytes` ends: its length without
/// padding and with it, `None` while its header is incomplete.
fn next_len(bytes: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
    if bytes.len() < 4 {
        return Ok(None);
    }
    let body = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    match bytes[0] >> 4 {
        // Channel numbers 0x4000 through 0x4FFF (RFC 8656 §12).
        0x4 => {
            let len = 4 + body;
            Ok(Some((len, len.next_multiple_of(4))))
        }
        // The first two bits of a STUN message are zero (RFC 8489 §5).
        0x0..=0x3 => {
            if bytes.len() < 8 {
                return Ok(None);
            }
            if bytes[4..8] != MAGIC_COOKIE || body % 4 != 0 {
                return Err(FrameError::Garbage);
            }
            let len = STUN_HEADER + body;
            Ok(Some((len, len)))
        }
        _ => Err(FrameError::Garbage),
    }
}

/// Splits a stream into messages.
#[derive(Debug, Default)]
pub struct Frames {
    buffer: Vec<u8>,
}

impl Frames {
    /// Appends what the stream delivered.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message (ChannelData without its padding), `None`
    /// until one is complete, or an error after which the stream is to be
    /// closed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some((len, skip)) = next_len(&self.buffer)? else {
            return Ok(None);
        };
        if len > MAX_FRAME {
            return Err(FrameError::TooLong(len));
        }
        if self.buffer.len() < skip {
            return Ok(None);
        }
        let frame = self.buffer[..len].to_vec();
        self.buffer.drain(..skip);
        Ok(Some(frame))
    }
}

/// `frame` as it goes onto a stream: ChannelData padded to a multiple of
/// four bytes, STUN messages (always a multiple) as they are.
pub fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.first().is_some_and(|b| b >> 4 == 0x4) {
        frame.resize(frame.len().next_multiple_of(4), 0);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(len: u16) -> Vec<u8> {
        // A binding request header with the magic cookie, `len` bytes of body.
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend(std::iter::repeat_n(0, usize::from(len)));
        m
    }

    #[test]
    fn messages_and_padded_channel_data_come_apart() {
        let mut f = Frames::default();
        let mut stream = stun(8);
        stream.extend_from_slice(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]);
        stream.extend_from_slice(&stun(0));
        // Byte by byte: nothing comes out before it is whole.
        let mut out = Vec::new();
        for b in &stream {
            f.push(std::slice::from_ref(b));
            while let Some(frame) = f.next_frame().expect("frames") {
                out.push(frame);
            }
        }
        assert_eq!(
            out,
            vec![stun(8), vec![0x40, 0, 0, 5, 1, 2, 3, 4, 5], stun(0)]
        );
    }

    #[test]
    fn garbage_and_huge_frames_close_the_stream() {
        let mut f = Frames::default();
        f.push(b"PUT / HTTP/1.1\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::Garbage));
        let mut f = Frames::default();
        f.push(&[
            0x00, 0x01, 0x00, 0x00, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(f.next_frame(), Err(FrameError::Garbage), "no magic cookie");
        let mut f = Frames::default();
        let mut odd = stun(0);
        odd[3] = 3;
        f.push(&odd);
        assert_eq!(
            f.next_frame(),
            Err(FrameError::Garbage),
            "a STUN length not a multiple of 4"
        );
        let mut f = Frames::default();
        f.push(&[0x50, 0x00, 0x00, 0x00]);
        assert_eq!(
            f.next_frame(),
            Err(FrameError::Garbage),
            "past the channel range"
        );
        let mut f = Frames::default();
        f.push(&[0x40, 0x00, 0xff, 0xff]);
        assert!(matches!(f.next_frame(), Err(FrameError::TooLong(_))));
        let mut f = Frames::default();
        f.push(&stun(0)[..3]);
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&stun(0)[3..6]);
        assert_eq!(f.next_frame(), Ok(None), "the cookie is not all there yet");
    }

    #[test]
    fn channel_data_to_a_stream_is_padded() {
        assert_eq!(
            padded(vec![0x40, 0, 0, 1, 9]),
            vec![0x40, 0, 0, 1, 9, 0, 0, 0]
        );
        assert_eq!(padded(stun(4)), stun(4));
        assert_eq!(padded(Vec::new()), Vec::<u8>::new());
    }
}
