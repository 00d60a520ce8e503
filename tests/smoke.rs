//! Temporary: two participants, one sends audio, the other receives.
use huddle::{Call, CallEvent};
use huddle_sfu::api::Rights;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_audio() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).try_init();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral("s3cret")).await?;
    let rights = Rights { publish: true, subscribe: true };
    let ta = server.mint_token("room1", "alice", rights)?;
    let tb = server.mint_token("room1", "bob", rights)?;
    let (a, _ea) = Call::join(&server.ws_url(), &ta).await?;
    let (b, mut eb) = Call::join(&server.ws_url(), &tb).await?;
    let mic = a.publish_audio().await?;
    let sender = tokio::spawn(async move {
        for i in 0..150u32 {
            let payload = vec![(i % 256) as u8; 60];
            mic.write_frame(&[&payload], 960).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    });
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        let mut n = 0;
        while let Some(ev) = eb.recv().await {
            println!("bob event: {ev:?}");
            if let CallEvent::TrackSubscribed(t) = ev {
                while let Ok(Some(_p)) = tokio::time::timeout(Duration::from_secs(2), t.recv()).await {
                    n += 1;
                }
                break;
            }
        }
        n
    })
    .await?;
    sender.await??;
    println!("received {got}");
    println!("stats {:?}", server.sfu().stats().await?);
    assert!(got > 100);
    a.leave().await?;
    b.leave().await?;
    server.shutdown().await?;
    Ok(())
}
