//! `Sfu::close` at driver level: it returns once every worker has closed
//! its connections and sent the goodbyes, and the workers are stopped.

use huddle_sfu::{ParticipantId, Rights, RoomId, SfuConfig, SfuError};

#[tokio::test]
async fn close_waits_for_every_worker_and_stops_them() {
    let (sfu, _events) = huddle_sfu::start(SfuConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        workers: 2,
        ..Default::default()
    })
    .await
    .expect("SFU starts");
    for (room, who) in [("r1", "a"), ("r2", "b")] {
        sfu.add_participant(
            RoomId(room.into()),
            ParticipantId(who.into()),
            Rights {
                publish: true,
                subscribe: true,
            },
        )
        .await
        .expect("added");
    }
    assert_eq!(sfu.stats().await.expect("stats").participants, 2);
    sfu.close().await;
    assert!(
        matches!(sfu.stats().await, Err(SfuError::Stopped)),
        "every worker stopped"
    );
    sfu.close().await; // closing again returns at once
}
