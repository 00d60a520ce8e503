//! Loss reports for the sender: an interceptor that lets the RTCP reports
//! about chosen SSRCs reach the application (webrtc-rs ends inbound RTCP at
//! its interceptors otherwise), and what fraction lost they report.

use crate::track::LocalTrack;
use huddle_wire::feedback::{loss_report, reception_reports};
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

/// Slot of [`LossReportsToApp`] in an interceptor registry (next to the
/// keyframe-request one, `huddle_wire::feedback::SLOT`).
pub(crate) const SLOT: usize = 14_001;

/// How long the loss-report reader holds the track's RTCP queue at a time
/// (so unpublishing, which unbinds the track, never waits longer).
const POLL: Duration = Duration::from_secs(1);

/// The SSRCs whose loss reports the application wants (the RED tracks).
pub(crate) type WatchedSsrcs = Arc<Mutex<HashSet<u32>>>;

/// Marks RTCP carrying a reception report about a watched SSRC so it
/// reaches the application (the sending track's events). Marks, does not
/// consume; reports about other SSRCs stay in the chain, so tracks nobody
/// reads do not fill their queues.
pub(crate) struct LossReportsToApp {
    watched: WatchedSsrcs,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl LossReportsToApp {
    /// Watching the SSRCs in `watched` (shared: add to it at any time).
    pub(crate) fn new(watched: WatchedSsrcs) -> Self {
        LossReportsToApp {
            watched,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for LossReportsToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted = self.watched.lock().is_ok_and(|watched| {
                !watched.is_empty() && reception_reports(packets).any(|r| watched.contains(&r.ssrc))
            });
            if wanted {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for LossReportsToApp {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Read the RTCP the peer sends about `track` and hand its loss reports to
/// the track's RED. Ends when the track is dropped or no longer sent. It
/// takes the track's RTCP: `LocalTrack::keyframe_requested` is for video.
pub(crate) fn follow_loss_reports(track: &Arc<LocalTrack>) {
    let rtp = track.rtp.clone();
    let ssrc = track.ssrc;
    let weak: Weak<LocalTrack> = Arc::downgrade(track);
    tokio::spawn(async move {
        loop {
            let event = match tokio::time::timeout(POLL, rtp.poll()).await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => {
                    if weak.strong_count() == 0 {
                        break;
                    }
                    continue;
                }
            };
            let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                continue;
            };
            let Some(report) = loss_report(&packets, ssrc) else {
                continue;
            };
            let Some(track) = weak.upgrade() else { break };
            track.on_loss_report(report).await;
        }
        tracing::debug!(ssrc, "RED loss reports end");
    });
}
