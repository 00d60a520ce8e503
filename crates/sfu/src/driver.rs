//! The tokio driver: the only async code of the SFU. It owns the UDP socket
//! and one timer, feeds datagrams, time and commands to the [`Endpoint`] and
//! sends what it produces.

use crate::api::{Command, Sfu, SfuEvent, SfuEvents};
use crate::config::SfuConfig;
use crate::endpoint::Endpoint;
use crate::error::SfuError;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info};

/// Datagrams read per wake-up before the loop checks timers and commands.
const MAX_READS_PER_TURN: usize = 64;

/// Bind the media socket and start the SFU task.
pub async fn start(config: SfuConfig) -> Result<(Sfu, SfuEvents), SfuError> {
    let socket = UdpSocket::bind(config.bind).await?;
    let local_addr = socket.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel::<Command>();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let endpoint = Endpoint::new(config, local_addr);
    info!(%local_addr, "SFU media socket bound");
    tokio::spawn(run(socket, endpoint, rx, ev_tx));
    Ok((Sfu { tx, local_addr }, ev_rx))
}

async fn run(
    socket: UdpSocket,
    mut endpoint: Endpoint,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        // Send and report everything the endpoint produced.
        while let Some(t) = endpoint.poll_transmit() {
            if let Err(e) = socket.send_to(&t.payload, t.dst).await {
                debug!(dst = %t.dst, "send failed: {e}");
            }
        }
        while let Some(ev) = endpoint.poll_event() {
            let _ = events.send(ev);
        }
        let now = Instant::now();
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
            res = socket.recv_from(&mut buf) => {
                match res {
                    Ok((n, src)) => {
                        endpoint.handle_datagram(Instant::now(), src, &buf[..n]);
                        // Drain what else is queued, up to a cap, without waiting.
                        for _ in 1..MAX_READS_PER_TURN {
                            match socket.try_recv_from(&mut buf) {
                                Ok((n, src)) => endpoint.handle_datagram(Instant::now(), src, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                    // ICMP port unreachable etc. surface here on some systems.
                    Err(e) => debug!("recv failed: {e}"),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                endpoint.handle_timeout(Instant::now());
            }
        }
    }
    info!("SFU stopped");
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
