//! Receiving RED: a packet of the negotiated RED payload type is split
//! into its primary and redundant blocks before the jitter buffer.

use crate::packet::MediaPacket;
use crate::red::{negotiated_red, RedFormat};
use huddle_media::jitter::{JitterBuffer, RtpAudioPacket};
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::PeerConnection;

/// One received audio packet on its way to a jitter buffer: plain Opus, or
/// RED whose blocks are Opus frames of `red_primary_pt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AudioPacket {
    packet: RtpAudioPacket,
    red_primary_pt: Option<u8>,
}

impl AudioPacket {
    /// `p` from a track with RED negotiated as `red` (if at all): RED when
    /// its payload type is RED's, plain Opus otherwise (a sender may switch
    /// RED off and send Opus on the same track).
    pub(crate) fn new(p: &MediaPacket, red: Option<RedFormat>) -> Self {
        AudioPacket {
            packet: p.to_jitter(),
            red_primary_pt: red
                .filter(|f| f.red_pt == p.payload_type)
                .map(|f| f.primary_pt),
        }
    }

    /// Hand it to `buffer` (RED split into its blocks: see
    /// `JitterBuffer::insert_red`). A malformed RED packet is dropped.
    pub(crate) fn insert_into(self, buffer: &mut JitterBuffer, arrival: Duration) {
        match self.red_primary_pt {
            None => {
                buffer.insert(self.packet, arrival);
            }
            Some(primary_pt) => {
                let seq = self.packet.seq;
                if let Err(e) = buffer.insert_red(self.packet, primary_pt, arrival) {
                    debug!(seq, "RED packet dropped: {e}");
                }
            }
        }
    }
}

/// RED as negotiated for the remote `track` on the subscriber connection
/// `pc` (from its receiver's parameters); `None` without RED.
pub(crate) async fn remote_red(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<dyn TrackRemote>,
) -> Option<RedFormat> {
    for receiver in pc.get_receivers().await {
        if Arc::as_ptr(receiver.track()).cast::<()>() == Arc::as_ptr(track).cast::<()>() {
            let params = receiver.get_parameters().await.ok()?;
            return negotiated_red(&params.rtp_parameters.codecs);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SeqNum, Ssrc};
    use crate::red_send::RedSender;
    use bytes::Bytes;
    use huddle_media::analysis::normalized_cross_correlation;
    use huddle_media::jitter::JitterConfig;
    use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
    use huddle_media::source::{AudioSource, SpeechLike};
    use huddle_media::Channels;

    const FORMAT: RedFormat = RedFormat {
        red_pt: 63,
        primary_pt: 111,
    };

    /// 3 s of speech-like audio through Opus.
    fn opus_frames() -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
        let mut src = SpeechLike::new(3).with_frames(150);
        std::iter::from_fn(|| src.next_frame())
            .map(|f| enc.encode(&f).expect("encode"))
            .collect()
    }

    /// The packets a track sends: RED-wrapped by a `RedSender` (at the
    /// distance 25% reported loss gives, 3) with RED's payload type, or
    /// plain Opus.
    fn sent(frames: &[Vec<u8>], red: bool) -> Vec<MediaPacket> {
        let mut sender = RedSender::new(FORMAT).expect("RED");
        sender.on_loss_report(huddle_wire::feedback::LossReport {
            ssrc: 1,
            fraction_lost: 64,
            highest_seq: 50,
        });
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let timestamp = 7_000 + i as u32 * 960;
                let (payload, payload_type) = if red {
                    (sender.wrap(timestamp, f).expect("wraps"), 63)
                } else {
                    (Bytes::copy_from_slice(f), 111)
                };
                MediaPacket {
                    payload,
                    sequence_number: SeqNum(500 + i as u16),
                    timestamp,
                    marker: i == 0,
                    ssrc: Ssrc(9),
                    payload_type,
                }
            })
            .collect()
    }

    /// What the receiver plays: each packet `keep` lets through arrives
    /// 5 ms after it is sent, one pull every 20 ms, as `Playout` does.
    fn played(
        packets: &[MediaPacket],
        red: Option<RedFormat>,
        keep: impl Fn(usize) -> bool,
    ) -> (Vec<i16>, huddle_media::jitter::JitterStats) {
        let mut jb = JitterBuffer::new(JitterConfig::default()).expect("jitter buffer");
        let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
        let mut pcm = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if keep(i) {
                let arrival = Duration::from_millis(20 * i as u64 + 5);
                AudioPacket::new(p, red).insert_into(&mut jb, arrival);
            }
            pcm.extend(jb.pull(Duration::from_millis(20 * i as u64 + 10), &mut dec));
        }
        for k in 0..5 {
            let now = Duration::from_millis(20 * (packets.len() + k) as u64 + 10);
            pcm.extend(jb.pull(now, &mut dec));
        }
        (pcm, jb.stats())
    }

    #[test]
    fn red_packets_play_the_same_pcm_as_plain_opus() {
        let frames = opus_frames();
        let (plain, _) = played(&sent(&frames, false), Some(FORMAT), |_| true);
        let packets = sent(&frames, true);
        let (red, stats) = played(&packets, Some(FORMAT), |_| true);
        assert!(
            plain.iter().any(|s| s.unsigned_abs() > 1000),
            "speech plays"
        );
        assert_eq!(red, plain);
        let copies: usize = packets
            .iter()
            .map(|p| huddle_media::rtp::parse_red(&p.payload).map_or(0, |r| r.redundant.len()))
            .sum();
        assert!(copies > 2 * 150, "mostly three copies a packet: {copies}");
        assert_eq!(
            stats.red_received, copies as u64,
            "every copy reached the buffer"
        );
        assert_eq!((stats.lost, stats.concealed_frames), (0, 0));
    }

    #[test]
    fn lost_packets_are_recovered_from_the_copies() {
        let frames = opus_frames();
        let packets = sent(&frames, true);
        // Bursts of up to 3 lost packets.
        let lost = |i: usize| matches!(i % 20, 5 | 11 | 12 | 16 | 17 | 18);
        let (reference, _) = played(&packets, Some(FORMAT), |_| true);
        let (pcm, s) = played(&packets, Some(FORMAT), |i| !lost(i));
        let n = (0..frames.len()).filter(|&i| lost(i)).count() as u64;
        assert_eq!(s.lost, n, "{s:?}");
        assert!(s.red_recovered_frames >= n - 3, "{s:?}");
        assert!(s.concealed_frames <= 3, "{s:?}");
        let (c, _) = normalized_cross_correlation(&reference, &pcm, 4_800);
        assert!(c > 0.95, "correlation {c}");
        // The same packets read as plain Opus on a track without RED: what
        // the jitter buffer gets is not Opus, nothing decodes to the speech.
        let (garbled, _) = played(&packets, None, |i| !lost(i));
        let (g, _) = normalized_cross_correlation(&reference, &garbled, 4_800);
        assert!(g < c, "{g} vs {c}");
    }

    #[test]
    fn opus_on_a_red_track_is_plain() {
        let frames = opus_frames();
        let packets = sent(&frames[..10], false);
        let a = AudioPacket::new(&packets[0], Some(FORMAT));
        assert_eq!(a.red_primary_pt, None);
        let red = sent(&frames[..10], true);
        assert_eq!(
            AudioPacket::new(&red[0], Some(FORMAT)).red_primary_pt,
            Some(111)
        );
        assert_eq!(AudioPacket::new(&red[0], None).red_primary_pt, None);
    }
}
