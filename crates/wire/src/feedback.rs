//! RTCP feedback: what a keyframe request or a NACK asks for (the SFU reads
//! its subscribers' RTCP itself, on its own transport), and an interceptor for the
//! calling crate. By default webrtc-rs ends inbound RTCP at its
//! interceptors; [`KeyframeRequestsToApp`] marks keyframe requests so they
//! reach the application, and a publishing client answers them with a
//! keyframe.

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use std::collections::VecDeque;
use std::time::Instant;

/// Slot of [`KeyframeRequestsToApp`] in an interceptor registry.
pub const SLOT: usize = 14_000;

/// Interceptor that lets keyframe requests (PLI, FIR) reach the
/// application. Marks, does not consume: the rest of the chain still sees
/// them.
#[derive(Default)]
pub struct KeyframeRequestsToApp {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

/// The reception reports an RTCP compound packet carries (in receiver and
/// sender reports).
pub fn reception_reports(
    packets: &[Box<dyn rtc::rtcp::Packet>],
) -> impl Iterator<Item = &ReceptionReport> {
    packets.iter().flat_map(|p| {
        let any = p.as_any();
        any.downcast_ref::<ReceiverReport>()
            .map(|rr| rr.reports.as_slice())
            .or_else(|| {
                any.downcast_ref::<SenderReport>()
                    .map(|sr| sr.reports.as_slice())
            })
            .unwrap_or(&[])
            .iter()
    })
}

/// What a reception report says about loss on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossReport {
    /// The SSRC the report is about.
    pub ssrc: u32,
    /// Fraction of the packets expected since the receiver's previous
    /// report that did not arrive (lost / 256).
    pub fraction_lost: u8,
    /// Extended highest sequence number received (cycles << 16 | seq):
    /// the difference from the previous report is the number of packets
    /// `fraction_lost` is about.
    pub highest_seq: u32,
}

impl From<&ReceptionReport> for LossReport {
    fn from(r: &ReceptionReport) -> Self {
        LossReport {
            ssrc: r.ssrc,
            fraction_lost: r.fraction_lost,
            highest_seq: r.last_sequence_number,
        }
    }
}

/// The loss report about `ssrc` in these RTCP packets; the last one if
/// several.
pub fn loss_report(packets: &[Box<dyn rtc::rtcp::Packet>], ssrc: u32) -> Option<LossReport> {
    reception_reports(packets)
        .filter(|r| r.ssrc == ssrc)
        .map(LossReport::from)
        .last()
}

/// The sequence numbers an RTCP compound packet reports lost, per media SSRC.
pub fn nacked(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<(u32, u16)> {
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
        .flat_map(|n| {
            n.nacks
                .iter()
                .flat_map(|pair| pair.packet_list())
                .map(move |seq| (n.media_ssrc, seq))
        })
        .collect()
}

/// Whether an RTCP compound packet carries a PLI or FIR.
pub fn is_keyframe_request(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets
        .iter()
        .any(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>())
}

/// The media SSRCs an RTCP compound packet asks a keyframe of (PLI, FIR).
pub fn keyframe_ssrcs(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<u32> {
    let mut ssrcs = Vec::new();
    for p in packets {
        if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
            ssrcs.push(pli.media_ssrc);
        } else if let Some(fir) = p.as_any().downcast_ref::<FullIntraRequest>() {
            ssrcs.extend(fir.fir.iter().map(|e| e.ssrc));
        }
    }
    ssrcs.dedup();
    ssrcs
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestsToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if is_keyframe_request(packets) {
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

impl Interceptor for KeyframeRequestsToApp {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::goodbye::Goodbye;

    fn report(ssrc: u32, fraction_lost: u8) -> ReceptionReport {
        ReceptionReport {
            ssrc,
            fraction_lost,
            last_sequence_number: 70_000 + u32::from(fraction_lost),
            ..Default::default()
        }
    }

    /// The fraction lost `loss_report` finds for `ssrc`.
    fn fraction_lost(packets: &[Box<dyn rtc::rtcp::Packet>], ssrc: u32) -> Option<u8> {
        loss_report(packets, ssrc).map(|r| r.fraction_lost)
    }

    #[test]
    fn fraction_lost_of_our_ssrc_from_receiver_and_sender_reports() {
        let rr: Box<dyn rtc::rtcp::Packet> = Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![report(7, 10), report(42, 30)],
            ..Default::default()
        });
        assert_eq!(fraction_lost(std::slice::from_ref(&rr), 42), Some(30));
        assert_eq!(
            loss_report(std::slice::from_ref(&rr), 42),
            Some(LossReport {
                ssrc: 42,
                fraction_lost: 30,
                highest_seq: 70_030
            })
        );
        assert_eq!(fraction_lost(std::slice::from_ref(&rr), 5), None);
        let sr: Box<dyn rtc::rtcp::Packet> = Box::new(SenderReport {
            ssrc: 1,
            reports: vec![report(42, 64)],
            ..Default::default()
        });
        let bye: Box<dyn rtc::rtcp::Packet> = Box::new(Goodbye::default());
        assert_eq!(
            fraction_lost(&[rr, bye, sr], 42),
            Some(64),
            "the last report"
        );
    }
}
