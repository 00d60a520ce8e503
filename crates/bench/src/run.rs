//! One run: start the workers, wait for every participant to be ready, warm
//! up, measure a window of whole seconds, stop, and build the [`Report`].

use crate::error::BenchError;
use crate::media::{MediaConfig, SIMULCAST_LAYERS};
use crate::participant::{ClientConfig, Outcome, Participant};
use crate::plan::{Plan, Scenario};
use crate::probe::kind_byte;
use crate::procfs::{
    host_busy, thread_cpu, udp_rcvbuf_errors, udp_socket_drops, ProcSample, ProcStats,
};
use crate::report::{Quantiles, Report, Second, SubscriberLoss};
use crate::server::Server;
use crate::stats::{Progress, Shared};
use crate::subscriber::Receiver;
use crate::worker::{self, WorkerResult};
use huddle_proto::TrackKind;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time after the window during which packets sent in it may still arrive.
const DRAIN_SECONDS: u64 = 1;

/// How to run the load.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Scenario name (for the report).
    pub scenario: Scenario,
    /// Who joins.
    pub plan: Plan,
    /// Media every publisher sends.
    pub media: MediaConfig,
    /// Length of the measured window, s (at least 1).
    pub seconds: u64,
    /// Warm-up after setup, excluded from the window, s.
    pub warmup: u64,
    /// Worker threads.
    pub threads: usize,
    /// Time between two joins.
    pub join_interval: Duration,
    /// Longest wait for every participant to be ready; the run measures
    /// anyway afterwards (and the report says how many were not).
    pub setup_timeout: Duration,
    /// Address the participants' sockets bind.
    pub bind_ip: IpAddr,
    /// Time between the participants' ICE connectivity checks (rtc-ice's
    /// 200 ms when `None`; browsers check at once).
    pub ice_check_interval: Option<Duration>,
    /// How the participants' subscriber connections receive: `rtc`'s
    /// pipeline, or the tool's own transport (no NACKs, no receiver
    /// reports).
    pub receiver: Receiver,
    /// Print a progress line every second to stderr.
    pub progress: bool,
    /// End-to-end encrypted rooms: every participant a member of its
    /// room's MLS group, every payload SFrame (`crate::e2ee`).
    pub e2ee: bool,
}

impl RunConfig {
    /// Defaults for `scenario` with `plan`.
    pub fn new(scenario: Scenario, plan: Plan) -> Self {
        Self {
            scenario,
            plan,
            media: MediaConfig::default(),
            seconds: 10,
            warmup: 2,
            threads: 1,
            join_interval: Duration::from_millis(20),
            setup_timeout: Duration::from_secs(60),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ice_check_interval: None,
            receiver: Receiver::Rtc,
            e2ee: false,
            progress: true,
        }
    }
}

/// Counters summed over the workers, with the process readings, at one instant.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    joined: u64,
    ready: u64,
    failed: u64,
    rx_packets: u64,
    rx_bytes: u64,
    latency_sum_us: u64,
    latency_count: u64,
    max_send_lag_us: u64,
    server: Option<ProcSample>,
    client: ProcSample,
    rcvbuf_errors: Option<u64>,
    host_busy: Option<Duration>,
    /// Drops at the server's media socket and at every other UDP socket.
    socket_drops: Option<(u64, u64)>,
    /// CPU time so far of each SFU worker thread of the server.
    sfu_workers: Vec<Duration>,
}

/// Name prefix of the server's SFU worker threads (`huddle_sfu::driver`).
const SFU_WORKER_THREAD: &str = "huddle-sfu-";

fn snapshot(
    progress: &[Arc<Progress>],
    server: Option<&ProcStats>,
    media_ports: &[u16],
    me: &ProcStats,
) -> Snapshot {
    let sum = |f: fn(&Progress) -> u64| progress.iter().map(|p| f(p)).sum::<u64>();
    Snapshot {
        joined: sum(|p| Progress::get(&p.joined)),
        ready: sum(|p| Progress::get(&p.ready)),
        failed: sum(|p| Progress::get(&p.failed)),
        rx_packets: sum(|p| Progress::get(&p.rx_packets)),
        rx_bytes: sum(|p| Progress::get(&p.rx_bytes)),
        latency_sum_us: sum(|p| Progress::get(&p.latency_sum_us)),
        latency_count: sum(|p| Progress::get(&p.latency_count)),
        max_send_lag_us: progress
            .iter()
            .map(|p| Progress::get(&p.max_send_lag_us))
            .max()
            .unwrap_or(0),
        server: server.and_then(|s| s.sample().ok()),
        client: me.sample().unwrap_or_default(),
        rcvbuf_errors: udp_rcvbuf_errors(),
        host_busy: host_busy(),
        socket_drops: udp_socket_drops(media_ports),
        sfu_workers: server.map_or_else(Vec::new, |s| {
            thread_cpu(s.pid(), SFU_WORKER_THREAD)
                .into_iter()
                .map(|(_, cpu)| cpu)
                .collect()
        }),
    }
}

fn second(t: u64, a: &Snapshot, b: &Snapshot) -> Second {
    let cpu = |x: Duration, y: Duration| (y.saturating_sub(x)).as_secs_f64() * 100.0;
    let lat_n = b.latency_count.saturating_sub(a.latency_count);
    Second {
        t,
        ready: b.ready,
        forwarded_pps: b.rx_packets.saturating_sub(a.rx_packets) as f64,
        forwarded_mbps: b.rx_bytes.saturating_sub(a.rx_bytes) as f64 * 8.0 / 1e6,
        mean_latency_ms: if lat_n == 0 {
            0.0
        } else {
            b.latency_sum_us.saturating_sub(a.latency_sum_us) as f64 / lat_n as f64 / 1000.0
        },
        server_cpu_percent: a.server.zip(b.server).map(|(x, y)| cpu(x.cpu, y.cpu)),
        server_rss_mib: b.server.map(|s| s.rss_bytes as f64 / (1024.0 * 1024.0)),
        client_cpu_percent: cpu(a.client.cpu, b.client.cpu),
        other_cpu_percent: other_cpu(a, b),
    }
}

/// CPU the rest of the host used between `a` and `b`, s: all busy time
/// minus the server's and this tool's.
fn other_cpu_seconds(a: &Snapshot, b: &Snapshot) -> Option<f64> {
    let host = b.host_busy?.saturating_sub(a.host_busy?).as_secs_f64();
    let server = a
        .server
        .zip(b.server)
        .map_or(0.0, |(x, y)| y.cpu.saturating_sub(x.cpu).as_secs_f64());
    let client = b.client.cpu.saturating_sub(a.client.cpu).as_secs_f64();
    Some((host - server - client).max(0.0))
}

fn other_cpu(a: &Snapshot, b: &Snapshot) -> Option<f64> {
    other_cpu_seconds(a, b).map(|s| s * 100.0)
}

/// Run `config` against `server`.
pub fn run(config: &RunConfig, server: &Server) -> Result<Report, BenchError> {
    let total = config.plan.participants.len();
    let threads = config.threads.clamp(1, total.max(1));
    let shared = Arc::new(Shared::new());
    let first_join = shared.epoch + Duration::from_millis(100);
    let client = ClientConfig {
        bind_ip: config.bind_ip,
        ice_check_interval: config.ice_check_interval,
        receiver: config.receiver,
        media: config.media.clone(),
        e2ee: config.e2ee,
    };
    let mut per_worker: Vec<Vec<Participant>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, p) in config.plan.participants.iter().enumerate() {
        let token = server.mint(
            &p.room,
            &p.identity,
            p.publishes(),
            p.subscribe,
            config.e2ee,
        )?;
        let list = &mut per_worker[i % threads];
        let slot = list.len();
        list.push(Participant::new(
            p.clone(),
            config.plan.expected_streams(p.index),
            slot,
            token,
            client.clone(),
            first_join + config.join_interval * i as u32,
        ));
    }
    let progress: Vec<Arc<Progress>> = (0..threads).map(|_| Arc::default()).collect();
    let mut handles: Vec<JoinHandle<std::io::Result<WorkerResult>>> = Vec::new();
    for (i, list) in per_worker.into_iter().enumerate() {
        let (url, shared, progress) =
            (server.url().to_owned(), shared.clone(), progress[i].clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-worker-{i}"))
                .spawn(move || worker::run(list, url, shared, progress))?,
        );
    }
    let watched = server.pid().map(ProcStats::new);
    let me = ProcStats::this_process();
    let last_join = first_join + config.join_interval * total as u32;
    let setup_deadline = last_join + config.setup_timeout;
    let mut snaps = vec![snapshot(
        &progress,
        watched.as_ref(),
        server.media_ports(),
        &me,
    )];
    let mut timeline = Vec::new();
    let mut window: Option<(u64, u64)> = None;
    let mut setup_seconds = 0.0;
    for t in 1u64.. {
        let at = shared.epoch + Duration::from_secs(t);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let snap = snapshot(&progress, watched.as_ref(), server.media_ports(), &me);
        let s = second(t, &snaps[snaps.len() - 1], &snap);
        let (ready, failed) = (snap.ready, snap.failed);
        snaps.push(snap);
        if config.progress {
            eprintln!(
                "[{t:>4}s] {} ready {}/{} failed {} | fwd {:>8.0} pkt/s {:>7.2} Mbit/s | lat {:>6.2} ms | server cpu {}% rss {} MiB | client cpu {:.0}% | others {}%",
                match window {
                    None => "setup  ",
                    Some((w0, _)) if t <= w0 => "warmup ",
                    Some((_, w1)) if t <= w1 => "measure",
                    Some(_) => "drain  ",
                },
                ready,
                total,
                failed,
                s.forwarded_pps,
                s.forwarded_mbps,
                s.mean_latency_ms,
                s.server_cpu_percent.map_or("-".into(), |c| format!("{c:.0}")),
                s.server_rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
                s.client_cpu_percent,
                s.other_cpu_percent
                    .map_or("-".into(), |c| format!("{c:.0}")),
            );
        }
        timeline.push(s);
        if handles.iter().any(JoinHandle::is_finished) {
            shared.stop.store(true, Relaxed);
            break;
        }
        match window {
            None => {
                let everyone = ready + failed >= total as u64;
                if everyone || Instant::now() > setup_deadline {
                    setup_seconds = (Instant::now() - first_join).as_secs_f64();
                    let w0 = t + config.warmup;
                    let w1 = w0 + config.seconds.max(1);
                    shared.set_window(
                        Duration::from_secs(w0).as_nanos() as u64,
                        Duration::from_secs(w1).as_nanos() as u64,
                    );
                    window = Some((w0, w1));
                }
            }
            Some((_, w1)) if t >= w1 + DRAIN_SECONDS => {
                shared.stop.store(true, Relaxed);
                break;
            }
            Some(_) => {}
        }
    }
    let mut results = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(BenchError::Rtc("a worker thread panicked".into())),
        }
    }
    let (w0, w1) = window.ok_or_else(|| BenchError::Rtc("stopped before the window".into()))?;
    let (Some(a), Some(b)) = (snaps.get(w0 as usize), snaps.get(w1 as usize)) else {
        return Err(BenchError::Rtc("a worker stopped during the window".into()));
    };
    Ok(build_report(
        config,
        threads,
        server,
        results,
        (a, b),
        (w0, w1 - w0),
        setup_seconds,
        timeline,
    ))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    config: &RunConfig,
    threads: usize,
    server: &Server,
    results: Vec<WorkerResult>,
    (a, b): (&Snapshot, &Snapshot),
    (window_start_second, window_seconds): (u64, u64),
    setup_seconds: f64,
    timeline: Vec<Second>,
) -> Report {
    let plan = &config.plan;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut latencies: Vec<f64> = Vec::new();
    for r in results {
        outcomes.extend(r.outcomes);
        latencies.extend(r.latencies_us.iter().map(|&v| f64::from(v)));
    }
    outcomes.sort_by_key(|o| o.index);
    let sent = |publisher: u32, kind: u8, layer: u8| {
        outcomes
            .get(publisher as usize)
            .and_then(|o| o.sent_in_window.get(&(kind, layer)).copied())
            .unwrap_or(0)
    };
    let mut subscriber_loss = Vec::new();
    let mut forwarded_streams = 0;
    let mut video_by_layer = vec![
        0u64;
        if config.media.simulcast {
            SIMULCAST_LAYERS.len()
        } else {
            0
        }
    ];
    for o in &outcomes {
        for (&(_, kind, layer), &n) in &o.received_in_window {
            if kind == kind_byte(TrackKind::Video) {
                if let Some(total) = video_by_layer.get_mut(usize::from(layer)) {
                    *total += n;
                }
            }
        }
    }
    for p in plan.participants.iter().filter(|p| p.subscribe) {
        let streams = plan.expected_streams(p.index);
        forwarded_streams += streams.len();
        let o = outcomes.get(p.index as usize);
        let (mut expected, mut received) = (0, 0);
        for (publisher, kind) in streams {
            let kind = kind_byte(kind);
            // A subscriber gets one simulcast layer of a stream: the loss is
            // counted against the layer it got most of (the only one,
            // unless the SFU switched during the window; packets of other
            // layers then count as received but not as expected).
            let layers: Vec<(u8, u64)> = o
                .map(|o| {
                    o.received_in_window
                        .iter()
                        .filter(|((p, k, _), _)| (*p, *k) == (publisher, kind))
                        .map(|((_, _, l), n)| (*l, *n))
                        .collect()
                })
                .unwrap_or_default();
            let layer = layers.iter().max_by_key(|(_, n)| *n).map_or(0, |(l, _)| *l);
            expected += sent(publisher, kind, layer);
            received += layers.iter().map(|(_, n)| n).sum::<u64>();
        }
        subscriber_loss.push(SubscriberLoss {
            index: p.index,
            identity: p.identity.clone(),
            expected,
            received,
            loss: loss(expected, received),
        });
    }
    let expected_packets: u64 = subscriber_loss.iter().map(|s| s.expected).sum();
    let received_packets: u64 = subscriber_loss.iter().map(|s| s.received).sum();
    let secs = window_seconds as f64;
    let forwarded_packets = b.rx_packets.saturating_sub(a.rx_packets);
    // The server's readings at the window's start and end.
    let server_window = a.server.zip(b.server);
    let server_cpu = server_window.map(|(x, y)| y.cpu.saturating_sub(x.cpu).as_secs_f64());
    let server_kernel = server_window.map(|(x, y)| y.system.saturating_sub(x.system).as_secs_f64());
    let client_cpu = b.client.cpu.saturating_sub(a.client.cpu).as_secs_f64();
    let per_packet = |cpu: f64| {
        if forwarded_packets == 0 {
            0.0
        } else {
            cpu * 1e6 / forwarded_packets as f64
        }
    };
    let subscribing = |o: &&Outcome| {
        plan.participants
            .get(o.index as usize)
            .is_some_and(|p| p.subscribe)
    };
    let join_quantiles = |f: fn(&Outcome) -> Option<Duration>| {
        let mut v: Vec<f64> = outcomes
            .iter()
            .filter(subscribing)
            .filter_map(f)
            .map(|d| d.as_secs_f64())
            .collect();
        Quantiles::of(&mut v, 1e3)
    };
    let mut first: Vec<f64> = outcomes
        .iter()
        .filter(subscribing)
        .filter_map(|o| o.join_to_first_media)
        .map(|d| d.as_secs_f64())
        .collect();
    let mut all: Vec<f64> = outcomes
        .iter()
        .filter(subscribing)
        .filter_map(|o| o.join_to_all_media)
        .map(|d| d.as_secs_f64())
        .collect();
    Report {
        scenario: config.scenario,
        rooms: {
            let mut rooms: Vec<&str> = plan.participants.iter().map(|p| p.room.as_str()).collect();
            rooms.dedup();
            rooms.len()
        },
        participants: plan.participants.len(),
        publishers: plan.participants.iter().filter(|p| p.publishes()).count(),
        subscribers: plan.participants.iter().filter(|p| p.subscribe).count(),
        forwarded_streams,
        media: config.media.clone(),
        receiver: config.receiver,
        e2ee: config.e2ee,
        e2ee_failed: outcomes.iter().map(|o| o.e2ee_failed).sum(),
        client_threads: threads,
        server_spawned: server.spawned(),
        joined: b.joined,
        ready: b.ready,
        failed: b.failed,
        setup_seconds,
        join_to_first_media_ms: Quantiles::of(&mut first, 1e3),
        join_to_all_media_ms: Quantiles::of(&mut all, 1e3),
        join_to_joined_ms: join_quantiles(|o| o.join_to_joined),
        join_to_offer_ms: join_quantiles(|o| o.join_to_offer),
        join_to_connected_ms: join_quantiles(|o| o.join_to_connected),
        warmup_seconds: config.warmup,
        window_start_second,
        window_seconds,
        forwarded_packets,
        forwarded_pps: forwarded_packets as f64 / secs,
        forwarded_bps: b.rx_bytes.saturating_sub(a.rx_bytes) as f64 * 8.0 / secs,
        expected_packets,
        received_packets,
        loss: loss(expected_packets, received_packets),
        loss_max: subscriber_loss.iter().map(|s| s.loss).fold(0.0, f64::max),
        subscribers_with_loss: subscriber_loss.iter().filter(|s| s.loss > 0.0).count(),
        latency_ms: Quantiles::of(&mut latencies, 1e-3),
        server_cpu_seconds: server_cpu,
        server_cpu_percent: server_cpu.map(|c| c * 100.0 / secs),
        server_cpu_us_per_packet: server_cpu.map(per_packet),
        server_kernel_us_per_packet: server_kernel.map(per_packet),
        server_rss_mib: b.server.map(|s| s.rss_bytes as f64 / (1024.0 * 1024.0)),
        client_cpu_percent: client_cpu * 100.0 / secs,
        client_cpu_us_per_packet: per_packet(client_cpu),
        other_cpu_percent: other_cpu_seconds(a, b).map(|c| c * 100.0 / secs),
        max_send_lag_ms: b.max_send_lag_us as f64 / 1000.0,
        udp_rcvbuf_errors: a
            .rcvbuf_errors
            .zip(b.rcvbuf_errors)
            .map(|(x, y)| y.saturating_sub(x)),
        server_worker_cpu_percent: a
            .sfu_workers
            .iter()
            .zip(&b.sfu_workers)
            .map(|(x, y)| y.saturating_sub(*x).as_secs_f64() * 100.0 / secs)
            .collect(),
        server_socket_drops: (!server.media_ports().is_empty())
            .then_some(())
            .and_then(|()| {
                a.socket_drops
                    .zip(b.socket_drops)
                    .map(|(x, y)| y.0.saturating_sub(x.0))
            }),
        other_socket_drops: a
            .socket_drops
            .zip(b.socket_drops)
            .map(|(x, y)| y.1.saturating_sub(x.1)),
        receive_errors: match config.receiver {
            Receiver::Rtc => None,
            Receiver::Fast => Some(outcomes.iter().filter_map(|o| o.receive_errors).sum()),
        },
        subscriber_loss,
        video_received_by_layer: video_by_layer,
        timeline,
    }
}

fn loss(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        1.0 - (received.min(expected) as f64 / expected as f64)
    }
}
