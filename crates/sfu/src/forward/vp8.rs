//! VP8 PictureID and TL0PICIDX kept continuous on a leg across simulcast
//! switches (RFC 7741 §4.2), as every simulcast SFU does.
//!
//! Each simulcast layer is its own VP8 stream with its own PictureID and
//! TL0PICIDX counters. A leg that moves to another layer renumbers RTP
//! sequence numbers and timestamps (`Leg::rewrite`), but the payload
//! descriptor still carried the new layer's counters: a jump, often
//! backwards. Chromium's VP8 reference finder takes such a jump for frames
//! it is still missing and holds (stashes) every frame after it: the
//! thin-link run showed a viewer receiving a layer's packets for 2-3 s with
//! no frame assembled, then the frames released at once and dropped as
//! late. A [`Vp8Munger`] per video leg rewrites both counters so that they
//! continue after the last ones the subscriber got.
//!
//! Only the descriptor's first bytes change; they go out as a
//! [`PayloadHead`] in front of the unchanged rest of the shared payload.

use crate::payload_head::PayloadHead;

/// Where a VP8 payload descriptor's fields sit (RFC 7741 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Offset of the PictureID and whether it is 15 bits (M set) or 7.
    pub picture_id: Option<(usize, bool)>,
    /// Offset of TL0PICIDX.
    pub tl0: Option<usize>,
    /// Offset of the VP8 payload header, after the descriptor.
    pub header: usize,
}

impl Layout {
    /// Bytes of the descriptor up to the last counter, if it has one.
    fn counters_end(&self) -> Option<usize> {
        self.tl0.map(|at| at + 1).or(self
            .picture_id
            .map(|(at, long)| at + if long { 2 } else { 1 }))
    }
}

/// Reads the descriptor's layout; `None` when it is cut short.
pub(crate) fn layout(p: &[u8]) -> Option<Layout> {
    let b0 = *p.first()?;
    let mut out = Layout {
        picture_id: None,
        tl0: None,
        header: 1,
    };
    if b0 & 0x80 == 0 {
        return Some(out); // no X: no optional fields
    }
    let x = *p.get(1)?;
    let mut i = 2;
    if x & 0x80 != 0 {
        // I: PictureID, 15 bits when its first bit (M) is set, else 7.
        let long = *p.get(i)? & 0x80 != 0;
        let width = if long { 2 } else { 1 };
        p.get(i + width - 1)?;
        out.picture_id = Some((i, long));
        i += width;
    }
    if x & 0x40 != 0 {
        // L: TL0PICIDX
        p.get(i)?;
        out.tl0 = Some(i);
        i += 1;
    }
    if x & 0x30 != 0 {
        i += 1; // T or K: TID/Y/KEYIDX
    }
    out.header = i;
    Some(out)
}

fn read_picture_id(p: &[u8], at: usize, long: bool) -> u16 {
    if long {
        (u16::from(p[at] & 0x7f) << 8) | u16::from(p[at + 1])
    } else {
        u16::from(p[at] & 0x7f)
    }
}

/// The newer of two counter values on a circle of `modulus`.
fn newer(a: u16, b: u16, modulus: u16) -> bool {
    let d = b.wrapping_sub(a) % modulus;
    d != 0 && d < modulus / 2
}

/// One leg's rewriting of VP8 PictureID and TL0PICIDX.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Vp8Munger {
    /// Added to the source's PictureID (mod 2^15; mod 2^7 for short ones).
    picture_offset: u16,
    /// Added to the source's TL0PICIDX (mod 256).
    tl0_offset: u8,
    /// The newest PictureID and TL0PICIDX sent on the leg.
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
    /// The next packet starts a new source (a switch): offsets are set so
    /// that it continues after what was sent.
    resync: bool,
}

impl Vp8Munger {
    /// The next packet comes from another layer (it starts a keyframe).
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// The descriptor of `payload` as the subscriber gets it: `None` when
    /// nothing changes (no counters, or offsets of zero).
    pub fn rewrite(&mut self, payload: &[u8]) -> Option<PayloadHead> {
        let f = layout(payload)?;
        let len = f.counters_end()?;
        let resync = std::mem::take(&mut self.resync);
        let mut head = PayloadHead::copy_of(payload.get(..len)?)?;
        if let Some((at, long)) = f.picture_id {
            let modulus: u16 = if long { 1 << 15 } else { 1 << 7 };
            let source = read_picture_id(payload, at, long);
            if resync {
                if let Some(last) = self.last_picture {
                    self.picture_offset = last.wrapping_add(1).wrapping_sub(source) % (1 << 15);
                }
            }
            let out = source.wrapping_add(self.picture_offset) % modulus;
            if self
                .last_picture
                .is_none_or(|l| newer(l % modulus, out, modulus))
            {
                self.last_picture = Some(out);
            }
            let bytes = head.bytes_mut();
            if long {
                bytes[at] = 0x80 | (out >> 8) as u8;
                bytes[at + 1] = out as u8;
            } else {
                bytes[at] = out as u8 & 0x7f;
            }
        }
        if let Some(at) = f.tl0 {
            let source = payload[at];
            if resync {
                if let Some(last) = self.last_tl0 {
                    self.tl0_offset = last.wrapping_add(1).wrapping_sub(source);
                }
            }
            let out = source.wrapping_add(self.tl0_offset);
            if self
                .last_tl0
                .is_none_or(|l| newer(u16::from(l), u16::from(out), 256))
            {
                self.last_tl0 = Some(out);
            }
            head.bytes_mut()[at] = out;
        }
        let unchanged = self.picture_offset == 0 && self.tl0_offset == 0;
        (!unchanged).then_some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: X, I (15-bit PictureID `pid`), L (`tl0`), T, then a
    /// payload header byte and some data.
    fn vp8(pid: u16, tl0: u8) -> Vec<u8> {
        vec![
            0x90,
            0xe0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            0x20,
            0x00,
            0xAB,
        ]
    }

    fn sent(m: &mut Vp8Munger, p: &[u8]) -> (u16, u8) {
        let mut out = p.to_vec();
        if let Some(h) = m.rewrite(p) {
            let (head, _) = h.split(p);
            out[..head.len()].copy_from_slice(head);
        }
        assert_eq!(out[5..], p[5..], "only the descriptor changes");
        (read_picture_id(&out, 2, true), out[4])
    }

    #[test]
    fn the_counters_continue_across_a_switch() {
        let mut m = Vp8Munger::default();
        // Layer f: 20000.., tl0 200..; passed through as they are.
        assert_eq!(sent(&mut m, &vp8(20000, 200)), (20000, 200));
        assert_eq!(sent(&mut m, &vp8(20001, 201)), (20001, 201));
        // Switch to q, whose counters are behind: they continue instead.
        m.resync();
        assert_eq!(sent(&mut m, &vp8(300, 7)), (20002, 202));
        assert_eq!(sent(&mut m, &vp8(301, 8)), (20003, 203));
        // A packet of the same frame keeps its frame's numbers.
        assert_eq!(sent(&mut m, &vp8(301, 8)), (20003, 203));
        // And back to f, far ahead: continues too.
        m.resync();
        assert_eq!(sent(&mut m, &vp8(20100, 250)), (20004, 204));
    }

    #[test]
    fn the_counters_wrap() {
        let mut m = Vp8Munger::default();
        assert_eq!(sent(&mut m, &vp8(0x7fff, 255)), (0x7fff, 255));
        m.resync();
        assert_eq!(sent(&mut m, &vp8(10, 3)), (0, 0));
        assert_eq!(sent(&mut m, &vp8(11, 4)), (1, 1));
    }

    #[test]
    fn a_short_picture_id_stays_short() {
        let mut m = Vp8Munger::default();
        // X, I with a 7-bit PictureID, no L.
        let p = |pid: u8| vec![0x90, 0x80, pid & 0x7f, 0x00, 0x01];
        let out = |m: &mut Vp8Munger, pkt: Vec<u8>| {
            let mut o = pkt.clone();
            if let Some(h) = m.rewrite(&pkt) {
                let (head, _) = h.split(&pkt);
                o[..head.len()].copy_from_slice(head);
            }
            o
        };
        assert_eq!(out(&mut m, p(120))[2], 120);
        m.resync();
        let o = out(&mut m, p(5));
        assert_eq!(o[2], 121, "continues, 7 bits");
        assert_eq!(o[2] & 0x80, 0, "M stays clear");
    }

    #[test]
    fn what_carries_no_counter_or_does_not_parse_goes_out_as_it_is() {
        let mut m = Vp8Munger::default();
        m.resync();
        assert!(m.rewrite(&[0x10, 0x00]).is_none(), "no X");
        assert!(m.rewrite(&[0x90, 0x10, 0x05, 0x00]).is_none(), "X, only T");
        assert!(m.rewrite(&[0x90, 0xe0, 0x80]).is_none(), "cut short");
        assert!(m.rewrite(&[]).is_none());
    }
}
