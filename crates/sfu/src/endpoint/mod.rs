//! The sans-IO SFU core: every participant's connections, the demux of the
//! shared port and the routing of media between them.
//!
//! Inputs: datagrams ([`Endpoint::handle_datagram`]), time
//! ([`Endpoint::handle_timeout`]) and signaling commands. Outputs: datagrams to
//! send ([`Endpoint::poll_transmit`]), events for signaling
//! ([`Endpoint::poll_event`]) and the next deadline ([`Endpoint::poll_timeout`]).
//! The endpoint never reads the clock: `now` always comes in.

use crate::config::SfuConfig;
use crate::connection::{ConsentChange, Liveness, Screened};
use crate::demux::Demux;
use crate::events::{SfuEvent, SfuStats, TrackAudioLevel};
use crate::forward::red_boost::MIN_DISTANCE;
use crate::forward::sender_report::{self, WallClock};
use crate::forward::track::TrackTable;
use crate::ids::ParticipantId;
use crate::log_limit::LogLimit;
use crate::out_buf::OutBuf;
use crate::participant::Participant;
use crate::speaker::SpeakerDetector;
use crate::transport::{Took, WireEvent};
use bytes::BytesMut;
use huddle_proto::{PcRole, TrackKind};
use huddle_wire::feedback::LossReport;
use huddle_wire::red_distance::{RedDistance, RedDistancePolicy};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info, trace, warn};

mod allocation;
mod deadlines;
mod drain;
mod ice_restart;
mod keyframes;
mod lifecycle;
mod media;
mod negotiation;
mod reports;
mod sdp;
mod tracks;
mod viewer;

use self::deadlines::{conn_deadline, Deadlines};
use self::drain::{drain, drain_wire, tagged};
pub use crate::ids::ConnKey;
pub use crate::transmit::Transmit;

/// The SFU core. See the module docs.
pub struct Endpoint {
    config: SfuConfig,
    local_addr: SocketAddr,
    /// By id. Looked up once per forwarded copy: a fast hash (the ids are
    /// the server's own random tokens, not chosen by clients).
    participants: FxHashMap<ParticipantId, Participant>,
    demux: Demux<ConnKey>,
    table: TrackTable,
    speakers: SpeakerDetector,
    transmits: VecDeque<Transmit>,
    /// Forwarded datagrams are written here ([`OutBuf`]).
    out_buf: OutBuf,
    /// Subscribers whose pacer started queueing since the last look (their
    /// deadlines are recomputed).
    paced: Vec<ParticipantId>,
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
    padding_sent: u64,
    keyframe_requests: u64,
    /// Lost packets of RED tracks rebuilt from later packets' redundancy
    /// and sent to legs without RED.
    red_recovered: u64,
    /// Malformed RED packets dropped.
    red_malformed: u64,
    /// RED packets sent with copies the SFU added.
    red_boosted: u64,
    dropped: u64,
    /// One "datagram refused" line per connection per second.
    log_limit: LogLimit<ConnKey>,
    /// Each connection's next deadline, for [`Endpoint::poll_timeout`].
    deadlines: Deadlines,
    /// Rewrites what publishers send (tests playing a compromised SFU).
    #[cfg(feature = "fault-injection")]
    tamper: Option<crate::fault::Tamper>,
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
            table: TrackTable::default(),
            speakers: SpeakerDetector::default(),
            transmits: VecDeque::new(),
            out_buf: OutBuf::default(),
            paced: Vec::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            next_layer_choice: None,
            wall_clock: None,
            next_sender_reports: None,
            next_slot_check: None,
            rtp_in: 0,
            rtp_out: 0,
            rtx_sent: 0,
            padding_sent: 0,
            keyframe_requests: 0,
            red_recovered: 0,
            red_malformed: 0,
            red_boosted: 0,
            dropped: 0,
            log_limit: LogLimit::new(Duration::from_secs(1)),
            deadlines: Deadlines::default(),
            #[cfg(feature = "fault-injection")]
            tamper: None,
        }
    }

    /// Rewrite the payload of every packet publishers send with `tamper`
    /// from now on (`None`: stop). See [`crate::fault`].
    #[cfg(feature = "fault-injection")]
    pub fn set_tamper(&mut self, tamper: Option<crate::fault::Tamper>) {
        self.tamper = tamper;
    }

    /// Tell the endpoint what wall-clock time `now` is (`since_unix_epoch`
    /// after 1970-01-01 UTC), for the NTP times of the sender reports it
    /// sends subscribers. Without it, it sends none.
    pub fn set_wall_clock(&mut self, now: Instant, since_unix_epoch: Duration) {
        self.wall_clock = Some(WallClock::new(now, since_unix_epoch));
    }

    /// Whether datagrams from `addr` reach a connection: an authenticated
    /// check from there was answered. An ICE-TCP connection that never
    /// gets there is closed (see the ICE-TCP module).
    pub fn knows_path(&self, addr: &SocketAddr) -> bool {
        self.demux.is_bound(addr)
    }

    /// Where clients reach the SFU, as its candidates say.
    fn host(&self) -> sdp::Host {
        sdp::Host {
            addr: self.local_addr,
            tcp: self.config.ice_tcp,
        }
    }

    /// Feed a datagram received on the media socket (or an ICE-TCP
    /// connection: see the `tcp` module) from `src`.
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
        let mut reallocate = false;
        let (result, wire_events) = match conn.wire.as_mut() {
            Some(wire) => {
                let result = wire.handle_datagram(now, src, datagram);
                reallocate = wire.congestion_mut().is_some_and(|cc| cc.take_reallocate());
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
                let result = match conn.screen(src, datagram) {
                    Ok(Screened::Pass(took)) => {
                        let message = tagged(now, local_addr, src, BytesMut::from(datagram));
                        conn.pc
                            .handle_read(message)
                            .map(|()| took)
                            .map_err(|e| e.to_string())
                    }
                    Ok(Screened::Taken(took)) => Ok(took),
                    Ok(Screened::Held) => Ok(Took::Nothing),
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
        // The connection's deadline moved: a drained one is marked so
        // when drained.
        match wire_events {
            Some(events) => {
                for ev in events {
                    self.on_wire_event(now, &key.0, ev);
                }
                if reallocate {
                    self.allocate_for(now, &key.0);
                }
                self.deadlines.touch(key);
            }
            None => self.dirty.push(key),
        }
        self.flush(now);
    }

    /// Time passed: run every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut padding = Vec::new();
        for (id, p) in self.participants.iter_mut() {
            for (role, conn) in [
                (PcRole::Publisher, p.publisher.as_mut()),
                (PcRole::Subscriber, p.subscriber.as_mut()),
            ] {
                if let Some(conn) = conn {
                    self.deadlines.touch((id.clone(), role));
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
                            Some(wire) => {
                                wire.handle_timeout(now);
                                let due = wire.congestion_mut().map_or(0, |cc| cc.padding_due(now));
                                if due > 0 {
                                    padding.push((id.clone(), due));
                                }
                            }
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
        for (sub, bytes) in padding {
            self.send_padding(now, &sub, bytes);
        }
        let interval = self.config.keyframe_request_interval;
        let mut due = Vec::new();
        for t in self.table.tracks.values_mut() {
            for (i, l) in t.layers.iter_mut().enumerate() {
                if l.keyframe.poll(now, interval) {
                    due.push((t.id.clone(), i));
                }
            }
        }
        for (t, layer) in due {
            self.keyframe_request_due(now, &t, layer);
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
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        for key in self.deadlines.take_touched() {
            let deadline = self
                .participants
                .get(&key.0)
                .and_then(|p| p.conn(key.1))
                .and_then(|c| conn_deadline(c, &self.config));
            self.deadlines.set(key, deadline);
        }
        let mut next = self.deadlines.earliest();
        debug_assert_eq!(
            next,
            self.participants
                .values()
                .flat_map(|p| [p.publisher.as_ref(), p.subscriber.as_ref()])
                .flatten()
                .filter_map(|c| conn_deadline(c, &self.config))
                .min(),
            "a connection's deadline changed without it being touched"
        );
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        let interval = self.config.keyframe_request_interval;
        let mut video = false;
        for t in self.table.tracks.values() {
            // Video to allocate, or simulcast layers dynacast may stop.
            video |= t.kind == TrackKind::Video && (!t.legs.is_empty() || t.layers.len() > 1);
            for l in &t.layers {
                consider(l.keyframe.deadline(interval));
            }
        }
        if video {
            consider(self.next_layer_choice);
        }
        consider(self.next_sender_reports);
        consider(self.next_slot_check);
        consider(self.speakers.poll_timeout());
        next
    }

    /// Next datagram to send.
    #[must_use = "a datagram polled and dropped is never sent"]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for signaling.
    #[must_use = "an event polled and dropped is lost"]
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// The last reported audio level of every audio track that has one.
    pub fn audio_levels(&self) -> Vec<TrackAudioLevel> {
        self.table
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
            tracks: self.table.tracks.len(),
            addresses: self.demux.addresses(),
            ufrags: self.demux.ufrags(),
            rtp_in: self.rtp_in,
            rtp_out: self.rtp_out,
            rtx_sent: self.rtx_sent,
            padding_sent: self.padding_sent,
            keyframe_requests: self.keyframe_requests,
            red_recovered: self.red_recovered,
            red_malformed: self.red_malformed,
            red_boosted: self.red_boosted,
            dropped_datagrams: self.dropped,
        }
    }

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
                self.deadlines.touch(key);
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
            self.deadlines.touch(key);
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
            WireEvent::LossReports(reports) => {
                for report in reports {
                    self.on_loss_report(now, sub, report);
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

    /// `sub` reported what it lost of what it receives as `report.ssrc`:
    /// on an audio leg that took RED, the distance its loss calls for,
    /// which the SFU makes up with copies when the publisher sends less
    /// (`forward::red_boost`), while the subscriber's link has room for
    /// them. The loss is the report's or, when more, the share of the
    /// packets sent since that the subscriber NACKed (`forward::nack_loss`:
    /// the report counts packets its resends repaired as received).
    fn on_loss_report(&mut self, now: Instant, sub: &ParticipantId, report: LossReport) {
        let Some(track_id) = self.track_sent_as(sub, report.ssrc) else {
            return;
        };
        let Some(track) = self.table.tracks.get_mut(&track_id) else {
            return;
        };
        if track.red.is_none() {
            return;
        }
        let Some(leg) = track.legs.get_mut(sub) else {
            return;
        };
        if leg.payload_types.is_none_or(|p| p.red.is_none()) {
            return; // plain Opus: the SFU strips RED for it
        }
        let reported = report.fraction_lost;
        let nacked = leg.nack_loss.take();
        let fraction_lost = reported.max(nacked.unwrap_or(0));
        let report = LossReport {
            fraction_lost,
            ..report
        };
        let wanted = leg
            .red_distance
            .get_or_insert_with(|| RedDistance::new(RedDistancePolicy::default()))
            .on_loss_report(report);
        let before = leg.red_boost;
        trace!(subscriber = %sub, track = %track_id, reported, ?nacked, wanted, "loss report on a RED leg");
        let boost = if wanted >= MIN_DISTANCE && self.room_for_red_copies(now, sub, wanted) {
            wanted
        } else {
            0
        };
        if let Some(leg) = self
            .table
            .tracks
            .get_mut(&track_id)
            .and_then(|t| t.legs.get_mut(sub))
        {
            leg.red_boost = boost;
        }
        if boost != before {
            debug!(subscriber = %sub, track = %track_id, fraction_lost, wanted, distance = boost, "RED distance toward the subscriber");
        }
    }

    /// The published track `sub` receives with SSRC `ssrc` (its leg's).
    fn track_sent_as(&self, sub: &ParticipantId, ssrc: u32) -> Option<String> {
        self.table
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
                    if state == RTCPeerConnectionState::Connected {
                        // After an ICE restart: what arrived while `rtc`
                        // had no path, in order, now that it has one.
                        let held = conn.restarted();
                        if !held.is_empty() {
                            debug!(participant = %key.0, datagrams = held.len(), "ICE restart: held datagrams replayed");
                        }
                        for (src, datagram) in held {
                            let message = tagged(now, self.local_addr, src, datagram);
                            if let Err(e) = conn.pc.handle_read(message) {
                                debug!(participant = %key.0, "held datagram: {e}");
                            }
                        }
                        self.dirty.push(key.clone());
                    }
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
}
