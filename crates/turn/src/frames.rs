//! TURN over a stream (TCP, TLS): STUN messages and ChannelData messages
//! back to back, each found by its header (RFC 8656 §12.5: over a stream, a
//! ChannelData message is padded to a multiple of four bytes, which
//! `turn-types`' stream buffer does not skip, and libwebrtc pads).

use turn_server_proto::types::channel::ChannelData;
use turn_server_proto::types::stun::message::MessageHeader;

/// Longest message a client may send over a stream: a STUN header's length
/// field allows 64 KiB, but nothing a TURN client sends comes near.
pub const MAX_FRAME: usize = 8 * 1024;

/// The highest channel number (RFC 8656 §12: 0x4000 through 0x4FFF).
const MAX_CHANNEL: u16 = 0x4fff;

/// Why a stream is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes start with neither a STUN header nor a channel number.
    #[error("neither a STUN message nor ChannelData")]
    Garbage,
    /// A message longer than [`MAX_FRAME`].
    #[error("a message of {0} bytes (at most {MAX_FRAME})")]
    TooLong(usize),
}

/// Splits a client's stream into messages.
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
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let channel = ChannelData::parse_header(&self.buffer)
            .ok()
            .filter(|&(id, _)| id <= MAX_CHANNEL);
        let (len, skip) = if let Some((_, len)) = channel {
            let len = 4 + len;
            (len, len.next_multiple_of(4))
        } else if self.buffer[0] & 0xc0 != 0 {
            return Err(FrameError::Garbage);
        } else if self.buffer.len() < MessageHeader::LENGTH {
            return Ok(None);
        } else {
            let header =
                MessageHeader::from_bytes(&self.buffer).map_err(|_| FrameError::Garbage)?;
            let len = MessageHeader::LENGTH + usize::from(header.data_length());
            (len, len)
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

/// `frame` as it goes to a client over a stream: ChannelData padded to a
/// multiple of four bytes, STUN messages (always a multiple) as they are.
pub fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    if ChannelData::parse_header(&frame).is_ok() {
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
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
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
        f.push(&[0x40, 0x00, 0xff, 0xff]);
        assert!(matches!(f.next_frame(), Err(FrameError::TooLong(_))));
        let mut f = Frames::default();
        f.push(&stun(0)[..3]);
        assert_eq!(f.next_frame(), Ok(None));
    }

    #[test]
    fn channel_data_to_a_stream_is_padded() {
        assert_eq!(
            padded(vec![0x40, 0, 0, 1, 9]),
            vec![0x40, 0, 0, 1, 9, 0, 0, 0]
        );
        assert_eq!(padded(stun(4)), stun(4));
    }
}
