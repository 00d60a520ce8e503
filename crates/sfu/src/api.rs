//! The handle the signaling service uses to drive the SFU, and the events the
//! SFU reports back.

use crate::error::SfuError;
use crate::ids::{ParticipantId, RoomId};
use crate::placement::Placement;
use huddle_proto::{IceCandidate, PcRole, TrackInfo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Events the SFU reports to the signaling service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SfuEvent {
    /// A (re)offer for the participant's subscriber connection; send it to the
    /// client, which answers with [`Sfu::subscriber_answer`].
    SubscriberOffer {
        /// Whose connection.
        participant: ParticipantId,
        /// Session description.
        sdp: String,
    },
    /// A server ICE candidate for one of the participant's connections.
    Candidate {
        /// Whose connection.
        participant: ParticipantId,
        /// Which connection.
        pc: PcRole,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// The participant's publisher connection started receiving a track.
    TrackPublished {
        /// Room.
        room: RoomId,
        /// Publisher.
        participant: ParticipantId,
        /// Track as others will see it.
        track: TrackInfo,
    },
    /// A published track went away.
    TrackUnpublished {
        /// Room.
        room: RoomId,
        /// Publisher.
        participant: ParticipantId,
        /// Track id.
        track_id: String,
    },
    /// The room's active speaker changed (see [`crate::speaker`]): `None`
    /// when the last one left and nobody has spoken since.
    ActiveSpeaker {
        /// Room.
        room: RoomId,
        /// The participant now speaking.
        participant: Option<ParticipantId>,
    },
    /// The participant's connections failed or stopped answering (ICE consent,
    /// DTLS close), or never came up; the SFU has already dropped it.
    ParticipantGone {
        /// Room.
        room: RoomId,
        /// Who.
        participant: ParticipantId,
        /// Why, for logs.
        reason: String,
    },
}

/// The receiving end of [`SfuEvent`]s.
pub type SfuEvents = mpsc::UnboundedReceiver<SfuEvent>;

/// Counts of what the SFU holds, for tests, metrics and the REST API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Participants known to the SFU.
    pub participants: usize,
    /// Peer connections alive (two per participant at most).
    pub connections: usize,
    /// Published tracks being forwarded.
    pub tracks: usize,
    /// Entries in the source-address demux table.
    pub addresses: usize,
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets sent to subscribers.
    pub rtp_out: u64,
    /// Packets resent to subscribers that reported them lost (NACK).
    pub rtx_sent: u64,
    /// Datagrams that matched no connection or did not parse.
    pub dropped_datagrams: u64,
}

impl SfuStats {
    /// Add `other`'s counts to these (one worker's to the total).
    fn add(&mut self, other: &SfuStats) {
        self.participants += other.participants;
        self.connections += other.connections;
        self.tracks += other.tracks;
        self.addresses += other.addresses;
        self.rtp_in += other.rtp_in;
        self.rtp_out += other.rtp_out;
        self.rtx_sent += other.rtx_sent;
        self.dropped_datagrams += other.dropped_datagrams;
    }
}

/// The audio level a publisher reports for one of its tracks (RFC 6464).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackAudioLevel {
    /// Publisher.
    pub participant: ParticipantId,
    /// Track id.
    pub track_id: String,
    /// Loudness of the last packet in -dBov: 0 loudest, 127 silence.
    pub level: u8,
    /// The publisher's voice activity flag.
    pub voice: bool,
}

/// Rights a participant has in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    /// May send media.
    pub publish: bool,
    /// May receive media.
    pub subscribe: bool,
}

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
/// [`crate::driver`]), each owning whole rooms.
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
    /// [`SfuEvent::SubscriberOffer`] when it may subscribe.
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
    /// current one goes away). No [`SfuEvent::SubscriberOffer`] follows.
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
