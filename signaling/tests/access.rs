//! Who gets in: token claims (`nbf`, identity, lifetime), kicks and bans,
//! strict client messages, and the security headers of every response.
//! In front of the real SFU (media sockets on 127.0.0.1:0).

mod common;

use anyhow::{Context, Result};
use common::*;
use huddle_proto::{ErrorCode, ServerMessage};
use huddle_signaling::{auth, Claims, SignalingConfig};
use std::sync::Arc;

/// A server with `config` in front of a real SFU with one worker.
async fn start_with(config: SignalingConfig) -> Result<(Server, huddle_sfu::Sfu)> {
    let (sfu, events) = huddle_sfu::driver::start(huddle_sfu::SfuConfig {
        bind: "127.0.0.1:0".parse()?,
        workers: 1,
        ..Default::default()
    })
    .await?;
    let server = Server::start(Arc::new(sfu.clone()), events, config).await?;
    Ok((server, sfu))
}

async fn stop(server: Server, sfu: huddle_sfu::Sfu) -> Result<()> {
    server.stop().await?;
    sfu.shutdown();
    Ok(())
}

/// Join with `token` on a fresh connection: `Ok(joined)` or the refusal's
/// code (after which the server must close with 1008).
async fn try_join(server: &Server, token: &str) -> Result<Result<ServerMessage, ErrorCode>> {
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &join_msg(token)).await?;
    match recv(&mut ws).await? {
        m @ ServerMessage::Joined { .. } => Ok(Ok(m)),
        ServerMessage::Error { code, .. } => {
            assert_eq!(expect_closed(&mut ws).await?, Some(1008), "{code}");
            Ok(Err(code))
        }
        other => anyhow::bail!("expected joined or error, got {other:?}"),
    }
}

fn mint(claims: &Claims) -> String {
    auth::mint(SECRET, claims).expect("mint")
}

/// A token whose `nbf` is ahead, whose identity is blank, or that lives longer
/// than the server allows does not join, nor reach the admin API.
#[tokio::test]
async fn token_claims_are_enforced() -> Result<()> {
    let mut config = SignalingConfig::new(SECRET);
    config.token_max_lifetime_secs = 600;
    let (server, sfu) = start_with(config).await?;

    let mut early = Claims::new("bob", "r", true, true, 300);
    early.nbf = Some(auth::now_secs() + 120);
    let long = Claims::new("bob", "r", true, true, 3600);
    for claims in [
        early,
        Claims::new("", "r", true, true, 300),
        Claims::new("  ", "r", true, true, 300),
        long,
    ] {
        assert_eq!(
            try_join(&server, &mint(&claims)).await?.err(),
            Some(ErrorCode::TokenInvalid),
            "{claims:?}"
        );
    }
    let (status, body) = server
        .http(
            "GET",
            "/api/rooms",
            Some(&mint(&Claims::admin("ops", 3600))),
        )
        .await?;
    assert_eq!(status, 401, "an admin token beyond the lifetime: {body}");
    assert!(body.contains("lifetime"), "{body}");

    // Within the rules: an nbf already past, the longest lifetime allowed.
    let mut fine = Claims::new("bob", "r", true, true, 600);
    fine.nbf = Some(auth::now_secs() - 1);
    assert!(try_join(&server, &mint(&fine)).await?.is_ok());
    assert_eq!(server.app.hub().participants("r").map(|p| p.len()), Some(1));
    stop(server, sfu).await
}

/// A kick lets the participant back in; a kick with `ban_seconds` keeps its
/// identity out of that room (and only that room) until the ban is lifted.
#[tokio::test]
async fn kick_and_ban_keeps_an_identity_out() -> Result<()> {
    let (server, sfu) = start_with(SignalingConfig::new(SECRET)).await?;
    let admin = admin_token();
    let mallory = token("r", "mallory", true, true);
    let (_alice, _) = server.join("r", "alice", true, true).await?;

    // A plain kick: the same token joins again at once.
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &join_msg(&mallory)).await?;
    let id = joined_id(&recv(&mut ws).await?);
    let (status, _) = server
        .http(
            "DELETE",
            &format!("/api/rooms/r/participants/{id}"),
            Some(&admin),
        )
        .await?;
    assert_eq!(status, 204);
    assert_eq!(expect_closed(&mut ws).await?, Some(4001));
    // A kick is no ban: the same token joins again at once.
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &join_msg(&mallory)).await?;
    let id = joined_id(&recv(&mut ws).await?);

    // A bad ban length changes nothing.
    for bad in ["0", &(huddle_signaling::bans::MAX_BAN_SECS + 1).to_string()] {
        let (status, _) = server
            .http(
                "DELETE",
                &format!("/api/rooms/r/participants/{id}?ban_seconds={bad}"),
                Some(&admin),
            )
            .await?;
        assert_eq!(status, 400, "ban_seconds={bad}");
    }
    ping_pong(&mut ws).await?;

    // Kick and ban.
    let (status, _) = server
        .http(
            "DELETE",
            &format!("/api/rooms/r/participants/{id}?ban_seconds=600"),
            Some(&admin),
        )
        .await?;
    assert_eq!(status, 204);
    assert_eq!(expect_closed(&mut ws).await?, Some(4001));
    assert_eq!(
        try_join(&server, &mallory).await?.err(),
        Some(ErrorCode::TokenRevoked)
    );
    let fresh = token("r", "mallory", true, false);
    assert_eq!(
        try_join(&server, &fresh).await?.err(),
        Some(ErrorCode::TokenRevoked),
        "a new token for the identity is refused too"
    );
    assert!(
        try_join(&server, &token("elsewhere", "mallory", true, true))
            .await?
            .is_ok(),
        "the ban is for room r only"
    );
    let left: Vec<String> = server
        .app
        .hub()
        .participants("r")
        .context("room r")?
        .into_iter()
        .map(|p| p.identity)
        .collect();
    assert_eq!(left, ["alice"], "alice is untouched");

    // Listed, then lifted.
    let (status, body) = server.http("GET", "/api/bans", Some(&admin)).await?;
    assert_eq!(status, 200, "{body}");
    let bans: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(bans[0]["room"], "r");
    assert_eq!(bans[0]["identity"], "mallory");
    let until = bans[0]["until"].as_u64().context("until")?;
    assert!(until > auth::now_secs() + 500 && until <= auth::now_secs() + 600);
    let ban_id = bans[0]["id"].as_str().context("id")?;
    let path = format!("/api/bans/{ban_id}");
    assert_eq!(server.http("DELETE", &path, Some(&admin)).await?.0, 204);
    assert_eq!(server.http("DELETE", &path, Some(&admin)).await?.0, 404);
    assert!(try_join(&server, &mallory).await?.is_ok());
    stop(server, sfu).await
}

/// `POST /api/bans` by token id removes that token's participants at once
/// and refuses the token afterwards (admin tokens included); other tokens of
/// the same identity still work. Malformed requests change nothing.
#[tokio::test]
async fn ban_by_token_id() -> Result<()> {
    let (server, sfu) = start_with(SignalingConfig::new(SECRET)).await?;
    let admin = admin_token();
    let json = ("Content-Type", "application/json");
    let mut leaked = Claims::new("bob", "r", true, true, 600);
    leaked.jti = Some("leaked-1".into());
    let leaked = mint(&leaked);
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &join_msg(&leaked)).await?;
    joined_id(&recv(&mut ws).await?);

    for bad in [
        "{}",
        r#"{"room":"r"}"#,
        r#"{"jti":""}"#,
        r#"{"jti":"x","seconds":0}"#,
        r#"{"jti":"x","color":"red"}"#,
        "not json",
    ] {
        let r = request(server.addr, "POST", "/api/bans", Some(&admin), &[json], bad).await?;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = request(
        server.addr,
        "POST",
        "/api/bans",
        Some(&token("r", "bob", true, true)),
        &[json],
        r#"{"jti":"leaked-1"}"#,
    )
    .await?;
    assert_eq!(r.status, 403, "only admins ban");

    let r = request(
        server.addr,
        "POST",
        "/api/bans",
        Some(&admin),
        &[json],
        r#"{"jti":"leaked-1"}"#,
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let ban: serde_json::Value = serde_json::from_str(&r.body)?;
    assert_eq!(ban["removed"], 1);
    assert_eq!(ban["jti"], "leaked-1");
    assert!(ban.get("room").is_none(), "every room: {ban}");
    let until = ban["until"].as_u64().context("until")?;
    let outlives = auth::now_secs() + server.app.default_ban_secs();
    assert!(
        until + 5 > outlives && until <= outlives,
        "by default a ban outlives every token alive now: {until} vs {outlives}"
    );
    assert_eq!(expect_closed(&mut ws).await?, Some(4001));
    assert_eq!(
        try_join(&server, &leaked).await?.err(),
        Some(ErrorCode::TokenRevoked)
    );
    assert!(try_join(&server, &token("r", "bob", true, true))
        .await?
        .is_ok());

    // A leaked admin token is revoked the same way.
    let mut ops = Claims::admin("ops2", 600);
    ops.jti = Some("admin-7".into());
    let ops = mint(&ops);
    assert_eq!(server.http("GET", "/api/bans", Some(&ops)).await?.0, 200);
    let r = request(
        server.addr,
        "POST",
        "/api/bans",
        Some(&admin),
        &[json],
        r#"{"jti":"admin-7","seconds":60}"#,
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let (status, body) = server.http("GET", "/api/bans", Some(&ops)).await?;
    assert_eq!(status, 401);
    assert!(body.contains("revoked"), "{body}");
    stop(server, sfu).await
}

/// A client message with a field the protocol does not define is refused
/// with `bad_message`; the connection stays usable.
#[tokio::test]
async fn unknown_fields_are_refused() -> Result<()> {
    let (server, sfu) = start_with(SignalingConfig::new(SECRET)).await?;
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, r#"{"type":"ping","extra":true}"#).await?;
    expect_error(&mut ws, ErrorCode::BadMessage).await?;
    ping_pong(&mut ws).await?;
    let mut join = serde_json::json!({"type": "join", "token": token("r", "a", true, true)});
    join["admin"] = true.into();
    send_json(&mut ws, &join.to_string()).await?;
    let message = expect_error(&mut ws, ErrorCode::BadMessage).await?;
    assert!(message.contains("unknown field `admin`"), "{message}");
    join.as_object_mut().context("object")?.remove("admin");
    send_json(&mut ws, &join.to_string()).await?;
    assert!(matches!(recv(&mut ws).await?, ServerMessage::Joined { .. }));
    send_json(
        &mut ws,
        r#"{"type":"candidate","pc":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","foo":1}}"#,
    )
    .await?;
    loop {
        match recv(&mut ws).await? {
            ServerMessage::Offer { .. } | ServerMessage::Candidate { .. } => continue,
            ServerMessage::Error { code, .. } => {
                assert_eq!(code, ErrorCode::BadMessage);
                break;
            }
            other => anyhow::bail!("expected bad_message, got {other:?}"),
        }
    }
    ping_pong(&mut ws).await?;
    stop(server, sfu).await
}

/// Every answer of the service, refusals and unknown paths included, carries
/// the security headers.
#[tokio::test]
async fn every_response_has_security_headers() -> Result<()> {
    let (server, sfu) = start_with(SignalingConfig::new(SECRET)).await?;
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/api/rooms"),
        ("POST", "/whip"),
        ("OPTIONS", "/whep"),
        ("GET", "/no/such/path"),
    ] {
        let r = request(server.addr, method, path, None, &[], "").await?;
        let what = format!("{method} {path} ({})", r.status);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(
            r.header("content-security-policy"),
            Some(huddle_signaling::headers::API_CSP),
            "{what}"
        );
    }
    stop(server, sfu).await
}
