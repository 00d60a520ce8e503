//! The results of a run: a serializable [`Report`] and its Markdown table.

use crate::media::MediaConfig;
use crate::plan::Scenario;
use crate::subscriber::Receiver;
use serde::Serialize;
use std::fmt::Write as _;

/// Quantiles of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Quantiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Quantiles {
    /// Quantiles of `values` (any unit; sorted in place), scaled by `scale`.
    pub fn of(values: &mut [f64], scale: f64) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((values.len() as f64 - 1.0) * q).round() as usize;
            values[i.min(values.len() - 1)] * scale
        };
        Self {
            count: values.len() as u64,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Loss seen by one subscriber over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubscriberLoss {
    /// Participant index.
    pub index: u32,
    /// Identity.
    pub identity: String,
    /// Packets its publishers sent in the window, for the streams it should get.
    pub expected: u64,
    /// Distinct packets of those it received.
    pub received: u64,
    /// `1 - received / expected` (0 when nothing was expected).
    pub loss: f64,
}

/// One second of the run, for the progress line and plots.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Participants ready.
    pub ready: u64,
    /// Packets received by subscribers in this second.
    pub forwarded_pps: f64,
    /// RTP bits received by subscribers in this second, Mbit/s.
    pub forwarded_mbps: f64,
    /// Mean one-way latency of the packets received in this second, ms.
    pub mean_latency_ms: f64,
    /// Server CPU in this second, % of one core (none when not measured).
    pub server_cpu_percent: Option<f64>,
    /// Server resident memory, MiB.
    pub server_rss_mib: Option<f64>,
    /// This tool's CPU in this second, % of one core.
    pub client_cpu_percent: f64,
    /// Everything else on the host in this second, % of one core.
    pub other_cpu_percent: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: Scenario,
    /// Rooms.
    pub rooms: usize,
    /// Participants in all.
    pub participants: usize,
    /// Participants that publish.
    pub publishers: usize,
    /// Participants that subscribe.
    pub subscribers: usize,
    /// Streams (publisher track -> subscriber) the SFU should forward.
    pub forwarded_streams: usize,
    /// Media shape.
    pub media: MediaConfig,
    /// How subscriber connections received (`rtc`, or the tool's own
    /// transport: no NACKs, so loss is before retransmission).
    pub receiver: Receiver,
    /// Whether the rooms were end-to-end encrypted (`--e2ee`).
    pub e2ee: bool,
    /// With `--e2ee`: payloads subscribers could not decrypt, over the
    /// whole run (during the ramp-up, frames of an epoch a member had not
    /// reached yet); never counted as received.
    pub e2ee_failed: u64,
    /// Worker threads of this tool.
    pub client_threads: usize,
    /// Whether this tool started the server.
    pub server_spawned: bool,
    /// Participants joined / ready / failed by the end of setup.
    pub joined: u64,
    /// See `joined`.
    pub ready: u64,
    /// See `joined`.
    pub failed: u64,
    /// Seconds from the first join until every participant was ready (or
    /// the setup timeout).
    pub setup_seconds: f64,
    /// WebSocket connect -> first media packet received, ms (subscribing
    /// participants only).
    pub join_to_first_media_ms: Quantiles,
    /// WebSocket connect -> every expected stream received, ms (subscribing
    /// participants only).
    pub join_to_all_media_ms: Quantiles,
    /// WebSocket connect -> `joined`, ms (subscribing participants).
    pub join_to_joined_ms: Quantiles,
    /// WebSocket connect -> first subscriber offer, ms (subscribing participants).
    pub join_to_offer_ms: Quantiles,
    /// WebSocket connect -> subscriber connection connected (ICE + DTLS), ms
    /// (subscribing participants).
    pub join_to_connected_ms: Quantiles,
    /// Warm-up excluded from the window, s.
    pub warmup_seconds: u64,
    /// Second of the timeline at which the window starts.
    pub window_start_second: u64,
    /// Length of the measured window, s.
    pub window_seconds: u64,
    /// Packets received by subscribers during the window (arrival time).
    pub forwarded_packets: u64,
    /// `forwarded_packets` per second.
    pub forwarded_pps: f64,
    /// RTP bits (header + payload) received by subscribers per second.
    pub forwarded_bps: f64,
    /// Packets sent in the window toward all subscribers (send time).
    pub expected_packets: u64,
    /// Of those, distinct packets received.
    pub received_packets: u64,
    /// `1 - received / expected` over all subscribers.
    pub loss: f64,
    /// Worst subscriber's loss.
    pub loss_max: f64,
    /// Subscribers with any loss.
    pub subscribers_with_loss: usize,
    /// One-way latency publisher -> SFU -> subscriber of packets sent in the
    /// window, ms (includes both clients' processing on this machine).
    pub latency_ms: Quantiles,
    /// Server CPU time (user + system) during the window, s.
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU during the window, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// Server CPU time per forwarded packet, µs.
    pub server_cpu_us_per_packet: Option<f64>,
    /// The kernel's part of it (system time), µs: the send system calls
    /// and, on loopback, the delivery to the receiving sockets, which a
    /// real network card would take off the server.
    pub server_kernel_us_per_packet: Option<f64>,
    /// CPU of each SFU worker thread of the server during the window, % of
    /// one core (how the rooms spread over the cores).
    pub server_worker_cpu_percent: Vec<f64>,
    /// Server resident memory at the end of the window, MiB.
    pub server_rss_mib: Option<f64>,
    /// This tool's CPU during the window, % of one core.
    pub client_cpu_percent: f64,
    /// This tool's CPU time per packet it received, µs (its send side included).
    pub client_cpu_us_per_packet: f64,
    /// CPU used by everything else on the host during the window (other
    /// people's builds...), % of one core. High values make the run suspect.
    pub other_cpu_percent: Option<f64>,
    /// Worst lateness of a publisher's send clock, ms (large: the tool
    /// could not keep up).
    pub max_send_lag_ms: f64,
    /// UDP datagrams the kernel dropped for full receive buffers during the
    /// window, host-wide.
    pub udp_rcvbuf_errors: Option<u64>,
    /// Of those, at the server's media socket (when this tool started it).
    pub server_socket_drops: Option<u64>,
    /// Of those, at other UDP sockets still open at the end of the window
    /// (the participants' sockets, and anything else on the host).
    pub other_socket_drops: Option<u64>,
    /// With `--receiver fast`: RTP/RTCP datagrams the subscribers dropped
    /// because SRTP unprotection (authentication, replay check) failed or
    /// they did not parse, over the whole run; never counted as received.
    /// `None` with `rtc`, which does not tell.
    pub receive_errors: Option<u64>,
    /// Per-subscriber loss.
    pub subscriber_loss: Vec<SubscriberLoss>,
    /// With `--simulcast`: video packets subscribers received in the window
    /// per layer (q, h, f), which says which layers the SFU chose.
    pub video_received_by_layer: Vec<u64>,
    /// Second-by-second timeline.
    pub timeline: Vec<Second>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

/// `a / b / c`, or `n/a` for none.
fn slashed<T>(values: &[T], show: impl Fn(&T) -> String) -> String {
    if values.is_empty() {
        return "n/a".to_owned();
    }
    values.iter().map(show).collect::<Vec<_>>().join(" / ")
}

fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

impl Report {
    /// One-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{:?}: {} pub / {} sub, {:.0} pkt/s forwarded, {:.2} Mbit/s, loss {:.3}% (max {:.3}%), \
             latency p50 {:.2} ms p99 {:.2} ms, server {} µs/pkt at {}% CPU, client {:.0}% CPU",
            self.scenario,
            self.publishers,
            self.subscribers,
            self.forwarded_pps,
            self.forwarded_bps / 1e6,
            self.loss * 100.0,
            self.loss_max * 100.0,
            self.latency_ms.p50,
            self.latency_ms.p99,
            opt(self.server_cpu_us_per_packet, 2),
            opt(self.server_cpu_percent, 0),
            self.client_cpu_percent,
        )
    }

    /// The report as a Markdown table (plus the worst subscribers).
    pub fn markdown(&self) -> String {
        let q =
            |q: &Quantiles| format!("{:.2} / {:.2} / {:.2} / {:.2}", q.p50, q.p95, q.p99, q.max);
        let rows: Vec<(&str, String)> = vec![
            ("scenario", format!("{:?}", self.scenario).to_lowercase()),
            (
                "receiver (subscriber connections)",
                format!("{:?}", self.receiver).to_lowercase(),
            ),
            (
                "end-to-end encryption (payloads that did not decrypt)",
                if self.e2ee {
                    format!("on ({})", self.e2ee_failed)
                } else {
                    "off".to_owned()
                },
            ),
            (
                "rooms / participants / publishers / subscribers",
                format!(
                    "{} / {} / {} / {}",
                    self.rooms, self.participants, self.publishers, self.subscribers
                ),
            ),
            ("forwarded streams", self.forwarded_streams.to_string()),
            (
                "joined / ready / failed",
                format!("{} / {} / {}", self.joined, self.ready, self.failed),
            ),
            ("setup (s)", format!("{:.1}", self.setup_seconds)),
            (
                "join -> first media, p50 / max (ms)",
                format!(
                    "{:.0} / {:.0}",
                    self.join_to_first_media_ms.p50, self.join_to_first_media_ms.max
                ),
            ),
            (
                "join -> joined / offer / connected / first media, p50 (ms)",
                format!(
                    "{:.0} / {:.0} / {:.0} / {:.0}",
                    self.join_to_joined_ms.p50,
                    self.join_to_offer_ms.p50,
                    self.join_to_connected_ms.p50,
                    self.join_to_first_media_ms.p50
                ),
            ),
            (
                "join -> all media, p50 / max (ms)",
                format!(
                    "{:.0} / {:.0}",
                    self.join_to_all_media_ms.p50, self.join_to_all_media_ms.max
                ),
            ),
            (
                "window (s), after warm-up (s)",
                format!("{}, {}", self.window_seconds, self.warmup_seconds),
            ),
            ("forwarded packets/s", format!("{:.0}", self.forwarded_pps)),
            (
                "forwarded Mbit/s (RTP)",
                format!("{:.2}", self.forwarded_bps / 1e6),
            ),
            (
                "loss: all / worst subscriber / subscribers with loss",
                format!(
                    "{:.3}% / {:.3}% / {}",
                    self.loss * 100.0,
                    self.loss_max * 100.0,
                    self.subscribers_with_loss
                ),
            ),
            ("latency p50 / p95 / p99 / max (ms)", q(&self.latency_ms)),
            ("server CPU (% of a core)", opt(self.server_cpu_percent, 1)),
            (
                "server CPU per forwarded packet (µs): all / in the kernel",
                format!(
                    "{} / {}",
                    opt(self.server_cpu_us_per_packet, 2),
                    opt(self.server_kernel_us_per_packet, 2)
                ),
            ),
            (
                "server CPU per SFU worker (% of a core)",
                slashed(&self.server_worker_cpu_percent, |c| format!("{c:.1}")),
            ),
            ("server RSS (MiB)", opt(self.server_rss_mib, 1)),
            (
                "simulcast: video packets received per layer (q / h / f)",
                slashed(&self.video_received_by_layer, u64::to_string),
            ),
            (
                "client CPU (% of a core), µs per received packet",
                format!(
                    "{:.1}, {:.2}",
                    self.client_cpu_percent, self.client_cpu_us_per_packet
                ),
            ),
            (
                "rest of the host CPU (% of a core)",
                opt(self.other_cpu_percent, 1),
            ),
            (
                "receive errors (fast receiver: SRTP/RTP failures)",
                count(self.receive_errors),
            ),
            (
                "client send lag max (ms)",
                format!("{:.1}", self.max_send_lag_ms),
            ),
            (
                "UDP receive-buffer drops: host / server socket / other sockets",
                format!(
                    "{} / {} / {}",
                    count(self.udp_rcvbuf_errors),
                    count(self.server_socket_drops),
                    count(self.other_socket_drops)
                ),
            ),
        ];
        let mut out = String::from("| metric | value |\n|---|---:|\n");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let mut worst: Vec<&SubscriberLoss> = self
            .subscriber_loss
            .iter()
            .filter(|s| s.loss > 0.0)
            .collect();
        worst.sort_by(|a, b| b.loss.total_cmp(&a.loss));
        if !worst.is_empty() {
            out.push_str(
                "\n| subscriber with loss | expected | received | loss |\n|---|---:|---:|---:|\n",
            );
            for s in worst.iter().take(5) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.3}% |",
                    s.identity,
                    s.expected,
                    s.received,
                    s.loss * 100.0
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let q = Quantiles::of(&mut v, 1.0);
        assert_eq!((q.count, q.p50, q.p99, q.max), (100, 51.0, 99.0, 100.0));
        assert_eq!(Quantiles::of(&mut [], 1.0), Quantiles::default());
    }
}
