//! WHIP and WHEP over HTTP in front of the real SFU (media socket on
//! 127.0.0.1:0): status codes, headers and what each request changes. Offers
//! come from the sans-IO `rtc` peer connection; media flow through WHIP/WHEP
//! is the browser interop test's job (tests/browser/whip_whep.test.js).

mod common;

use anyhow::{bail, Context, Result};
use common::*;
use huddle_proto::{ServerMessage, TrackKind};
use huddle_sfu::Sfu;
use huddle_wire::local_track::{default_track, rtc_kind};
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::time::Instant;

/// An SDP offer from a real (sans-IO) peer connection: sending audio and
/// video (`Sendrecv`: `add_track`, as a WHIP client does) or only receiving
/// them (`Recvonly`, WHEP).
fn offer(direction: RTCRtpTransceiverDirection) -> Result<String> {
    let now = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_media_engine(huddle_wire::codecs::media_engine()?)
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

/// The value of the first `a={name}:` line of an SDP or fragment.
fn sdp_value(sdp: &str, name: &str) -> Result<String> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(prefix.as_str()))
        .map(str::to_owned)
        .with_context(|| format!("no a={name} in {sdp}"))
}

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
    let etag = r.header("etag").context("ETag")?.to_owned();
    let answer = r.body.clone();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "a strong entity tag: {etag}"
    );
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
            assert!(location.starts_with("/whip/"), "{location}");
            assert!(
                !location.contains(&participant.id),
                "the resource is not named after the participant id the room sees: {location}"
            );
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
    assert_eq!(
        r.header("etag"),
        Some(etag.as_str()),
        "PATCH answers the ETag"
    );
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
    // If-Match (RFC 9725 §4.3.1): the session's tag or `*` pass, others 412.
    for (if_match, status) in [
        (etag.clone(), 204),
        ("*".to_owned(), 204),
        (format!("\"other\", {etag}"), 204),
        ("\"other\"".to_owned(), 412),
        (format!("W/{etag}"), 412),
    ] {
        let r = request(
            a,
            "PATCH",
            &location,
            Some(&cam),
            &[FRAG, ("If-Match", &if_match)],
            &frag.replace("{UFRAG}", &ufrag),
        )
        .await?;
        assert_eq!(r.status, status, "If-Match: {if_match}: {}", r.body);
    }
    // An ICE restart (RFC 9725 §4.3.2): new client credentials.
    let answer_ufrag = sdp_value(&answer, "ice-ufrag")?;
    let restart = |ufrag: &str, pwd: &str| {
        format!(
            "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2122260223 127.0.0.1 50002 typ host\r\n"
        )
    };
    let new_pwd = "NewPasswordOf24Chars+/0";
    for (body, why) in [
        (
            "a=ice-ufrag:NoPwd1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n".to_owned(),
            "no password",
        ),
        (restart("Bad1", "short"), "a password too short"),
        (restart("Bad:ufrag", new_pwd), "a ufrag with a colon"),
    ] {
        let r = request(
            a,
            "PATCH",
            &location,
            Some(&cam),
            &[FRAG, ("If-Match", "*")],
            &body,
        )
        .await?;
        assert_eq!(r.status, 400, "{why}: {}", r.body);
        assert_eq!(r.header("etag"), None, "{why}");
    }
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&cam),
        &[FRAG, ("If-Match", "*")],
        &restart("Restart1", new_pwd),
    )
    .await?;
    assert_eq!(r.status, 200, "ICE restart: {}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let new_etag = r.header("etag").context("ETag")?.to_owned();
    assert_ne!(new_etag, etag, "a restart is a new ICE session: a new ETag");
    assert!(r.body.starts_with("a=ice-lite\r\n"), "{}", r.body);
    // rtc keeps a publisher connection's SFU credentials (see
    // Endpoint::restart_ice_with); the client's are the new ones.
    assert_eq!(sdp_value(&r.body, "ice-ufrag")?, answer_ufrag, "{}", r.body);
    assert!(sdp_value(&r.body, "ice-pwd")?.len() >= 22, "{}", r.body);
    assert!(
        r.body.contains("a=mid:0\r\na=candidate:"),
        "the SFU's candidate: {}",
        r.body
    );
    assert!(r.body.ends_with("a=end-of-candidates\r\n"), "{}", r.body);
    // The old ETag no longer matches; late trickle of the old ICE
    // generation is accepted and dropped; the new generation trickles.
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&cam),
        &[FRAG, ("If-Match", &etag)],
        &frag.replace("{UFRAG}", &ufrag),
    )
    .await?;
    assert_eq!(r.status, 412, "the old ETag: {}", r.body);
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&cam),
        &[FRAG],
        &frag.replace("{UFRAG}", &ufrag),
    )
    .await?;
    assert_eq!(r.status, 204, "old generation: {}", r.body);
    assert_eq!(r.header("etag"), Some(new_etag.as_str()));
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&cam),
        &[FRAG, ("If-Match", &new_etag)],
        &frag.replace("{UFRAG}", "Restart1"),
    )
    .await?;
    assert_eq!(r.status, 204, "new generation: {}", r.body);
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
            assert!(participant_id.starts_with("PA_"), "{participant_id}")
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
    let answer = r.body.clone();
    let location = r.header("location").context("Location")?.to_owned();
    assert!(location.starts_with("/whep/"), "{location}");
    assert!(r.header("etag").is_some(), "WHEP answers an ETag too");
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

    // An ICE restart gives the viewer's connection new SFU credentials;
    // the SFU keeps answering the old ones until the client checks with
    // the new, so it holds one more ufrag for now.
    let answer_ufrag = sdp_value(&answer, "ice-ufrag")?;
    let ufrags = sfu.stats().await?.ufrags;
    let body = "a=ice-ufrag:ViewerRestart\r\na=ice-pwd:ViewerPasswordOf24Chars\r\n\
                m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&watcher),
        &[FRAG, ("If-Match", "*")],
        body,
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_ufrag = sdp_value(&r.body, "ice-ufrag")?;
    assert_ne!(new_ufrag, answer_ufrag, "new SFU credentials: {}", r.body);
    assert_ne!(
        sdp_value(&r.body, "ice-pwd")?,
        sdp_value(&answer, "ice-pwd")?
    );
    assert_eq!(sfu.stats().await?.ufrags, ufrags + 1);
    // Restarting again before the client checked retires the middle one.
    let again = body.replace("ViewerRestart", "ViewerRestart2");
    let r = request(
        a,
        "PATCH",
        &location,
        Some(&watcher),
        &[FRAG, ("If-Match", "*")],
        &again,
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sfu.stats().await?.ufrags, ufrags + 1);

    // An administrator's kick ends the session too.
    let listed = server.app.hub().participants("r").context("room")?;
    let id = &listed[0].id;
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

/// `sdp` with its m-lines' own direction attributes replaced by one
/// session-level `a={direction}` (RFC 8866 §6.7: it applies to every m-line).
fn session_level(sdp: &str, direction: &str) -> String {
    let mut out = String::new();
    let mut placed = false;
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end();
        if matches!(
            bare,
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
        ) {
            continue;
        }
        if !placed && bare.starts_with("m=") {
            out.push_str(&format!("a={direction}\r\n"));
            placed = true;
        }
        out.push_str(line);
    }
    out
}

/// A publisher's offer at /whep and a viewer's at /whip are refused with 400
/// before anything is created, however the direction is written.
#[tokio::test]
async fn offers_of_the_wrong_direction_are_refused() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let a = server.addr;
    let both = token("r", "cam", true, true);
    let publisher = offer(RTCRtpTransceiverDirection::Sendrecv)?;
    let viewer = offer(RTCRtpTransceiverDirection::Recvonly)?;
    for (path, sdp, what) in [
        (
            "/whep",
            publisher.replace("a=sendrecv", "a=sendonly"),
            "sendonly m-lines at /whep",
        ),
        (
            "/whep",
            session_level(&publisher, "sendonly"),
            "a session-level sendonly at /whep",
        ),
        ("/whip", viewer.clone(), "recvonly m-lines at /whip"),
        (
            "/whip",
            session_level(&publisher, "recvonly"),
            "a session-level recvonly at /whip",
        ),
        (
            "/whip",
            publisher.replace("a=sendrecv", "a=inactive"),
            "inactive m-lines at /whip",
        ),
    ] {
        let r = request(a, "POST", path, Some(&both), &[SDP], &sdp).await?;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
    }
    assert_eq!(participants(&server, &sfu).await?, (0, 0));
    assert!(server.app.http_sessions().is_empty());
    // The right directions still work.
    let r = request(a, "POST", "/whip", Some(&both), &[SDP], &publisher).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = request(a, "POST", "/whep", Some(&both), &[SDP], &viewer).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

/// A WHIP resource belongs to the session that created it: another token of
/// the same identity (even with other rights, or its own session) cannot
/// reach it by the participant id the room sees, nor by its own resource;
/// the owner can.
#[tokio::test]
async fn a_resource_belongs_to_its_session() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let a = server.addr;
    let (mut alice, _) = server.join("r", "alice", true, true).await?;
    let owner = token("r", "cam", true, false);
    let r = request(
        a,
        "POST",
        "/whip",
        Some(&owner),
        &[SDP],
        &offer(RTCRtpTransceiverDirection::Sendrecv)?,
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").context("Location")?.to_owned();
    let resource = location.trim_start_matches("/whip/");
    assert!(
        resource.len() >= 22 && resource.chars().all(|c| c.is_ascii_alphanumeric()),
        "at least 128 random bits: {resource}"
    );
    let participant = match next_room_message(&mut alice).await? {
        ServerMessage::ParticipantJoined { participant } => participant.id,
        other => panic!("expected participant_joined, got {other:?}"),
    };

    // Same identity, another token: subscribe-only, and one with its own
    // WHEP session.
    let same_identity = token("r", "cam", false, true);
    let r = request(
        a,
        "POST",
        "/whep",
        Some(&same_identity),
        &[SDP],
        &offer(RTCRtpTransceiverDirection::Recvonly)?,
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let own_whep = r.header("location").context("Location")?.to_owned();
    let frag = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n";
    for path in [
        format!("/whip/{participant}"),
        own_whep.replace("/whep/", "/whip/"),
    ] {
        for (method, headers, body) in [("DELETE", &[][..], ""), ("PATCH", &[FRAG][..], frag)] {
            let r = request(a, method, &path, Some(&same_identity), headers, body).await?;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
            let r = request(a, method, &path, Some(&owner), headers, body).await?;
            assert_eq!(r.status, 404, "{method} {path} by the owner: {}", r.body);
        }
    }
    assert_eq!(participants(&server, &sfu).await?, (3, 1), "nothing ended");

    // The owner, with its URL, can.
    let r = request(a, "PATCH", &location, Some(&owner), &[FRAG], frag).await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = request(a, "DELETE", &location, Some(&owner), &[], "").await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(participants(&server, &sfu).await?, (2, 1));
    let r = request(a, "DELETE", &own_whep, Some(&same_identity), &[], "").await?;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

/// A ban ends the banned identity's WHIP session at once, and its token can
/// start no new one.
#[tokio::test]
async fn a_ban_ends_and_refuses_whip_sessions() -> Result<()> {
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let a = server.addr;
    let cam = token("r", "cam", true, false);
    let sdp = offer(RTCRtpTransceiverDirection::Sendrecv)?;
    let r = request(a, "POST", "/whip", Some(&cam), &[SDP], &sdp).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = request(
        a,
        "POST",
        "/api/bans",
        Some(&admin_token()),
        &[("Content-Type", "application/json")],
        r#"{"room":"r","identity":"cam"}"#,
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let end = Instant::now() + WAIT;
    while !server.app.http_sessions().is_empty() {
        assert!(Instant::now() < end, "session still listed after the ban");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = request(a, "POST", "/whip", Some(&cam), &[SDP], &sdp).await?;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("revoked"), "{}", r.body);
    assert_eq!(participants(&server, &sfu).await?, (0, 0));
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

/// A WHIP session of `cam` in room `r`.
async fn post_whip(server: &Server) -> Result<HttpResponse> {
    request(
        server.addr,
        "POST",
        "/whip",
        Some(&token("r", "cam", true, false)),
        &[SDP],
        &offer(RTCRtpTransceiverDirection::Sendrecv)?,
    )
    .await
}

/// With TURN configured, every participant gets its own short-lived TURN
/// credentials: in `joined` over the WebSocket, in `Link` headers (RFC 9725
/// §4.4) for a WHIP session. Without it, neither carries any.
#[tokio::test]
async fn turn_credentials_come_with_the_join() -> Result<()> {
    let mut config = huddle_signaling::SignalingConfig::new(SECRET);
    config.turn = Some(huddle_signaling::turn_credentials::TurnConfig {
        urls: vec![
            "turn:127.0.0.1:3478?transport=udp".into(),
            "turn:127.0.0.1:3478?transport=tcp".into(),
        ],
        secret: "turn-shared-secret".into(),
        ttl: std::time::Duration::from_secs(3600),
    });
    let (server, sfu) = Server::start_with_real_sfu_config(config).await?;
    let before = huddle_signaling::turn_credentials::unix_now();
    let (_ws, joined) = server.join("r", "alice", true, true).await?;
    let ServerMessage::Joined {
        participant,
        ice_servers,
        ..
    } = joined
    else {
        bail!("not joined");
    };
    assert_eq!(ice_servers.len(), 1, "{ice_servers:?}");
    assert_eq!(ice_servers[0].urls.len(), 2);
    let user = ice_servers[0].username.clone().context("username")?;
    let (expiry, who) = user.split_once(':').context("expiry:participant")?;
    assert_eq!(who, participant.id, "named after the participant");
    let expiry: u64 = expiry.parse()?;
    assert!(
        (before + 3600..=before + 3605).contains(&expiry),
        "{expiry}"
    );
    let want = huddle_signaling::turn_credentials::credentials("turn-shared-secret", expiry, who).1;
    assert_eq!(ice_servers[0].credential.as_deref(), Some(want.as_str()));

    let r = post_whip(&server).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let links: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "link")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(links.len(), 2, "one Link per TURN URL: {links:?}");
    assert!(links[0]
        .starts_with("<turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; username=\""));
    assert!(links
        .iter()
        .all(|l| l.contains("credential-type=\"password\"")));
    server.stop().await?;
    sfu.shutdown();

    // Without TURN: nothing.
    let (server, sfu) = Server::start_with_real_sfu().await?;
    let (_ws, joined) = server.join("r", "bob", true, true).await?;
    assert!(
        matches!(joined, ServerMessage::Joined { ref ice_servers, .. } if ice_servers.is_empty())
    );
    let r = post_whip(&server).await?;
    assert_eq!(r.status, 201);
    assert!(r.header("link").is_none());
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

/// A participant's TURN credentials are renewed before they expire: an
/// `ice_servers` at three quarters of their lifetime, again and again,
/// each expiring later than the last.
#[tokio::test]
async fn turn_credentials_are_renewed_before_they_expire() -> Result<()> {
    let mut config = huddle_signaling::SignalingConfig::new(SECRET);
    config.turn = Some(huddle_signaling::turn_credentials::TurnConfig {
        urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        secret: "turn-shared-secret".into(),
        ttl: std::time::Duration::from_secs(4),
    });
    let (server, sfu) = Server::start_with_real_sfu_config(config).await?;
    let (mut ws, joined) = server.join("r", "alice", false, true).await?;
    let ServerMessage::Joined { ice_servers, .. } = joined else {
        bail!("not joined");
    };
    let expiry = |servers: &[huddle_proto::IceServerInfo]| -> Result<u64> {
        let user = servers[0].username.clone().context("username")?;
        Ok(user
            .split_once(':')
            .context("expiry:participant")?
            .0
            .parse()?)
    };
    let mut last = expiry(&ice_servers)?;
    for round in 0..2 {
        let renewed = loop {
            match recv(&mut ws).await? {
                ServerMessage::IceServers { ice_servers } => break ice_servers,
                _ => continue,
            }
        };
        let next = expiry(&renewed)?;
        assert!(next > last, "round {round}: {next} after {last}");
        assert!(
            next > huddle_signaling::turn_credentials::unix_now(),
            "renewed before the old ones expire"
        );
        last = next;
    }
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}
