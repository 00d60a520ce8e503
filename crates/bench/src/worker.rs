//! A worker thread: many participants, one `mio` poll loop, no async
//! runtime. It joins its participants at their scheduled times, reads
//! whatever socket is readable, fires timers and send schedules when due,
//! and sleeps until the earliest deadline otherwise.

use crate::participant::{Outcome, Participant, Socket};
use crate::recv_batch::RecvBatch;
use crate::stats::{Progress, Shared};
use mio::{Events, Poll};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest sleep, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Time given to the goodbyes at the end.
const LEAVE_GRACE: Duration = Duration::from_millis(200);

/// What a worker returns.
#[derive(Debug, Default)]
pub struct WorkerResult {
    /// One per participant.
    pub outcomes: Vec<Outcome>,
    /// One-way latencies (µs) of packets sent in the window.
    pub latencies_us: Vec<u32>,
}

/// Run `participants` until `shared.stop`, joining each at its `join_at`.
pub fn run(
    mut participants: Vec<Participant>,
    url: String,
    shared: Arc<Shared>,
    progress: Arc<Progress>,
) -> std::io::Result<WorkerResult> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut latencies = Vec::new();
    let mut batch = RecvBatch::new();
    while !shared.stop.load(Relaxed) {
        let now = Instant::now();
        let next = participants.iter().filter_map(|p| p.deadline).min();
        let timeout = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            // A signal (e.g. SIGCHLD from the server child) woke the wait.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let Some((slot, socket)) = Socket::from_token(event.token()) else {
                continue;
            };
            if let Some(p) = participants.get_mut(slot) {
                p.on_readable(
                    socket,
                    &shared,
                    poll.registry(),
                    &progress,
                    &mut latencies,
                    &mut batch,
                );
            }
        }
        let now = Instant::now();
        for p in participants.iter_mut() {
            if p.deadline.is_none_or(|t| t > now) {
                continue;
            }
            if !p.started() {
                p.start(now, &url, poll.registry(), &progress);
            } else if !p.failed() {
                p.tick(now, &shared, &progress, &mut latencies);
            } else {
                p.deadline = None;
            }
        }
    }
    for p in participants.iter_mut() {
        p.leave();
    }
    std::thread::sleep(LEAVE_GRACE);
    Ok(WorkerResult {
        outcomes: participants.iter().map(Participant::outcome).collect(),
        latencies_us: latencies,
    })
}
