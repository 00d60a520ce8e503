//! A whole huddle call in one process: the place to start reading.
//!
//! ```text
//! cargo run --example loopback_call                          # 5 s of a 440 Hz tone
//! cargo run --example loopback_call -- --input speech.wav    # send a WAV file instead
//! cargo run --example loopback_call -- --seconds 2 --output heard.wav
//! cargo run --example loopback_call -- --loss 5 --jitter 30   # a bad network
//! ```
//!
//! What happens, in order:
//!
//! 1. A huddle server (signaling + SFU) starts inside this process, on 127.0.0.1
//!    with ports picked by the OS. No sound card, no network beyond loopback.
//! 2. Two participants, alice and bob, join the same room with tokens the
//!    server mints, exactly as a real app would (WebSocket signaling, then
//!    WebRTC: ICE, DTLS, SRTP).
//! 3. alice publishes an audio track. Her audio goes through the SFU to bob,
//!    who receives the RTP packets (RED, RFC 2198: each carries a copy of
//!    the frame before it, as both ends negotiated).
//! 4. alice sends Opus-encoded silence until bob hears her, then the test
//!    signal (a tone, or `--input FILE.wav`), one 20 ms Opus frame every 20 ms
//!    as a microphone would. Why the silence first: the SFU announces a track
//!    when its first packet arrives, and only then negotiates bob's
//!    subscription; packets sent before that cannot reach him. The figures
//!    below are about the call once it is up, and the setup time is reported
//!    on its own.
//! 5. bob keeps every packet, and once alice is done decodes them in sequence
//!    order (so the figures describe the network, not a playout clock; a real
//!    app plays them live with `huddle::Playout`, the jitter buffer, as
//!    `huddle-call --play` and `examples/audio_quality/` do), concealing the missing ones
//!    with Opus packet-loss concealment, and writes the result to `--output`
//!    (48 kHz mono WAV): listen to it.
//! 6. It prints what got through: packets sent and received, loss, how long
//!    the call took to carry audio, packet transit time through the SFU, and
//!    the correlation between what alice sent and what bob decoded (1.0 is
//!    identical; Opus is lossy, so expect a little below).
//!
//! Exits with an error (non-zero) if bob hears nothing or what he hears does
//! not match what alice sent. `RUST_LOG=debug` shows what happens underneath.

use anyhow::{bail, Context};
use clap::Parser;
use huddle::proto::TrackKind;
use huddle::{AudioFrame, AudioLevel, Call, CallEvent, CallEvents, LocalTrack};
use huddle_media::analysis::{normalized_cross_correlation, rms};
use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
use huddle_media::rtp::{parse_red, RED_PT};
use huddle_media::sink::AudioSink;
use huddle_media::source::{AudioSource, Tone};
use huddle_media::wav::{WavSink, WavSource};
use huddle_media::{Channels, FRAME_SAMPLES, SAMPLE_RATE};
use huddle_sfu::Rights;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// One 20 ms Opus frame advances the RTP clock (48 kHz) by this much.
const FRAME_TIME: Duration = Duration::from_millis(20);
/// How long alice sends silence waiting for bob to hear her before giving up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait, after alice's last packet, for it to reach bob.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Below this correlation, what bob decoded is not what alice sent.
const MIN_CORRELATION: f64 = 0.5;

/// Send a test tone (or a WAV file) from alice to bob through an in-process
/// huddle server, and report what arrived.
#[derive(Debug, Parser)]
#[command(name = "loopback_call")]
struct Args {
    /// Send this WAV file (any rate, mono or stereo) instead of a tone.
    #[arg(long, value_name = "FILE.wav")]
    input: Option<PathBuf>,
    /// Seconds of audio to send [default: 5 for the tone, the whole --input file].
    #[arg(long, value_name = "N", value_parser = positive_seconds)]
    seconds: Option<f64>,
    /// Frequency of the test tone, in Hz.
    #[arg(long, default_value_t = 440.0, value_name = "HZ")]
    tone_hz: f64,
    /// Where bob writes what he heard (48 kHz mono WAV).
    #[arg(long, default_value = "loopback_out.wav", value_name = "FILE.wav")]
    output: PathBuf,
    /// Lose this percentage of the packets on the way to bob (a huddle-netem
    /// relay in front of the SFU, seeded).
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    loss: f64,
    /// Delay each packet on the way to bob by a random 0..=MS milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    jitter: u64,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 3600]")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // huddle's own warnings (huddle_* crates), the WebRTC stack only on errors.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,huddle=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let (what, frames) = load_audio(&args)?;
    println!(
        "huddle loopback call: alice sends {:.2} s of {what} to bob\n",
        seconds_of(frames.len())
    );

    let mut config = huddle_server::ServerConfig::ephemeral(
        "loopback-example-secret-padded-to-32-bytes-or-more",
    );
    // With --loss or --jitter, a relay in front of the SFU impairs what goes
    // to the participants; the SFU announces the relay's address.
    let _relay = if args.loss > 0.0 || args.jitter > 0 {
        let (relay, media) = huddle_netem::Relay::in_front_of_local_sfu(huddle_netem::Impairment {
            loss: (args.loss / 100.0).clamp(0.0, 1.0),
            jitter: Duration::from_millis(args.jitter),
            seed: 1,
            ..Default::default()
        })
        .await?;
        config.media_udp = media;
        config.media_public = Some(relay.local_addr());
        // The relay fronts one media port: one SFU worker.
        config.workers = 1;
        println!(
            "  network  {}% loss and 0-{} ms jitter toward the participants",
            args.loss, args.jitter
        );
        Some(relay)
    } else {
        None
    };
    let server = huddle_server::start(config)
        .await
        .context("cannot start the huddle server on 127.0.0.1")?;
    println!(
        "  server   signaling {}, media udp/{}",
        server.ws_url(),
        server.media_addr()
    );

    let outcome = call(&server, &frames).await;
    // Stop the server whatever happened, then report.
    let stopped = server.shutdown().await;
    let outcome = outcome?;
    stopped.context("the server did not shut down cleanly")?;

    report(&outcome, &frames, &args)
}

/// The audio alice will send, as 20 ms frames of 48 kHz mono, and a description.
fn load_audio(args: &Args) -> anyhow::Result<(String, Vec<Vec<i16>>)> {
    match &args.input {
        None => {
            let seconds = args.seconds.unwrap_or(5.0);
            let mut tone =
                Tone::new(args.tone_hz, 10_000).with_duration(Duration::from_secs_f64(seconds));
            let frames = std::iter::from_fn(|| tone.next_frame()).collect();
            Ok((format!("a {} Hz tone", args.tone_hz), frames))
        }
        Some(path) => {
            let mut wav = WavSource::open(path)
                .with_context(|| format!("cannot read {} as a WAV file", path.display()))?;
            let (spec, channels) = (wav.spec(), wav.channels());
            let max_frames = args
                .seconds
                .map_or(usize::MAX, |s| (s * 1000.0 / 20.0).ceil() as usize);
            let frames: Vec<Vec<i16>> = std::iter::from_fn(|| wav.next_frame())
                .take(max_frames)
                .map(|frame| to_mono(frame, channels))
                .collect();
            if let Some(e) = wav.error() {
                bail!("reading {} failed part-way: {e}", path.display());
            }
            if frames.is_empty() {
                bail!("{} holds no audio", path.display());
            }
            let layout = match spec.channels {
                1 => "mono".to_owned(),
                2 => "stereo, mixed to mono".to_owned(),
                n => format!("{n} channels, mixed to mono"),
            };
            let what = format!("{} ({} Hz {layout})", path.display(), spec.sample_rate);
            Ok((what, frames))
        }
    }
}

/// Average interleaved stereo down to mono; mono passes through.
fn to_mono(frame: Vec<i16>, channels: Channels) -> Vec<i16> {
    match channels {
        Channels::Mono => frame,
        Channels::Stereo => frame
            .chunks_exact(2)
            .map(|lr| ((i32::from(lr[0]) + i32::from(lr[1])) / 2) as i16)
            .collect(),
    }
}

fn seconds_of(frames: usize) -> f64 {
    (frames * FRAME_SAMPLES) as f64 / f64::from(SAMPLE_RATE)
}

/// Everything the call produced, for the report.
struct Outcome {
    sent: Sent,
    heard: Heard,
    /// When bob started joining.
    bob_joined_at: Instant,
}

/// alice's side: when she sent what.
struct Sent {
    /// Packets of silence sent while bob's subscription was set up.
    warmup_packets: usize,
    /// When the very first packet (silence) went out.
    first_packet_at: Instant,
    /// The test signal, in sending order: RTP sequence number and send time.
    packets: Vec<(u16, Instant)>,
}

/// bob's side: every packet of alice's track, by RTP sequence number.
#[derive(Default)]
struct Heard {
    packets: HashMap<u16, Arrival>,
}

struct Arrival {
    payload: Vec<u8>,
    at: Instant,
}

/// What bob's receiving task tells the rest of the program as packets arrive.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    first_at: Option<Instant>,
    last_seq: Option<u16>,
}

/// Run the call: join, publish, send, receive, leave.
async fn call(
    server: &huddle_server::RunningServer,
    frames: &[Vec<i16>],
) -> anyhow::Result<Outcome> {
    let both = Rights {
        publish: true,
        subscribe: true,
    };
    let room = "loopback";

    let token = server.mint_token(room, "alice", both)?;
    let (alice, _alice_events) = Call::join(&server.ws_url(), &token)
        .await
        .context("alice cannot join")?;
    println!(
        "  alice    joined room {room:?} as {}",
        alice.participant_id()
    );

    let token = server.mint_token(room, "bob", both)?;
    let bob_joined_at = Instant::now();
    let (bob, bob_events) = Call::join(&server.ws_url(), &token)
        .await
        .context("bob cannot join")?;
    println!(
        "  bob      joined room {room:?} as {}",
        bob.participant_id()
    );

    // bob records alice's audio in a task of his own, like a real app would.
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let (stop_bob, stop) = oneshot::channel();
    let listener = tokio::spawn(listen(bob_events, progress_tx, stop));

    let mic = alice
        .publish_audio()
        .await
        .context("alice cannot publish audio")?;
    println!("  alice    published an audio track, sending...");

    let sent = talk(&mic, frames, &mut progress).await;
    // Give the last packets a moment to reach bob, then stop listening.
    if let Some(&(last, _)) = sent.as_ref().ok().and_then(|s| s.packets.last()) {
        let _ = tokio::time::timeout(
            DRAIN_TIMEOUT,
            progress.wait_for(|p| p.last_seq == Some(last)),
        )
        .await;
    }
    let _ = stop_bob.send(());
    let heard = listener.await.context("bob's receiving task failed")?;

    bob.leave().await.context("bob cannot leave")?;
    alice.leave().await.context("alice cannot leave")?;
    println!("  both     left the room\n");
    Ok(Outcome {
        sent: sent?,
        heard,
        bob_joined_at,
    })
}

/// alice: send silence until bob hears her, then `frames`, one Opus frame
/// every 20 ms.
async fn talk(
    mic: &LocalTrack,
    frames: &[Vec<i16>],
    bob: &mut watch::Receiver<Progress>,
) -> anyhow::Result<Sent> {
    let mut encoder = OpusEncoder::new(EncoderConfig::default())?;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let silence = vec![0i16; FRAME_SAMPLES];

    let mut first_packet_at = None;
    let mut warmup_packets = 0;
    loop {
        tick.tick().await;
        if bob.borrow().first_at.is_some() {
            break;
        }
        let now = Instant::now();
        let first = *first_packet_at.get_or_insert(now);
        if now - first > SETUP_TIMEOUT {
            bail!(
                "bob received nothing from alice after {} s: media does not flow \
                 through the SFU (is UDP on 127.0.0.1 blocked? try RUST_LOG=debug)",
                SETUP_TIMEOUT.as_secs()
            );
        }
        let opus = encoder.encode(&silence)?;
        mic.write_audio_frame(AudioFrame {
            payload: &opus,
            duration: FRAME_TIME,
            level: AudioLevel::SILENCE,
        })
        .await
        .context("alice cannot send")?;
        warmup_packets += 1;
    }

    let mut packets = Vec::with_capacity(frames.len());
    for pcm in frames {
        tick.tick().await;
        let opus = encoder.encode(pcm)?;
        let seq = mic.next_sequence_number().await;
        let at = Instant::now();
        mic.write_audio_frame(AudioFrame {
            payload: &opus,
            duration: FRAME_TIME,
            level: AudioLevel::of_pcm(pcm),
        })
        .await
        .context("alice cannot send")?;
        packets.push((seq.0, at));
    }
    Ok(Sent {
        warmup_packets,
        first_packet_at: first_packet_at.unwrap_or_else(Instant::now),
        packets,
    })
}

/// The Opus frame a packet carries: its payload, or, when it is RED (RFC
/// 2198: the SFU forwards alice's RED as it is to bob, whose connection
/// took RED too), its primary block. Decoding in sequence order needs only
/// that; `huddle::Playout` also uses the redundant blocks to fill gaps.
fn opus_frame(packet: &huddle::MediaPacket) -> Vec<u8> {
    if packet.payload_type == RED_PT {
        if let Ok(red) = parse_red(&packet.payload) {
            return red.primary.payload.to_vec();
        }
    }
    packet.payload.to_vec()
}

/// bob: wait for alice's audio track, then keep every packet until told to stop.
async fn listen(
    mut events: CallEvents,
    progress: watch::Sender<Progress>,
    mut stop: oneshot::Receiver<()>,
) -> Heard {
    let mut heard = Heard::default();
    let track = loop {
        tokio::select! {
            _ = &mut stop => return heard,
            event = events.recv() => match event {
                Some(CallEvent::TrackSubscribed(t)) if t.kind() == TrackKind::Audio => break t,
                Some(CallEvent::Disconnected) | None => return heard,
                Some(_) => {}
            },
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            packet = track.recv() => {
                let Some(packet) = packet else { break };
                let at = Instant::now();
                let seq = packet.sequence_number.0;
                heard.packets.insert(seq, Arrival { payload: opus_frame(&packet), at });
                progress.send_modify(|p| {
                    p.first_at.get_or_insert(at);
                    p.last_seq = Some(seq);
                });
            }
        }
    }
    heard
}

/// Decode what bob heard, write it out, print the figures, and fail if the
/// audio did not get through.
fn report(outcome: &Outcome, frames: &[Vec<i16>], args: &Args) -> anyhow::Result<()> {
    let Outcome {
        sent,
        heard,
        bob_joined_at,
    } = outcome;

    // Decode in the order alice sent, concealing what never arrived. The SFU
    // forwards audio with the publisher's RTP sequence numbers, so alice's
    // numbers find bob's packets.
    let mut decoder = OpusDecoder::new(Channels::Mono)?;
    let mut decoded = Vec::with_capacity(frames.len() * FRAME_SAMPLES);
    let mut transit = Vec::new();
    for (seq, sent_at) in &sent.packets {
        let frame = match heard.packets.get(seq) {
            Some(arrival) => {
                transit.push(arrival.at.duration_since(*sent_at));
                decoder.decode(&arrival.payload)?
            }
            None => decoder.conceal()?,
        };
        decoded.extend(frame);
    }
    let mut wav = WavSink::create(&args.output, Channels::Mono)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    wav.write_frame(&decoded)?;
    wav.finish()
        .with_context(|| format!("cannot write {}", args.output.display()))?;

    let packets_sent = sent.packets.len();
    let packets_received = transit.len();
    let loss = 100.0 * (packets_sent - packets_received) as f64 / packets_sent.max(1) as f64;
    let first_heard = heard.packets.values().map(|a| a.at).min();
    let original: Vec<i16> = frames.concat();
    // Search lags up to 100 ms: Opus alone delays its output by 6.5 ms.
    let (correlation, lag) = normalized_cross_correlation(&original, &decoded, 4_800);
    transit.sort();

    println!("results");
    row(
        "packets sent",
        format!(
            "{packets_sent}   (after {} of silence during setup)",
            sent.warmup_packets
        ),
    );
    row("packets received", packets_received);
    row("loss", format!("{loss:.1} %"));
    if let Some(first) = first_heard {
        let join = ms(first.duration_since(*bob_joined_at));
        row("bob's join -> his first audio", format!("{join:.0} ms"));
        let setup = ms(first.duration_since(sent.first_packet_at));
        row("alice's first packet -> bob's", format!("{setup:.0} ms"));
    }
    if let (Some(median), Some(max)) = (transit.get(transit.len() / 2), transit.last()) {
        let (median, max) = (ms(*median), ms(*max));
        row(
            "transit alice -> SFU -> bob",
            format!("{median:.2} ms median, {max:.2} ms max"),
        );
    }
    if args.input.is_some() {
        let delay = ms(Duration::from_secs_f64(
            lag.max(0) as f64 / f64::from(SAMPLE_RATE),
        ));
        row(
            "correlation sent vs decoded",
            format!("{correlation:.3}   (best {delay:.1} ms later: the codec's delay)"),
        );
    } else {
        // A tone repeats every period, so the best lag says nothing about delay.
        row("correlation sent vs decoded", format!("{correlation:.3}"));
    }
    row(
        "bob's audio",
        format!(
            "{} ({:.2} s, 48 kHz mono)",
            args.output.display(),
            decoded.len() as f64 / f64::from(SAMPLE_RATE)
        ),
    );

    if packets_received == 0 {
        bail!(
            "bob heard alice's setup silence but none of the {packets_sent} packets that followed"
        );
    }
    // Silence correlates with nothing; only judge audio that has a level.
    if rms(&original) > 1.0 && correlation < MIN_CORRELATION {
        bail!(
            "what bob decoded does not match what alice sent (correlation {correlation:.3} < {MIN_CORRELATION})"
        );
    }
    Ok(())
}

/// One aligned line of the results.
fn row(label: &str, value: impl std::fmt::Display) {
    println!("  {label:<32} {value}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
