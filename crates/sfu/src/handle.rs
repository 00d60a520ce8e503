//! The handle the signaling service uses to drive the SFU's workers.

use crate::error::SfuError;
use crate::events::{SfuStats, TrackAudioLevel};
use crate::ids::{ParticipantId, RoomId};
use crate::placement::Placement;
use crate::rights::Rights;
use huddle_proto::{IceCandidate, PcRole};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

/// Commands from the handle to the driver task.
pub(crate) enum Command {
    Add {
        room: RoomId,
        participant: ParticipantId,
        rights: Rights,
        reply: Reply<()>,
    },
    AddViewer {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        reply: Reply<String>,
    },
    PublisherOffer {
        participant: ParticipantId,
        sdp: String,
        reply: Reply<String>,
    },
    SubscriberAnswer {
        participant: ParticipantId,
        sdp: String,
        reply: Reply<()>,
    },
    Candidate {
        participant: ParticipantId,
        pc: PcRole,
        candidate: IceCandidate,
        reply: Reply<()>,
    },
    SetMuted {
        participant: ParticipantId,
        track_id: String,
        muted: bool,
        reply: Reply<()>,
    },
    Remove {
        participant: ParticipantId,
        reply: Reply<()>,
    },
    Stats {
        reply: oneshot::Sender<SfuStats>,
    },
    AudioLevels {
        reply: oneshot::Sender<Vec<TrackAudioLevel>>,
    },
    /// Close every connection, send the goodbyes, stop; `done` hears when
    /// they are sent.
    Shutdown {
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
        f.write_str("Command")
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

    /// Ask every worker, in worker order.
    async fn ask_each<T>(
        &self,
        make: impl Fn(oneshot::Sender<T>) -> Command,
    ) -> Result<Vec<T>, SfuError> {
        let mut answers = Vec::with_capacity(self.workers.len());
        for w in self.workers.iter() {
            let (reply, rx) = oneshot::channel();
            w.tx.send(make(reply)).map_err(|_| SfuError::Stopped)?;
            answers.push(rx.await.map_err(|_| SfuError::Stopped)?);
        }
        Ok(answers)
    }

    async fn call_worker<T>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, rx) = oneshot::channel();
        let w = self.workers.get(worker).ok_or(SfuError::Stopped)?;
        w.tx.send(make(reply)).map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// A command about an existing participant, sent to its worker.
    async fn call<T>(
        &self,
        participant: ParticipantId,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, SfuError> {
        let worker = self.placement().worker_of(&participant)?;
        self.call_worker(worker, make).await
    }

    /// A command adding `participant` to `room`, sent to the room's worker;
    /// the placement is undone if the worker refuses.
    async fn join<T>(
        &self,
        room: RoomId,
        participant: ParticipantId,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, SfuError> {
        let worker = self.placement().join(&room, &participant)?;
        let result = self.call_worker(worker, make).await;
        if result.is_err() {
            self.placement().leave(&participant);
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
        self.join(room.clone(), participant.clone(), |reply| Command::Add {
            room,
            participant,
            rights,
            reply,
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
        self.join(room.clone(), participant.clone(), |reply| {
            Command::AddViewer {
                room,
                participant,
                sdp,
                reply,
            }
        })
        .await
    }

    /// Apply the client's publisher-connection offer; returns the answer SDP.
    pub async fn publisher_offer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        self.call(participant.clone(), |reply| Command::PublisherOffer {
            participant,
            sdp,
            reply,
        })
        .await
    }

    /// Apply the client's answer to the last subscriber offer.
    pub async fn subscriber_answer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<(), SfuError> {
        self.call(participant.clone(), |reply| Command::SubscriberAnswer {
            participant,
            sdp,
            reply,
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
        self.call(participant.clone(), |reply| Command::Candidate {
            participant,
            pc,
            candidate,
            reply,
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
        self.call(participant.clone(), |reply| Command::SetMuted {
            participant,
            track_id,
            muted,
            reply,
        })
        .await
    }

    /// Drop a participant: its connections close, its tracks leave every
    /// subscriber (who get new offers), and nothing of it is kept.
    pub async fn remove_participant(&self, participant: ParticipantId) -> Result<(), SfuError> {
        let worker = self.placement().worker_of(&participant)?;
        let who = participant.clone();
        let result = self
            .call_worker(worker, |reply| Command::Remove { participant, reply })
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
        self.ask_each(|reply| Command::Stats { reply }).await
    }

    /// The last audio level of every audio track whose publisher sends the
    /// audio-level header extension (the basis for speaker detection).
    pub async fn audio_levels(&self) -> Result<Vec<TrackAudioLevel>, SfuError> {
        let each = self
            .ask_each(|reply| Command::AudioLevels { reply })
            .await?;
        Ok(each.into_iter().flatten().collect())
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
