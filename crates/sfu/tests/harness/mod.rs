//! Sans-IO test harness for the SFU: one [`Endpoint`] and N client peers (the
//! sans-IO `rtc` core playing the browser) on an in-memory network, on
//! simulated time.
//!
//! Nothing sleeps and nothing opens a socket. Time is an `Instant` the harness
//! owns: [`Net::drive`] delivers every datagram in flight (zero latency, FIFO),
//! then jumps to the earliest deadline among all parties and fires it, until
//! the target time; a bounded iteration count turns a livelock into a panic.
//! Signaling is direct calls: the endpoint's `SubscriberOffer` events are
//! answered by the client's subscriber connection at once.
//!
//! Addresses are made up: the SFU is 127.0.0.1:7882, client `i`'s publisher
//! connection 127.0.0.1:(40000 + 10 i + 1) and its subscriber one
//! 127.0.0.1:(40000 + 10 i + 2).
//!
//! Shared by the integration tests and the `forward` bench
//! (`#[path = "../tests/harness/mod.rs"]`), so not every item is used by each.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use huddle_proto::TrackKind;
use huddle_sfu::endpoint::Endpoint;
use huddle_sfu::{ParticipantId, Rights, RoomId, SfuConfig, SfuEvent};
use huddle_wire::local_track::default_track;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::Registry;
use rtc::interceptor::{Rfc8888Builder, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers,
    register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind, TYPE_RTCP_FB_ACK};
use rtc::rtp_transceiver::{
    RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverId, RTCRtpTransceiverInit,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The SFU's made-up address.
pub const SFU_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    7882,
);

/// Room every client joins.
pub const ROOM: &str = "room";

/// Steps [`Net::drive`] may take before it calls the run a livelock.
const MAX_STEPS: usize = 100_000;

/// ICE credentials: (ufrag, password).
pub type Credentials = (String, String);

/// Index of a client in [`Net::clients`].
pub type ClientId = usize;

/// Which of a client's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Client offers, sends media to the SFU.
    Publisher,
    /// SFU offers, sends media to the client.
    Subscriber,
}

/// A datagram on the wire.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Bytes.
    pub payload: Vec<u8>,
}

/// One client peer connection.
pub struct ClientPc {
    /// The `rtc` core.
    pub pc: RTCPeerConnection,
    /// Its made-up address.
    pub addr: SocketAddr,
    /// Peer connection state is `Connected`.
    pub connected: bool,
    /// Last peer connection state seen.
    pub state: RTCPeerConnectionState,
}

/// A local track a client publishes.
pub struct LocalTrack {
    /// Sender on the publisher connection.
    pub sender: RTCRtpSenderId,
    /// Its SSRC.
    pub ssrc: u32,
    /// Next sequence number.
    pub seq: u16,
    /// Next RTP timestamp.
    pub ts: u32,
    /// Packets written so far.
    pub sent: u64,
}

impl LocalTrack {
    /// A track on `sender` with `ssrc`, numbering from sequence number 1000
    /// and timestamp 0.
    pub fn new(sender: RTCRtpSenderId, ssrc: u32) -> Self {
        Self {
            sender,
            ssrc,
            seq: 1000,
            ts: 0,
            sent: 0,
        }
    }
}

/// A simulcast video track a client publishes: one sender, one
/// [`LocalTrack`] (SSRC, sequence numbers, timestamps) per layer.
pub struct SimulcastTrack {
    /// Sender on the publisher connection.
    pub sender: RTCRtpSenderId,
    /// `(rid, layer)` in the order given to [`Net::join_simulcast`].
    pub layers: Vec<(String, LocalTrack)>,
}

/// One RTP packet a client received ([`Client::rtp_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Payload.
    pub payload: Bytes,
}

/// A client: a participant with a publisher and/or subscriber connection.
pub struct Client {
    /// Display name, also the participant id.
    pub name: String,
    /// Participant id at the SFU.
    pub id: ParticipantId,
    /// Publisher connection, when the client publishes.
    pub publisher: Option<ClientPc>,
    /// Subscriber connection, created on the SFU's first offer.
    pub subscriber: Option<ClientPc>,
    /// Published tracks by kind.
    pub tracks: HashMap<TrackKind, LocalTrack>,
    /// RTP packets received on the subscriber connection, per track id as
    /// the SFU named it (the published track id; a viewer's slot id).
    pub received: HashMap<String, u64>,
    /// Per track id: the last (sequence number, timestamp) received.
    pub last_rtp: HashMap<String, (u16, u32)>,
    /// Per track id: packets whose sequence number did not follow the last
    /// one's, or whose timestamp went backwards.
    pub discontinuities: HashMap<String, u64>,
    /// Per track id: padding-only packets received (bandwidth probes).
    pub padding: HashMap<String, u64>,
    /// Per track id: the payload of the last RTP packet received.
    pub last_payload: HashMap<String, Bytes>,
    /// Per track id: every media packet received, in order, while
    /// [`Net::log_rtp`] is set.
    pub rtp_log: HashMap<String, Vec<ReceivedRtp>>,
    /// Per track id: the sequence numbers of the padding-only packets it
    /// received, when [`Net::log_rtp`] is set.
    pub padding_log: HashMap<String, Vec<u16>>,
    /// Its connections register `audio/red` after Opus ([`Net::red_clients`]).
    pub red: bool,
    /// Its subscriber connection reports arrivals with RFC 8888 feedback
    /// ([`Net::ccfb_clients`]).
    pub ccfb: bool,
    /// Its connections negotiate NACK for audio ([`Net::nack_audio_clients`]).
    pub nack_audio: bool,
    /// The simulcast video track, when the client publishes one.
    pub simulcast: Option<SimulcastTrack>,
    /// Subscriber offers received from the SFU (SDP), oldest first.
    pub offers: Vec<String>,
    /// While false the network drops everything from and to this client and
    /// its timers do not run (it vanished without a goodbye).
    pub online: bool,
}

impl Client {
    /// A client named `name` (also its participant id), online, with no
    /// connections yet.
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            id: ParticipantId(name.to_owned()),
            publisher: None,
            subscriber: None,
            tracks: HashMap::new(),
            received: HashMap::new(),
            padding: HashMap::new(),
            last_rtp: HashMap::new(),
            discontinuities: HashMap::new(),
            last_payload: HashMap::new(),
            rtp_log: HashMap::new(),
            padding_log: HashMap::new(),
            red: false,
            ccfb: false,
            nack_audio: false,
            simulcast: None,
            offers: Vec::new(),
            online: true,
        }
    }

    /// The connection of `role`, if it exists.
    pub fn pc(&mut self, role: Role) -> Option<&mut ClientPc> {
        match role {
            Role::Publisher => self.publisher.as_mut(),
            Role::Subscriber => self.subscriber.as_mut(),
        }
    }

    /// The address of `role` (whether or not the connection exists yet).
    pub fn addr(index: ClientId, role: Role) -> SocketAddr {
        let base = 40_000 + 10 * index as u16;
        let port = match role {
            Role::Publisher => base + 1,
            Role::Subscriber => base + 2,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Total RTP packets received on every track.
    pub fn received_total(&self) -> u64 {
        self.received.values().sum()
    }
}

/// The SFU, its clients and the wire between them.
pub struct Net {
    /// Simulated now.
    pub now: Instant,
    /// The SFU under test.
    pub endpoint: Endpoint,
    /// Clients, by [`ClientId`].
    pub clients: Vec<Client>,
    /// Every event the endpoint reported, oldest first.
    pub events: Vec<SfuEvent>,
    /// Datagrams in flight.
    wire: VecDeque<Datagram>,
    /// When set, every datagram a client sends to the SFU is copied here.
    pub capture: Option<Vec<Datagram>>,
    /// Datagrams the network dropped (offline client or unknown destination).
    pub dropped: u64,
    /// Lose the next N RTP datagrams (not RTCP, STUN or DTLS) the SFU sends
    /// to this address.
    pub lose_rtp_to: Option<(SocketAddr, u32)>,
    /// Lose RTP datagrams the SFU sends to this address in a repeating
    /// pattern: of every `period` (second), the first `lost` (third); the
    /// fourth counts them.
    pub lose_rtp_pattern: Option<(SocketAddr, u32, u32, u32)>,
    /// Lose the next RTP datagram the SFU sends to this address and every
    /// resend of it (its sequence number, once seen, is kept here).
    pub lose_packet_to: Option<(SocketAddr, Option<u16>)>,
    /// Lose the next RTP datagram this address sends to the SFU and every
    /// resend of it (its sequence number, once seen, is kept here).
    pub lose_packet_from: Option<(SocketAddr, Option<u16>)>,
    /// Hold back one RTP packet (the next one sent, or the given sequence
    /// number) from this address to the SFU, and every resend of it, in
    /// [`Net::held`] until the test delivers them ([`Net::release_held`]).
    pub hold_packet_from: Option<(SocketAddr, Option<u16>)>,
    /// What `hold_packet_from` held back, oldest first.
    pub held: Vec<Datagram>,
    /// How many times the packet `lose_packet_from` lost was sent: once,
    /// and once more for every resend the SFU asked for.
    pub lost_packet_sends: u32,
    /// Drop every STUN message these addresses send to the SFU (a client
    /// whose consent checks are late, as a CPU-starved browser's are).
    pub drop_stun_from: Vec<SocketAddr>,
    /// Clients made quiet ([`Net::make_quiet`]), by address.
    pub quiet: HashMap<SocketAddr, Quiet>,
    /// SRTP profiles the subscriber connections created from now on offer
    /// (`rtc`'s defaults, AES-GCM first, when empty).
    pub subscriber_srtp: Vec<SrtpProtectionProfile>,
    /// Applied to every subscriber answer before the SFU gets it.
    pub tamper_answer: Option<fn(&str) -> String>,
    /// Per client address: the RTCP packet types (second byte, in the clear
    /// in SRTCP) of the datagrams the SFU sent it, in order.
    pub rtcp_to: HashMap<SocketAddr, Vec<u8>>,
    /// Per client address: DTLS alert records the SFU sent it (content type
    /// 21, in the clear; after the handshake, close_notify).
    pub dtls_alerts_to: HashMap<SocketAddr, u32>,
    /// Client timer errors (a failed DTLS handshake) are expected: ignore
    /// them instead of panicking.
    pub client_errors_expected: bool,
    /// The next viewer's offer leaves out transport-wide congestion
    /// control: the SFU estimates nothing toward it and never pauses its
    /// videos for bandwidth.
    pub viewer_without_twcc: bool,
    /// Clients that join while this is set register `audio/red` after Opus
    /// (as Chromium and the calling crate do): their publisher connection
    /// offers it, their subscriber connection takes it when offered.
    pub red_clients: bool,
    /// Record every media packet clients receive ([`Client::rtp_log`]).
    pub log_rtp: bool,
    /// Clients that join while this is set negotiate NACK for audio, as
    /// the calling crate does (`huddle_wire::codecs::register_audio_nack`).
    pub nack_audio_clients: bool,
    /// Clients that join while this is set report what their subscriber
    /// connection receives with RFC 8888 congestion control feedback
    /// (`rtc`'s recorder, `a=rtcp-fb:<pt> ack ccfb` in their answers), not
    /// TWCC, as Chromium does with its field trial.
    pub ccfb_clients: bool,
}

/// The shared codec table (the SFU's, without RED), and RED after Opus
/// when `red`.
fn media_engine(red: bool) -> MediaEngine {
    let mut me = huddle_wire::codecs::media_engine().expect("codec table");
    if red {
        huddle_wire::codecs::register_red(&mut me).expect("RED");
    }
    me
}

/// A client peer connection with its host candidate at `addr`, offering
/// `srtp` as its SRTP profiles (`rtc`'s defaults when empty), with RED
/// after Opus when `red`, reporting arrivals with RFC 8888 feedback
/// instead of TWCC when `ccfb`, negotiating NACK for audio when
/// `nack_audio`.
fn client_pc(
    now: Instant,
    addr: SocketAddr,
    srtp: &[SrtpProtectionProfile],
    red: bool,
    ccfb: bool,
    nack_audio: bool,
) -> ClientPc {
    let mut me = media_engine(red);
    if nack_audio {
        huddle_wire::codecs::register_audio_nack(&mut me);
    }
    let registry = if ccfb {
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            me.register_feedback(
                RTCPFeedback {
                    typ: TYPE_RTCP_FB_ACK.to_owned(),
                    parameter: "ccfb".to_owned(),
                },
                kind,
            );
        }
        let registry = configure_nack(Registry::new(), &mut me);
        configure_simulcast_extension_headers(&mut me).expect("simulcast extensions");
        configure_rtcp_reports(registry).with(Slot::Rfc8888, Rfc8888Builder::new().build())
    } else {
        register_default_interceptors(Registry::new(), &mut me).expect("default interceptors")
    };
    // Browsers (libwebrtc) keep a 1024-packet SRTP replay window, not
    // rtc's 64: a late packet the SFU forwards is taken.
    let mut settings = SettingEngineBuilder::new().with_srtp_replay_protection_window(1024);
    if !srtp.is_empty() {
        settings = settings.with_srtp_protection_profiles(srtp.to_vec());
    }
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .build(now)
        .expect("build client peer connection");
    pc.add_local_candidate(huddle_wire::candidate::host_candidate(addr).expect("host candidate"))
        .expect("add local candidate");
    ClientPc {
        pc,
        addr,
        connected: false,
        state: RTCPeerConnectionState::New,
    }
}

/// `sdp` with each `a=rtcp-fb:* ack ccfb` spelled out for every payload
/// type of its m-line.
fn per_payload_type_ccfb(sdp: &str) -> String {
    let mut types: Vec<String> = Vec::new();
    let mut out = String::new();
    for line in sdp.split("\r\n") {
        if let Some(m) = line.strip_prefix("m=") {
            types = m.split(' ').skip(3).map(str::to_owned).collect();
        }
        if line == "a=rtcp-fb:* ack ccfb" {
            for pt in &types {
                out.push_str(&format!("a=rtcp-fb:{pt} ack ccfb\r\n"));
            }
        } else if !line.is_empty() {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// The header bits of a packet [`write_next`] writes, its payload type
/// (`None`: the first negotiated), and how far its timestamp moves the
/// track's on.
#[derive(Clone, Copy)]
struct Shape {
    marker: bool,
    padding: bool,
    ts_step: u32,
    payload_type: Option<u8>,
}

/// Write `track`'s next RTP packet (its sequence number and timestamp, the
/// shape's payload type, the header extensions given by URI) on
/// `pc`, then move the track's numbering on by one packet and `ts_step`.
fn write_next(
    now: Instant,
    pc: &mut RTCPeerConnection,
    track: &mut LocalTrack,
    payload: &[u8],
    shape: Shape,
    extensions: Vec<(&str, Bytes)>,
) {
    let Shape {
        marker,
        padding,
        ts_step,
        payload_type,
    } = shape;
    let mut sender = pc.rtp_sender(track.sender).expect("rtp sender");
    let params = &sender.get_parameters().rtp_parameters;
    let payload_type = payload_type
        .or_else(|| params.codecs.first().map(|c| c.payload_type))
        .expect("negotiated codec");
    let extensions: Vec<(u8, Bytes)> = extensions
        .into_iter()
        .map(|(uri, value)| {
            let id = huddle_wire::codecs::extension_id(params, uri).expect("negotiated extension");
            (id, value)
        })
        .collect();
    let mut header = rtp::header::Header {
        version: 2,
        payload_type,
        sequence_number: track.seq,
        timestamp: track.ts,
        ssrc: track.ssrc,
        marker,
        padding,
        ..Default::default()
    };
    for (id, value) in extensions {
        header.set_extension(id, value).expect("header extension");
    }
    sender
        .write_rtp(
            now,
            rtp::Packet {
                header,
                payload: Bytes::copy_from_slice(payload),
            },
        )
        .expect("write rtp");
    track.seq = track.seq.wrapping_add(1);
    track.ts = track.ts.wrapping_add(ts_step);
    track.sent += 1;
}

impl Net {
    /// An SFU with the default config and no clients, at a fixed origin.
    pub fn new() -> Self {
        Self::with_config(SfuConfig::default())
    }

    /// An SFU with `config` and no clients.
    pub fn with_config(config: SfuConfig) -> Self {
        let now = Instant::now();
        let mut endpoint = Endpoint::new(config, SFU_ADDR);
        // 2026-11-23T00:00:00Z, for the sender reports' NTP times.
        endpoint.set_wall_clock(now, Duration::from_secs(1_795_392_000));
        Self {
            now,
            endpoint,
            clients: Vec::new(),
            events: Vec::new(),
            wire: VecDeque::new(),
            capture: None,
            dropped: 0,
            lose_rtp_to: None,
            lose_rtp_pattern: None,
            lose_packet_to: None,
            lose_packet_from: None,
            hold_packet_from: None,
            held: Vec::new(),
            lost_packet_sends: 0,
            drop_stun_from: Vec::new(),
            quiet: HashMap::new(),
            subscriber_srtp: Vec::new(),
            tamper_answer: None,
            client_errors_expected: false,
            rtcp_to: HashMap::new(),
            dtls_alerts_to: HashMap::new(),
            viewer_without_twcc: false,
            red_clients: false,
            log_rtp: false,
            ccfb_clients: false,
            nack_audio_clients: false,
        }
    }

    /// A call of two: "a" publishes one track of `kind`, "b" receives it,
    /// media flowing.
    pub fn one_to_one(kind: TrackKind) -> (Net, ClientId, ClientId) {
        let mut net = Net::new();
        let (a, b) = net.pair(kind);
        (net, a, b)
    }

    /// On this net (set up as the test wants): "a" joins publishing one
    /// track of `kind`, "b" joins to receive it; returns them once media
    /// flows.
    pub fn pair(&mut self, kind: TrackKind) -> (ClientId, ClientId) {
        let a = self.join("a", kind == TrackKind::Audio, kind == TrackKind::Video);
        let b = self.join("b", false, false);
        self.connect();
        self.start_media(a, kind, &[b]);
        self.connect();
        (a, b)
    }

    /// Add a participant named `name` to the room; when it publishes, its
    /// publisher connection offers at once (the answer is applied before this
    /// returns). Call [`Net::drive`] to let the connections come up.
    pub fn join(&mut self, name: &str, publish_audio: bool, publish_video: bool) -> ClientId {
        let index = self.clients.len();
        let id = ParticipantId(name.to_owned());
        let publish = publish_audio || publish_video;
        self.add_to_room(&id, publish);
        let mut client = Client::new(name);
        client.red = self.red_clients;
        client.ccfb = self.ccfb_clients;
        client.nack_audio = self.nack_audio_clients;
        if publish {
            let mut pub_pc = client_pc(
                self.now,
                Client::addr(index, Role::Publisher),
                &[],
                client.red,
                false,
                client.nack_audio,
            );
            for (wanted, kind) in [
                (publish_audio, TrackKind::Audio),
                (publish_video, TrackKind::Video),
            ] {
                if !wanted {
                    continue;
                }
                // Deterministic SSRCs keep the runs comparable.
                let ssrc = 0x1000_0000 + (index as u32) * 16 + (kind == TrackKind::Video) as u32;
                let track = default_track(
                    format!("{name}-stream"),
                    format!("{name}-{kind:?}"),
                    kind,
                    ssrc,
                );
                let sender = pub_pc.pc.add_track(track).expect("add track");
                client.tracks.insert(kind, LocalTrack::new(sender, ssrc));
            }
            self.negotiate_publisher(&id, &mut pub_pc);
            client.publisher = Some(pub_pc);
        }
        self.clients.push(client);
        self.pump();
        index
    }

    /// The SDP offer of a publisher with one audio track that will never
    /// connect (its connection is not kept): for participants that negotiate
    /// and then vanish.
    pub fn dead_publisher_offer(&self) -> String {
        let mut pc = client_pc(
            self.now,
            SocketAddr::from(([127, 0, 0, 1], 9)),
            &[],
            false,
            false,
            false,
        );
        let track = default_track("ghost".into(), "ghost-audio".into(), TrackKind::Audio, 1);
        pc.pc.add_track(track).expect("add track");
        let offer = pc.pc.create_offer(None).expect("create offer");
        pc.pc
            .set_local_description(self.now, offer)
            .expect("set local offer");
        pc.pc.local_description().expect("local description").sdp
    }

    /// Add a participant that publishes one video track as simulcast, one
    /// layer per RID in `rids` (send with [`Net::send_layer`]).
    pub fn join_simulcast(&mut self, name: &str, rids: &[&str]) -> ClientId {
        let index = self.clients.len();
        let id = ParticipantId(name.to_owned());
        self.add_to_room(&id, true);
        let mut client = Client::new(name);
        let mut pub_pc = client_pc(
            self.now,
            Client::addr(index, Role::Publisher),
            &[],
            false,
            false,
            false,
        );
        let layers: Vec<(&str, u32)> = rids
            .iter()
            .enumerate()
            .map(|(i, rid)| (*rid, 0x2000_0000 + (index as u32) * 16 + i as u32))
            .collect();
        let sender = pub_pc
            .pc
            .add_track(huddle_wire::local_track::simulcast_track(
                format!("{name}-stream"),
                format!("{name}-simulcast"),
                huddle_wire::codecs::vp8(),
                &layers,
            ))
            .expect("add simulcast track");
        client.simulcast = Some(SimulcastTrack {
            sender,
            layers: layers
                .iter()
                .map(|&(rid, ssrc)| (rid.to_owned(), LocalTrack::new(sender, ssrc)))
                .collect(),
        });
        self.negotiate_publisher(&id, &mut pub_pc);
        client.publisher = Some(pub_pc);
        self.clients.push(client);
        self.pump();
        index
    }

    /// Register `id` with the SFU in [`ROOM`]; it always may subscribe.
    fn add_to_room(&mut self, id: &ParticipantId, publish: bool) {
        self.endpoint
            .add_participant(
                self.now,
                RoomId(ROOM.to_owned()),
                id.clone(),
                Rights {
                    publish,
                    subscribe: true,
                },
            )
            .expect("add participant");
    }

    /// Offer from a new publisher connection and apply the SFU's answer.
    fn negotiate_publisher(&mut self, id: &ParticipantId, pub_pc: &mut ClientPc) {
        let offer = pub_pc.pc.create_offer(None).expect("create offer");
        pub_pc
            .pc
            .set_local_description(self.now, offer.clone())
            .expect("set local offer");
        let sdp = pub_pc
            .pc
            .local_description()
            .expect("local description")
            .sdp
            .clone();
        let answer = self
            .endpoint
            .publisher_offer(self.now, id, sdp)
            .expect("publisher offer");
        pub_pc
            .pc
            .set_remote_description(
                self.now,
                RTCSessionDescription::answer(answer).expect("answer sdp"),
            )
            .expect("set remote answer");
    }

    /// Add a receive-only viewer (WHEP): its subscriber connection offers to
    /// receive `audio` audio and `video` video m-lines, and the SFU answers
    /// (applied before this returns). Call [`Net::connect`] next.
    pub fn join_viewer(&mut self, name: &str, audio: usize, video: usize) -> ClientId {
        let index = self.clients.len();
        let id = ParticipantId(name.to_owned());
        let mut sub = client_pc(
            self.now,
            Client::addr(index, Role::Subscriber),
            &self.subscriber_srtp,
            self.red_clients,
            self.ccfb_clients,
            self.nack_audio_clients,
        );
        for (n, kind) in [(audio, RtpCodecKind::Audio), (video, RtpCodecKind::Video)] {
            for _ in 0..n {
                sub.pc
                    .add_transceiver_from_kind(
                        kind,
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Recvonly,
                            ..Default::default()
                        }),
                    )
                    .expect("add recvonly transceiver");
            }
        }
        let offer = sub.pc.create_offer(None).expect("create offer");
        sub.pc
            .set_local_description(self.now, offer)
            .expect("set local offer");
        let mut sdp = sub.pc.local_description().expect("local description").sdp;
        if self.viewer_without_twcc {
            sdp = sdp
                .split("\r\n")
                .filter(|l| !l.contains("transport-wide-cc") && !l.contains("transport-cc"))
                .collect::<Vec<_>>()
                .join("\r\n");
        }
        let answer = self
            .endpoint
            .add_viewer(self.now, RoomId(ROOM.to_owned()), id.clone(), sdp)
            .expect("add viewer");
        sub.pc
            .set_remote_description(
                self.now,
                RTCSessionDescription::answer(answer).expect("answer sdp"),
            )
            .expect("set remote answer");
        let mut client = Client::new(name);
        client.subscriber = Some(sub);
        self.clients.push(client);
        self.pump();
        index
    }

    /// Restart ICE on `client`'s connection of `role` the way a WHIP or
    /// WHEP client does (RFC 9725 §4.3.2): the client restarts its side,
    /// hands its new credentials to [`Endpoint::restart_ice_with`] (no
    /// offer), and applies the SFU's credentials to its last answer.
    /// Returns the SFU's credentials before and after.
    pub fn restart_ice_with(
        &mut self,
        client: ClientId,
        role: Role,
    ) -> Result<(Credentials, Credentials), huddle_sfu::SfuError> {
        let now = self.now;
        let id = self.clients[client].id.clone();
        let pc = self.clients[client].pc(role).expect("connection");
        let answer = pc.pc.remote_description().expect("answer").sdp.clone();
        let before = huddle_wire::sdp::ice_credentials(&answer).expect("SFU credentials");
        pc.pc.restart_ice();
        let offer = pc.pc.create_offer(None).expect("restart offer");
        pc.pc
            .set_local_description(now, offer)
            .expect("set restart offer");
        let local = pc.pc.local_description().expect("local").sdp;
        let (ufrag, pwd) = huddle_wire::sdp::ice_credentials(&local).expect("new credentials");
        assert_ne!(
            Some(&ufrag),
            huddle_wire::sdp::ice_credentials(&answer)
                .map(|c| c.0)
                .as_ref()
        );
        let sfu_role = match role {
            Role::Publisher => huddle_proto::PcRole::Publisher,
            Role::Subscriber => huddle_proto::PcRole::Subscriber,
        };
        let sfu = self
            .endpoint
            .restart_ice_with(now, &id, sfu_role, &ufrag, &pwd)?;
        let answer = huddle_wire::sdp::with_ice_credentials(&answer, &sfu.ufrag, &sfu.pwd, false);
        let pc = self.clients[client].pc(role).expect("connection");
        pc.pc
            .set_remote_description(
                now,
                RTCSessionDescription::answer(answer).expect("answer sdp"),
            )
            .expect("set restart answer");
        self.pump();
        Ok((before, (sfu.ufrag, sfu.pwd)))
    }

    /// Stop publishing the client's track of `kind`: remove it from the
    /// publisher connection and renegotiate (the answer is applied before
    /// this returns).
    pub fn unpublish(&mut self, client: ClientId, kind: TrackKind) {
        let now = self.now;
        let c = &mut self.clients[client];
        let track = c.tracks.remove(&kind).expect("client publishes this kind");
        let pc = c.publisher.as_mut().expect("publisher connection");
        pc.pc.remove_track(track.sender).expect("remove track");
        let offer = pc.pc.create_offer(None).expect("create offer");
        pc.pc
            .set_local_description(now, offer)
            .expect("set local offer");
        let sdp = pc.pc.local_description().expect("local description").sdp;
        let answer = self
            .endpoint
            .publisher_offer(now, &c.id, sdp)
            .expect("publisher offer");
        pc.pc
            .set_remote_description(
                now,
                RTCSessionDescription::answer(answer).expect("answer sdp"),
            )
            .expect("set remote answer");
        self.pump();
    }

    /// Write one RTP packet of `kind` with `payload` on the client's publisher
    /// connection (queued; [`Net::drive`] carries it).
    pub fn send_rtp(&mut self, client: ClientId, kind: TrackKind, payload: &[u8]) {
        let now = self.now;
        let c = &mut self.clients[client];
        let track = c.tracks.get_mut(&kind).expect("client publishes this kind");
        let pc = c.publisher.as_mut().expect("publisher connection");
        let ts_step = match kind {
            TrackKind::Audio => 960,
            TrackKind::Video => 3000,
        };
        write_next(
            now,
            &mut pc.pc,
            track,
            payload,
            Shape {
                marker: kind == TrackKind::Video,
                padding: false,
                ts_step,
                payload_type: None,
            },
            Vec::new(),
        );
    }

    /// The payload type `audio/red` was negotiated with on the client's
    /// publisher connection for its audio track, if it was.
    pub fn red_payload_type(&mut self, client: ClientId) -> Option<u8> {
        let c = &mut self.clients[client];
        let track = c.tracks.get(&TrackKind::Audio)?;
        let pc = c.publisher.as_mut()?;
        let mut sender = pc.pc.rtp_sender(track.sender)?;
        sender
            .get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| {
                c.rtp_codec
                    .mime_type
                    .eq_ignore_ascii_case(huddle_wire::codecs::MIME_TYPE_RED)
            })
            .map(|c| c.payload_type)
    }

    /// Write one audio packet with the RED payload `payload` (RFC 2198, as
    /// the test built it) and the negotiated RED payload type on the
    /// client's publisher connection; its timestamp moves on by 20 ms.
    pub fn send_red(&mut self, client: ClientId, payload: &[u8]) {
        let now = self.now;
        let pt = self
            .red_payload_type(client)
            .expect("RED negotiated on the publisher connection");
        let c = &mut self.clients[client];
        let track = c.tracks.get_mut(&TrackKind::Audio).expect("audio track");
        let pc = c.publisher.as_mut().expect("publisher connection");
        let shape = Shape {
            marker: false,
            padding: false,
            ts_step: 960,
            payload_type: Some(pt),
        };
        write_next(now, &mut pc.pc, track, payload, shape, Vec::new());
    }

    /// Write one RTP packet of `kind` like [`Net::send_rtp`] with the P bit
    /// set: `rtc` pads it to a multiple of 4 bytes (4 bytes of padding when
    /// `payload` is empty or already a multiple: a padding-only packet).
    pub fn send_padded(&mut self, client: ClientId, kind: TrackKind, payload: &[u8]) {
        let now = self.now;
        let c = &mut self.clients[client];
        let track = c.tracks.get_mut(&kind).expect("client publishes this kind");
        let pc = c.publisher.as_mut().expect("publisher connection");
        let ts_step = if payload.is_empty() { 0 } else { 3000 };
        let shape = Shape {
            marker: false,
            padding: true,
            ts_step,
            payload_type: None,
        };
        write_next(now, &mut pc.pc, track, payload, shape, Vec::new());
    }

    /// Write one RTP packet of simulcast layer `layer` (index into the RIDs
    /// given to [`Net::join_simulcast`]) with `payload`, with the MID and
    /// RID header extensions, and a 90 kHz timestamp step of one 30 fps
    /// frame.
    pub fn send_layer(&mut self, client: ClientId, layer: usize, payload: &[u8]) {
        self.send_layer_packet(client, layer, payload, true);
    }

    /// One packet of a frame on a simulcast layer, like
    /// [`Net::send_layer`]: the frame's packets share its timestamp, and
    /// only its last one (`last`) carries the marker bit.
    pub fn send_layer_packet(
        &mut self,
        client: ClientId,
        layer: usize,
        payload: &[u8],
        last: bool,
    ) {
        let now = self.now;
        let c = &mut self.clients[client];
        let track = c.simulcast.as_mut().expect("client publishes simulcast");
        let pc = c.publisher.as_mut().expect("publisher connection");
        let mid = pc
            .pc
            .rtp_transceiver(RTCRtpTransceiverId::from(track.sender))
            .and_then(|t| t.mid().clone())
            .expect("negotiated mid");
        let (rid, l) = &mut track.layers[layer];
        let extensions = vec![
            (
                rtc::sdp::extmap::SDES_MID_URI,
                Bytes::from(mid.into_bytes()),
            ),
            (
                rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI,
                Bytes::from(rid.clone().into_bytes()),
            ),
        ];
        let shape = Shape {
            marker: last,
            padding: false,
            ts_step: if last { 3000 } else { 0 },
            payload_type: None,
        };
        write_next(now, &mut pc.pc, l, payload, shape, extensions);
    }

    /// Write one RTP packet like [`Net::send_rtp`] and return the datagrams
    /// the publisher connection produced for it, without delivering them.
    /// The bench pre-generates SRTP-protected input with this.
    pub fn capture_rtp(&mut self, client: ClientId, kind: TrackKind, payload: &[u8]) -> Vec<u8> {
        self.send_rtp(client, kind, payload);
        self.take_written_rtp(client)
    }

    /// [`Net::capture_rtp`] for a RED packet ([`Net::send_red`]).
    pub fn capture_red(&mut self, client: ClientId, payload: &[u8]) -> Vec<u8> {
        self.send_red(client, payload);
        self.take_written_rtp(client)
    }

    /// The SRTP packet the client's publisher connection just wrote (what
    /// else it wrote is dropped).
    fn take_written_rtp(&mut self, client: ClientId) -> Vec<u8> {
        let pc = self.clients[client]
            .publisher
            .as_mut()
            .expect("publisher connection");
        let mut out = None;
        while let Some(msg) = pc.pc.poll_write() {
            // RTP is the only thing written without a timeout firing.
            if matches!(msg.message.first(), Some(128..=191)) && out.is_none() {
                out = Some(msg.message.to_vec());
            }
        }
        out.expect("the publisher wrote an SRTP packet")
    }

    /// Deliver the oldest datagram [`Net::hold_packet_from`] held back, now,
    /// and everything that follows from it.
    pub fn release_held(&mut self) {
        let d = self.held.remove(0);
        self.endpoint.handle_datagram(self.now, d.src, &d.payload);
        self.pump();
    }

    /// From now on, `client`'s connection of `role` is quiet (see
    /// [`Quiet`]), its RTCP timing seeded with `seed`.
    pub fn make_quiet(&mut self, client: ClientId, role: Role, seed: u64, answers: bool) {
        let q = Quiet::new(self.now, seed, answers);
        self.quiet.insert(Client::addr(client, role), q);
    }

    /// Deliver everything in flight and process every output until nothing
    /// moves, without advancing time.
    pub fn pump(&mut self) {
        for _ in 0..MAX_STEPS {
            self.collect();
            let Some(d) = self.wire.pop_front() else {
                return;
            };
            self.deliver(d);
        }
        panic!("pump: livelock, datagrams keep coming at {:?}", self.now);
    }

    /// Run until `until`: deliver everything, jump to the earliest deadline of
    /// any party, fire it, repeat. Panics on livelock.
    pub fn drive(&mut self, until: Instant) {
        for _ in 0..MAX_STEPS {
            self.pump();
            match self.next_deadline() {
                Some(t) if t <= until => {
                    if t > self.now {
                        self.now = t;
                    }
                    self.fire_timeouts();
                }
                _ => {
                    if until > self.now {
                        self.now = until;
                    }
                    return;
                }
            }
        }
        panic!("drive: livelock at {:?}", self.now);
    }

    /// [`Net::drive`] for `d` of simulated time.
    pub fn drive_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.drive(until);
    }

    /// Drive in 10 ms steps until `done` holds; panics with `what` after
    /// `limit` of simulated time.
    pub fn drive_until(&mut self, limit: Duration, what: &str, done: impl Fn(&Net) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(self.now < end, "{what}: not within {limit:?}");
            self.drive_for(Duration::from_millis(10));
        }
    }

    /// Drive until every online client's connections are up and no subscriber
    /// offer is outstanding.
    pub fn connect(&mut self) {
        self.drive_until(Duration::from_secs(10), "connections up", |net| {
            net.clients.iter().filter(|c| c.online).all(|c| {
                c.publisher.as_ref().is_none_or(|p| p.connected)
                    && c.subscriber.as_ref().is_none_or(|p| p.connected)
            })
        });
    }

    /// The SFU track id of `publisher`'s track of `kind`, once published.
    pub fn track_id(&self, publisher: ClientId, kind: TrackKind) -> Option<String> {
        let id = &self.clients[publisher].id;
        self.events.iter().rev().find_map(|e| match e {
            SfuEvent::TrackPublished {
                participant, track, ..
            } if participant == id && track.kind == kind => Some(track.id.clone()),
            _ => None,
        })
    }

    /// RTP packets `subscriber` received of `publisher`'s track of `kind`.
    pub fn received(&self, subscriber: ClientId, publisher: ClientId, kind: TrackKind) -> u64 {
        self.track_id(publisher, kind)
            .and_then(|t| self.clients[subscriber].received.get(&t).copied())
            .unwrap_or(0)
    }

    /// Send `n` 80-byte audio packets from `from`, one every 20 ms of
    /// simulated time (payload bytes count up, so packets differ).
    pub fn send_audio(&mut self, from: ClientId, n: u64) {
        for i in 0..n {
            self.send_rtp(from, TrackKind::Audio, &[(i % 251) as u8; 80]);
            self.drive_for(Duration::from_millis(20));
        }
    }

    /// Send media of `kind` from `publisher` every 20 ms until every client in
    /// `subscribers` receives it (the first packet publishes the track, the
    /// subscriber offers and connections follow). Panics after 10 s.
    pub fn start_media(&mut self, publisher: ClientId, kind: TrackKind, subscribers: &[ClientId]) {
        let end = self.now + Duration::from_secs(10);
        loop {
            if subscribers
                .iter()
                .all(|&s| self.received(s, publisher, kind) > 0)
            {
                // Let the last offer/answer and RTCP settle.
                self.drive_for(Duration::from_millis(100));
                return;
            }
            assert!(self.now < end, "media from {publisher} did not start");
            self.send_rtp(publisher, kind, &[0x55; 80]);
            self.drive_for(Duration::from_millis(20));
        }
    }

    /// Copy of the client's subscriber-connection receive counters.
    pub fn received_snapshot(&self, client: ClientId) -> HashMap<String, u64> {
        self.clients[client].received.clone()
    }

    // ---- internals -----------------------------------------------------

    fn next_deadline(&mut self) -> Option<Instant> {
        let mut next = self.endpoint.poll_timeout();
        for c in self.clients.iter_mut().filter(|c| c.online) {
            for pc in [c.publisher.as_mut(), c.subscriber.as_mut()]
                .into_iter()
                .flatten()
            {
                if let Some(t) = pc.pc.poll_timeout() {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        next
    }

    fn fire_timeouts(&mut self) {
        let now = self.now;
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        let tolerate = self.client_errors_expected;
        for c in self.clients.iter_mut().filter(|c| c.online) {
            for pc in [c.publisher.as_mut(), c.subscriber.as_mut()]
                .into_iter()
                .flatten()
            {
                if pc.pc.poll_timeout().is_some_and(|t| t <= now) {
                    if let Err(e) = pc.pc.handle_timeout(now) {
                        assert!(tolerate, "client handle_timeout: {e}");
                    }
                }
            }
        }
    }

    /// Move every output of every party: datagrams onto the wire, events to
    /// their handlers, received RTP into the counters.
    fn collect(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.endpoint.poll_transmit() {
                self.wire.push_back(Datagram {
                    src: SFU_ADDR,
                    dst: t.dst,
                    payload: t.payload.to_vec(),
                });
                moved = true;
            }
            while let Some(ev) = self.endpoint.poll_event() {
                self.on_sfu_event(&ev);
                self.events.push(ev);
                moved = true;
            }
            for c in self.clients.iter_mut().filter(|c| c.online) {
                let received = &mut c.received;
                let padding = &mut c.padding;
                let last_rtp = &mut c.last_rtp;
                let discontinuities = &mut c.discontinuities;
                let last_payload = &mut c.last_payload;
                let rtp_log = &mut c.rtp_log;
                let padding_log = &mut c.padding_log;
                let log_rtp = self.log_rtp;
                for pc in [c.publisher.as_mut(), c.subscriber.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    while let Some(msg) = pc.pc.poll_write() {
                        self.wire.push_back(Datagram {
                            src: pc.addr,
                            dst: msg.transport.peer_addr,
                            payload: msg.message.to_vec(),
                        });
                        moved = true;
                    }
                    while let Some(ev) = pc.pc.poll_event() {
                        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                            pc.state = s;
                            pc.connected = s == RTCPeerConnectionState::Connected;
                        }
                        moved = true;
                    }
                    while let Some(TaggedRTCMessage { message, .. }) = pc.pc.poll_read() {
                        if let RTCMessage::RtpPacket(track, packet) = message {
                            let track = track.to_string();
                            let now = (packet.header.sequence_number, packet.header.timestamp);
                            if let Some((seq, ts)) = last_rtp.insert(track.clone(), now) {
                                if now.0 != seq.wrapping_add(1)
                                    || (now.1.wrapping_sub(ts) as i32) < 0
                                {
                                    *discontinuities.entry(track.clone()).or_default() += 1;
                                }
                            }
                            // Padding (the SFU's bandwidth probes) keeps the
                            // numbering but is not media.
                            if packet.payload.is_empty() {
                                if log_rtp {
                                    padding_log
                                        .entry(track.clone())
                                        .or_default()
                                        .push(packet.header.sequence_number);
                                }
                                *padding.entry(track).or_default() += 1;
                                continue;
                            }
                            last_payload.insert(track.clone(), packet.payload.clone());
                            if log_rtp {
                                rtp_log.entry(track.clone()).or_default().push(ReceivedRtp {
                                    seq: packet.header.sequence_number,
                                    ts: packet.header.timestamp,
                                    pt: packet.header.payload_type,
                                    marker: packet.header.marker,
                                    payload: packet.payload.clone(),
                                });
                            }
                            *received.entry(track).or_default() += 1;
                        }
                        moved = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Signaling, by direct call: answer subscriber offers at once.
    fn on_sfu_event(&mut self, ev: &SfuEvent) {
        let SfuEvent::SubscriberOffer { participant, sdp } = ev else {
            return;
        };
        let Some(index) = self.clients.iter().position(|c| &c.id == participant) else {
            return;
        };
        let now = self.now;
        let c = &mut self.clients[index];
        c.offers.push(sdp.clone());
        if !c.online {
            return; // the signaling channel is gone too
        }
        let srtp = &self.subscriber_srtp;
        let (red, ccfb, nack_audio) = (c.red, c.ccfb, c.nack_audio);
        let sub = c.subscriber.get_or_insert_with(|| {
            client_pc(
                now,
                Client::addr(index, Role::Subscriber),
                srtp,
                red,
                ccfb,
                nack_audio,
            )
        });
        // `rtc` 0.21 reads `a=rtcp-fb` only per payload type; the SFU
        // offers RFC 8888 feedback with the wildcard, as libwebrtc does.
        let sdp = if ccfb {
            per_payload_type_ccfb(sdp)
        } else {
            sdp.clone()
        };
        sub.pc
            .set_remote_description(now, RTCSessionDescription::offer(sdp).expect("offer sdp"))
            .expect("set remote offer");
        let answer = sub.pc.create_answer(None).expect("create answer");
        sub.pc
            .set_local_description(now, answer)
            .expect("set local answer");
        let mut sdp = sub
            .pc
            .local_description()
            .expect("local description")
            .sdp
            .clone();
        if let Some(tamper) = self.tamper_answer {
            sdp = tamper(&sdp);
        }
        self.endpoint
            .subscriber_answer(now, participant, sdp)
            .expect("subscriber answer");
    }

    /// Hand a datagram to its destination.
    fn deliver(&mut self, d: Datagram) {
        if d.dst == SFU_ADDR {
            let from_online = self.clients.iter().enumerate().all(|(i, c)| {
                c.online
                    || (d.src != Client::addr(i, Role::Publisher)
                        && d.src != Client::addr(i, Role::Subscriber))
            });
            let stun = matches!(d.payload.first(), Some(0..=3));
            if !from_online || (stun && self.drop_stun_from.contains(&d.src)) {
                self.dropped += 1;
                return;
            }
            if let Some(q) = self.quiet.get_mut(&d.src) {
                if !q.lets_through(self.now, &d.payload) {
                    self.dropped += 1;
                    return;
                }
            }
            if let Some(cap) = self.capture.as_mut() {
                cap.push(d.clone());
            }
            if let Some((addr, lost)) = self.lose_packet_from.as_mut() {
                if *addr == d.src && is_rtp(&d.payload) && is_the_lost_packet(lost, &d.payload) {
                    self.lost_packet_sends += 1;
                    self.dropped += 1;
                    return;
                }
            }
            if let Some((addr, held)) = self.hold_packet_from.as_mut() {
                if *addr == d.src && is_rtp(&d.payload) && is_the_lost_packet(held, &d.payload) {
                    self.held.push(d);
                    return;
                }
            }
            self.endpoint.handle_datagram(self.now, d.src, &d.payload);
            return;
        }
        let rtp = is_rtp(&d.payload);
        if is_rtcp(&d.payload) {
            self.rtcp_to.entry(d.dst).or_default().push(d.payload[1]);
        }
        if d.payload.first() == Some(&21) {
            *self.dtls_alerts_to.entry(d.dst).or_default() += 1;
        }
        if let Some((addr, n)) = self.lose_rtp_to.as_mut() {
            if *addr == d.dst && *n > 0 && rtp {
                *n -= 1;
                self.dropped += 1;
                return;
            }
        }
        if let Some((addr, period, lost, count)) = self.lose_rtp_pattern.as_mut() {
            if *addr == d.dst && rtp {
                let drop = *count % (*period).max(1) < *lost;
                *count = count.wrapping_add(1);
                if drop {
                    self.dropped += 1;
                    return;
                }
            }
        }
        if let Some((addr, lost)) = self.lose_packet_to.as_mut() {
            if *addr == d.dst && rtp && is_the_lost_packet(lost, &d.payload) {
                self.dropped += 1;
                return;
            }
        }
        let now = self.now;
        for (i, c) in self.clients.iter_mut().enumerate() {
            for role in [Role::Publisher, Role::Subscriber] {
                if Client::addr(i, role) != d.dst {
                    continue;
                }
                let online = c.online;
                match c.pc(role) {
                    Some(pc) if online => {
                        pc.pc
                            .handle_read(TaggedBytesMut {
                                now,
                                transport: TransportContext {
                                    local_addr: pc.addr,
                                    peer_addr: d.src,
                                    ecn: None,
                                    transport_protocol: TransportProtocol::UDP,
                                },
                                message: BytesMut::from(&d.payload[..]),
                            })
                            .expect("client handle_read");
                    }
                    _ => self.dropped += 1,
                }
                return;
            }
        }
        self.dropped += 1;
    }
}

/// What a quiet client ([`Net::make_quiet`]) still sends the SFU: no
/// STUN checks of its own, RTCP only every 5 s ±50 % (a receiver report, as
/// RFC 3550 randomizes it), media and DTLS as usual, and answers to the
/// SFU's checks when `answers`. As a GStreamer (libnice) receive-only
/// viewer behaves after nomination.
pub struct Quiet {
    /// Answer the SFU's checks (STUN success responses go through).
    pub answers: bool,
    rng: u64,
    next_rtcp: Instant,
    /// RTCP datagrams let through.
    pub rtcp_sent: u64,
    /// STUN checks of its own held back.
    pub checks_held: u64,
    /// Answers to the SFU's checks let through.
    pub answers_sent: u64,
}

impl Quiet {
    fn new(now: Instant, seed: u64, answers: bool) -> Self {
        let mut q = Self {
            answers,
            rng: seed,
            next_rtcp: now,
            rtcp_sent: 0,
            checks_held: 0,
            answers_sent: 0,
        };
        q.next_rtcp = now + q.rtcp_interval();
        q
    }

    /// 2.5 to 7.5 s, seeded (SplitMix64).
    fn rtcp_interval(&mut self) -> Duration {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Duration::from_millis(2_500 + z % 5_001)
    }

    fn lets_through(&mut self, now: Instant, payload: &[u8]) -> bool {
        match payload.first() {
            Some(0..=3) => {
                if huddle_wire::classify::is_stun_success_response(payload) {
                    self.answers_sent += u64::from(self.answers);
                    self.answers
                } else {
                    self.checks_held += 1;
                    false
                }
            }
            _ if is_rtcp(payload) => {
                if now < self.next_rtcp {
                    return false;
                }
                self.next_rtcp = now + self.rtcp_interval();
                self.rtcp_sent += 1;
                true
            }
            _ => true,
        }
    }
}

/// A RED payload (RFC 2198) as a sender writes it: the `redundant` blocks
/// (payload type, timestamp offset, data), oldest first, then the primary
/// block (`primary_pt`, `primary`).
pub fn red_payload(redundant: &[(u8, u32, &[u8])], primary_pt: u8, primary: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(pt, offset, data) in redundant {
        let bits = (offset << 10) | data.len() as u32;
        let [_, a, b, c] = bits.to_be_bytes();
        out.extend_from_slice(&[0x80 | pt, a, b, c]);
    }
    out.push(primary_pt);
    for &(_, _, data) in redundant {
        out.extend_from_slice(data);
    }
    out.extend_from_slice(primary);
    out
}

/// Whether the RTP datagram `payload` carries the lost packet's sequence
/// number; the first one asked about becomes the lost packet. The RTP header
/// (sequence number included) is not encrypted.
fn is_the_lost_packet(lost: &mut Option<u16>, payload: &[u8]) -> bool {
    let seq = u16::from_be_bytes([payload[2], payload[3]]);
    *lost.get_or_insert(seq) == seq
}

/// SRTP or SRTCP: the first byte says RTP version 2 (RFC 7983).
fn is_srtp(payload: &[u8]) -> bool {
    payload.len() > 3 && (128..=191).contains(&payload[0])
}

/// SRTCP, by its packet type (second byte, in the clear).
fn is_rtcp(payload: &[u8]) -> bool {
    is_srtp(payload) && huddle_wire::classify::is_rtcp(payload)
}

/// SRTP (not SRTCP); its header, sequence number included, is in the clear.
fn is_rtp(payload: &[u8]) -> bool {
    is_srtp(payload) && !is_rtcp(payload)
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}
