//! Building the client's peer connections (async `webrtc` layer) and turning
//! their callbacks into channel messages.

use crate::error::CallError;
use crate::loss_reports::{self, LossReportsToApp, WatchedSsrcs};
use huddle_proto::{ClientMessage, IceCandidate, PcRole};
use huddle_wire::feedback::{KeyframeRequestsToApp, SLOT};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

/// Trickled candidates wait until the description they belong to has been
/// sent: the server cannot use a candidate for a connection it has not heard
/// of yet.
#[derive(Default)]
struct Trickle {
    open: bool,
    queued: Vec<ClientMessage>,
}

/// What a peer connection reports to the call.
pub(crate) struct PcHandler {
    role: PcRole,
    outbox: crate::signal::Outbox,
    trickle: Arc<std::sync::Mutex<Trickle>>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PcHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let msg = ClientMessage::Candidate {
                pc: self.role,
                candidate: IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                },
            };
            let Ok(mut t) = self.trickle.lock() else {
                return;
            };
            if t.open {
                let _ = self.outbox.send(msg);
            } else {
                t.queued.push(msg);
            }
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(pc = ?self.role, %state, "connection state");
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tracing::debug!(pc = ?self.role, "remote track");
        if let Some(tx) = &self.tracks {
            let _ = tx.send(track);
        }
    }
}

/// A built peer connection with its state watch.
pub(crate) struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// SSRCs of sent tracks whose loss reports reach the app (RED tracks).
    pub loss_reports: WatchedSsrcs,
    trickle: Arc<std::sync::Mutex<Trickle>>,
    outbox: crate::signal::Outbox,
}

impl Peer {
    /// The description was sent: send the candidates held back, and the
    /// next ones as they come.
    pub fn open_trickle(&self) {
        if let Ok(mut t) = self.trickle.lock() {
            t.open = true;
            for msg in t.queued.drain(..) {
                let _ = self.outbox.send(msg);
            }
        }
    }
}

/// The codecs of the calling crate: huddle's table, then RED after Opus
/// (offered on publish, accepted on receive; a peer without it answers
/// Opus alone).
pub(crate) fn media_engine() -> Result<MediaEngine, CallError> {
    let mut me = huddle_wire::codecs::media_engine()?;
    huddle_wire::codecs::register_red(&mut me)?;
    Ok(me)
}

/// Build a peer connection bound to `bind` (e.g. `127.0.0.1:0`).
pub(crate) async fn build(
    role: PcRole,
    bind: &str,
    outbox: crate::signal::Outbox,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
) -> Result<Peer, CallError> {
    let mut me = media_engine()?;
    // Keyframe requests must reach the app so a publisher can answer them.
    let loss_reports = WatchedSsrcs::default();
    let registry = register_default_interceptors(Registry::new(), &mut me)?
        .with(SLOT.into(), KeyframeRequestsToApp::default())
        .with(
            loss_reports::SLOT.into(),
            LossReportsToApp::new(loss_reports.clone()),
        );
    let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let trickle = Arc::new(std::sync::Mutex::new(Trickle::default()));
    let handler = Arc::new(PcHandler {
        role,
        outbox: outbox.clone(),
        trickle: trickle.clone(),
        state: state_tx,
        tracks,
    });
    // No mDNS: a huddle server's candidates are addresses, never `.local`
    // names, and joining the mDNS multicast group fails (ENODEV) where there
    // is no route for it, e.g. a host with no default route.
    // An ICE restart binds the sockets again (a wildcard bind lists the
    // interfaces there are now), so a call follows a network change.
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_discard_local_candidates_during_ice_restart(true)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![bind.to_owned()])
        .build()
        .await?;
    Ok(Peer {
        pc: Arc::new(pc),
        state: state_rx,
        loss_reports,
        trickle,
        outbox,
    })
}

/// Wait until the connection is up, failing if it fails or `timeout` passes.
pub(crate) async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    timeout: std::time::Duration,
) -> Result<(), CallError> {
    let wait = async {
        loop {
            match *state.borrow_and_update() {
                RTCPeerConnectionState::Connected => return Ok(()),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    return Err(CallError::WebRtc("media connection failed".into()))
                }
                _ => {}
            }
            if state.changed().await.is_err() {
                return Err(CallError::Closed);
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| CallError::Timeout("the media connection"))?
}

/// The offer and answer themselves: the calling crate's engine offers RED
/// after Opus, and what the answer takes decides.
#[cfg(test)]
mod negotiation_tests {
    use super::media_engine;
    use crate::red::{negotiated_red, RedFormat};
    use huddle_proto::TrackKind;
    use huddle_wire::codecs;
    use huddle_wire::local_track::single_ssrc_track;
    use rtc::peer_connection::configuration::media_engine::MediaEngine;
    use std::sync::Arc;
    use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
    use webrtc::media_stream::track_local::TrackLocal;
    use webrtc::peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
        RTCSessionDescription,
    };

    /// A peer connection's events, ignored.
    struct Quiet;

    #[async_trait::async_trait]
    impl PeerConnectionEventHandler for Quiet {}

    async fn pc(me: MediaEngine) -> Arc<dyn PeerConnection> {
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(me)
            .with_handler(Arc::new(Quiet))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("peer connection");
        Arc::new(pc)
    }

    /// Publish an Opus track from the calling crate's engine to a peer with
    /// `answerer`'s; the offer's SDP and what the sender negotiated.
    async fn publish_to(answerer: MediaEngine) -> (String, Option<RedFormat>) {
        let offerer = pc(media_engine().expect("engine")).await;
        let track: Arc<dyn TrackLocal> = Arc::new(TrackLocalStaticRTP::new(single_ssrc_track(
            "alice".into(),
            "audio-0".into(),
            TrackKind::Audio,
            codecs::opus(),
            1234,
        )));
        let sender = offerer.add_track(track).await.expect("add track");
        let offer = offerer.create_offer(None).await.expect("offer");
        offerer
            .set_local_description(offer.clone())
            .await
            .expect("local offer");
        let answerer = pc(answerer).await;
        answerer
            .set_remote_description(RTCSessionDescription::offer(offer.sdp.clone()).expect("sdp"))
            .await
            .expect("remote offer");
        let answer = answerer.create_answer(None).await.expect("answer");
        answerer
            .set_local_description(answer.clone())
            .await
            .expect("local answer");
        offerer
            .set_remote_description(RTCSessionDescription::answer(answer.sdp).expect("sdp"))
            .await
            .expect("remote answer");
        let codecs = sender
            .get_parameters()
            .await
            .expect("parameters")
            .rtp_parameters
            .codecs;
        let _ = offerer.close().await;
        let _ = answerer.close().await;
        (offer.sdp, negotiated_red(&codecs))
    }

    #[tokio::test]
    async fn red_is_offered_after_opus_and_taken_when_the_answer_has_it() {
        let (offer, red) = publish_to(media_engine().expect("engine")).await;
        let m_audio = offer
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .expect("an audio section");
        let pts: Vec<&str> = m_audio.split_whitespace().skip(3).collect();
        let (opus_at, red_at) = (
            pts.iter().position(|p| *p == "111").expect("Opus offered"),
            pts.iter().position(|p| *p == "63").expect("RED offered"),
        );
        assert!(opus_at < red_at, "Opus first: {m_audio}");
        assert!(offer.contains("a=rtpmap:63 red/48000/2"), "{offer}");
        assert!(offer.contains("a=fmtp:63 111/111"), "{offer}");
        assert_eq!(
            red,
            Some(RedFormat {
                red_pt: 63,
                primary_pt: 111
            })
        );
    }

    #[tokio::test]
    async fn a_peer_without_red_gets_opus() {
        // A peer whose table has no RED (the SFU's before it knew RED).
        let (_, red) = publish_to(codecs::media_engine().expect("engine")).await;
        assert_eq!(red, None);
    }
}
