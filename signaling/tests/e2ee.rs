//! An end-to-end encrypted room's MLS group, with the signaling server as
//! its delivery service: real MLS clients (`huddle_e2ee::session`, openmls)
//! over the WebSocket protocol, in front of the real SFU (no media is
//! sent: the group is the subject).
//!
//! Checked: members join one by one and agree on the epoch, the SFrame
//! base key and the safety code; one who leaves is removed and the rest
//! move on to a new epoch; concurrent joins settle; a client without E2EE
//! and a WHEP viewer are refused in an E2EE room, and an E2EE client in a
//! plain room; malformed E2EE messages get an error and change nothing.

mod common;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use huddle_e2ee::client::GroupClient;
use huddle_proto::{ClientMessage, ErrorCode, ServerMessage};
use huddle_signaling::{auth, Claims};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "secret-room";

fn e2ee_token(room: &str, identity: &str) -> String {
    let mut claims = Claims::new(identity, room, true, true, 600);
    claims.e2ee = true;
    auth::mint(SECRET, &claims).expect("mint")
}

/// What a client's task shares with the test.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct View {
    epoch: Option<u64>,
    code: Option<String>,
    base_key: Option<Vec<u8>>,
    members: Vec<String>,
    errors: Vec<String>,
}

struct Client {
    view: Arc<Mutex<View>>,
    leave: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

async fn send(ws: &mut Ws, msg: &ClientMessage) -> Result<()> {
    let text = serde_json::to_string(msg)?;
    tokio::time::timeout(WAIT, ws.send(Message::text(text)))
        .await
        .context("send timed out")??;
    Ok(())
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Join `ROOM` as `identity` with E2EE and run the client's side of the
/// group in a task (`GroupClient`, as the calling crate does): create when
/// told, add and remove when asked, apply commits and welcomes.
async fn e2ee_client(server: &Server, identity: &str) -> Result<Client> {
    let mut ws = server.connect(Some(ROOM)).await?;
    let join = ClientMessage::Join {
        token: e2ee_token(ROOM, identity),
        e2ee: true,
    };
    send(&mut ws, &join).await?;
    let joined = recv(&mut ws).await?;
    let ServerMessage::Joined { e2ee: true, .. } = joined else {
        bail!("expected an E2EE joined, got {joined:?}");
    };
    let (mut client, key_package) = GroupClient::new(identity, ROOM, Instant::now())?;
    send(&mut ws, &key_package).await?;
    let view = Arc::new(Mutex::new(View::default()));
    let (leave, mut leave_rx) = mpsc::channel(1);
    let shared = view.clone();
    let task = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                f = ws.next() => f,
                _ = leave_rx.recv() => {
                    send(&mut ws, &ClientMessage::Leave).await?;
                    return Ok(());
                }
            };
            let Some(Ok(Message::Text(text))) = frame else {
                match frame {
                    Some(Ok(_)) => continue,
                    _ => return Ok(()),
                }
            };
            let msg: ServerMessage = serde_json::from_str(text.as_str())?;
            if let ServerMessage::Error { code, message } = &msg {
                shared
                    .lock()
                    .expect("view")
                    .errors
                    .push(format!("{code}: {message}"));
            }
            let out = match client.handle(&msg, Instant::now()) {
                Ok(handled) => handled.send,
                Err(e) => {
                    shared.lock().expect("view").errors.push(e.to_string());
                    Vec::new()
                }
            };
            {
                let m = client.session_ref().member();
                let mut v = shared.lock().expect("view");
                v.epoch = m.epoch();
                v.code = m.safety_code().ok();
                v.base_key = m.base_key(16).ok();
                v.members = m.members().into_iter().map(|(_, id)| id).collect();
            }
            for msg in out {
                send(&mut ws, &msg).await?;
            }
        }
    });
    Ok(Client { view, leave, task })
}

impl Client {
    fn view(&self) -> View {
        self.view.lock().expect("view").clone()
    }
}

/// Wait until every client in `clients` is at the same epoch with
/// `members` members, and return that epoch.
async fn settled(clients: &[&Client], members: usize) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let views: Vec<View> = clients.iter().map(|c| c.view()).collect();
        let first = &views[0];
        let agree = first.epoch.is_some()
            && first.members.len() == members
            && views.iter().all(|v| {
                v.epoch == first.epoch && v.code == first.code && v.base_key == first.base_key
            });
        if agree {
            for v in &views {
                assert!(v.errors.is_empty(), "client errors: {:?}", v.errors);
            }
            return Ok(first.epoch.unwrap_or_default());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the group did not settle: {views:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn members_join_and_leave_and_agree_on_every_epoch() -> Result<()> {
    let (server, _sfu) = Server::start_with_real_sfu().await?;
    let alice = e2ee_client(&server, "alice").await?;
    assert_eq!(settled(&[&alice], 1).await?, 0, "alice created the group");
    let bob = e2ee_client(&server, "bob").await?;
    assert_eq!(settled(&[&alice, &bob], 2).await?, 1);
    let code_of_two = alice.view().code;
    // Two join at once: the leader adds both, in one commit or two.
    let carol = e2ee_client(&server, "carol").await?;
    let dave = e2ee_client(&server, "dave").await?;
    let epoch = settled(&[&alice, &bob, &carol, &dave], 4).await?;
    assert!(epoch == 2 || epoch == 3, "epoch {epoch}");
    assert_ne!(alice.view().code, code_of_two, "new members, new code");
    assert_eq!(server.app.hub().e2ee_epoch(ROOM), Some(epoch));

    // The leader (alice) leaves: bob removes her.
    let before = bob.view();
    let left = Instant::now();
    alice.leave.send(()).await?;
    alice.task.await??;
    let after = settled(&[&bob, &carol, &dave], 3).await?;
    // A figure for docs/e2ee.md, not a check: the time from a leave to
    // the new epoch's keys in use by every member (goal: under 1 s).
    println!(
        "from alice's leave to the new epoch at every member: {} ms",
        left.elapsed().as_millis()
    );
    assert_eq!(after, epoch + 1);
    let now = bob.view();
    assert_ne!(now.base_key, before.base_key, "a new key without alice");
    assert_eq!(now.members, ["bob", "carol", "dave"]);
    server.stop().await
}

#[tokio::test]
async fn clients_that_do_not_take_part_are_refused() -> Result<()> {
    let (server, _sfu) = Server::start_with_real_sfu().await?;
    let alice = e2ee_client(&server, "alice").await?;
    settled(&[&alice], 1).await?;

    // An E2EE token, a client that does not say e2ee.
    let mut ws = server.connect(Some(ROOM)).await?;
    send_json(&mut ws, &join_msg(&e2ee_token(ROOM, "mallory"))).await?;
    expect_error(&mut ws, ErrorCode::E2eeRequired).await?;
    // A plain token in the E2EE room.
    let mut ws = server.connect(Some(ROOM)).await?;
    send_json(&mut ws, &join_msg(&token(ROOM, "mallory", true, true))).await?;
    expect_error(&mut ws, ErrorCode::E2eeRequired).await?;
    // A WHEP viewer with an E2EE token.
    let (status, body) = whep(&server, &e2ee_token(ROOM, "viewer")).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("end-to-end"), "{body}");
    // E2EE messages in a plain room, and malformed ones.
    let (mut plain, _) = server.join("plain", "pat", true, true).await?;
    send_json(
        &mut plain,
        r#"{"type":"e2ee_key_package","key_package":"AAE="}"#,
    )
    .await?;
    expect_error(&mut plain, ErrorCode::E2eeRefused).await?;
    send_json(&mut plain, r#"{"type":"e2ee_commit","epoch":"x"}"#).await?;
    expect_error(&mut plain, ErrorCode::BadMessage).await?;
    ping_pong(&mut plain).await?;

    // Nothing of that moved alice's group.
    assert_eq!(server.app.hub().e2ee_epoch(ROOM), Some(0));
    assert_eq!(alice.view().members, ["alice"]);
    server.stop().await
}

#[tokio::test]
async fn a_commit_from_outside_the_group_or_for_an_old_epoch_changes_nothing() -> Result<()> {
    let (server, _sfu) = Server::start_with_real_sfu().await?;
    let alice = e2ee_client(&server, "alice").await?;
    let bob = e2ee_client(&server, "bob").await?;
    settled(&[&alice, &bob], 2).await?;
    // Eve joins the room with E2EE but never sends a key package; she
    // forges a commit.
    let mut eve = server.connect(Some(ROOM)).await?;
    send(
        &mut eve,
        &ClientMessage::Join {
            token: e2ee_token(ROOM, "eve"),
            e2ee: true,
        },
    )
    .await?;
    assert!(matches!(
        recv(&mut eve).await?,
        ServerMessage::Joined { .. }
    ));
    let forged = ClientMessage::E2eeCommit {
        epoch: 1,
        commit: b64(b"not a commit"),
        welcome: None,
        added: Vec::new(),
        removed: vec!["anyone".into()],
    };
    send(&mut eve, &forged).await?;
    loop {
        match recv(&mut eve).await? {
            ServerMessage::Error { code, .. } => {
                assert_eq!(code, ErrorCode::E2eeRefused);
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(server.app.hub().e2ee_epoch(ROOM), Some(1));
    assert_eq!(settled(&[&alice, &bob], 2).await?, 1);
    server.stop().await
}

/// POST a WHEP offer to the server with `token`: (status, body).
async fn whep(server: &Server, token: &str) -> Result<(u16, String)> {
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let resp = request(
        server.addr,
        "POST",
        "/whep",
        Some(token),
        &[("Content-Type", "application/sdp")],
        offer,
    )
    .await?;
    Ok((resp.status, resp.body))
}
