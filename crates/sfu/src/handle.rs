//! The handle the signaling service uses to drive the SFU's workers.
//!
//! Every operation is a closure run on the endpoint of the worker that owns
//! the participant (the placement says which), its answer sent back on a
//! oneshot channel. Adding an operation is an `Endpoint` method and a
//! one-line [`Sfu`] method that calls it through `on` (an existing
//! participant) or `join` (a new one).

use crate::endpoint::Endpoint;
use crate::error::SfuError;
use crate::events::{SfuStats, SubscriberBandwidth, TrackAudioLevel};
use crate::ice_credentials::IceCredentials;
use crate::ids::{ParticipantId, RoomId};
use crate::placement::Placement;
use crate::rights::Rights;
use crate::view::TrackView;
use huddle_proto::{IceCandidate, PcRole};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Work for a worker: run on its endpoint at the instant given, the
/// answer (if any) sent back by the closure itself.
pub(crate) type Job = Box<dyn FnOnce(&mut Endpoint, Instant) + Send>;

/// What the handle sends a worker.
pub(crate) enum Command {
    /// Run this on the endpoint (every SFU operation but stopping).
    Run(Job),
    /// Close every connection and stop; `done` answers once the goodbyes
    /// are sent.
    Shutdown {
        /// Told when the worker is done.
        done: Option<oneshot::Sender<()>>,
    },
}

/// One worker as the handle sees it: where its commands go and the media
/// address it listens on.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) local_addr: SocketAddr,
}

/// Cheap, cloneable handle to a running SFU: one or more workers (see
/// the `driver` module), each owning whole rooms.
#[derive(Clone, Debug)]
pub struct Sfu {
    pub(crate) workers: Arc<[WorkerHandle]>,
    pub(crate) placement: Arc<Mutex<Placement>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Run(_) => f.write_str("Command::Run"),
            Command::Shutdown { .. } => f.write_str("Command::Shutdown"),
        }
    }
}

impl Sfu {
    /// The UDP address media flows through (the first worker's, when there
    /// are several: see [`Sfu::local_addrs`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.workers[0].local_addr
    }

    /// Every worker's media address, in worker order. Each room's
    /// participants are told the address of the worker that owns the room.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|w| w.local_addr).collect()
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        crate::placement::lock(&self.placement)
    }

    /// Run `f` on worker `worker`'s endpoint and return its answer.
    async fn run_on<R: Send + 'static>(
        &self,
        worker: usize,
        f: impl FnOnce(&mut Endpoint, Instant) -> R + Send + 'static,
    ) -> Result<R, SfuError> {
        let w = self.workers.get(worker).ok_or(SfuError::Stopped)?;
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |endpoint, now| {
            let _ = reply.send(f(endpoint, now));
        });
        w.tx.send(Command::Run(job))
            .map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)
    }

    /// Run `f` on every worker's endpoint, in worker order.
    async fn run_on_each<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Endpoint, Instant) -> R + Clone + Send + 'static,
    ) -> Result<Vec<R>, SfuError> {
        let mut answers = Vec::with_capacity(self.workers.len());
        for worker in 0..self.workers.len() {
            answers.push(self.run_on(worker, f.clone()).await?);
        }
        Ok(answers)
    }

    /// Run an operation about an existing participant on the endpoint of
    /// the worker that owns it (`f` gets the participant's id back).
    async fn on<T: Send + 'static>(
        &self,
        participant: ParticipantId,
        f: impl FnOnce(&mut Endpoint, Instant, &ParticipantId) -> Result<T, SfuError> + Send + 'static,
    ) -> Result<T, SfuError> {
        let worker = self.placement().worker_of(&participant)?;
        self.run_on(worker, move |e, now| f(e, now, &participant))
            .await?
    }

    /// Place `participant` in `room` (on the room's worker) and run `f`,
    /// which adds it, there; the placement is undone if the worker refuses.
    async fn join<T: Send + 'static>(
        &self,
        room: RoomId,
        participant: ParticipantId,
        f: impl FnOnce(&mut Endpoint, Instant, RoomId, ParticipantId) -> Result<T, SfuError>
            + Send
            + 'static,
    ) -> Result<T, SfuError> {
        let worker = self.placement().join(&room, &participant)?;
        let who = participant.clone();
        let result = self
            .run_on(worker, move |e, now| f(e, now, room, participant))
            .await
            .and_then(|r| r);
        if result.is_err() {
            self.placement().leave(&who);
        }
        result
    }

    /// Register a participant of `room`. Its subscriber offer follows as an
    /// [`crate::events::SfuEvent::SubscriberOffer`] when it may subscribe.
    pub async fn add_participant(
        &self,
        room: RoomId,
        participant: ParticipantId,
        rights: Rights,
    ) -> Result<(), SfuError> {
        self.join(room, participant, move |e, now, room, id| {
            e.add_participant(now, room, id, rights)
        })
        .await
    }

    /// Register a receive-only participant of `room` from its SDP offer (a
    /// WHEP viewer) and return the answer. Its connection is never
    /// renegotiated: each audio or video m-line it offers to receive is fed
    /// by one track of the room at a time (the next one of that kind when the
    /// current one goes away). No [`crate::events::SfuEvent::SubscriberOffer`] follows.
    pub async fn add_viewer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        self.join(room, participant, move |e, now, room, id| {
            e.add_viewer(now, room, id, sdp)
        })
        .await
    }

    /// Apply the client's publisher-connection offer; returns the answer SDP.
    pub async fn publisher_offer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        self.on(participant, move |e, now, id| {
            e.publisher_offer(now, id, sdp)
        })
        .await
    }

    /// Apply the client's answer to the last subscriber offer.
    pub async fn subscriber_answer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<(), SfuError> {
        self.on(participant, move |e, now, id| {
            e.subscriber_answer(now, id, sdp)
        })
        .await
    }

    /// Restart ICE on the participant's subscriber connection: a new
    /// [`crate::events::SfuEvent::SubscriberOffer`] with new ICE
    /// credentials follows.
    pub async fn restart_subscriber_ice(&self, participant: ParticipantId) -> Result<(), SfuError> {
        self.on(participant, |e, now, id| e.restart_subscriber_ice(now, id))
            .await
    }

    /// Restart ICE on one of the participant's connections with the
    /// client's new credentials, sent without an offer (a WHIP or WHEP
    /// `PATCH`, RFC 9725 §4.3.2); returns the SFU's credentials. See
    /// [`crate::endpoint::Endpoint::restart_ice_with`].
    pub async fn restart_ice_with(
        &self,
        participant: ParticipantId,
        pc: PcRole,
        ufrag: String,
        pwd: String,
    ) -> Result<IceCredentials, SfuError> {
        self.on(participant, move |e, now, id| {
            e.restart_ice_with(now, id, pc, &ufrag, &pwd)
        })
        .await
    }

    /// Add a client's trickled ICE candidate.
    pub async fn remote_candidate(
        &self,
        participant: ParticipantId,
        pc: PcRole,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        self.on(participant, move |e, now, id| {
            e.remote_candidate(now, id, pc, candidate)
        })
        .await
    }

    /// Mute or unmute one of the participant's published tracks: a muted track
    /// is not forwarded.
    pub async fn set_muted(
        &self,
        participant: ParticipantId,
        track_id: String,
        muted: bool,
    ) -> Result<(), SfuError> {
        self.on(participant, move |e, _, id| {
            e.set_muted(id, &track_id, muted)
        })
        .await
    }

    /// How `participant` shows a video it receives: whether at all, and
    /// its tile's size (width, height in CSS pixels) if known. The
    /// participant gets the smallest layer that fills it, and nothing of a
    /// hidden video.
    pub async fn set_track_view(
        &self,
        participant: ParticipantId,
        track_id: String,
        view: TrackView,
    ) -> Result<(), SfuError> {
        self.on(participant, move |e, now, id| {
            e.set_view(now, id, &track_id, view)
        })
        .await
    }

    /// What the SFU knows of the path toward `participant` (its bandwidth
    /// estimate) and what it sends it (layers, paused videos).
    pub async fn subscriber_bandwidth(
        &self,
        participant: ParticipantId,
    ) -> Result<SubscriberBandwidth, SfuError> {
        self.on(participant, |e, _, id| {
            e.subscriber_bandwidth(id)
                .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))
        })
        .await
    }

    /// Drop a participant: its connections close, its tracks leave every
    /// subscriber (who get new offers), and nothing of it is kept.
    pub async fn remove_participant(&self, participant: ParticipantId) -> Result<(), SfuError> {
        let who = participant.clone();
        let result = self
            .on(participant, |e, now, id| e.remove_participant(now, id))
            .await;
        self.placement().leave(&who);
        result
    }

    /// What the SFU holds now, summed over its workers.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let mut total = SfuStats::default();
        for w in self.worker_stats().await? {
            total.add(&w);
        }
        Ok(total)
    }

    /// What each worker holds now, in worker order (the same order as
    /// [`Sfu::local_addrs`]): how the rooms spread over the cores.
    pub async fn worker_stats(&self) -> Result<Vec<SfuStats>, SfuError> {
        self.run_on_each(|e, _| e.stats()).await
    }

    /// The last audio level of every audio track whose publisher sends the
    /// audio-level header extension (the basis for speaker detection).
    pub async fn audio_levels(&self) -> Result<Vec<TrackAudioLevel>, SfuError> {
        let each = self.run_on_each(|e, _| e.audio_levels()).await?;
        Ok(each.into_iter().flatten().collect())
    }

    /// Rewrite what publishers send with `tamper` on every worker from now
    /// on (`None`: stop): tests that play a compromised SFU (see
    /// [`crate::fault`]).
    #[cfg(feature = "fault-injection")]
    pub async fn set_tamper(&self, tamper: Option<crate::fault::Tamper>) -> Result<(), SfuError> {
        self.run_on_each(move |e, _| e.set_tamper(tamper.clone()))
            .await
            .map(drop)
    }

    /// Stop every worker without waiting: each closes its connections
    /// (see [`Sfu::close`]) and stops. Prefer [`Sfu::close`], which waits
    /// until the goodbyes are sent.
    pub fn shutdown(&self) {
        for w in self.workers.iter() {
            let _ = w.tx.send(Command::Shutdown { done: None });
        }
    }

    /// Stop every worker and wait until each has told its clients: an
    /// RTCP BYE for the SFU's streams and DTLS close_notify on every
    /// subscriber connection, `rtc`'s close (close_notify) on every
    /// publisher connection, sent before the worker stops. A WHIP/WHEP
    /// client learns at once that the server went away, instead of after
    /// its consent timeout. Returns when every worker is done or already
    /// stopped.
    pub async fn close(&self) {
        let mut waits = Vec::with_capacity(self.workers.len());
        for w in self.workers.iter() {
            let (done, rx) = oneshot::channel();
            if w.tx.send(Command::Shutdown { done: Some(done) }).is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
    }
}
