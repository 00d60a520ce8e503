//! Sending RED: each Opus frame wrapped with copies of the frames before
//! it, at a distance that follows the receiver's loss reports.

use crate::error::CallError;
use crate::red::RedFormat;
use bytes::Bytes;
use huddle_media::rtp::{RedEncoder, RedEncoderConfig};
use huddle_wire::feedback::LossReport;
use huddle_wire::red_distance::{RedDistance, RedDistancePolicy};

/// The RED state of one published audio track.
#[derive(Debug)]
pub(crate) struct RedSender {
    encoder: RedEncoder,
    distance: RedDistance,
    buf: Vec<u8>,
}

impl RedSender {
    /// RED around Opus frames of `format.primary_pt`, distance from
    /// `RedDistancePolicy::default()` (1 until a loss report says more).
    pub(crate) fn new(format: RedFormat) -> Result<Self, CallError> {
        let distance = RedDistance::new(RedDistancePolicy::default());
        let encoder = RedEncoder::new(RedEncoderConfig {
            primary_pt: format.primary_pt,
            distance: distance.get(),
            ..RedEncoderConfig::default()
        })
        .map_err(|e| CallError::InvalidInput(format!("RED: {e}")))?;
        Ok(RedSender {
            encoder,
            distance,
            buf: Vec::with_capacity(1500),
        })
    }

    /// The RED payload for the Opus `frame` at RTP timestamp `timestamp`.
    /// One call per packet sent (see [`RedEncoder`]).
    pub(crate) fn wrap(&mut self, timestamp: u32, frame: &[u8]) -> Result<Bytes, CallError> {
        self.encoder
            .encode_into(timestamp, frame, &mut self.buf)
            .map_err(|e| CallError::InvalidInput(format!("RED: {e}")))?;
        Ok(Bytes::copy_from_slice(&self.buf))
    }

    /// A frame was not sent (muted): the next packet repeats nothing older.
    pub(crate) fn skip(&mut self) {
        self.encoder.reset();
    }

    /// The receiver reported what it lost (an RTCP reception report).
    pub(crate) fn on_loss_report(&mut self, report: LossReport) -> u8 {
        let distance = self.distance.on_loss_report(report);
        self.encoder.set_distance(distance);
        distance
    }

    /// The redundancy distance in use.
    pub(crate) fn distance(&self) -> u8 {
        self.encoder.distance()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_rule_asks_no_more_than_the_encoder_repeats() {
        assert_eq!(
            huddle_wire::red_distance::MAX_RED_DISTANCE,
            huddle_media::rtp::MAX_RED_DISTANCE
        );
    }

    #[test]
    fn reports_move_the_distance() {
        let mut red = RedSender::new(RedFormat {
            red_pt: 63,
            primary_pt: 111,
        })
        .expect("valid");
        assert_eq!(red.distance(), 1);
        let report = LossReport {
            ssrc: 1,
            fraction_lost: 64,
            highest_seq: 50,
        };
        assert_eq!(red.on_loss_report(report), 3, "25% lost");
        let first = red.wrap(0, &[0x78; 40]).expect("wraps");
        assert_eq!(first[0], 111, "nothing earlier: the primary header alone");
        let second = red.wrap(960, &[0x79; 40]).expect("wraps");
        assert_eq!(second.len(), 4 + 1 + 40 + 40);
        red.skip();
        let third = red.wrap(1920 + 960, &[0x7a; 40]).expect("wraps");
        assert_eq!(
            third.len(),
            1 + 40,
            "nothing repeated across a skipped frame"
        );
    }
}
