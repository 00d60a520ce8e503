//! WHIP and WHEP over HTTP in front of the real SFU (media socket on
//! 127.0.0.1:0): status codes, headers and what each request changes. Offers
//! come from the sans-IO `rtc` peer connection; media flow through WHIP/WHEP
//! is the browser interop test's job (tests/browser/whip_whep.test.js).

mod common;

use anyhow::{Context, Result};
use common::*;
use huddle_proto::{ServerMessage, TrackKind};
use huddle_sfu::local_track::{default_track, rtc_kind};
use huddle_sfu::Sfu;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::time::Instant;

/// An SDP offer from a real (sans-IO) peer connection: sending audio and
/// video (`Sendrecv`: `add_track`, as a WHIP client does) or only receiving
/// them (`Recvonly`, WHEP).
fn offer(direction: RTCRtpTransceiverDirection) -> Result<String> {
    let now = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_media_engine(huddle_sfu::codecs::media_engine()?)
        .build(now)?;
    for (kind, ssrc) in [
        (TrackKind::Audio, 0x1111_0001),
        (TrackKind::Video, 0x1111_0002),
    ] {
        if direction == RTCRtpTransceiverDirection::Recvonly {
            pc.add_transceiver_from_kind(
                rtc_kind(kind),
                Some(RTCRtpTransceiverInit {
                    direction,
                    ..Default::default()
                }),
            )?;
        } else {
            pc.add_track(default_track(
                "stream".into(),
                format!("{kind:?}"),
                kind,
                ssrc,
            ))?;
        }
    }
    let offer = pc.create_offer(None)?;
    pc.set_local_description(now, offer)?;
    Ok(pc.local_description().context("local description")?.sdp)
}

const SDP: (&str, &str) = ("Content-Type", "application/sdp");
const FRAG: (&str, &str) = ("Content-Type", "application/trickle-ice-sdpfrag");

async fn participants(server: &Server, sfu: &Sfu) -> Result<(usize, usize)> {
    Ok((
        sfu.stats().await?.participants,
        server.app.hub().rooms().len(),
    ))
}

/// Skip SFU offers and candidates; return the next room message.
async fn next_room_message(ws: &mut Ws) -> Result<ServerMessage> {
    loop {
        match recv(ws).await? {
            ServerMessage::Offer { .. } | ServerMessage::Candidate { .. } => continue,
            m => return Ok(m),
        }
    }
}

#[tokio::test]
async fn whip_refusals_change_nothing() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let a = server.addr;
    let good = offer(RTCRtpTransceiverDirection::Sendrecv)?;
    let publisher = token("r", "cam", true, false);
    let viewer_only = token("r", "cam", false, true);

    let r = request(a, "POST", "/whip", None, &[SDP], &good).await?;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = request(a, "POST", "/whip", Some("nonsense"), &[SDP], &good).await?;
    assert_eq!(r.status, 401);
    let r = request(
        a,
        "POST",
        "/whip",
        Some(&publisher),
        &[("Content-Type", "text/plain")],
        &good,
    )
    .await?;
    assert_eq!(r.status, 415);
    assert_eq!(r.header("accept-post"), Some("application/sdp"));
    let r = request(a, "POST", "/whip", Some(&viewer_only), &[SDP], &good).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = request(a, "POST", "/whip", Some(&publisher), &[SDP], "v=0 not sdp").await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let huge = "a".repeat(huddle_proto::MAX_MESSAGE_BYTES + 1);
    let r = request(a, "POST", "/whip", Some(&publisher), &[SDP], &huge).await?;
    assert_eq!(r.status, 413);
    let r = request(a, "POST", "/whep", Some(&publisher), &[SDP], &good).await?;
    assert_eq!(r.status, 403, "a publish-only token cannot view");

    assert_eq!(participants(&server, &sfu).await?, (0, 0));
    assert!(server.app.http_sessions().is_empty());
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

#[tokio::test]
async fn whip_session_lifecycle() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let a = server.addr;
    let (mut alice, _) = server.join("r", "alice", true, true).await?;
    let cam = token("r", "cam", true, false);
    let cam_offer = offer(RTCRtpTransceiverDirection::Sendrecv)?;
    let ufrag = cam_offer
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .context("offer ufrag")?
        .to_owned();

    let r = request(a, "POST", "/whip", Some(&cam), &[SDP], &cam_offer).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert_eq!(
        r.header("accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let location = r.header("location").context("Location")?.to_owned();
    assert!(location.starts_with("/whip/PA_"), "{location}");
    assert!(r.body.starts_with("v=0"), "{}", r.body);
    assert!(r.body.contains("a=ice-lite"), "{}", r.body);
    assert!(
        r.body.contains("typ host"),
        "the answer carries the SFU's candidate: {}",
        r.body
    );

    // The room sees the WHIP publisher as a participant.
    match next_room_message(&mut alice).await? {
        ServerMessage::ParticipantJoined { participant } => {
            assert_eq!(participant.identity, "cam");
            assert_eq!(format!("/whip/{}", participant.id), location);
        }
        other => panic!("expected participant_joined, got {other:?}"),
    }
    assert_eq!(participants(&server, &sfu).await?, (2, 1));

    // Trickle: a candidate is accepted, an ICE restart is not, nor is junk.
    let frag = "a=ice-ufrag:{UFRAG}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n";
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&cam),
        &[FRAG],
        &frag.replace("{UFRAG}", &ufrag),
    )
    .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&cam),
        &[FRAG],
        &frag.replace("a=ice-ufrag:{UFRAG}\r\n", ""),
    )
    .await?;
    assert_eq!(r.status, 204, "same candidate again, no ufrag: {}", r.body);
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&cam),
        &[FRAG],
        &frag.replace("{UFRAG}", "someotherufrag"),
    )
    .await?;
    assert_eq!(r.status, 422, "ICE restart: {}", r.body);
    let r = request(a, "PATCH", &location, Some(&cam), &[FRAG], "garbage").await?;
    assert_eq!(r.status, 400);
    let r = request(a, "PATCH", &location, Some(&cam), &[SDP], frag).await?;
    assert_eq!(r.status, 415);
    let intruder = token("r", "mallory", true, true);
    let r = request(a, "PATCH", &location, Some(&intruder), &[FRAG], frag).await?;
    assert_eq!(r.status, 403);
    let r = request(a, "DELETE", &location, Some(&intruder), &[], "").await?;
    assert_eq!(r.status, 403);
    let r = request(a, "DELETE", &location, None, &[], "").await?;
    assert_eq!(r.status, 401);
    let wrong_kind = location.replace("/whip/", "/whep/");
    let r = request(a, "DELETE", &wrong_kind, Some(&cam), &[], "").await?;
    assert_eq!(r.status, 404, "a WHIP session is not a WHEP one");
    assert_eq!(participants(&server, &sfu).await?, (2, 1));

    let r = request(a, "DELETE", &location, Some(&cam), &[], "").await?;
    assert_eq!(r.status, 200);
    match next_room_message(&mut alice).await? {
        ServerMessage::ParticipantLeft { participant_id } => {
            assert_eq!(format!("/whip/{participant_id}"), location)
        }
        other => panic!("expected participant_left, got {other:?}"),
    }
    assert_eq!(participants(&server, &sfu).await?, (1, 1));
    let r = request(a, "DELETE", &location, Some(&cam), &[], "").await?;
    assert_eq!(r.status, 404, "already gone");
    assert!(server.app.http_sessions().is_empty());
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

#[tokio::test]
async fn whep_session_and_kick() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let a = server.addr;
    let watcher = token("r", "watcher", false, true);
    let r = request(
        a,
        "POST",
        "/whep",
        Some(&watcher),
        &[SDP],
        &offer(RTCRtpTransceiverDirection::Recvonly)?,
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").context("Location")?.to_owned();
    assert!(location.starts_with("/whep/PA_"), "{location}");
    assert_eq!(
        r.body.matches("a=sendonly").count(),
        2,
        "the SFU sends on both offered m-lines: {}",
        r.body
    );
    // An offer that receives nothing is refused.
    let send_only =
        offer(RTCRtpTransceiverDirection::Sendrecv)?.replace("a=sendrecv", "a=sendonly");
    let r = request(a, "POST", "/whep", Some(&watcher), &[SDP], &send_only).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(participants(&server, &sfu).await?, (1, 1));
    assert_eq!(server.app.http_sessions().len(), 1);

    // An administrator's kick ends the session too.
    let id = location.trim_start_matches("/whep/");
    let (status, _) = server
        .http(
            "DELETE",
            &format!("/api/rooms/r/participants/{id}"),
            Some(&admin_token()),
        )
        .await?;
    assert_eq!(status, 204);
    let end = Instant::now() + WAIT;
    while !server.app.http_sessions().is_empty() {
        assert!(Instant::now() < end, "session still listed after the kick");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = request(a, "DELETE", &location, Some(&watcher), &[], "").await?;
    assert_eq!(r.status, 404);
    assert_eq!(participants(&server, &sfu).await?, (0, 0));

    let r = request(a, "OPTIONS", "/whep", None, &[], "").await?;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("accept-post"), Some("application/sdp"));
    assert!(r
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("authorization")));
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}
