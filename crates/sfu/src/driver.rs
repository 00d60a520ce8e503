//! The tokio driver: the only async code of the SFU. It owns the media socket
//! ([`MediaSocket`]: batched receive and send) and one timer, feeds datagrams,
//! time and commands to the [`Endpoint`] and sends what it produces.

use crate::api::{Command, Sfu, SfuEvent, SfuEvents};
use crate::config::SfuConfig;
use crate::endpoint::Endpoint;
use crate::error::SfuError;
use crate::udp::MediaSocket;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info};

/// Datagrams read per wake-up before the loop sends, checks timers and
/// commands.
const MAX_READS_PER_TURN: usize = 64;
/// How often the socket's counters are logged (debug level).
const STATS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Bind the media socket and start the SFU task.
pub async fn start(config: SfuConfig) -> Result<(Sfu, SfuEvents), SfuError> {
    let socket = MediaSocket::bind(config.bind)?;
    let local_addr = socket.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel::<Command>();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let endpoint = Endpoint::new(config, local_addr);
    info!(%local_addr, "SFU media socket bound");
    tokio::spawn(run(socket, endpoint, rx, ev_tx));
    Ok((Sfu { tx, local_addr }, ev_rx))
}

async fn run(
    mut socket: MediaSocket,
    mut endpoint: Endpoint,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
) {
    let mut next_stats_log = Instant::now() + STATS_LOG_INTERVAL;
    loop {
        // Send (in batches) and report everything the endpoint produced.
        while let Some(t) = endpoint.poll_transmit() {
            socket.queue(t);
        }
        socket.flush().await;
        while let Some(ev) = endpoint.poll_event() {
            let _ = events.send(ev);
        }
        let now = Instant::now();
        if now >= next_stats_log {
            next_stats_log = now + STATS_LOG_INTERVAL;
            debug!(stats = ?socket.stats(), "media socket");
        }
        let deadline = endpoint
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(3600));
        if deadline <= now {
            endpoint.handle_timeout(now);
            continue;
        }
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                if !apply(&mut endpoint, cmd) {
                    break;
                }
            }
            res = socket.readable() => {
                match res {
                    // One clock reading per turn: the batch arrived together.
                    Ok(()) => {
                        let now = Instant::now();
                        socket.recv_batch(MAX_READS_PER_TURN, |src, datagram| {
                            endpoint.handle_datagram(now, src, datagram);
                        });
                    }
                    Err(e) => debug!("media socket not readable: {e}"),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                endpoint.handle_timeout(Instant::now());
            }
        }
    }
    info!(stats = ?socket.stats(), "SFU stopped");
}

/// Apply one command; false means stop.
fn apply(endpoint: &mut Endpoint, cmd: Command) -> bool {
    let now = Instant::now();
    match cmd {
        Command::Add {
            room,
            participant,
            rights,
            reply,
        } => {
            let _ = reply.send(endpoint.add_participant(now, room, participant, rights));
        }
        Command::AddViewer {
            room,
            participant,
            sdp,
            reply,
        } => {
            let _ = reply.send(endpoint.add_viewer(now, room, participant, sdp));
        }
        Command::PublisherOffer {
            participant,
            sdp,
            reply,
        } => {
            let _ = reply.send(endpoint.publisher_offer(now, &participant, sdp));
        }
        Command::SubscriberAnswer {
            participant,
            sdp,
            reply,
        } => {
            let _ = reply.send(endpoint.subscriber_answer(now, &participant, sdp));
        }
        Command::Candidate {
            participant,
            pc,
            candidate,
            reply,
        } => {
            let _ = reply.send(endpoint.remote_candidate(now, &participant, pc, candidate));
        }
        Command::SetMuted {
            participant,
            track_id,
            muted,
            reply,
        } => {
            let _ = reply.send(endpoint.set_muted(&participant, &track_id, muted));
        }
        Command::Remove { participant, reply } => {
            let _ = reply.send(endpoint.remove_participant(now, &participant));
        }
        Command::Stats { reply } => {
            let _ = reply.send(endpoint.stats());
        }
        Command::AudioLevels { reply } => {
            let _ = reply.send(endpoint.audio_levels());
        }
        Command::Shutdown => return false,
    }
    true
}
