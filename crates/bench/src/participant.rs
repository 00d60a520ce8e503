//! One load participant: its signaling WebSocket, its publisher connection
//! (it offers) and its subscriber connection (the SFU offers), the tracks it
//! sends and what it receives.

use crate::e2ee::{readable, E2eeMember};
use crate::error::{rtc_err, BenchError};
use crate::media::MediaConfig;
use crate::peer::Peer;
use crate::plan::ParticipantPlan;
use crate::publish::Outgoing;
use crate::receive::Incoming;
use crate::recv_batch::RecvBatch;
use crate::signal::Signal;
use crate::stats::{Progress, Shared};
use crate::subscriber::{Receiver, Subscriber};
use huddle_proto::{ClientMessage, ServerMessage, TrackKind};
use mio::{Registry, Token};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How participants build their connections and their media.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Address their sockets bind.
    pub bind_ip: IpAddr,
    /// Time between ICE connectivity checks (rtc-ice's default when `None`;
    /// `rtc` connections only).
    pub ice_check_interval: Option<Duration>,
    /// How subscriber connections receive.
    pub receiver: Receiver,
    /// What publishers send.
    pub media: MediaConfig,
    /// Whether the rooms are end-to-end encrypted (see `crate::e2ee`).
    pub e2ee: bool,
}

/// Which socket of a participant a poll token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// The signaling WebSocket.
    Signal,
    /// The publisher connection's UDP socket.
    Publisher,
    /// The subscriber connection's UDP socket.
    Subscriber,
}

impl Socket {
    /// Poll token of socket `self` of the worker's participant `slot`.
    pub fn token(self, slot: usize) -> Token {
        Token(slot * 4 + self as usize)
    }

    /// The participant slot and socket a token names.
    pub fn from_token(token: Token) -> Option<(usize, Self)> {
        let socket = match token.0 % 4 {
            0 => Self::Signal,
            1 => Self::Publisher,
            2 => Self::Subscriber,
            _ => return None,
        };
        Some((token.0 / 4, socket))
    }
}

/// What a participant measured, returned at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Global index.
    pub index: u32,
    /// From WebSocket connect to the first media packet received.
    pub join_to_first_media: Option<Duration>,
    /// From WebSocket connect to every expected stream received.
    pub join_to_all_media: Option<Duration>,
    /// From WebSocket connect to the `joined` message.
    pub join_to_joined: Option<Duration>,
    /// From WebSocket connect to the first subscriber offer.
    pub join_to_offer: Option<Duration>,
    /// From WebSocket connect to the subscriber connection being connected
    /// (ICE + DTLS done).
    pub join_to_connected: Option<Duration>,
    /// Distinct packets received per stream (publisher, kind, simulcast
    /// layer) whose send time is in the window.
    pub received_in_window: HashMap<(u32, u8, u8), u64>,
    /// Packets sent per (kind, simulcast layer) whose send time is in the
    /// window.
    pub sent_in_window: HashMap<(u8, u8), u64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Payloads that did not decrypt (E2EE rooms).
    pub e2ee_failed: u64,
    /// Datagrams of its subscriber connection that failed SRTP
    /// unprotection or did not parse, over the whole run (fast receiver
    /// only: `None` on `rtc`, which does not tell).
    pub receive_errors: Option<u64>,
}

/// One participant's state.
pub struct Participant {
    plan: ParticipantPlan,
    slot: usize,
    token: String,
    client: ClientConfig,
    /// When to connect.
    pub join_at: Instant,
    signal: Option<Signal>,
    publisher: Option<Peer>,
    subscriber: Option<Subscriber>,
    outgoing: Outgoing,
    incoming: Incoming,
    /// Its side of the room's group (E2EE rooms).
    e2ee: Option<E2eeMember>,
    started: Option<Instant>,
    all_media: Option<Instant>,
    joined_at: Option<Instant>,
    offer_at: Option<Instant>,
    connected_at: Option<Instant>,
    ready_reported: bool,
    failed: Option<String>,
    /// Cached earliest deadline of either peer connection or send schedule.
    pub deadline: Option<Instant>,
}

impl Participant {
    /// A participant that will join at `join_at` with `token`.
    pub fn new(
        plan: ParticipantPlan,
        expected: Vec<(u32, TrackKind)>,
        slot: usize,
        token: String,
        client: ClientConfig,
        join_at: Instant,
    ) -> Self {
        Self {
            outgoing: Outgoing::new(plan.index, client.media.clone()),
            incoming: Incoming::new(expected),
            plan,
            slot,
            token,
            client,
            join_at,
            signal: None,
            publisher: None,
            subscriber: None,
            e2ee: None,
            started: None,
            all_media: None,
            joined_at: None,
            offer_at: None,
            connected_at: None,
            ready_reported: false,
            failed: None,
            deadline: Some(join_at),
        }
    }

    /// Whether it has started joining.
    pub fn started(&self) -> bool {
        self.started.is_some()
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    fn fail(&mut self, why: String, progress: &Progress) {
        if self.failed.is_none() {
            tracing::warn!(identity = %self.plan.identity, "participant failed: {why}");
            self.failed = Some(why);
            Progress::add(&progress.failed, 1);
        }
    }

    /// Open the WebSocket and send `join`.
    pub fn start(&mut self, now: Instant, url: &str, registry: &Registry, progress: &Progress) {
        self.started = Some(now);
        let e2ee = self.client.e2ee;
        if e2ee {
            match E2eeMember::new(&self.plan.identity, &self.plan.room) {
                Ok(member) => self.e2ee = Some(member),
                Err(e) => return self.fail(e.to_string(), progress),
            }
        }
        let result = Signal::connect(url).and_then(|mut s| {
            s.register(registry, Socket::Signal.token(self.slot))?;
            s.send(&ClientMessage::Join {
                token: self.token.clone(),
                e2ee,
            })?;
            Ok(s)
        });
        match result {
            Ok(s) => self.signal = Some(s),
            Err(e) => self.fail(format!("connect: {e}"), progress),
        }
        self.refresh_deadline();
    }

    /// Handle readiness of one of its sockets; `batch` is the worker's
    /// receive buffer for batched reads.
    #[allow(clippy::too_many_arguments)]
    pub fn on_readable(
        &mut self,
        socket: Socket,
        shared: &Shared,
        registry: &Registry,
        progress: &Progress,
        latencies: &mut Vec<u32>,
        batch: &mut RecvBatch,
    ) {
        let incoming = &mut self.incoming;
        let e2ee = &mut self.e2ee;
        match socket {
            Socket::Signal => self.on_signal(registry, progress),
            Socket::Publisher => {
                let mut on_rtp = |now: Instant, p: &rtp::Packet| {
                    incoming.on_packet(now, p, shared, progress, latencies)
                };
                if let Some(peer) = self.publisher.as_mut() {
                    peer.receive(&mut on_rtp);
                }
                self.after_io(progress);
            }
            Socket::Subscriber => {
                let mut on_media = |now: Instant, payload: &[u8], size: usize| {
                    let Some(payload) = readable(e2ee.as_mut(), now, payload) else {
                        return;
                    };
                    incoming.on_media(now, payload, size, shared, progress, latencies)
                };
                if let Some(sub) = self.subscriber.as_mut() {
                    sub.receive(batch, &mut on_media);
                }
                self.after_io(progress);
            }
        }
    }

    fn on_signal(&mut self, registry: &Registry, progress: &Progress) {
        let Some(signal) = self.signal.as_mut() else {
            return;
        };
        let messages = signal.receive();
        let closed = signal.closed();
        for msg in messages {
            if let Err(e) = self.on_message(msg, registry, progress) {
                self.fail(e.to_string(), progress);
            }
        }
        if closed && self.failed.is_none() {
            self.fail("the server closed the WebSocket".to_owned(), progress);
        }
        if let Some(s) = self.signal.as_mut() {
            s.flush();
        }
        self.after_io(progress);
    }

    fn on_message(
        &mut self,
        msg: ServerMessage,
        registry: &Registry,
        progress: &Progress,
    ) -> Result<(), BenchError> {
        let now = Instant::now();
        match msg {
            ServerMessage::Joined { .. } => {
                self.joined_at.get_or_insert(now);
                Progress::add(&progress.joined, 1);
                if let Some(key_package) = self.e2ee.as_mut().and_then(E2eeMember::take_key_package)
                {
                    self.send(&key_package)?;
                }
                if self.plan.publishes() {
                    self.offer_publisher(now, registry)?;
                }
            }
            ServerMessage::Answer { sdp } => {
                let desc = RTCSessionDescription::answer(sdp).map_err(rtc_err)?;
                if let Some(p) = self.publisher.as_mut() {
                    p.pc.set_remote_description(now, desc).map_err(rtc_err)?;
                }
            }
            ServerMessage::Offer { sdp } => {
                self.offer_at.get_or_insert(now);
                self.answer_subscriber(now, sdp, registry)?;
            }
            ServerMessage::Error { code, message } => {
                return Err(BenchError::Signaling(format!("{code:?}: {message}")));
            }
            // The room's group (E2EE rooms); candidates (the server's is
            // in its SDP), room news, pongs: nothing else to act on.
            other => {
                if let Some(member) = self.e2ee.as_mut() {
                    for reply in member.on_message(&other)? {
                        self.send(&reply)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn offer_publisher(&mut self, now: Instant, registry: &Registry) -> Result<(), BenchError> {
        let mut peer = Peer::new(now, self.client.bind_ip, self.client.ice_check_interval)?;
        peer.register(registry, Socket::Publisher.token(self.slot))?;
        self.outgoing
            .add_tracks(&mut peer, &self.plan.identity, &self.plan.kinds())?;
        let offer = peer.pc.create_offer(None).map_err(rtc_err)?;
        peer.pc.set_local_description(now, offer).map_err(rtc_err)?;
        let sdp = peer
            .pc
            .local_description()
            .ok_or_else(|| BenchError::Rtc("no local description".into()))?
            .sdp;
        self.publisher = Some(peer);
        self.send(&ClientMessage::Offer { sdp })
    }

    fn answer_subscriber(
        &mut self,
        now: Instant,
        sdp: String,
        registry: &Registry,
    ) -> Result<(), BenchError> {
        if self.subscriber.is_none() {
            let mut sub = Subscriber::new(
                self.client.receiver,
                now,
                self.client.bind_ip,
                self.client.ice_check_interval,
            )?;
            sub.register(registry, Socket::Subscriber.token(self.slot))?;
            self.subscriber = Some(sub);
        }
        let Some(sub) = self.subscriber.as_mut() else {
            return Ok(());
        };
        let sdp = sub.answer(now, sdp)?;
        self.send(&ClientMessage::Answer { sdp })
    }

    fn send(&mut self, msg: &ClientMessage) -> Result<(), BenchError> {
        match self.signal.as_mut() {
            Some(s) => s.send(msg),
            None => Err(BenchError::Signaling("no WebSocket".into())),
        }
    }

    /// Fire due timers, send due media, move outputs; refresh the deadline.
    pub fn tick(
        &mut self,
        now: Instant,
        shared: &Shared,
        progress: &Progress,
        latencies: &mut Vec<u32>,
    ) {
        let incoming = &mut self.incoming;
        let e2ee = &mut self.e2ee;
        if let Some(peer) = self.publisher.as_mut() {
            peer.tick(now);
            peer.drain(now, &mut |now: Instant, p: &rtp::Packet| {
                incoming.on_packet(now, p, shared, progress, latencies)
            });
        }
        if let Some(sub) = self.subscriber.as_mut() {
            sub.tick(now, &mut |now: Instant, payload: &[u8], size: usize| {
                let Some(payload) = readable(e2ee.as_mut(), now, payload) else {
                    return;
                };
                incoming.on_media(now, payload, size, shared, progress, latencies)
            });
        }
        self.send_media(now, shared, progress);
        self.after_io(progress);
    }

    fn send_media(&mut self, now: Instant, shared: &Shared, progress: &Progress) {
        if let Some(peer) = self.publisher.as_mut().filter(|p| p.connected()) {
            self.outgoing
                .send_due(peer, now, shared, progress, self.e2ee.as_mut());
        }
    }

    /// After any I/O: note readiness and failure, recompute the deadline.
    fn after_io(&mut self, progress: &Progress) {
        if self.publisher.as_ref().is_some_and(Peer::dead) {
            self.fail("the publisher connection failed".to_owned(), progress);
        }
        if let Some(why) = self.subscriber.as_ref().and_then(Subscriber::failure) {
            self.fail(format!("the subscriber connection failed: {why}"), progress);
        }
        if self.connected_at.is_none()
            && self.subscriber.as_ref().is_some_and(Subscriber::connected)
        {
            self.connected_at = Some(Instant::now());
        }
        if !self.ready_reported && self.is_ready() {
            self.ready_reported = true;
            self.all_media = Some(Instant::now());
            Progress::add(&progress.ready, 1);
        }
        self.refresh_deadline();
    }

    fn is_ready(&self) -> bool {
        let publishing = !self.plan.publishes()
            || (self.publisher.as_ref().is_some_and(Peer::connected)
                && self.outgoing.all_sending());
        publishing && self.incoming.complete()
    }

    fn refresh_deadline(&mut self) {
        if self.started.is_none() {
            self.deadline = Some(self.join_at);
            return;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Some(peer) = self.publisher.as_mut() {
            consider(peer.deadline());
        }
        if let Some(sub) = self.subscriber.as_mut() {
            consider(sub.deadline());
        }
        if self.publisher.as_ref().is_some_and(Peer::connected) {
            consider(self.outgoing.next_due());
        }
        self.deadline = next;
    }

    /// Say goodbye (best effort).
    pub fn leave(&mut self) {
        if let Some(s) = self.signal.as_mut() {
            s.leave();
        }
    }

    /// What it measured.
    pub fn outcome(&self) -> Outcome {
        let since = |t: Option<Instant>| {
            t.zip(self.started)
                .map(|(t, s)| t.saturating_duration_since(s))
        };
        Outcome {
            index: self.plan.index,
            join_to_first_media: since(self.incoming.first_media()),
            join_to_all_media: since(self.all_media),
            join_to_joined: since(self.joined_at),
            join_to_offer: since(self.offer_at),
            join_to_connected: since(self.connected_at),
            received_in_window: self.incoming.received_in_window(),
            sent_in_window: self.outgoing.sent_in_window(),
            error: self.failed.clone(),
            e2ee_failed: self.e2ee.as_ref().map_or(0, E2eeMember::failed),
            receive_errors: self
                .subscriber
                .as_ref()
                .and_then(Subscriber::receive_errors),
        }
    }
}
