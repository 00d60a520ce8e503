//! A group call without sound hardware: four participants in one room on a
//! huddle server started in this process, each speaking (a test tone) in
//! turn for two seconds while the others stay silent. Every participant
//! prints who the room's active speaker is, by name, as the server's events
//! arrive; at the end each one's list of speakers is checked.
//!
//! ```text
//! cargo run --example group_call
//! ```
//!
//! It ends by itself after about ten seconds.

use anyhow::Context;
use huddle::AudioSource;
use huddle::{Call, CallEvent, CallEvents, PcmSender, Tone};
use huddle_sfu::Rights;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Who takes part, in speaking order, and the pitch of their test tone.
const PEOPLE: [(&str, f64); 4] = [
    ("alice", 220.0),
    ("bob", 330.0),
    ("carol", 440.0),
    ("dave", 550.0),
];

/// How long each one speaks.
const TURN: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,huddle=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "group-example-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .context("cannot start the huddle server on 127.0.0.1")?;
    let base = format!("http://{}", server.http_addr());
    println!("server at {base}\n");
    let rights = Rights {
        publish: true,
        subscribe: true,
    };

    // Everyone joins and publishes a PCM-fed audio track.
    let start = Instant::now();
    let mut people = Vec::new();
    for (name, _) in PEOPLE {
        let token = server.mint_token("standup", name, rights)?;
        let (call, events) = Call::join(&base, &token)
            .await
            .with_context(|| format!("{name} cannot join"))?;
        let others: Vec<String> = call
            .participants()
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        println!("{name:>5} joined; already there: {others:?}");
        let listener = tokio::spawn(listen(name, events, start));
        let mic = call
            .publish_pcm(Default::default())
            .await
            .with_context(|| format!("{name} cannot publish"))?;
        people.push((call, mic, listener));
    }
    println!();

    // Each one speaks in turn; all send one frame per 20 ms (silence when
    // it is not their turn), as a microphone would.
    let senders = people
        .iter()
        .enumerate()
        .map(|(i, (_, mic, _))| speak(mic, i, PEOPLE[i].1));
    let results = futures_util::future::join_all(senders).await;
    results.into_iter().collect::<anyhow::Result<()>>()?;

    // Everyone leaves; each listener returns the speakers it was told of.
    let mut ok = true;
    for (i, (call, _, listener)) in people.into_iter().enumerate() {
        call.leave().await?;
        let heard = listener.await.context("listener task")?;
        let all = PEOPLE.iter().all(|(n, _)| heard.iter().any(|h| h == n));
        println!("{:>5} was told the speakers {heard:?}", PEOPLE[i].0);
        ok &= all;
    }
    server.shutdown().await?;
    anyhow::ensure!(ok, "someone was not told of every speaker");
    println!("\nevery participant saw every speaker in turn");
    Ok(())
}

/// Send participant `me`'s frames: a tone during its turn, silence before
/// and after.
async fn speak(mic: &PcmSender, me: usize, pitch: f64) -> anyhow::Result<()> {
    let frames_per_turn = (TURN.as_millis() / 20) as usize;
    let mut tone = Tone::new(pitch, 12_000);
    let silence = vec![0i16; huddle::FRAME_SAMPLES];
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    for frame in 0..frames_per_turn * PEOPLE.len() {
        clock.tick().await;
        if frame / frames_per_turn == me {
            let pcm = tone.next_frame().context("the tone ended")?;
            mic.write(&pcm).await?;
        } else {
            mic.write(&silence).await?;
        }
    }
    Ok(())
}

/// Print who speaks as this participant is told; return the speakers in
/// the order they were announced.
async fn listen(me: &'static str, mut events: CallEvents, start: Instant) -> Vec<String> {
    let mut heard: Vec<String> = Vec::new();
    while let Some(ev) = events.recv().await {
        match ev {
            CallEvent::ActiveSpeaker { speaker } => {
                let name = speaker.as_ref().map_or("nobody", |p| p.name());
                println!(
                    "[{:>5.2} s] {me:>5} sees: {name} is speaking",
                    start.elapsed().as_secs_f32()
                );
                if let Some(p) = speaker {
                    if heard.last().map(String::as_str) != Some(p.name()) {
                        heard.push(p.name().to_owned());
                    }
                }
            }
            CallEvent::ParticipantJoined(p) => println!("{me:>5} sees {} join", p.name()),
            // Nobody plays the audio here: dropping a track discards it.
            CallEvent::TrackSubscribed(_) => {}
            CallEvent::Disconnected => break,
            _ => {}
        }
    }
    heard
}
