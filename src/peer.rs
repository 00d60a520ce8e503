//! Building the client's peer connections (async `webrtc` layer) and turning
//! their callbacks into channel messages.

use crate::error::CallError;
use crate::ice::IceConfig;
use crate::loss_reports::{self, LossReportsToApp, WatchedSsrcs};
use huddle_proto::{ClientMessage, IceCandidate, PcRole};
use huddle_wire::feedback::{KeyframeRequestsToApp, SLOT};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder, Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
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
    /// Connecting over TCP when UDP does not get through.
    pub tcp: TcpFallback,
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

/// The WebRTC configuration for `ice` (at build, and when the server sends
/// new TURN credentials: `PeerConnection::set_configuration`).
pub(crate) fn configuration(ice: &IceConfig) -> webrtc::peer_connection::RTCConfiguration {
    RTCConfigurationBuilder::new()
        .with_ice_servers(ice.servers.clone())
        .with_ice_transport_policy(ice.policy())
        .build()
}

/// How often the NACK generator asks again for what is still missing.
/// `rtc`'s default, 100 ms, made most audio resends arrive after their
/// turn in the jitter buffer (35 ms of delay on a clean path): asked
/// every 20 ms, a resend comes one packet time after the gap shows.
const NACK_INTERVAL: Duration = Duration::from_millis(20);

/// How many times one lost packet is asked for: at [`NACK_INTERVAL`], for
/// one second, so that a video packet lost on a path with a long round
/// trip can still come back (the SFU resends one packet at most twice, and
/// not twice within 100 ms; the asks are one small RTCP packet per
/// interval for everything missing).
const MAX_NACKS_PER_PACKET: u16 = 50;

/// `rtc`'s default interceptors (NACK, simulcast header extensions, TWCC
/// feedback, RTCP reports) with NACK for audio too
/// (`huddle_wire::codecs::register_nack`) and a NACK generator that asks
/// every [`NACK_INTERVAL`].
fn interceptors(me: &mut MediaEngine) -> Result<Registry, CallError> {
    huddle_wire::codecs::register_nack(me);
    configure_simulcast_extension_headers(me)?;
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                .build(),
        );
    let registry = configure_twcc_receiver_only(registry, me)?;
    Ok(configure_rtcp_reports(registry))
}

/// Build a peer connection bound to `bind` (e.g. `127.0.0.1:0`).
pub(crate) async fn build(
    role: PcRole,
    bind: &str,
    ice: &IceConfig,
    outbox: crate::signal::Outbox,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
) -> Result<Peer, CallError> {
    let mut me = media_engine()?;
    // Keyframe requests must reach the app so a publisher can answer them.
    let loss_reports = WatchedSsrcs::default();
    let registry = interceptors(&mut me)?
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
    let configuration = configuration(ice);
    // ICE-TCP (RFC 6544): webrtc-rs offers its active TCP candidate only
    // beside a TCP listener of its own (no huddle server connects to it);
    // with it, a network that blocks UDP still reaches the server's passive
    // TCP candidate (`TcpFallback`). Not when only relays may be used.
    let tcp_addrs = match ice.relay_only {
        true => vec![],
        false => vec![bind.to_owned()],
    };
    let pc = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_setting_engine(settings)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![bind.to_owned()])
        .with_tcp_addrs(tcp_addrs)
        .build()
        .await?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    Ok(Peer {
        tcp: TcpFallback {
            pc: pc.clone(),
            state: state_rx.clone(),
            dialed: Arc::default(),
            enabled: !ice.relay_only,
        },
        pc,
        state: state_rx,
        loss_reports,
        trickle,
        outbox,
    })
}

/// The passive TCP candidates (RFC 6544) of a remote description, each
/// with the m-line it was listed under.
pub(crate) fn tcp_passive_candidates(sdp: &str) -> Vec<RTCIceCandidateInit> {
    let mut out = Vec::new();
    let mut mline: Option<u16> = None;
    let mut mid: Option<String> = None;
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            mline = Some(mline.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(v) = line.strip_prefix("a=mid:") {
            mid = Some(v.to_owned());
            for c in out.iter_mut().filter(|c: &&mut RTCIceCandidateInit| {
                c.sdp_mline_index == mline && c.sdp_mid.is_none()
            }) {
                c.sdp_mid = mid.clone();
            }
        } else if let Some(c) = line.strip_prefix("a=") {
            let fields: Vec<&str> = c.split_whitespace().collect();
            let passive = fields.windows(2).any(|w| w == ["tcptype", "passive"]);
            if c.starts_with("candidate:")
                && fields.get(2).is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
                && passive
            {
                out.push(RTCIceCandidateInit {
                    candidate: c.to_owned(),
                    sdp_mid: mid.clone(),
                    sdp_mline_index: mline,
                    ..Default::default()
                });
            }
        }
    }
    // BUNDLE: one transport; the first section's candidate is enough.
    out.truncate(1);
    out
}

/// How long a connection may stay unconnected over UDP before the call
/// connects to the server's TCP candidate too.
pub(crate) const TCP_FALLBACK_AFTER: Duration = Duration::from_secs(1);

/// ICE-TCP as a fallback: the server's passive TCP candidate (RFC 6544) is
/// handed to webrtc-rs as if trickled (it connects only to trickled TCP
/// candidates) when the connection is still not up
/// [`TCP_FALLBACK_AFTER`] after a remote description was applied, at most
/// once per ICE session (pair of ICE ufrags: an ICE restart starts a new
/// one). A network that lets UDP through never opens a TCP connection; one
/// that blocks it gets one per media connection.
#[derive(Clone)]
pub(crate) struct TcpFallback {
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// The ICE session (local ufrag, remote ufrag) last dialed for.
    dialed: Arc<std::sync::Mutex<Option<(String, String)>>>,
    /// Off when only relayed paths may be used.
    enabled: bool,
}

impl TcpFallback {
    /// `remote_sdp` was applied: dial its TCP candidate if the connection is
    /// not up in [`TCP_FALLBACK_AFTER`] (in the background).
    pub fn after_remote_description(&self, remote_sdp: &str) {
        let candidates = tcp_passive_candidates(remote_sdp);
        if candidates.is_empty() || !self.enabled {
            return;
        }
        let remote_ufrag = ice_ufrag(remote_sdp);
        let this = self.clone();
        tokio::spawn(async move {
            let mut state = this.state.clone();
            let up = tokio::time::timeout(
                TCP_FALLBACK_AFTER,
                state.wait_for(|s| *s == RTCPeerConnectionState::Connected),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            if up {
                return;
            }
            let local_ufrag = match this.pc.local_description().await {
                Some(d) => ice_ufrag(&d.sdp),
                None => None,
            };
            let session = (
                local_ufrag.unwrap_or_default(),
                remote_ufrag.unwrap_or_default(),
            );
            match this.dialed.lock() {
                Ok(mut dialed) if dialed.as_ref() != Some(&session) => *dialed = Some(session),
                _ => return, // this ICE session has its TCP connection
            }
            tracing::debug!("no media path over UDP yet: connecting to the server over TCP");
            for init in candidates {
                if let Err(e) = this.pc.add_ice_candidate(init).await {
                    tracing::debug!("server TCP candidate rejected: {e}");
                }
            }
        });
    }
}

/// The first `a=ice-ufrag` of an SDP.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
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

    #[test]
    fn the_server_tcp_candidate_is_found_with_its_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n\
                   a=candidate:2 1 tcp 1671430143 127.0.0.1 7882 typ host tcptype passive\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
                   a=candidate:2 1 tcp 1671430143 127.0.0.1 7882 typ host tcptype passive\r\n";
        let found = super::tcp_passive_candidates(sdp);
        assert_eq!(found.len(), 1, "one transport (BUNDLE)");
        assert!(found[0].candidate.ends_with("tcptype passive"));
        assert!(found[0].candidate.starts_with("candidate:2 1 tcp"));
        assert_eq!(found[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(found[0].sdp_mline_index, Some(0));
        let active = sdp.replace("passive", "active");
        assert!(super::tcp_passive_candidates(&active).is_empty());
        assert!(super::tcp_passive_candidates("v=0\r\n").is_empty());
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
