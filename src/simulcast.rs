//! A video track sent as simulcast layers (RFC 8853): one encoding per
//! layer, each with its own SSRC and RTP stream id (RID), on one sender.
//! The SFU gives each subscriber one layer and tells the publisher which
//! layers somebody receives (dynacast, `publish_layers`): a layer nobody
//! receives is not sent until somebody wants it again.

use crate::e2ee::E2ee;
use crate::error::CallError;
use crate::ids::Ssrc;
use crate::rtp_clock::{self, RtpClock};
use bytes::Bytes;
use huddle_e2ee::session::Stream;
use huddle_proto::TrackKind;
use huddle_wire::feedback::keyframe_ssrcs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

/// Ids of the MID and RID header extensions on the publisher connection,
/// and the transceiver's MID: what the SFU tells the layers apart by.
#[derive(Debug, Clone)]
pub(crate) struct LayerExtensions {
    pub mid_id: u8,
    pub mid: Bytes,
    pub rid_id: u8,
}

/// Which layers the SFU wants sent, shared with the call (which hears the
/// server's `publish_layers`). All are wanted until the server says.
#[derive(Debug)]
pub(crate) struct LayerSwitches {
    layers: Vec<(String, AtomicBool)>,
    changed: Notify,
    /// The MID of the track's transceiver, which every layer's packets
    /// carry: set again when the call publishes the track again (after it
    /// joined again, on a new connection).
    mid: std::sync::Mutex<Bytes>,
}

impl LayerSwitches {
    pub fn new(rids: &[&str]) -> Self {
        Self {
            layers: rids
                .iter()
                .map(|r| ((*r).to_owned(), AtomicBool::new(true)))
                .collect(),
            changed: Notify::new(),
            mid: std::sync::Mutex::new(Bytes::new()),
        }
    }

    /// The transceiver's MID is now `mid`.
    pub fn set_mid(&self, mid: Bytes) {
        *self.mid.lock().unwrap_or_else(|e| e.into_inner()) = mid;
    }

    fn mid(&self) -> Bytes {
        self.mid.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The server's word: `(rid, active)` per layer. A RID the track does
    /// not have is ignored; a layer not named keeps its state. Returns
    /// whether anything changed.
    pub fn apply(&self, layers: &[(String, bool)]) -> bool {
        let mut changed = false;
        for (rid, active) in layers {
            if let Some((_, flag)) = self.layers.iter().find(|(r, _)| r == rid) {
                changed |= flag.swap(*active, Ordering::Relaxed) != *active;
            }
        }
        if changed {
            self.changed.notify_waiters();
        }
        changed
    }

    fn active(&self, rid: &str) -> Option<bool> {
        self.layers
            .iter()
            .find(|(r, _)| r == rid)
            .map(|(_, a)| a.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Layer {
    rid: String,
    ssrc: u32,
    clock: Mutex<RtpClock>,
}

/// A video track published as simulcast layers
/// (`Call::publish_simulcast_video`).
/// Write each layer's encoded frames with [`write_frame`](Self::write_frame);
/// encode only the layers [`is_active`](Self::is_active) (the server stops
/// the others when nobody receives them, and starts them again within a
/// round trip when somebody does: [`layers_changed`](Self::layers_changed)
/// wakes up then, and a frame written to a stopped layer is not sent).
///
/// ```no_run
/// # async fn demo(call: &huddle::Call) -> Result<(), huddle::CallError> {
/// use std::time::Duration;
/// let camera = call.publish_simulcast_video(&["q", "h", "f"]).await?;
/// for rid in ["q", "h", "f"] {
///     if camera.is_active(rid) {
///         let packets: Vec<&[u8]> = Vec::new(); // the layer's VP8 RTP payloads
///         camera.write_frame(rid, &packets, Duration::from_millis(33)).await?;
///     }
/// }
/// # Ok(()) }
/// ```
pub struct SimulcastTrack {
    pub(crate) rtp: Arc<TrackLocalStaticRTP>,
    pub(crate) id: String,
    payload_type: u8,
    extensions: LayerExtensions,
    layers: Vec<Layer>,
    switches: Arc<LayerSwitches>,
    /// Set while the call joins the room again (see `LocalTrack`).
    suspended: Arc<AtomicBool>,
    /// The call's end-to-end encryption, in an E2EE call.
    e2ee: Option<Arc<E2ee>>,
}

impl std::fmt::Debug for SimulcastTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulcastTrack")
            .field("id", &self.id)
            .field("layers", &self.rids())
            .finish()
    }
}

impl SimulcastTrack {
    pub(crate) fn new(
        rtp: Arc<TrackLocalStaticRTP>,
        id: String,
        payload_type: u8,
        extensions: LayerExtensions,
        layers: &[(&str, u32)],
        switches: Arc<LayerSwitches>,
        suspended: Arc<AtomicBool>,
    ) -> Self {
        switches.set_mid(extensions.mid.clone());
        Self {
            suspended,
            e2ee: None,
            rtp,
            id,
            payload_type,
            extensions,
            layers: layers
                .iter()
                .map(|&(rid, ssrc)| Layer {
                    rid: rid.to_owned(),
                    ssrc,
                    clock: Mutex::new(RtpClock::random()),
                })
                .collect(),
            switches,
        }
    }

    /// The layers' RTP stream ids, lowest first (as published).
    pub fn rids(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.rid.as_str()).collect()
    }

    /// The SSRC layer `rid` is sent with.
    pub fn ssrc(&self, rid: &str) -> Option<Ssrc> {
        self.layer(rid).map(|l| Ssrc(l.ssrc))
    }

    /// Whether somebody receives layer `rid` (or may at once): encode it.
    /// False for a RID the track does not have.
    pub fn is_active(&self, rid: &str) -> bool {
        self.switches.active(rid).unwrap_or(false)
    }

    /// Wait until the server changes which layers are wanted.
    pub async fn layers_changed(&self) {
        self.switches.changed.notified().await;
    }

    fn layer(&self, rid: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.rid == rid)
    }

    /// The track encrypting its frames with `e2ee` (in an E2EE call).
    pub(crate) fn with_e2ee(mut self, e2ee: Option<Arc<E2ee>>) -> Self {
        self.e2ee = e2ee;
        self
    }

    /// Send one encoded frame of layer `rid` as RTP: each payload one
    /// packet, all with the frame's timestamp, the marker bit on the last,
    /// the MID and RID header extensions on each; then the layer's
    /// timestamp moves on by `duration`. Returns the packets sent: 0 while
    /// the layer is stopped (see [`is_active`](Self::is_active)).
    ///
    /// In an end-to-end encrypted call the frame is encrypted first, as
    /// `LocalTrack::write_frame` does (VP8 payloads needed).
    pub async fn write_frame(
        &self,
        rid: &str,
        payloads: &[&[u8]],
        duration: Duration,
    ) -> Result<usize, CallError> {
        let layer = self
            .layer(rid)
            .ok_or_else(|| CallError::InvalidInput(format!("no simulcast layer {rid:?}")))?;
        let mut clock = layer.clock.lock().await;
        let ts = clock.start_frame(rtp_clock::ticks(TrackKind::Video, duration));
        if !self.is_active(rid) || self.suspended.load(Ordering::Acquire) {
            return Ok(0);
        }
        let sealed = match &self.e2ee {
            Some(e2ee) => match crate::e2ee_video::seal(e2ee, Stream::Camera, payloads)? {
                Some(sealed) => Some(sealed),
                // No key yet: nothing goes out.
                None => return Ok(0),
            },
            None => None,
        };
        let sealed_refs: Option<Vec<&[u8]>> = sealed
            .as_ref()
            .map(|s| s.iter().map(Vec::as_slice).collect());
        let payloads = sealed_refs.as_deref().unwrap_or(payloads);
        let mid = self.switches.mid();
        let rid_bytes = Bytes::copy_from_slice(layer.rid.as_bytes());
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let mut header = rtc::rtp::header::Header {
                version: 2,
                marker: i == last,
                payload_type: self.payload_type,
                sequence_number: clock.seq(),
                timestamp: ts,
                ssrc: layer.ssrc,
                ..Default::default()
            };
            // One-byte extensions of a few bytes: they fit.
            header
                .set_extension(self.extensions.mid_id, mid.clone())
                .map_err(|e| CallError::WebRtc(e.to_string()))?;
            header
                .set_extension(self.extensions.rid_id, rid_bytes.clone())
                .map_err(|e| CallError::WebRtc(e.to_string()))?;
            clock.next_seq(); // taken once the header is whole
            let packet = rtc::rtp::Packet {
                header,
                payload: Bytes::copy_from_slice(payload),
            };
            if let Err(e) = self.rtp.write_rtp(packet).await {
                // The call began joining again meanwhile: dropped, not failed.
                if self.suspended.load(Ordering::Acquire) {
                    return Ok(0);
                }
                return Err(e.into());
            }
        }
        Ok(payloads.len())
    }

    /// Wait for the next keyframe request (PLI or FIR) the SFU relays for
    /// one of the layers, and return that layer's RID; `None` once the
    /// track is no longer sent. Answer by encoding a keyframe of it.
    pub async fn keyframe_requested(&self) -> Option<String> {
        loop {
            let ev = match self.rtp.poll().await {
                Some(ev) => ev,
                // Between two connections while the call joins again.
                None if self.suspended.load(Ordering::Acquire) => {
                    tokio::time::sleep(crate::track::SUSPENDED_POLL).await;
                    continue;
                }
                None => return None,
            };
            let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
                continue;
            };
            let asked = keyframe_ssrcs(&packets);
            if let Some(layer) = self.layers.iter().find(|l| asked.contains(&l.ssrc)) {
                return Some(layer.rid.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_switches_layers_by_rid() {
        let s = LayerSwitches::new(&["q", "h", "f"]);
        assert_eq!(s.active("f"), Some(true), "all wanted at first");
        let off = [("h".to_owned(), false), ("f".to_owned(), false)];
        assert!(s.apply(&off));
        assert!(!s.apply(&off), "no change the second time");
        assert_eq!(s.active("q"), Some(true));
        assert_eq!(s.active("h"), Some(false));
        assert!(s.apply(&[("f".to_owned(), true), ("x".to_owned(), true)]));
        assert_eq!(s.active("f"), Some(true));
        assert_eq!(s.active("x"), None, "not a layer of the track");
    }
}
