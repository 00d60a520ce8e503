//! Speech quality of the whole call path under network impairment (issue 3,
//! `docs/audio-quality.md`).
//!
//! ```text
//! cargo run --release --example audio_quality -- --input speech.wav                 # every condition
//! cargo run --release --example audio_quality -- --input speech.wav --condition loss5
//! cargo run --release --example audio_quality -- --input speech.wav --json aq.json --out-dir aq
//! python3 scripts/score_pesq.py aq.json                                            # PESQ-WB per condition
//! cargo run --release --example audio_quality -- --simulated --input speech.wav    # simulated clock
//! cargo run --release --example audio_quality -- --simulated --red auto --input speech.wav
//! ```
//!
//! `--simulated` runs the same encoder, impairment model and receiver (jitter
//! buffer, Opus decoder) on a simulated clock instead of a real call: no
//! server, no sockets, deterministic and independent of the machine's load.
//! Only there does `--red` (RFC 2198) set the sender's RED: through the SFU
//! the calling crate sends RED whenever the SFU's answer takes it (it does),
//! at the distance the SFU's loss reports give, and those are about
//! alice's link to the SFU, which is not impaired: distance 1.
//!
//! For each condition a fresh in-process huddle server starts on 127.0.0.1
//! with a huddle-netem relay in front of its media port (the address the SFU
//! announces is the relay's), impairing only the SFU -> receiver direction.
//! alice sends the WAV file (resampled to 48 kHz, mixed to mono) with
//! `Call::send_audio` (Opus 32 kb/s, in-band FEC, DTX); bob plays it with
//! `huddle::Playout` (jitter buffer, FEC/PLC, mixer) into a `ChannelSink`; the
//! frames are written to `<out-dir>/<condition>.wav` (48 kHz mono), trimmed so
//! that they line up with the input. Alongside: `<out-dir>/reference.wav`, the
//! input exactly as it was sent (48 kHz mono), to score against, and
//! `<out-dir>/codec_only.wav`, the input through the same Opus encoder and
//! decoder with no network and no jitter buffer (the best the path can do).
//! Paths in the JSON are as given, so score from the same directory.
//!
//! alice sends silence until bob has subscribed (the SFU announces a track on
//! its first packet; what is sent before bob subscribes never reaches him),
//! then one more second of silence so the jitter buffer has settled, then
//! the file, then half a second of silence.

use anyhow::{bail, Context};
use clap::Parser;
use huddle::{Call, CallEvent, ChannelSink, Playout};
use huddle_media::jitter::{JitterConfig, JitterStats};
use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
use huddle_media::source::AudioSource;
use huddle_media::wav::{WavSink, WavSource};
use huddle_media::{sink::AudioSink, Channels, FRAME_SAMPLES, SAMPLE_RATE};
use huddle_netem::{GilbertElliott, Impairment, Relay};
use huddle_sfu::Rights;
use serde_json::json;
use simulate::{simulate_condition, RedMode};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod simulate;
mod timeline;

/// Default seed of every impairment (same seed, same packet fates).
const SEED: u64 = 2026;
/// Silence sent after bob subscribed, before the file: 1 s.
const SETTLE_FRAMES: usize = 50;
/// Silence sent after the file: 0.5 s.
const TAIL_FRAMES: usize = 25;

/// The conditions of issue 3, by name.
const CONDITIONS: &[&str] = &[
    "none",
    "loss2",
    "loss5",
    "loss10",
    "loss20",
    "burst5",
    "jitter20",
    "jitter50",
    "loss5_jitter30",
    "loss20_jitter30",
    "burst40",
];

/// Send a WAV file through an impaired call and write what the receiver played.
#[derive(Debug, Parser)]
#[command(name = "audio_quality")]
struct Args {
    /// Speech to send (WAV, any rate; mixed to mono, resampled to 48 kHz).
    #[arg(long, value_name = "FILE.wav")]
    input: PathBuf,
    /// Condition to run (repeatable); default: all of them.
    #[arg(long = "condition", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(CONDITIONS))]
    conditions: Vec<String>,
    /// Directory for the output WAVs (created if missing).
    #[arg(long, default_value = "audio_quality_out", value_name = "DIR")]
    out_dir: PathBuf,
    /// Opus bitrate (bits/s) of the sender and of the codec-only baseline.
    #[arg(long, default_value_t = 32_000, value_name = "BPS")]
    bitrate_bps: i32,
    /// Also write the results as JSON here.
    #[arg(long, value_name = "FILE.json")]
    json: Option<PathBuf>,
    /// The receiver's `JitterConfig::fec_hold_packets` (0: never hold a
    /// packet for FEC; the lowest delay).
    #[arg(long, value_name = "N")]
    fec_hold_packets: Option<u32>,
    /// Instead of a real call, run the same encoder, impairment model
    /// (huddle-netem's `Model`, same seed) and receiver (jitter buffer, Opus
    /// decoder) on a simulated clock: no server, no sockets, no real time, so
    /// the figures do not depend on how busy the machine is.
    #[arg(long)]
    simulated: bool,
    /// RED (RFC 2198) on the sender, `--simulated` only: `off`, a fixed
    /// redundancy distance 0..=8, or `auto` (the distance follows a loss
    /// report every second, `RedDistancePolicy::default()`).
    #[arg(long, default_value = "off", value_name = "off|auto|0..8", value_parser = RedMode::parse)]
    red: RedMode,
    /// The Opus encoder's expected loss (percent), which sets how much it
    /// spends on in-band FEC (default: `EncoderConfig::default()`'s, 10).
    #[arg(long, value_name = "PERCENT")]
    fec_loss_percent: Option<i32>,
    /// The receiver's `JitterConfig::red_hold_packets`.
    #[arg(long, value_name = "N")]
    red_hold_packets: Option<u32>,
    /// Print the receiver's jitter-buffer counters every half second of a
    /// real call (not `--simulated`) to stderr.
    #[arg(long)]
    timeline: bool,
    /// Seed of the impairment model: the same seed gives the same packet
    /// fates (on the simulated path exactly; in a real call the fates fall
    /// on the relay's packets in order, resends and RTCP included). Score
    /// several seeds to see the spread over loss patterns.
    #[arg(long, default_value_t = SEED)]
    seed: u64,
}

/// One network condition: the impairment toward the receiver.
struct Condition {
    what: String,
    impairment: Impairment,
}

fn condition(name: &'static str) -> Condition {
    let base = Impairment {
        seed: SEED,
        ..Impairment::default()
    };
    let ms = Duration::from_millis;
    let (what, impairment) = match name {
        "none" => ("no impairment".to_owned(), base),
        "burst5" => (
            "5% bursty loss (Gilbert-Elliott, mean burst 3 packets)".to_owned(),
            Impairment {
                burst: Some(GilbertElliott::with_rate(0.05, 3.0)),
                ..base
            },
        ),
        "burst40" => (
            "40% bursty loss (Gilbert-Elliott, mean burst 3 packets)".to_owned(),
            Impairment {
                burst: Some(GilbertElliott::with_rate(0.40, 3.0)),
                ..base
            },
        ),
        "loss5_jitter30" => (
            "5% random loss + 0..30 ms uniform jitter".to_owned(),
            Impairment {
                loss: 0.05,
                jitter: ms(30),
                ..base
            },
        ),
        "loss20_jitter30" => (
            "20% random loss + 0..30 ms uniform jitter".to_owned(),
            Impairment {
                loss: 0.20,
                jitter: ms(30),
                ..base
            },
        ),
        n if n.starts_with("loss") => {
            let pct: u32 = n[4..].parse().expect("loss condition name");
            (
                format!("{pct}% random loss"),
                Impairment {
                    loss: f64::from(pct) / 100.0,
                    ..base
                },
            )
        }
        n if n.starts_with("jitter") => {
            let j: u64 = n[6..].parse().expect("jitter condition name");
            (
                format!("0..{j} ms uniform jitter"),
                Impairment {
                    jitter: ms(j),
                    ..base
                },
            )
        }
        other => unreachable!("unknown condition {other}"),
    };
    Condition { what, impairment }
}

/// Silence until `go` is set, then `SETTLE_FRAMES` of silence, the speech,
/// and `TAIL_FRAMES` of silence.
struct GatedSpeech {
    go: Arc<AtomicBool>,
    frames: Arc<Vec<Vec<i16>>>,
    pos: usize,
}

impl AudioSource for GatedSpeech {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        if !self.go.load(Ordering::Relaxed) {
            return Some(vec![0; FRAME_SAMPLES]);
        }
        let i = self.pos;
        self.pos += 1;
        let Some(speech) = i.checked_sub(SETTLE_FRAMES) else {
            return Some(vec![0; FRAME_SAMPLES]);
        };
        if speech < self.frames.len() {
            Some(self.frames[speech].clone())
        } else if speech < self.frames.len() + TAIL_FRAMES {
            Some(vec![0; FRAME_SAMPLES])
        } else {
            None
        }
    }

    fn channels(&self) -> Channels {
        Channels::Mono
    }
}

/// What one condition produced.
struct Measured {
    heard: Vec<i16>,
    jb: JitterStats,
    relay_offered: u64,
    relay_lost: u64,
    /// Mean payload bitrate sent (simulated path only).
    payload_kbps: Option<f64>,
    /// Packets sent at each RED distance 0..=8 (simulated path with RED).
    red_distances: Option<[u64; huddle_media::rtp::MAX_RED_DISTANCE as usize + 1]>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,huddle=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.red != RedMode::Off && !args.simulated {
        bail!(
            "--red needs --simulated: through the SFU the sender always uses RED at the distance the SFU's reports give"
        );
    }
    let names: Vec<&'static str> = if args.conditions.is_empty() {
        CONDITIONS.to_vec()
    } else {
        CONDITIONS
            .iter()
            .copied()
            .filter(|c| args.conditions.iter().any(|a| a == c))
            .collect()
    };

    let speech = Arc::new(load(&args.input)?);
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let reference = args.out_dir.join("reference.wav");
    write_wav(&reference, &speech.concat())?;
    let speech_onset = onset(&speech.concat()).context("the input is silent")?;
    eprintln!(
        "input {}: {:.2} s, speech starts at {:.3} s",
        args.input.display(),
        (speech.len() * FRAME_SAMPLES) as f64 / f64::from(SAMPLE_RATE),
        speech_onset as f64 / f64::from(SAMPLE_RATE)
    );

    // Baseline: the codec alone (same encoder settings, no network, no jitter
    // buffer), to tell what Opus costs from what the path adds.
    let codec_only = args.out_dir.join("codec_only.wav");
    let mut encoder = EncoderConfig {
        bitrate_bps: args.bitrate_bps,
        ..EncoderConfig::default()
    };
    if let Some(pct) = args.fec_loss_percent {
        encoder.expected_loss_percent = pct;
    }
    write_wav(&codec_only, &codec_round_trip(&speech, &encoder)?)?;

    let mut jitter = JitterConfig::default();
    if let Some(n) = args.fec_hold_packets {
        jitter.fec_hold_packets = n;
    }
    if let Some(n) = args.red_hold_packets {
        jitter.red_hold_packets = n;
    }
    let mut rows = Vec::new();
    for name in names {
        let mut cond = condition(name);
        cond.impairment.seed = args.seed;
        eprintln!("{name}: {} ...", cond.what);
        // The relay impairs every packet, ICE and DTLS included, so with heavy
        // loss the connection setup can fail; the same seed would fail the
        // same way, so a retry takes the next seed (recorded in the JSON).
        let mut attempt = 0;
        let m = loop {
            if args.simulated {
                break simulate_condition(&cond, &speech, &encoder, &jitter, args.red)?;
            }
            match run_condition(&cond, speech.clone(), &encoder, &jitter, args.timeline).await {
                Ok(m) => break m,
                Err(e) if attempt < 2 => {
                    attempt += 1;
                    cond.impairment.seed += 1;
                    eprintln!(
                        "{name}: {e:#}; trying again with seed {}",
                        cond.impairment.seed
                    );
                }
                Err(e) => return Err(e.context(format!("condition {name}"))),
            }
        };
        let ref_len = speech.len() * FRAME_SAMPLES;
        let trimmed = trim(&m.heard, speech_onset, ref_len);
        let output = args.out_dir.join(format!("{name}.wav"));
        write_wav(&output, &trimmed)?;
        // Uniform jitter on [0, J]: the 95th percentile is 0.95 J.
        let p95 = 0.95 * cond.impairment.jitter.as_secs_f64() * 1000.0;
        let mean = m.jb.mean_delay_ms();
        rows.push(json!({
            "name": name,
            "description": cond.what,
            "output": output,
            "seed": cond.impairment.seed,
            "setup_retries": attempt,
            "loss": cond.impairment.loss,
            "burst": cond.impairment.burst.map(|b| json!({
                "p_good_to_bad": b.p_good_to_bad, "p_bad_to_good": b.p_bad_to_good,
            })),
            "jitter_ms": cond.impairment.jitter.as_millis() as u64,
            "jitter_p95_ms": p95,
            "relay_offered": m.relay_offered,
            "relay_lost": m.relay_lost,
            "output_seconds": trimmed.len() as f64 / f64::from(SAMPLE_RATE),
            "jb_mean_delay_ms": mean,
            "jb_target_delay_ms": m.jb.target_delay_ms,
            "jb_playout_lag_ms": m.jb.playout_lag_ms,
            "delay_over_p95_ms": mean - p95,
            "delay_goal_met": mean <= p95 + 20.0,
            "payload_kbps": m.payload_kbps,
            "red_distances": m.red_distances,
            "jb": {
                "packets_received": m.jb.packets_received,
                "lost": m.jb.lost,
                "late": m.jb.late,
                "duplicates": m.jb.duplicates,
                "fec_recovered_frames": m.jb.fec_recovered_frames,
                "red_recovered_frames": m.jb.red_recovered_frames,
                "red_received": m.jb.red_received,
                "concealed_frames": m.jb.concealed_frames,
                "accelerated_frames": m.jb.accelerated_frames,
                "preemptive_expanded_frames": m.jb.preemptive_expanded_frames,
                "comfort_noise_frames": m.jb.comfort_noise_frames,
                "silence_frames": m.jb.silence_frames,
            },
        }));
    }

    println!("{}", markdown(&rows));
    if let Some(path) = &args.json {
        let doc = json!({
            "input": args.input,
            "reference": reference,
            "codec_only": codec_only,
            "sample_rate": SAMPLE_RATE,
            "opus_bitrate_bps": args.bitrate_bps,
            "fec_hold_packets": jitter.fec_hold_packets,
            "red_hold_packets": jitter.red_hold_packets,
            "red": args.red.label(),
            "fec_expected_loss_percent": encoder.expected_loss_percent,
            "simulated": args.simulated,
            "conditions": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The whole input as 20 ms frames of 48 kHz mono.
fn load(path: &Path) -> anyhow::Result<Vec<Vec<i16>>> {
    let mut wav =
        WavSource::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let channels = wav.channels();
    let frames: Vec<Vec<i16>> = std::iter::from_fn(|| wav.next_frame())
        .map(|f| match channels {
            Channels::Mono => f,
            Channels::Stereo => f
                .chunks_exact(2)
                .map(|lr| ((i32::from(lr[0]) + i32::from(lr[1])) / 2) as i16)
                .collect(),
        })
        .collect();
    if let Some(e) = wav.error() {
        bail!("reading {} failed part-way: {e}", path.display());
    }
    if frames.is_empty() {
        bail!("{} holds no audio", path.display());
    }
    Ok(frames)
}

/// Opus encode and decode of every frame, as `Call::send_audio` encodes.
fn codec_round_trip(speech: &[Vec<i16>], config: &EncoderConfig) -> anyhow::Result<Vec<i16>> {
    let mut encoder = OpusEncoder::new(config.clone())?;
    let mut decoder = OpusDecoder::new(Channels::Mono)?;
    let mut out = Vec::with_capacity(speech.len() * FRAME_SAMPLES);
    for frame in speech {
        out.extend(decoder.decode(&encoder.encode(frame)?)?);
    }
    Ok(out)
}

/// One call through a fresh server and relay with `cond` toward bob.
async fn run_condition(
    cond: &Condition,
    speech: Arc<Vec<Vec<i16>>>,
    encoder: &EncoderConfig,
    jitter: &JitterConfig,
    timeline: bool,
) -> anyhow::Result<Measured> {
    let (relay, media) = Relay::in_front_of_local_sfu(cond.impairment.clone())
        .await
        .context("relay")?;
    let mut config =
        huddle_server::ServerConfig::ephemeral("audio-quality-secret-padded-to-32-bytes-or-more");
    config.media_udp = media;
    config.media_public = Some(relay.local_addr());
    // The relay fronts one media port: one SFU worker.
    config.workers = 1;
    let server = huddle_server::start(config).await.context("server")?;

    let result = async {
        let rights = Rights {
            publish: true,
            subscribe: true,
        };
        let join = |who: &'static str| {
            let token = server.mint_token("aq", who, rights);
            let url = server.ws_url();
            async move {
                let token = token?;
                let call = tokio::time::timeout(Duration::from_secs(20), Call::join(&url, &token))
                    .await
                    .with_context(|| format!("{who} timed out joining"))??;
                anyhow::Ok(call)
            }
        };
        let (alice, _alice_events) = join("alice").await?;
        let (_bob, mut bob_events) = join("bob").await?;

        // Large enough never to drop a frame of a long file.
        let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel(100_000);
        let playout = Playout::start_with_config(Box::new(ChannelSink(frames_tx)), jitter.clone());
        let recorder = tokio::spawn(async move {
            let mut pcm = Vec::new();
            while let Some(f) = frames_rx.recv().await {
                pcm.extend(f);
            }
            pcm
        });

        let go = Arc::new(AtomicBool::new(false));
        let source = GatedSpeech {
            go: go.clone(),
            frames: speech.clone(),
            pos: 0,
        };
        let sending = alice.send_audio(Box::new(source), encoder.clone()).await?;
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match bob_events.recv().await {
                    Some(CallEvent::TrackSubscribed(t)) => {
                        if playout.add(t) {
                            break Ok(());
                        }
                    }
                    Some(_) => continue,
                    None => break Err(anyhow::anyhow!("bob's events ended")),
                }
            }
        })
        .await
        .context("bob never subscribed to alice's audio")??;
        go.store(true, Ordering::Relaxed);
        let seconds = (speech.len() + SETTLE_FRAMES + TAIL_FRAMES) as u64 / 50;
        let finished = tokio::time::timeout(Duration::from_secs(seconds + 20), sending.finished());
        tokio::pin!(finished);
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(timeline::EVERY);
        let mut before = JitterStats::default();
        if timeline {
            eprintln!("{}", timeline::HEADER);
        }
        loop {
            tokio::select! {
                done = &mut finished => {
                    done.context("sending did not finish")??;
                    break;
                }
                _ = tick.tick(), if timeline => {
                    if let Some((_, now)) = playout.stats().into_values().next() {
                        eprintln!("{}", timeline::line(started.elapsed(), &before, &now));
                        before = now;
                    }
                }
            }
        }
        // Let the last packets through the relay and the jitter buffer.
        tokio::time::sleep(Duration::from_millis(600) + cond.impairment.jitter).await;

        let jb = playout
            .stats()
            .into_values()
            .next()
            .map(|(_, s)| s)
            .context("nothing was played")?;
        drop(playout);
        let heard = recorder.await?;
        let relay_stats = relay.stats();
        anyhow::Ok(Measured {
            heard,
            jb,
            relay_offered: relay_stats.to_client.offered,
            relay_lost: relay_stats.to_client.lost,
            payload_kbps: None,
            red_distances: None,
        })
    }
    .await;
    server.shutdown().await.context("server shutdown")?;
    result
}

/// First sample louder than 2% of full scale.
fn onset(pcm: &[i16]) -> Option<usize> {
    pcm.iter().position(|s| s.unsigned_abs() > 655)
}

/// Cut what bob heard so that its first sound lands where the input's first
/// sound is, and make it as long as the input (padding with silence).
fn trim(heard: &[i16], input_onset: usize, len: usize) -> Vec<i16> {
    let start = onset(heard).map_or(0, |o| o.saturating_sub(input_onset));
    let mut out: Vec<i16> = heard.iter().skip(start).take(len).copied().collect();
    out.resize(len, 0);
    out
}

fn write_wav(path: &Path, pcm: &[i16]) -> anyhow::Result<()> {
    let mut sink = WavSink::create(path, Channels::Mono)
        .with_context(|| format!("cannot create {}", path.display()))?;
    for frame in pcm.chunks(FRAME_SAMPLES) {
        sink.write_frame(frame)?;
    }
    sink.finish()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn markdown(rows: &[serde_json::Value]) -> String {
    let mut s = String::from(
        "| condition | network lost / sent | p95 jitter (ms) | JB mean delay (ms) | JB target (ms) | \
         delay - p95 (ms) | JB lost | RED-recovered | FEC-recovered | concealed | late |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let jb = &r["jb"];
        s += &format!(
            "| {} | {} / {} | {:.1} | {:.1} | {:.1} | {:+.1} | {} | {} | {} | {} | {} |\n",
            r["name"].as_str().unwrap_or("?"),
            r["relay_lost"],
            r["relay_offered"],
            r["jitter_p95_ms"].as_f64().unwrap_or(0.0),
            r["jb_mean_delay_ms"].as_f64().unwrap_or(0.0),
            r["jb_target_delay_ms"].as_f64().unwrap_or(0.0),
            r["delay_over_p95_ms"].as_f64().unwrap_or(0.0),
            jb["lost"],
            jb["red_recovered_frames"],
            jb["fec_recovered_frames"],
            jb["concealed_frames"],
            jb["late"],
        );
    }
    s
}
