//! Receiving in an end-to-end encrypted call: each packet of a remote
//! audio track, and each frame of a remote video (put together from its
//! packets: `e2ee_video`), decrypted before the app (or the jitter buffer)
//! sees it.
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
//! - A video frame's clear first bytes (see `e2ee_video`) are its
//!   metadata; the decrypted frame goes on in the packets that brought it.
//! - A frame of an epoch that has not begun here yet (its commit, or the
//!   welcome, is still on its way through the signaling) waits, up to
//!   [`HOLD_FOR`] and [`HOLD_UNITS`] (packets of audio, frames of video),
//!   and comes out, in order, once its keys are in: the next packet of
//!   the track lets it through.
//!
//! Anything else is dropped: the server cannot inject media, not even
//! silence.

use crate::e2ee::E2ee;
use crate::e2ee_stats::DropReason;
use crate::e2ee_video::{clear_len, frame_of, spread, Reassembly};
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
/// Most units of one track waiting for their epoch (over a second of
/// audio, a few seconds of video).
pub(crate) const HOLD_UNITS: usize = 64;

/// What is decrypted at once: one audio packet, or the packets of one
/// video frame, in order.
type Unit = Vec<MediaPacket>;

/// What became of one unit.
#[derive(Debug, PartialEq, Eq)]
enum Opened {
    /// Decrypted: the payloads carry the plaintext (a RED packet rebuilt
    /// around the plaintext blocks, a video frame spread over its
    /// packets).
    Done(Unit),
    /// Its epoch has not begun here yet.
    Ahead(Unit),
    /// Not for this track, not authentic, or a copy: gone.
    Dropped(&'static str),
}

#[derive(Default)]
struct Queue {
    /// Units waiting for their epoch, oldest first, with when they came.
    waiting: VecDeque<(Instant, Unit)>,
    /// Decrypted packets for the app, in order.
    ready: VecDeque<MediaPacket>,
    /// A video's frames being put together.
    frames: Reassembly,
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

    /// Take packet `p` as it arrived: units that waited for an epoch that
    /// has begun since, then `p`'s (the packet, or its frame once whole),
    /// are ready when they decrypt.
    pub(crate) fn take(&self, p: MediaPacket) {
        let now = Instant::now();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Queue {
            waiting,
            ready,
            frames,
        } = &mut *q;
        let unit = match self.stream {
            Stream::Audio => Some(vec![p]),
            Stream::Camera | Stream::Screen => frames.push(p),
        };
        self.e2ee.with_session(|session| {
            let before = std::mem::take(waiting);
            for (at, held) in before {
                if now.duration_since(at) >= HOLD_FOR {
                    trace!("waited too long for its epoch");
                    self.e2ee.dropped(DropReason::WaitedTooLong);
                    continue;
                }
                match self.open(session, now, held) {
                    Opened::Done(u) => ready.extend(u),
                    Opened::Ahead(u) => waiting.push_back((at, u)),
                    Opened::Dropped(why) => trace!("held media dropped: {why}"),
                }
            }
            let Some(unit) = unit else {
                return;
            };
            match self.open(session, now, unit) {
                Opened::Done(u) => ready.extend(u),
                Opened::Ahead(u) => {
                    if waiting.len() >= HOLD_UNITS {
                        waiting.pop_front();
                        self.e2ee.dropped(DropReason::WaitedTooLong);
                    }
                    waiting.push_back((now, u));
                }
                Opened::Dropped(why) => trace!("media dropped: {why}"),
            }
        });
    }

    /// A unit dropped for `why` (counted), `what` for the log.
    fn lost(&self, why: DropReason, what: &'static str) -> Opened {
        self.e2ee.dropped(why);
        Opened::Dropped(what)
    }

    /// Decrypt one unit.
    fn open(&self, session: &mut Session, now: Instant, mut unit: Unit) -> Opened {
        if self.stream != Stream::Audio {
            return self.open_video(session, now, unit);
        }
        match unit.pop() {
            Some(p) if unit.is_empty() => self.open_audio(session, now, p),
            _ => self.lost(DropReason::Unreadable, "not one audio packet"),
        }
    }

    /// Decrypt a video frame (its packets, in order).
    fn open_video(&self, session: &mut Session, now: Instant, packets: Unit) -> Opened {
        let Some(frame) = frame_of(&packets) else {
            return self.lost(DropReason::Unreadable, "not VP8");
        };
        let (clear, sframe) = frame.split_at(clear_len(&frame));
        if session.is_ahead(sframe) {
            return Opened::Ahead(packets);
        }
        if !session.is_fresh(sframe) {
            return self.lost(DropReason::Duplicate, "a frame taken already");
        }
        let mut plain = clear.to_vec();
        match self.decrypt(session, now, clear, sframe) {
            Ok(rest) => plain.extend_from_slice(&rest),
            Err(why) => return Opened::Dropped(why),
        }
        match spread(packets, &plain) {
            Some(packets) => Opened::Done(packets),
            None => self.lost(DropReason::Unreadable, "a frame longer decrypted than sent"),
        }
    }

    /// Decrypt an audio packet (each block of a RED one).
    fn open_audio(&self, session: &mut Session, now: Instant, mut p: MediaPacket) -> Opened {
        let red = self.red.filter(|f| f.red_pt == p.payload_type);
        let Some(red) = red else {
            if session.is_ahead(&p.payload) {
                return Opened::Ahead(vec![p]);
            }
            let ts = p.timestamp.to_be_bytes();
            return match self.decrypt(session, now, &ts, &p.payload) {
                Ok(frame) => {
                    p.payload = Bytes::from(frame);
                    Opened::Done(vec![p])
                }
                Err(why) => Opened::Dropped(why),
            };
        };
        let Ok(parsed) = parse_red(&p.payload) else {
            return self.lost(DropReason::Unreadable, "malformed RED");
        };
        if session.is_ahead(parsed.primary.payload) {
            return Opened::Ahead(vec![p]);
        }
        if !session.is_fresh(parsed.primary.payload) {
            // A resend, or a packet late after a copy brought its frame.
            return self.lost(DropReason::Duplicate, "its frame was taken already");
        }
        let ts = p.timestamp.to_be_bytes();
        let primary = match self.decrypt(session, now, &ts, parsed.primary.payload) {
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
                self.decrypt(session, now, &ts.to_be_bytes(), b.payload)
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
            return self.lost(DropReason::Unreadable, "RED could not be rebuilt");
        }
        p.payload = Bytes::from(out);
        Opened::Done(vec![p])
    }

    /// The plaintext of one SFrame ciphertext with `metadata` (an audio
    /// frame's RTP timestamp, a video frame's clear bytes), if it
    /// authenticates and comes from this track's member and stream.
    fn decrypt(
        &self,
        session: &mut Session,
        now: Instant,
        metadata: &[u8],
        sframe: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(sframe.len());
        let sender = session
            .decrypt(now, metadata, sframe, &mut out)
            .map_err(|_| "does not decrypt")?;
        if sender.identity.as_deref() != Some(self.identity.as_str()) {
            self.e2ee.dropped(DropReason::Misattributed);
            return Err("another member's frame");
        }
        if sender.stream != Some(self.stream) {
            self.e2ee.dropped(DropReason::Misattributed);
            return Err("another stream's frame");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
