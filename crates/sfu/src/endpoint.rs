//! The sans-IO SFU core: every participant's connections, the demux of the
//! shared port and the routing of media between them.
//!
//! Inputs: datagrams ([`Endpoint::handle_datagram`]), time
//! ([`Endpoint::handle_timeout`]) and signaling commands. Outputs: datagrams to
//! send ([`Endpoint::poll_transmit`]), events for signaling
//! ([`Endpoint::poll_event`]) and the next deadline ([`Endpoint::poll_timeout`]).
//! The endpoint never reads the clock: `now` always comes in.

use crate::api::{Rights, SfuEvent, SfuStats, TrackAudioLevel};
use crate::config::SfuConfig;
use crate::connection::{ice_token, Connection, ConsentChange, Liveness, Screened};
use crate::demux::Demux;
use crate::error::SfuError;
use crate::ids::{ParticipantId, RoomId};
use crate::keyframe::starts_keyframe;
use crate::log_limit::LogLimit;
use crate::out_buf::OutBuf;
use crate::padding::PaddingFilter;
use crate::participant::Participant;
use crate::router::{Leg, PublishedTrack, Router};
use crate::sender_report::{self, WallClock};
use crate::simulcast::{
    self, rank_of, wanted_rank, Layer, LayerChoice, Verdict, CHOICE_INTERVAL, TOP_RANK,
};
use crate::speaker::SpeakerDetector;
use crate::transport::{Took, Wire, WireEvent};
use bytes::BytesMut;
use huddle_proto::{IceCandidate, PcRole, TrackKind};
use huddle_wire::classify::is_stun_success_response;
use huddle_wire::codecs::{extension_id, AUDIO_LEVEL_URI};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::rtp_transceiver::RTCRtpTransceiverId;
use rtc::sansio::Protocol;
use rtc::shared::marshal::Unmarshal;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rustc_hash::FxHashMap;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

mod viewer;

/// Key of one connection: whose, and which of the two.
pub type ConnKey = (ParticipantId, PcRole);

/// A datagram to send from the media socket.
#[derive(Debug)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// Bytes.
    pub payload: BytesMut,
}

/// The SFU core. See the module docs.
pub struct Endpoint {
    config: SfuConfig,
    local_addr: SocketAddr,
    /// By id. Looked up once per forwarded copy: a fast hash (the ids are
    /// the server's own random tokens, not chosen by clients).
    participants: FxHashMap<ParticipantId, Participant>,
    demux: Demux<ConnKey>,
    router: Router,
    speakers: SpeakerDetector,
    transmits: VecDeque<Transmit>,
    /// Forwarded datagrams are written here ([`OutBuf`]).
    out_buf: OutBuf,
    events: VecDeque<SfuEvent>,
    dirty: Vec<ConnKey>,
    /// When the simulcast layer of every leg is looked at again (set once a
    /// track has layers).
    next_layer_choice: Option<Instant>,
    /// Wall-clock time for sender reports ([`Endpoint::set_wall_clock`]).
    wall_clock: Option<WallClock>,
    /// When subscribers get their next sender reports (set once one is
    /// connected).
    next_sender_reports: Option<Instant>,
    /// When the sources of WHEP viewers' slots are looked at again (set
    /// while there are viewers).
    next_slot_check: Option<Instant>,
    rtp_in: u64,
    rtp_out: u64,
    rtx_sent: u64,
    dropped: u64,
    /// One "datagram refused" line per connection per second.
    log_limit: LogLimit<ConnKey>,
}

fn bad_sdp(e: impl std::fmt::Display) -> SfuError {
    SfuError::BadSdp(e.to_string())
}

fn rtc_err(e: impl std::fmt::Display) -> SfuError {
    SfuError::Rtc(e.to_string())
}

/// Output of draining one connection.
#[derive(Default)]
struct Drained {
    events: Vec<RTCPeerConnectionEvent>,
    rtp: Vec<(String, rtc::rtp::Packet)>,
    wire: Vec<WireEvent>,
}

impl Endpoint {
    /// A new endpoint whose media socket is reachable at `local_addr`.
    pub fn new(config: SfuConfig, local_addr: SocketAddr) -> Self {
        let local_addr = config.public_addr.unwrap_or(local_addr);
        Self {
            config,
            local_addr,
            participants: FxHashMap::default(),
            demux: Demux::default(),
            router: Router::default(),
            speakers: SpeakerDetector::default(),
            transmits: VecDeque::new(),
            out_buf: OutBuf::default(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            next_layer_choice: None,
            wall_clock: None,
            next_sender_reports: None,
            next_slot_check: None,
            rtp_in: 0,
            rtp_out: 0,
            rtx_sent: 0,
            dropped: 0,
            log_limit: LogLimit::new(Duration::from_secs(1)),
        }
    }

    /// Tell the endpoint what wall-clock time `now` is (`since_unix_epoch`
    /// after 1970-01-01 UTC), for the NTP times of the sender reports it
    /// sends subscribers. Without it, it sends none.
    pub fn set_wall_clock(&mut self, now: Instant, since_unix_epoch: Duration) {
        self.wall_clock = Some(WallClock::new(now, since_unix_epoch));
    }

    /// Register a participant. When it may subscribe and the room already has
    /// tracks, a subscriber offer follows.
    pub fn add_participant(
        &mut self,
        now: Instant,
        room: RoomId,
        id: ParticipantId,
        rights: Rights,
    ) -> Result<(), SfuError> {
        if self.participants.contains_key(&id) {
            return Err(SfuError::DuplicateParticipant(id.0));
        }
        self.participants
            .insert(id.clone(), Participant::new(room.clone(), rights));
        if rights.subscribe {
            let ids: Vec<String> = self
                .router
                .tracks
                .values()
                .filter(|t| t.room == room)
                .map(|t| t.id.clone())
                .collect();
            for track_id in ids {
                self.add_leg(now, &track_id, &id);
            }
        }
        self.flush(now);
        info!(participant = %id, room = %room, "participant added");
        Ok(())
    }

    /// Apply a publisher-connection offer; returns the answer SDP.
    pub fn publisher_offer(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        if !p.rights.publish {
            return Err(SfuError::PublishForbidden);
        }
        let offer = RTCSessionDescription::offer(sdp).map_err(bad_sdp)?;
        let fresh = p.publisher.is_none();
        if fresh {
            let ufrag = ice_token(16);
            p.publisher = Some(Connection::new(
                now,
                &self.config,
                PcRole::Publisher,
                ufrag,
                self.local_addr,
            )?);
        }
        let result = match p.publisher.as_mut() {
            Some(conn) => answer_offer(now, conn, offer, self.local_addr),
            None => Err(SfuError::Rtc("publisher connection missing".into())),
        };
        match result {
            Ok(answer) => {
                if let Some(conn) = p.publisher.as_mut() {
                    if let Some(offer) = conn.pc.remote_description().map(|d| d.sdp.clone()) {
                        conn.set_remote_ice(&offer);
                    }
                    if fresh {
                        self.demux
                            .insert_ufrag(conn.ufrag.clone(), (id.clone(), PcRole::Publisher));
                    }
                }
                for track_id in ended_tracks(p) {
                    self.end_incoming(now, id, track_id);
                }
                self.dirty.push((id.clone(), PcRole::Publisher));
                self.flush(now);
                Ok(answer)
            }
            Err(e) => {
                if fresh {
                    p.publisher = None;
                }
                Err(e)
            }
        }
    }

    /// Apply the answer to the last subscriber offer.
    pub fn subscriber_answer(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        sdp: String,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        let conn = match (&mut p.subscriber, p.offer_pending) {
            (Some(conn), true) => conn,
            _ => return Err(SfuError::NoPendingOffer),
        };
        Wire::check_remote(&sdp).map_err(bad_sdp)?;
        let answer = RTCSessionDescription::answer(sdp.clone()).map_err(bad_sdp)?;
        conn.pc
            .set_remote_description(now, answer)
            .map_err(bad_sdp)?;
        start_wire(now, conn, &sdp)?;
        p.offer_pending = false;
        // Payload types may differ per negotiation; look them up again, and
        // ask publishers of video for a keyframe so the new legs can decode.
        for t in self.router.tracks.values_mut() {
            if let Some(leg) = t.legs.get_mut(id) {
                leg.payload_type = None;
            }
        }
        self.keyframes_for(now, id);
        self.dirty.push((id.clone(), PcRole::Subscriber));
        self.flush(now);
        Ok(())
    }

    /// Add a client's trickled ICE candidate.
    pub fn remote_candidate(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        role: PcRole,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        let conn = p.conn_mut(role).ok_or_else(|| {
            SfuError::BadCandidate(format!("no {role:?} connection to add it to"))
        })?;
        if candidate.candidate.trim().is_empty() {
            return Ok(()); // end-of-candidates
        }
        conn.pc
            .add_remote_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: candidate.username_fragment,
                ..Default::default()
            })
            .map_err(|e| SfuError::BadCandidate(e.to_string()))?;
        self.dirty.push((id.clone(), role));
        self.flush(now);
        Ok(())
    }

    /// Mute or unmute a published track; a muted track is not forwarded.
    pub fn set_muted(
        &mut self,
        id: &ParticipantId,
        track_id: &str,
        muted: bool,
    ) -> Result<(), SfuError> {
        match self.router.tracks.get_mut(track_id) {
            Some(t) if &t.publisher == id => {
                t.muted = muted;
                Ok(())
            }
            _ => Err(SfuError::UnknownTrack(track_id.to_owned())),
        }
    }

    /// Drop a participant and everything of it; others' subscriptions to its
    /// tracks end (with new offers).
    pub fn remove_participant(&mut self, now: Instant, id: &ParticipantId) -> Result<(), SfuError> {
        self.drop_participant(now, id)?;
        self.flush(now);
        Ok(())
    }

    /// Everything of [`Endpoint::remove_participant`] but the flush: the
    /// caller flushes once, however many participants it drops. (Flushing
    /// here made reaping recursive, one stack frame per participant gone in
    /// the same pass.)
    fn drop_participant(&mut self, now: Instant, id: &ParticipantId) -> Result<(), SfuError> {
        self.close_connections(now, id);
        self.participants
            .remove(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        for track_id in self.router.published_by(id) {
            self.unpublish(now, &track_id);
        }
        for t in self.router.tracks.values_mut() {
            t.legs.remove(id);
        }
        info!(participant = %id, "participant removed");
        Ok(())
    }

    /// Close `id`'s connections and forget their ufrags and addresses. Say
    /// goodbye so the peer notices at once: on the subscriber connection an
    /// RTCP BYE for the SFU's streams and DTLS close_notify, on the
    /// publisher connection what `rtc`'s close sends.
    fn close_connections(&mut self, now: Instant, id: &ParticipantId) {
        let ssrcs = self.ssrcs_sent_to(id);
        let Some(p) = self.participants.get_mut(id) else {
            return;
        };
        for (role, conn) in [
            (PcRole::Publisher, p.publisher.take()),
            (PcRole::Subscriber, p.subscriber.take()),
        ] {
            self.demux.remove(&(id.clone(), role));
            let Some(mut conn) = conn else {
                continue;
            };
            if let Some(wire) = conn.wire.as_mut() {
                wire.close(now, &ssrcs);
                while let Some((dst, payload)) = wire.poll_transmit() {
                    self.transmits.push_back(Transmit { dst, payload });
                }
                continue;
            }
            if let Err(e) = conn.pc.close() {
                debug!(participant = %id, "close: {e}");
            }
            while let Some(msg) = conn.pc.poll_write() {
                self.transmits.push_back(Transmit {
                    dst: msg.transport.peer_addr,
                    payload: msg.message,
                });
            }
        }
    }

    /// Close every connection (the server is stopping): each client gets an
    /// RTCP BYE for what the SFU sent it and DTLS close_notify on its
    /// subscriber connection, and what `rtc`'s close sends on its publisher
    /// connection (close_notify too), queued for [`Endpoint::poll_transmit`].
    /// Every participant is removed, without [`SfuEvent::ParticipantGone`]
    /// (signaling is stopping too) and without new offers.
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<ParticipantId> = self.participants.keys().cloned().collect();
        // Every goodbye first, while every leg still names its SSRC.
        for id in &ids {
            self.close_connections(now, id);
        }
        for id in &ids {
            if let Err(e) = self.drop_participant(now, id) {
                debug!(participant = %id, "close: {e}");
            }
        }
        self.dirty.clear();
        info!(participants = ids.len(), "every connection closed");
    }

    /// The SSRCs of the streams the SFU sends `sub` (its legs, a viewer's
    /// slots), for its RTCP BYE.
    fn ssrcs_sent_to(&self, sub: &ParticipantId) -> Vec<u32> {
        let mut ssrcs: Vec<u32> = self
            .router
            .tracks
            .values()
            .filter_map(|t| t.legs.get(sub).map(|leg| leg.ssrc))
            .collect();
        if let Some(slots) = self.participants.get(sub).and_then(|p| p.slots.as_ref()) {
            ssrcs.extend(slots.iter().map(|s| s.ssrc));
        }
        ssrcs.sort_unstable();
        ssrcs.dedup();
        ssrcs
    }

    /// Feed a datagram received on the media socket from `src`.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        let Some(key) = self.demux.route(src, datagram) else {
            self.dropped += 1;
            return;
        };
        let local_addr = self.local_addr;
        let Some(conn) = self
            .participants
            .get_mut(&key.0)
            .and_then(|p| p.conn_mut(key.1))
        else {
            self.dropped += 1;
            return;
        };
        // A subscriber connection's datagram touches only its own transport:
        // drain that here, not the whole connection (asking `rtc` walks its
        // pipeline, and this is every RTCP report and consent check of the
        // fan-out side).
        let (result, wire_events) = match conn.wire.as_mut() {
            Some(wire) => {
                let result = wire.handle_datagram(now, src, datagram);
                let mut events = Vec::new();
                drain_wire(
                    wire,
                    &key,
                    &mut self.demux,
                    &mut self.transmits,
                    &mut events,
                );
                conn.timer = wire.poll_timeout();
                (result.map_err(|e| e.to_string()), Some(events))
            }
            None => {
                let result = match conn.screen(datagram) {
                    Ok(Screened::Pass(took)) => {
                        let message = tagged(now, local_addr, src, BytesMut::from(datagram));
                        conn.pc
                            .handle_read(message)
                            .map(|()| took)
                            .map_err(|e| e.to_string())
                    }
                    Ok(Screened::Taken(took)) => Ok(took),
                    Err(e) => Err(e.to_string()),
                };
                (result, None)
            }
        };
        match result {
            // Only what the connection took (authenticated) is life: a
            // stranger who learnt the ufrag cannot keep it up.
            Ok(took) => conn.took(now, Some(src), took),
            Err(e) => {
                self.dropped += 1;
                if let Some(suppressed) = self.log_limit.allow(now, key.clone()) {
                    warn!(
                        participant = %key.0,
                        pc = ?key.1,
                        %src,
                        suppressed,
                        "datagram refused: {e}"
                    );
                }
            }
        }
        match wire_events {
            Some(events) => {
                for ev in events {
                    self.on_wire_event(now, &key.0, ev);
                }
            }
            None => self.dirty.push(key),
        }
        self.flush(now);
    }

    /// Time passed: run every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (id, p) in self.participants.iter_mut() {
            for (role, conn) in [
                (PcRole::Publisher, p.publisher.as_mut()),
                (PcRole::Subscriber, p.subscriber.as_mut()),
            ] {
                if let Some(conn) = conn {
                    let (change, check) = conn.run_consent(now);
                    match change {
                        Some(ConsentChange::Down) => {
                            info!(participant = %id, pc = ?role, "consent checks unanswered: connection down");
                        }
                        Some(ConsentChange::Expired) => {
                            info!(participant = %id, pc = ?role, "consent expired: connection closed");
                        }
                        None => {}
                    }
                    if let Some((dst, payload)) = check {
                        self.transmits.push_back(Transmit { dst, payload });
                    }
                    if conn.timer.is_some_and(|t| t <= now) {
                        match conn.wire.as_mut() {
                            Some(wire) => wire.handle_timeout(now),
                            None => {
                                if let Err(e) = conn.pc.handle_timeout(now) {
                                    debug!(participant = %id, "timeout: {e}");
                                }
                            }
                        }
                        self.dirty.push((id.clone(), role));
                    }
                }
            }
        }
        let interval = self.config.keyframe_request_interval;
        let mut due = Vec::new();
        for t in self.router.tracks.values_mut() {
            for (i, l) in t.layers.iter_mut().enumerate() {
                if l.keyframe.poll(now, interval) {
                    due.push((t.id.clone(), i));
                }
            }
        }
        for (t, layer) in due {
            self.send_keyframe_request(now, &t, layer);
        }
        if self.next_layer_choice.is_some_and(|t| now >= t) {
            self.choose_layers(now);
        }
        if self.next_sender_reports.is_some_and(|t| now >= t) {
            self.send_sender_reports(now);
        }
        if self.next_slot_check.is_some_and(|t| now >= t) {
            self.check_slot_sources(now);
        }
        self.speakers.handle_timeout(now);
        self.flush(now);
    }

    /// The earliest instant at which [`Endpoint::handle_timeout`] has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for p in self.participants.values_mut() {
            for conn in [p.publisher.as_mut(), p.subscriber.as_mut()]
                .into_iter()
                .flatten()
            {
                consider(conn.timer);
                consider(conn.consent_deadline());
                consider(match conn.liveness {
                    Liveness::Connecting { since } => Some(since + self.config.connect_timeout),
                    Liveness::Down { since } => Some(since + self.config.disconnect_timeout),
                    _ => None,
                });
            }
        }
        let interval = self.config.keyframe_request_interval;
        let mut simulcast = false;
        for t in self.router.tracks.values() {
            simulcast |= t.layers.len() > 1;
            for l in &t.layers {
                consider(l.keyframe.deadline(interval));
            }
        }
        if simulcast {
            consider(self.next_layer_choice);
        }
        consider(self.next_sender_reports);
        consider(self.next_slot_check);
        consider(self.speakers.poll_timeout());
        next
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for signaling.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// The last reported audio level of every audio track that has one.
    pub fn audio_levels(&self) -> Vec<TrackAudioLevel> {
        self.router
            .tracks
            .values()
            .filter_map(|t| {
                t.audio_level.map(|(level, voice)| TrackAudioLevel {
                    participant: t.publisher.clone(),
                    track_id: t.id.clone(),
                    level,
                    voice,
                })
            })
            .collect()
    }

    /// What the endpoint holds now.
    pub fn stats(&self) -> SfuStats {
        SfuStats {
            participants: self.participants.len(),
            connections: self
                .participants
                .values()
                .map(Participant::connections)
                .sum(),
            tracks: self.router.tracks.len(),
            addresses: self.demux.addresses(),
            rtp_in: self.rtp_in,
            rtp_out: self.rtp_out,
            rtx_sent: self.rtx_sent,
            dropped_datagrams: self.dropped,
        }
    }

    // ---- internals -------------------------------------------------------

    /// Drain every touched connection until nothing moves, then send any
    /// subscriber offers that are due and drop dead participants.
    ///
    /// A loop, not recursion: dropping participants dirties others'
    /// connections (new offers), and draining those may find more dead.
    fn flush(&mut self, now: Instant) {
        loop {
            loop {
                self.drain_dirty(now);
                // Offers queue writes on the connections they touch (marked
                // dirty): drain those too, with everything they yield.
                self.send_offers(now);
                if self.dirty.is_empty() {
                    break;
                }
            }
            if !self.reap(now) {
                break;
            }
        }
        while let Some(c) = self.speakers.poll_change() {
            self.events.push_back(SfuEvent::ActiveSpeaker {
                room: c.room,
                participant: c.participant,
            });
        }
    }

    /// Drain every dirty connection and act on what comes out, until none is
    /// dirty.
    fn drain_dirty(&mut self, now: Instant) {
        while let Some(key) = self.dirty.pop() {
            let Some(conn) = self
                .participants
                .get_mut(&key.0)
                .and_then(|p| p.conn_mut(key.1))
            else {
                continue;
            };
            let drained = drain(now, conn, &key, &mut self.demux, &mut self.transmits);
            for ev in drained.events {
                self.on_pc_event(now, &key, ev);
            }
            for (track, packet) in drained.rtp {
                if key.1 == PcRole::Publisher {
                    self.on_rtp(now, &key.0, track, packet);
                }
            }
            for ev in drained.wire {
                self.on_wire_event(now, &key.0, ev);
            }
        }
    }

    /// What a subscriber connection's own transport reported.
    fn on_wire_event(&mut self, now: Instant, sub: &ParticipantId, ev: WireEvent) {
        match ev {
            WireEvent::Connected(profile) => {
                debug!(participant = %sub, %profile, "subscriber connection up");
                self.set_subscriber_liveness(sub, Liveness::Up);
                // Video sent before the subscriber's keys existed was
                // dropped: it needs a keyframe of every video it gets.
                self.keyframes_for(now, sub);
                if self.wall_clock.is_some() {
                    self.next_sender_reports
                        .get_or_insert(now + sender_report::INTERVAL);
                }
            }
            WireEvent::Closed | WireEvent::Failed(_) => {
                debug!(participant = %sub, event = ?ev, "subscriber connection ended");
                self.set_subscriber_liveness(sub, Liveness::Dead);
            }
            WireEvent::KeyframeRequest(ssrc) => {
                if let Some(track) = self.track_sent_as(sub, ssrc) {
                    self.subscriber_needs_keyframe(now, &track, sub);
                }
            }
            WireEvent::Nack(mut lost) => {
                // One track lookup per SSRC, not per lost packet.
                lost.sort_by_key(|&(ssrc, _)| ssrc);
                for same in lost.chunk_by(|a, b| a.0 == b.0) {
                    if let Some(track) = self.track_sent_as(sub, same[0].0) {
                        self.on_nack(now, sub, &track, same.to_vec());
                    }
                }
            }
        }
    }

    fn set_subscriber_liveness(&mut self, sub: &ParticipantId, liveness: Liveness) {
        if let Some(conn) = self
            .participants
            .get_mut(sub)
            .and_then(|p| p.subscriber.as_mut())
        {
            conn.liveness = liveness;
        }
    }

    /// The published track `sub` receives with SSRC `ssrc` (its leg's).
    fn track_sent_as(&self, sub: &ParticipantId, ssrc: u32) -> Option<String> {
        self.router
            .tracks
            .values()
            .find(|t| t.legs.get(sub).is_some_and(|leg| leg.ssrc == ssrc))
            .map(|t| t.id.clone())
    }

    fn on_pc_event(&mut self, now: Instant, key: &ConnKey, ev: RTCPeerConnectionEvent) {
        let Some(p) = self.participants.get_mut(&key.0) else {
            return;
        };
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                debug!(participant = %key.0, pc = ?key.1, %state, "connection state");
                if let Some(conn) = p.conn_mut(key.1) {
                    conn.liveness = match state {
                        RTCPeerConnectionState::Connected => Liveness::Up,
                        // rtc says disconnected when STUN checks stop, even
                        // while media and RTCP still arrive; the SFU's own
                        // silence timer (`Connection::check_silence`)
                        // decides instead.
                        RTCPeerConnectionState::Disconnected => conn.liveness,
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            Liveness::Dead
                        }
                        _ => conn.liveness,
                    };
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if key.1 == PcRole::Publisher =>
            {
                p.incoming
                    .insert(init.track_id.to_string(), init.receiver_id);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id))
                if key.1 == PcRole::Publisher =>
            {
                self.end_incoming(now, &key.0, track_id.to_string());
            }
            _ => {}
        }
    }

    /// A remote track of `publisher`'s publisher connection ended: forget it
    /// and unpublish what it fed.
    fn end_incoming(&mut self, now: Instant, publisher: &ParticipantId, track_id: String) {
        if let Some(p) = self.participants.get_mut(publisher) {
            p.incoming.remove(&track_id);
        }
        if let Some(id) = self
            .router
            .by_remote
            .get(&(publisher.clone(), track_id))
            .cloned()
        {
            self.unpublish(now, &id);
        }
    }

    /// RTP from a publisher: publish the track on its first packet, then
    /// forward to every leg.
    fn on_rtp(
        &mut self,
        now: Instant,
        publisher: &ParticipantId,
        remote: String,
        packet: rtc::rtp::Packet,
    ) {
        self.rtp_in += 1;
        let key = (publisher.clone(), remote);
        let track_id = match self.router.by_remote.get(&key) {
            Some(id) => id.clone(),
            None => match self.publish(now, publisher, &key.1, &packet) {
                Some(id) => id,
                None => return,
            },
        };
        let Some(track) = self.router.tracks.get_mut(&track_id) else {
            return;
        };
        let (layer, track) = match track
            .layers
            .iter()
            .position(|l| l.ssrc == packet.header.ssrc)
        {
            Some(i) => (i, track),
            None => {
                // A simulcast layer's first packet (or a new SSRC).
                let rid = self
                    .participants
                    .get_mut(publisher)
                    .and_then(|p| p.publisher.as_mut())
                    .and_then(|c| c.pc.rtp_receiver(track.receiver_id))
                    .and_then(|r| r.track().rid(packet.header.ssrc).cloned());
                let Some(i) = add_layer(now, track, rid, packet.header.ssrc) else {
                    return;
                };
                self.choose_layers(now);
                let Some(track) = self.router.tracks.get_mut(&track_id) else {
                    return;
                };
                (i, track)
            }
        };
        // Padding-only packets (bandwidth probes) are not forwarded (see
        // `padding`), and they keep coming on a layer the browser stopped
        // encoding: they do not make it active either.
        let padding_only = packet.payload.is_empty();
        let Some(seq) = track.layers[layer]
            .padding
            .admit(packet.header.sequence_number, padding_only)
        else {
            return;
        };
        track.layers[layer].last_rx = now;
        if track.muted {
            return;
        }
        if let Some(id) = track.audio_level_id {
            if let Some(mut raw) = packet.header.get_extension(id) {
                if let Ok(al) = AudioLevelExtension::unmarshal(&mut raw) {
                    track.audio_level = Some((al.level, al.voice));
                    self.speakers
                        .observe(now, &track.room, &track.publisher, al.level);
                }
            }
        }
        // Extension ids are per connection: drop the publisher's. The
        // padding went with parsing; the P bit must go too.
        let mut packet = packet;
        packet.header.sequence_number = seq;
        packet.header.padding = false;
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extension_profile = 0;
        track.layers[layer].rtx.insert(&packet);
        let simulcast = track.layers.len() > 1;
        let keyframe = simulcast && starts_keyframe(&track.codec.mime_type, &packet.payload);
        for (sub, leg) in track.legs.iter_mut() {
            if simulcast {
                match leg.choice.on_packet(layer, keyframe) {
                    Verdict::Forward => {}
                    Verdict::Switch => {
                        debug!(subscriber = %sub, track = %track_id, layer, "simulcast layer switched");
                        leg.resync();
                    }
                    Verdict::Drop => continue,
                }
            }
            let out = Out {
                participants: &mut self.participants,
                transmits: &mut self.transmits,
                buf: &mut self.out_buf,
            };
            if send_on_leg(now, out, &track.codec, sub, leg, &packet) {
                self.rtp_out += 1;
            }
        }
    }

    /// Look again at which layer every leg of a simulcast track should get
    /// (the layers that still arrive, how many videos each subscriber
    /// watches), and ask for a keyframe of each newly wanted layer.
    fn choose_layers(&mut self, now: Instant) {
        self.next_layer_choice = Some(now + CHOICE_INTERVAL);
        let mut videos: HashMap<&ParticipantId, usize> = HashMap::new();
        for t in self.router.tracks.values() {
            if t.kind == TrackKind::Video {
                for sub in t.legs.keys() {
                    *videos.entry(sub).or_default() += 1;
                }
            }
        }
        let mut wanted = Vec::new();
        for t in self.router.tracks.values() {
            if t.layers.len() < 2 {
                continue;
            }
            for (sub, leg) in &t.legs {
                let rank = wanted_rank(videos.get(sub).copied().unwrap_or(1));
                let target = simulcast::pick(&t.layers, now, rank);
                if target != leg.choice.target {
                    wanted.push((t.id.clone(), sub.clone(), target));
                }
            }
        }
        for (track_id, sub, target) in wanted {
            let Some(leg) = self
                .router
                .tracks
                .get_mut(&track_id)
                .and_then(|t| t.legs.get_mut(&sub))
            else {
                continue;
            };
            leg.choice.target = target;
            if let Some(layer) = target.filter(|&l| leg.choice.current != Some(l)) {
                debug!(subscriber = %sub, track = %track_id, layer, "simulcast layer wanted");
                self.request_keyframe(now, &track_id, layer);
            }
        }
    }

    /// A subscriber reported packets of a track lost: resend what the track's
    /// store still has, on that subscriber's leg only, each packet a bounded
    /// number of times ([`crate::resend`]).
    fn on_nack(
        &mut self,
        now: Instant,
        sub: &ParticipantId,
        track_id: &str,
        lost: Vec<(u32, u16)>,
    ) {
        let Some(track) = self.router.tracks.get_mut(track_id) else {
            return;
        };
        let Some(leg) = track.legs.get_mut(sub) else {
            return;
        };
        let Some(layer) = leg.choice.current.and_then(|l| track.layers.get(l)) else {
            return;
        };
        for (ssrc, seq) in lost {
            if ssrc != leg.ssrc {
                continue;
            }
            // Too old, or from before a switch: the subscriber will ask for
            // a keyframe.
            let Some(packet) = leg.source_seq(seq).and_then(|s| layer.rtx.get(s)) else {
                continue;
            };
            // Asked again before the last resend could arrive, or too often.
            if !leg.resent.allow(now, seq) {
                continue;
            }
            let out = Out {
                participants: &mut self.participants,
                transmits: &mut self.transmits,
                buf: &mut self.out_buf,
            };
            if send_on_leg(now, out, &track.codec, sub, leg, packet) {
                self.rtx_sent += 1;
            }
        }
    }

    /// First packet of a new remote track: make it a published track and give
    /// it to every subscriber in the room.
    fn publish(
        &mut self,
        now: Instant,
        publisher: &ParticipantId,
        remote: &str,
        packet: &rtc::rtp::Packet,
    ) -> Option<String> {
        let p = self.participants.get_mut(publisher)?;
        let receiver_id = *p.incoming.get(remote)?;
        let room = p.room.clone();
        let conn = p.publisher.as_mut()?;
        let mut receiver = conn.pc.rtp_receiver(receiver_id)?;
        let codec = receiver
            .get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.payload_type == packet.header.payload_type)?
            .rtp_codec
            .clone();
        let kind = match receiver.track().kind() {
            RtpCodecKind::Video => TrackKind::Video,
            _ => TrackKind::Audio,
        };
        let audio_level_id =
            extension_id(&receiver.get_parameters().rtp_parameters, AUDIO_LEVEL_URI);
        let rid = receiver.track().rid(packet.header.ssrc).cloned();
        let id = format!("TR_{}", ice_token(12));
        let mut track = PublishedTrack {
            id: id.clone(),
            room: room.clone(),
            publisher: publisher.clone(),
            remote_track_id: remote.to_owned(),
            receiver_id,
            kind,
            codec,
            muted: false,
            legs: HashMap::new(),
            layers: Vec::new(),
            audio_level_id,
            audio_level: None,
            order: self.router.next_order,
        };
        self.router.next_order += 1;
        add_layer(now, &mut track, rid, packet.header.ssrc)?;
        let info = track.info();
        self.router.insert(track);
        info!(participant = %publisher, track = %id, mime = %info.mime_type, "track published");
        self.events.push_back(SfuEvent::TrackPublished {
            room: room.clone(),
            participant: publisher.clone(),
            track: info,
        });
        let subscribers: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(pid, q)| *pid != publisher && q.room == room && q.rights.subscribe)
            .map(|(pid, _)| pid.clone())
            .collect();
        for sub in subscribers {
            self.add_leg(now, &id, &sub);
        }
        Some(id)
    }

    /// Give a subscriber its copy of a published track (renegotiation follows).
    fn add_leg(&mut self, now: Instant, track_id: &str, sub: &ParticipantId) {
        let Some(track) = self.router.tracks.get_mut(track_id) else {
            return;
        };
        let Some(p) = self.participants.get_mut(sub) else {
            return;
        };
        if p.slots.is_some() {
            self.fill_slots(now, sub);
            return;
        }
        if p.subscriber.is_none() {
            let ufrag = ice_token(16);
            match Connection::new(
                now,
                &self.config,
                PcRole::Subscriber,
                ufrag.clone(),
                self.local_addr,
            ) {
                Ok(conn) => {
                    p.subscriber = Some(conn);
                    self.demux
                        .insert_ufrag(ufrag, (sub.clone(), PcRole::Subscriber));
                }
                Err(e) => {
                    warn!(participant = %sub, "cannot create subscriber connection: {e}");
                    return;
                }
            }
        }
        let Some(conn) = p.subscriber.as_mut() else {
            return;
        };
        let ssrc: u32 = rand::random();
        let local = huddle_wire::local_track::single_ssrc_track(
            track.publisher.0.clone(),
            track.id.clone(),
            track.kind,
            track.codec.clone(),
            ssrc,
        );
        match conn.pc.add_track(local) {
            Ok(sender_id) => {
                let mut leg = match track.kind {
                    TrackKind::Video => Leg::switchable(sender_id, ssrc),
                    TrackKind::Audio => Leg::new(sender_id, ssrc),
                };
                if track.layers.len() > 1 {
                    // Start at a keyframe of the layer the next choice picks.
                    leg.choice = LayerChoice::default();
                    self.next_layer_choice = Some(now);
                }
                track.legs.insert(sub.clone(), leg);
                p.needs_offer = true;
            }
            Err(e) => warn!(participant = %sub, track = %track_id, "add_track failed: {e}"),
        }
    }

    /// A published track went away: take it from every subscriber.
    fn unpublish(&mut self, now: Instant, track_id: &str) {
        let Some(track) = self.router.remove(track_id) else {
            return;
        };
        let mut viewers = Vec::new();
        for (sub, leg) in track.legs {
            if let Some(p) = self.participants.get_mut(&sub) {
                if let Some(slots) = p.slots.as_mut() {
                    viewer::free_slot(slots, track_id, &leg);
                    viewers.push(sub);
                } else if let Some(conn) = p.subscriber.as_mut() {
                    if let Err(e) = conn.pc.remove_track(leg.sender_id) {
                        debug!(participant = %sub, "remove_track: {e}");
                    }
                    p.needs_offer = true;
                }
            }
        }
        for sub in viewers {
            self.fill_slots(now, &sub);
        }
        if track.kind == TrackKind::Audio {
            self.speakers.forget(&track.room, &track.publisher);
        }
        info!(participant = %track.publisher, track = %track_id, "track unpublished");
        self.events.push_back(SfuEvent::TrackUnpublished {
            room: track.room,
            participant: track.publisher,
            track_id: track_id.to_owned(),
        });
    }

    /// `sub` needs a keyframe of every video it gets (new legs, or new
    /// keys): of the layer it gets of each.
    fn keyframes_for(&mut self, now: Instant, sub: &ParticipantId) {
        let wanted: Vec<(String, usize)> = self
            .router
            .tracks
            .values()
            .filter(|t| t.kind == TrackKind::Video)
            .filter_map(|t| {
                let layer = t.legs.get(sub)?.choice.layer()?;
                Some((t.id.clone(), layer))
            })
            .collect();
        for (track, layer) in wanted {
            self.request_keyframe(now, &track, layer);
        }
    }

    /// `sub` needs a keyframe of a track it gets: of the layer it gets.
    fn subscriber_needs_keyframe(&mut self, now: Instant, track_id: &str, sub: &ParticipantId) {
        let layer = self
            .router
            .tracks
            .get(track_id)
            .and_then(|t| t.legs.get(sub))
            .and_then(|leg| leg.choice.layer());
        if let Some(layer) = layer {
            self.request_keyframe(now, track_id, layer);
        }
    }

    fn request_keyframe(&mut self, now: Instant, track_id: &str, layer: usize) {
        let interval = self.config.keyframe_request_interval;
        let Some(t) = self.router.tracks.get_mut(track_id) else {
            return;
        };
        let video = t.kind == TrackKind::Video;
        if let Some(l) = t.layers.get_mut(layer) {
            if video && l.keyframe.request(now, interval) {
                self.send_keyframe_request(now, track_id, layer);
            }
        }
    }

    fn send_keyframe_request(&mut self, now: Instant, track_id: &str, layer: usize) {
        let Some(t) = self.router.tracks.get(track_id) else {
            return;
        };
        let Some(media_ssrc) = t.layers.get(layer).map(|l| l.ssrc) else {
            return;
        };
        let Some(conn) = self
            .participants
            .get_mut(&t.publisher)
            .and_then(|p| p.publisher.as_mut())
        else {
            return;
        };
        if let Some(mut receiver) = conn.pc.rtp_receiver(t.receiver_id) {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            match receiver.write_rtcp(now, vec![Box::new(pli)]) {
                Ok(()) => {
                    debug!(track = %track_id, layer, "keyframe requested");
                    self.dirty.push((t.publisher.clone(), PcRole::Publisher));
                }
                Err(e) => debug!(track = %track_id, "PLI failed: {e}"),
            }
        }
    }

    /// Send every connected subscriber the sender reports of the legs it
    /// gets, as compound RTCP packets of at most [`SRS_PER_PACKET`] reports.
    fn send_sender_reports(&mut self, now: Instant) {
        self.next_sender_reports = Some(now + sender_report::INTERVAL);
        let Some(wall) = self.wall_clock else {
            return;
        };
        let mut reports: HashMap<&ParticipantId, Vec<Box<dyn rtc::rtcp::Packet>>> = HashMap::new();
        for t in self.router.tracks.values() {
            for (sub, leg) in &t.legs {
                if let Some(sr) =
                    sender_report::report(leg.ssrc, &leg.sent, t.codec.clock_rate, now, &wall)
                {
                    reports.entry(sub).or_default().push(Box::new(sr));
                }
            }
        }
        for (sub, reports) in reports {
            let Some(wire) = self
                .participants
                .get_mut(sub)
                .and_then(|p| p.subscriber.as_mut())
                .filter(|c| c.liveness == Liveness::Up)
                .and_then(|c| c.wire.as_mut())
            else {
                continue;
            };
            for chunk in reports.chunks(SRS_PER_PACKET) {
                let sent = rtc::rtcp::packet::marshal(chunk)
                    .map_err(|e| e.to_string())
                    .and_then(|plain| wire.protect_rtcp(&plain).map_err(|e| e.to_string()));
                match sent {
                    Ok((dst, payload)) => self.transmits.push_back(Transmit { dst, payload }),
                    Err(e) => debug!(participant = %sub, "sender report: {e}"),
                }
            }
        }
    }

    /// Send a subscriber offer to everyone whose tracks changed and who has no
    /// offer outstanding.
    fn send_offers(&mut self, now: Instant) {
        let local_addr = self.local_addr;
        for (id, p) in self.participants.iter_mut() {
            if !p.needs_offer || p.offer_pending {
                continue;
            }
            let Some(conn) = p.subscriber.as_mut() else {
                continue;
            };
            match make_offer(now, conn, local_addr) {
                Ok(sdp) => {
                    p.needs_offer = false;
                    p.offer_pending = true;
                    self.events.push_back(SfuEvent::SubscriberOffer {
                        participant: id.clone(),
                        sdp,
                    });
                    self.dirty.push((id.clone(), PcRole::Subscriber));
                }
                Err(e) => warn!(participant = %id, "subscriber offer failed: {e}"),
            }
        }
    }

    /// Remove participants whose connections died or never came up, without
    /// flushing; true when any was removed.
    fn reap(&mut self, now: Instant) -> bool {
        let mut gone = Vec::new();
        for (id, p) in &self.participants {
            for conn in [p.publisher.as_ref(), p.subscriber.as_ref()]
                .into_iter()
                .flatten()
            {
                let reason = match conn.liveness {
                    Liveness::Dead => Some("connection failed or closed"),
                    Liveness::Connecting { since }
                        if now.saturating_duration_since(since) >= self.config.connect_timeout =>
                    {
                        Some("connection never came up")
                    }
                    Liveness::Down { since }
                        if now.saturating_duration_since(since)
                            >= self.config.disconnect_timeout =>
                    {
                        Some("connection stopped answering")
                    }
                    _ => None,
                };
                if let Some(r) = reason {
                    gone.push((id.clone(), p.room.clone(), r));
                    break;
                }
            }
        }
        let any = !gone.is_empty();
        for (id, room, reason) in gone {
            warn!(participant = %id, reason, "participant gone");
            if self.drop_participant(now, &id).is_ok() {
                self.events.push_back(SfuEvent::ParticipantGone {
                    room,
                    participant: id,
                    reason: reason.to_owned(),
                });
            }
        }
        any
    }
}

/// Where [`send_on_leg`] writes: through the subscribers' connections into
/// the transmit queue.
struct Out<'a> {
    participants: &'a mut FxHashMap<ParticipantId, Participant>,
    transmits: &'a mut VecDeque<Transmit>,
    buf: &'a mut OutBuf,
}

/// Send one packet of a track on one subscriber leg: SSRC and payload type
/// rewritten to the leg's, SRTP-protected by the leg's connection straight
/// into a datagram. False when the leg cannot send yet (not connected,
/// codec not negotiated) or protection failed.
fn send_on_leg(
    now: Instant,
    out: Out<'_>,
    codec: &RTCRtpCodec,
    sub: &ParticipantId,
    leg: &mut Leg,
    packet: &rtc::rtp::Packet,
) -> bool {
    let Some(conn) = out
        .participants
        .get_mut(sub)
        .and_then(|p| p.subscriber.as_mut())
    else {
        return false;
    };
    if conn.liveness != Liveness::Up {
        return false; // no SRTP keys yet, or the subscriber is gone
    }
    let pt = match leg.payload_type {
        Some(pt) => pt,
        None => {
            let Some(mut sender) = conn.pc.rtp_sender(leg.sender_id) else {
                return false;
            };
            let found = sender
                .get_parameters()
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type))
                .map(|c| c.payload_type);
            match found {
                Some(pt) => {
                    leg.payload_type = Some(pt);
                    pt
                }
                None => return false, // not negotiated yet
            }
        }
    };
    let Some(wire) = conn.wire.as_mut() else {
        return false;
    };
    let mut header = packet.header.clone();
    header.ssrc = leg.ssrc;
    header.payload_type = pt;
    leg.rewrite(now, codec.clock_rate, &mut header);
    match wire.protect_rtp(&header, &packet.payload, out.buf.room()) {
        Ok(dst) => {
            let payload = out.buf.take();
            out.transmits.push_back(Transmit { dst, payload });
            leg.sent
                .on_sent(now, header.timestamp, packet.payload.len());
            true
        }
        Err(e) => {
            debug!(subscriber = %sub, "send on leg failed: {e}");
            false
        }
    }
}

/// A datagram as the `rtc` core takes it.
fn tagged(
    now: Instant,
    local_addr: SocketAddr,
    src: SocketAddr,
    message: BytesMut,
) -> TaggedBytesMut {
    TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr,
            peer_addr: src,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message,
    }
}

/// Sender reports per RTCP datagram: 28 bytes each, so one datagram stays
/// well under an MTU.
const SRS_PER_PACKET: usize = 32;

/// Most encodings a track may have: three simulcast layers are what
/// browsers send; the rest is room for odd publishers, not for floods.
const MAX_LAYERS: usize = 4;

/// Add an encoding to `track` (its first, or a simulcast layer seen for the
/// first time) and return its index; a track without RIDs whose SSRC
/// changed (the publisher restarted its stream) keeps its one layer with
/// the new SSRC. `None` when the track has [`MAX_LAYERS`] already.
fn add_layer(
    now: Instant,
    track: &mut PublishedTrack,
    rid: Option<String>,
    ssrc: u32,
) -> Option<usize> {
    if rid.is_none() {
        if let Some(i) = track.layers.iter().position(|l| l.rid.is_none()) {
            track.layers[i].ssrc = ssrc;
            track.layers[i].padding = PaddingFilter::default(); // a new sequence
            return Some(i);
        }
    }
    if track.layers.len() >= MAX_LAYERS {
        return None;
    }
    let slots = match track.kind {
        TrackKind::Video => crate::rtx::VIDEO_SLOTS,
        TrackKind::Audio => 0, // no NACK for Opus: in-band FEC instead
    };
    let fallback = u8::try_from(track.layers.len()).map_or(TOP_RANK, |n| n.min(TOP_RANK));
    let rank = rid.as_deref().map_or(TOP_RANK, |r| rank_of(r, fallback));
    if rid.is_some() {
        info!(track = %track.id, rid = ?rid, ssrc, rank, "simulcast layer");
    }
    track.layers.push(Layer::new(rid, ssrc, rank, slots, now));
    Some(track.layers.len() - 1)
}

/// Move a connection's outputs out: datagrams to `transmits` (see
/// [`push_writes`]), the rest returned.
fn drain(
    now: Instant,
    conn: &mut Connection,
    key: &ConnKey,
    demux: &mut Demux<ConnKey>,
    transmits: &mut VecDeque<Transmit>,
) -> Drained {
    let mut out = Drained::default();
    if let Some(wire) = conn.wire.as_mut() {
        drain_wire(wire, key, demux, transmits, &mut out.wire);
        // rtc only negotiates this connection: it has nothing to send or
        // say that matters (its transport is never started).
        while conn.pc.poll_write().is_some() {}
        while conn.pc.poll_event().is_some() {}
        while conn.pc.poll_read().is_some() {}
        conn.timer = wire.poll_timeout();
        return out;
    }
    push_writes(conn, key, demux, transmits);
    while let Some(ev) = conn.pc.poll_event() {
        out.events.push(ev);
    }
    let mut read = false;
    while let Some(TaggedRTCMessage { message, .. }) = conn.pc.poll_read() {
        read = true;
        if let RTCMessage::RtpPacket(track, packet) = message {
            out.rtp.push((track.to_string(), packet));
        }
    }
    if read {
        // SRTP or SRTCP that rtc decrypted: the client is alive.
        conn.took(now, None, Took::Life);
    }
    // Reading may have queued writes (e.g. RTCP replies).
    push_writes(conn, key, demux, transmits);
    if matches!(conn.liveness, Liveness::Connecting { .. }) {
        // rtc 0.21 queues the DTLS client's first flight when ICE selects a
        // pair (while the connection is drained) but hands it out only from
        // handle_timeout, and its poll_timeout does not ask for that: the
        // ClientHello waited for the next ICE timer, ~200 ms of every join.
        // The timers only fire what is due, so running them now is safe;
        // only while connecting, so the media path never pays for it.
        if let Err(e) = conn.pc.handle_timeout(now) {
            debug!(participant = %key.0, "timeout: {e}");
        }
        push_writes(conn, key, demux, transmits);
    }
    conn.timer = conn.pc.poll_timeout();
    out
}

/// Move what a subscriber connection's own transport has out: datagrams to
/// `transmits` (a STUN success response binds its destination, as in
/// [`push_writes`]), events to `events`.
fn drain_wire(
    wire: &mut Wire,
    key: &ConnKey,
    demux: &mut Demux<ConnKey>,
    transmits: &mut VecDeque<Transmit>,
    events: &mut Vec<WireEvent>,
) {
    while let Some((dst, payload)) = wire.poll_transmit() {
        if is_stun_success_response(&payload) {
            demux.bind(dst, key);
        }
        transmits.push_back(Transmit { dst, payload });
    }
    while let Some(ev) = wire.poll_event() {
        events.push(ev);
    }
}

/// Start a subscriber connection's own transport once both descriptions
/// are applied to `conn` (`remote_sdp` is the one just applied).
fn start_wire(now: Instant, conn: &mut Connection, remote_sdp: &str) -> Result<(), SfuError> {
    let Some(wire) = conn.wire.as_mut() else {
        return Ok(());
    };
    let local = conn
        .pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::Rtc("no local description".into()))?;
    wire.start(now, &local, remote_sdp)
        .map_err(|e| SfuError::BadSdp(e.to_string()))
}

/// Move the datagrams a connection has to send into `transmits`.
///
/// A STUN success response is the connection's ICE agent vouching for its
/// destination (the request passed MESSAGE-INTEGRITY): that address is bound
/// to the connection in the demux here, never on mere receipt of a STUN
/// message naming the ufrag (see [`Demux::route`]).
fn push_writes(
    conn: &mut Connection,
    key: &ConnKey,
    demux: &mut Demux<ConnKey>,
    transmits: &mut VecDeque<Transmit>,
) {
    while let Some(msg) = conn.pc.poll_write() {
        if is_stun_success_response(&msg.message) {
            demux.bind(msg.transport.peer_addr, key);
        }
        transmits.push_back(Transmit {
            dst: msg.transport.peer_addr,
            payload: msg.message,
        });
    }
}

/// The remote tracks of `p`'s publisher connection that the offer just
/// applied stopped sending (its m-line now `recvonly` or `inactive`). rtc
/// 0.21 reports no end of a remote track (it never emits
/// `RTCTrackEvent::OnClose`), so the SFU looks itself after each offer.
fn ended_tracks(p: &mut Participant) -> Vec<String> {
    let Some(conn) = p.publisher.as_mut() else {
        return Vec::new();
    };
    p.incoming
        .iter()
        .filter(|(_, receiver)| {
            conn.pc
                .rtp_transceiver(RTCRtpTransceiverId::from(**receiver))
                .is_none_or(|t| !t.direction().has_recv())
        })
        .map(|(track, _)| track.clone())
        .collect()
}

fn answer_offer(
    now: Instant,
    conn: &mut Connection,
    offer: RTCSessionDescription,
    local_addr: SocketAddr,
) -> Result<String, SfuError> {
    conn.pc
        .set_remote_description(now, offer)
        .map_err(bad_sdp)?;
    make_answer(now, conn, local_addr)
}

/// Answer the offer already applied to `conn`, with the SFU's candidate in it.
fn make_answer(
    now: Instant,
    conn: &mut Connection,
    local_addr: SocketAddr,
) -> Result<String, SfuError> {
    conn.add_host_candidate(local_addr)?;
    let answer = conn.pc.create_answer(None).map_err(rtc_err)?;
    conn.pc
        .set_local_description(now, answer)
        .map_err(rtc_err)?;
    conn.pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::Rtc("no local description".into()))
}

fn make_offer(
    now: Instant,
    conn: &mut Connection,
    local_addr: SocketAddr,
) -> Result<String, SfuError> {
    let offer = conn.pc.create_offer(None).map_err(rtc_err)?;
    conn.pc.set_local_description(now, offer).map_err(rtc_err)?;
    conn.add_host_candidate(local_addr)?;
    conn.pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::Rtc("no local description".into()))
}
