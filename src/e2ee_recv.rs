//! Receiving in an end-to-end encrypted call: each packet of a remote
//! audio track decrypted before the app (or the jitter buffer) sees it.
//!
//! - A plain packet's payload is one SFrame ciphertext, with the packet's
//!   RTP timestamp (4 bytes, big-endian) as its metadata: the SFU passes
//!   audio timestamps through, and one that moves a frame in time makes
//!   it fail.
//! - A RED packet's blocks are each one (the publisher encrypts every Opus
//!   frame, then wraps the ciphertexts): each block is decrypted, and a
//!   copy of a frame already taken (RED repeats frames, resends repeat
//!   packets) is left empty, as is one that does not authenticate, so the
//!   blocks keep their places. A block's timestamp, the metadata, is the
//!   packet's less the block's offset. A packet whose own frame does not
//!   decrypt is dropped.
//! - A frame must come from the member the track belongs to (its KID's
//!   leaf is that identity's) and be of the track's kind (its KID's
//!   stream): the SFU cannot pass one member's frames off as another's, or
//!   a screen's as a camera's.
//! - A frame of an epoch that has not begun here yet (its commit, or the
//!   welcome, is still on its way through the signaling) waits, up to
//!   [`HOLD_FOR`] and [`HOLD_PACKETS`], and comes out, in order, once its
//!   keys are in: the next packet of the track lets it through.
//!
//! Anything else is dropped: the server cannot inject media, not even
//! silence.

use crate::e2ee::E2ee;
use crate::packet::MediaPacket;
use crate::red::RedFormat;
use bytes::Bytes;
use huddle_e2ee::session::{Session, Stream};
use huddle_media::rtp::{parse_red, write_red, RedBlock};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::trace;

/// How long a packet waits for its epoch.
pub(crate) const HOLD_FOR: Duration = huddle_e2ee::session::HOLD_FOR;
/// Most packets of one track waiting for their epoch (over a second of
/// audio).
pub(crate) const HOLD_PACKETS: usize = 64;

/// What became of one packet.
#[derive(Debug, PartialEq, Eq)]
enum Opened {
    /// Decrypted: its payload is the plaintext (a RED packet rebuilt
    /// around the plaintext blocks).
    Packet(MediaPacket),
    /// Its epoch has not begun here yet.
    Ahead(MediaPacket),
    /// Not for this track, not authentic, or a copy: gone.
    Dropped(&'static str),
}

#[derive(Default)]
struct Queue {
    /// Packets waiting for their epoch, oldest first, with when they came.
    waiting: VecDeque<(Instant, MediaPacket)>,
    /// Decrypted packets for the app, in order.
    ready: VecDeque<MediaPacket>,
}

/// The receive side of one remote track in an E2EE call.
pub(crate) struct E2eeRecv {
    e2ee: Arc<E2ee>,
    /// The identity whose frames the track carries.
    identity: String,
    stream: Stream,
    red: Option<RedFormat>,
    queue: Mutex<Queue>,
}

impl E2eeRecv {
    /// Decrypt what arrives on a track of `identity`'s `stream`, RED as
    /// negotiated (`red`).
    pub(crate) fn new(
        e2ee: Arc<E2ee>,
        identity: String,
        stream: Stream,
        red: Option<RedFormat>,
    ) -> Self {
        E2eeRecv {
            e2ee,
            identity,
            stream,
            red,
            queue: Mutex::default(),
        }
    }

    /// The next decrypted packet, if one is ready.
    pub(crate) fn pop(&self) -> Option<MediaPacket> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ready
            .pop_front()
    }

    /// Take packet `p` as it arrived: packets that waited for an epoch
    /// that has begun since, then `p`, are ready when they decrypt.
    pub(crate) fn take(&self, p: MediaPacket) {
        let now = Instant::now();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Queue { waiting, ready } = &mut *q;
        self.e2ee.with_session(|session| {
            let before = std::mem::take(waiting);
            for (at, held) in before {
                if now.duration_since(at) >= HOLD_FOR {
                    trace!(
                        seq = held.sequence_number.0,
                        "waited too long for its epoch"
                    );
                    continue;
                }
                match self.open(session, now, held) {
                    Opened::Packet(p) => ready.push_back(p),
                    Opened::Ahead(p) => waiting.push_back((at, p)),
                    Opened::Dropped(why) => trace!("held packet dropped: {why}"),
                }
            }
            match self.open(session, now, p) {
                Opened::Packet(p) => ready.push_back(p),
                Opened::Ahead(p) => {
                    if waiting.len() >= HOLD_PACKETS {
                        waiting.pop_front();
                    }
                    waiting.push_back((now, p));
                }
                Opened::Dropped(why) => trace!("packet dropped: {why}"),
            }
        });
    }

    /// Decrypt one packet.
    fn open(&self, session: &mut Session, now: Instant, mut p: MediaPacket) -> Opened {
        let red = self.red.filter(|f| f.red_pt == p.payload_type);
        let Some(red) = red else {
            if session.is_ahead(&p.payload) {
                return Opened::Ahead(p);
            }
            return match self.decrypt(session, now, p.timestamp, &p.payload) {
                Ok(frame) => {
                    p.payload = Bytes::from(frame);
                    Opened::Packet(p)
                }
                Err(why) => Opened::Dropped(why),
            };
        };
        let Ok(parsed) = parse_red(&p.payload) else {
            return Opened::Dropped("malformed RED");
        };
        if session.is_ahead(parsed.primary.payload) {
            return Opened::Ahead(p);
        }
        if !session.is_fresh(parsed.primary.payload) {
            // A resend, or a packet late after a copy brought its frame.
            return Opened::Dropped("its frame was taken already");
        }
        let primary = match self.decrypt(session, now, p.timestamp, parsed.primary.payload) {
            Ok(frame) => frame,
            Err(why) => return Opened::Dropped(why),
        };
        let plain: Vec<Vec<u8>> = parsed
            .redundant
            .iter()
            .map(|b| {
                if b.payload.is_empty() || !session.is_fresh(b.payload) {
                    return Vec::new();
                }
                let ts = p.timestamp.wrapping_sub(b.timestamp_offset);
                self.decrypt(session, now, ts, b.payload)
                    .unwrap_or_default()
            })
            .collect();
        let blocks: Vec<RedBlock<'_>> = parsed
            .redundant
            .iter()
            .zip(&plain)
            .map(|(b, frame)| RedBlock {
                payload: frame,
                ..*b
            })
            .collect();
        let mut out = Vec::with_capacity(p.payload.len());
        // The blocks were read from a packet of the same layout and are
        // no longer than they were: they fit it again.
        if write_red(&blocks, red.primary_pt, &primary, &mut out).is_err() {
            return Opened::Dropped("RED could not be rebuilt");
        }
        p.payload = Bytes::from(out);
        Opened::Packet(p)
    }

    /// The plaintext of one SFrame ciphertext of the frame at RTP
    /// timestamp `ts`, if it authenticates and comes from this track's
    /// member and stream.
    fn decrypt(
        &self,
        session: &mut Session,
        now: Instant,
        ts: u32,
        sframe: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(sframe.len());
        let sender = session
            .decrypt(now, &ts.to_be_bytes(), sframe, &mut out)
            .map_err(|_| "does not decrypt")?;
        if sender.identity.as_deref() != Some(self.identity.as_str()) {
            return Err("another member's frame");
        }
        if sender.stream != Some(self.stream) {
            return Err("another stream's frame");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
