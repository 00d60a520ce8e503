//! Signaling in front of the real SFU (`huddle_sfu::driver::start`), media
//! socket on 127.0.0.1:0. Only signaling-level behaviour is checked here; media
//! flows are the workspace tests' job.

mod common;

use anyhow::Result;
use common::*;
use huddle_proto::{ErrorCode, ServerMessage};

/// Skip the subscriber-connection offer (and any candidates) the SFU sends
/// after `joined`, returning the first other message.
async fn recv_skipping_sfu(ws: &mut Ws) -> Result<ServerMessage> {
    loop {
        match recv(ws).await? {
            ServerMessage::Offer { .. } | ServerMessage::Candidate { .. } => continue,
            m => return Ok(m),
        }
    }
}

#[tokio::test]
async fn refusals_with_real_sfu() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let forged = huddle_signaling::auth::mint(
        "wrong",
        &huddle_signaling::Claims::new("a", "r", true, true, 60),
    )?;
    for (room, msg, code) in [
        (None, join_msg(""), ErrorCode::TokenMissing),
        (None, join_msg(&forged), ErrorCode::TokenInvalid),
        (
            Some("x"),
            join_msg(&token("r", "a", true, true)),
            ErrorCode::WrongRoom,
        ),
    ] {
        let mut ws = server.connect(room).await?;
        send_json(&mut ws, &msg).await?;
        expect_error(&mut ws, code).await?;
        expect_closed(&mut ws).await?;
    }
    assert_eq!(sfu.stats().await?.participants, 0);
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

/// Depends on the SFU implementing add/remove participant.
#[tokio::test]
async fn join_leave_and_bad_sdp_with_real_sfu() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let (mut a, _) = server.join("r", "alice", true, true).await?;
    let (mut b, jb) = server.join("r", "bob", true, true).await?;
    assert!(matches!(
        recv_skipping_sfu(&mut a).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    assert_eq!(sfu.stats().await?.participants, 2);

    send_json(&mut b, r#"{"type":"offer","sdp":"this is not SDP"}"#).await?;
    match recv_skipping_sfu(&mut b).await? {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::BadSdp),
        m => anyhow::bail!("expected bad_sdp, got {m:?}"),
    }
    send_json(&mut b, r#"{"type":"leave"}"#).await?;
    assert_eq!(
        recv_skipping_sfu(&mut a).await?,
        ServerMessage::ParticipantLeft {
            participant_id: joined_id(&jb)
        }
    );
    assert_eq!(sfu.stats().await?.participants, 1);
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}
