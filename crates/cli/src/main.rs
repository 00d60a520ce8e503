//! `huddle-call`: join a room on a huddle server from the command line, send a
//! speech-like test signal, a WAV file (`--input`) or the microphone (`--mic`)
//! as Opus, and play everyone else on the speakers (`--play`) or record the
//! first remote audio track to a WAV file (`--record`). `--video` also
//! publishes a synthetic VP8 test video (see `video.rs`).
//!
//! ```text
//! huddle-call --url http://127.0.0.1:7880 --token "$(huddle-server token --room demo --identity me)"
//! ```
//!
//! It prints `joined <participant id> in room <room> as <identity>` once in
//! the room, then one line per room event (participants by name), and runs until `--seconds` pass (0: until Ctrl-C).
//! With `--stats` it also prints, four times a second, a `stats {...}` JSON
//! line: per remote video its rate over the last second, keyframe size and
//! paused state, and for the audio the packets received and lost and how
//! many losses RED or FEC made up for (see `stats.rs`).
//!
//! With `--e2ee` it takes part in an end-to-end encrypted room (a token
//! from `huddle-server token --e2ee`) and prints `e2ee epoch <n> safety
//! code <code>` at each new epoch.

mod stats;
mod video;

use anyhow::Context;
use clap::Parser;
use huddle::{
    AudioSource, Call, CallEvent, CallOptions, Channels, EncoderConfig, IceServer, Microphone,
    Playout, Speaker, SpeechLike, TrackKind, WavSink, WavSource,
};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "huddle-call", version, about)]
struct Args {
    /// The server's address (`http(s)://host:port`) or its signaling
    /// WebSocket (`ws(s)://host:port/ws`).
    #[arg(long, default_value = "http://127.0.0.1:7880")]
    url: String,
    /// Access token (mint one with `huddle-server token`).
    #[arg(long, env = "HUDDLE_TOKEN")]
    token: String,
    /// Send this WAV file instead of the built-in test signal.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Send the microphone (`--device NAME` picks one) instead of a file or
    /// the test signal.
    #[arg(long, conflicts_with = "input")]
    mic: bool,
    /// Name of the microphone for `--mic` (default: the system's default).
    #[arg(long, requires = "mic")]
    device: Option<String>,
    /// Do not publish audio, only listen.
    #[arg(long)]
    listen_only: bool,
    /// Also publish a synthetic VP8 test video (320x180, 15 fps): real RTP
    /// with valid VP8 headers around filler, which receivers count but
    /// cannot show.
    #[arg(long)]
    video: bool,
    /// Play every remote participant's audio on the default speakers.
    #[arg(long, conflicts_with = "record")]
    play: bool,
    /// Record the first remote audio track to this WAV file (48 kHz mono,
    /// through a jitter buffer, losses concealed).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Print a `stats {...}` JSON line every 250 ms: each remote video's
    /// rate (kbit/s, over the last second), the picture size of its last
    /// keyframe and whether the server paused it, and the remote audio
    /// packets received and lost, with how many of the lost ones RED or
    /// Opus FEC made up for. Audio that is not played or recorded is
    /// counted too (decoded, to no device).
    #[arg(long)]
    stats: bool,
    /// Tell the server every remote video is shown at this size
    /// (`WIDTHxHEIGHT`, pixels): it sends the smallest simulcast layer that
    /// fills it (by default, the server picks by how many videos there are).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    video_size: Option<(u32, u32)>,
    /// A STUN or TURN server for the media connections (`stun:host:port`,
    /// `turn:host:port` over UDP, `turn:host:port?transport=tcp`,
    /// `turns:host:port` over TLS); may be given more than once.
    #[arg(long, value_name = "URL")]
    ice_server: Vec<String>,
    /// TURN username for every `--ice-server`.
    #[arg(long, requires = "ice_server")]
    ice_username: Option<String>,
    /// TURN password (credential) for every `--ice-server`.
    #[arg(long, env = "HUDDLE_ICE_CREDENTIAL", requires = "ice_server")]
    ice_credential: Option<String>,
    /// Use relayed paths only: through a TURN `--ice-server`, or those the
    /// server hands out (huddle-server's embedded TURN).
    #[arg(long)]
    relay_only: bool,
    /// Trust the certificates in this PEM file for `turns:` servers, besides
    /// the web's root certificates (a private CA, a test server's own).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Take part in end-to-end encryption (a room whose tokens say
    /// `e2ee`): every audio and video frame encrypted with the group's
    /// keys.
    #[arg(long)]
    e2ee: bool,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let options = CallOptions {
        ice_servers: args
            .ice_server
            .iter()
            .map(|url| IceServer {
                urls: vec![url.clone()],
                username: args.ice_username.clone(),
                credential: args.ice_credential.clone(),
            })
            .collect(),
        relay_only: args.relay_only,
        e2ee: args.e2ee,
        tls_roots: match &args.tls_ca {
            Some(file) => pem_certificates(file)?,
            None => Vec::new(),
        },
        ..Default::default()
    };
    let (call, mut events) = Call::join_with(&args.url, &args.token, options)
        .await
        .with_context(|| format!("cannot join through {}", args.url))?;
    println!(
        "joined {} in room {} as {}",
        call.participant_id(),
        call.room(),
        call.local_participant().name()
    );
    for p in call.participants() {
        println!("{} is here", p.name());
    }

    let sender = if args.listen_only {
        None
    } else {
        let source: Box<dyn AudioSource + Send> = if args.mic {
            let mic = Microphone::open(args.device.as_deref())?;
            println!("capturing from {}", mic.name());
            Box::new(mic)
        } else {
            match &args.input {
                Some(path) => Box::new(
                    WavSource::open(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => Box::new(SpeechLike::new(1)),
            }
        };
        let sending = call
            .send_audio(source, EncoderConfig::default())
            .await
            .context("cannot publish audio")?;
        println!("publishing audio");
        Some(sending)
    };

    let video = if args.video {
        let track = call.publish_video().await.context("cannot publish video")?;
        println!("publishing video");
        Some(tokio::spawn(video::send(track)))
    } else {
        None
    };

    let record = args.record.clone();
    let play = args.play;
    let stats = args.stats.then(stats::Stats::new);
    let reporter = stats.clone().map(|s| tokio::spawn(s.report()));
    let video_size = args.video_size;
    let call_ref = &call;
    let listener = async move {
        let mut recorder: Option<Playout> = None;
        let speakers = match play {
            true => Some(Playout::start(Box::new(Speaker::open(None)?))),
            false => None,
        };
        while let Some(ev) = events.recv().await {
            match ev {
                CallEvent::TrackSubscribed(track) => {
                    println!(
                        "receiving {:?} from {}",
                        track.kind(),
                        track.participant().name()
                    );
                    if track.kind() != TrackKind::Audio {
                        if let Some(size) = video_size {
                            call_ref.set_track_view(track.track_id(), true, Some(size))?;
                        }
                        if let Some(stats) = &stats {
                            stats.watch(track);
                        }
                        continue;
                    }
                    if let Some(p) = &speakers {
                        p.add(track);
                    } else if let (Some(path), None) = (&record, &recorder) {
                        // Through a jitter buffer: losses are concealed, so the
                        // file keeps real time.
                        let sink = WavSink::create(path, Channels::Mono)?;
                        let playout = Playout::start(Box::new(sink));
                        playout.add(track);
                        recorder = Some(playout);
                    } else if let Some(stats) = &stats {
                        stats.listen(track);
                    }
                }
                CallEvent::TrackPaused { track_id, reason } => {
                    println!("{track_id} paused: {reason:?}");
                    if let Some(stats) = &stats {
                        stats.set_paused(&track_id, true);
                    }
                }
                CallEvent::TrackResumed { track_id } => {
                    println!("{track_id} resumed");
                    if let Some(stats) = &stats {
                        stats.set_paused(&track_id, false);
                    }
                }
                CallEvent::Reconnecting => println!("signaling connection lost: reconnecting"),
                CallEvent::Reconnected { rejoined: false } => {
                    println!("reconnected: session resumed")
                }
                CallEvent::Reconnected { rejoined: true } => {
                    println!("reconnected: joined again as {}", call_ref.participant_id())
                }
                CallEvent::MediaReconnecting => {
                    println!("media path lost: restarting ICE")
                }
                CallEvent::MediaReconnected => println!("media path back"),
                CallEvent::Disconnected => {
                    println!("disconnected");
                    break;
                }
                CallEvent::E2eeEpoch(e) => {
                    println!("e2ee epoch {} safety code {}", e.epoch, e.safety_code)
                }
                CallEvent::ParticipantJoined(p) => println!("{} joined", p.name()),
                CallEvent::ParticipantLeft(p) => println!("{} left", p.name()),
                CallEvent::ActiveSpeaker { speaker } => match speaker {
                    Some(p) => println!("{} is speaking", p.name()),
                    None => println!("nobody is speaking"),
                },
                other => println!("{other:?}"),
            }
        }
        anyhow::Ok(())
    };

    let run = async {
        if args.seconds == 0 {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        }
    };
    tokio::select! {
        _ = run => {}
        res = listener => { res?; }
    }
    drop(sender);
    if let Some(v) = video {
        v.abort();
    }
    if let Some(r) = reporter {
        r.abort();
    }
    call.leave().await?;
    println!("left");
    Ok(())
}

/// `WIDTHxHEIGHT` in pixels.
fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT (positive whole numbers)"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// The certificates (DER) in the PEM file `file`; at least one.
fn pem_certificates(file: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let certs = CertificateDer::pem_file_iter(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", file.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in it",
        file.display()
    );
    Ok(certs)
}
