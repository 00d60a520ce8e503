//! The server of an end-to-end encrypted room relays its MLS group's
//! messages and never holds a key. Real members (the group client the
//! calling crate and the web client drive) form the group through a real
//! `huddle-server` process, with joins and a leave making several epochs;
//! then every epoch's SFrame base key (the MLS exporter's output) and every
//! member's SFrame key derived from it are looked for:
//!
//! - in the server's log, at the most verbose level (`RUST_LOG=trace`);
//! - in what its API answers (`/api/rooms`, the room's participants);
//! - in the server process's memory, every readable page of it.
//!
//! None may be found. The control: the same search finds them all in the
//! memory of this test, where the members are.

#![cfg(target_os = "linux")]

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use huddle_e2ee::client::GroupClient;
use huddle_e2ee::kid::KidLayout;
use huddle_e2ee::session::{Stream, EPOCH_BITS, INDEX_BITS, SUITE};
use huddle_e2ee::sframe::keys::KeyMaterial;
use huddle_proto::{ClientMessage, ServerMessage};
use huddle_signaling::auth::{mint, Claims};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "e2ee-keys-test-secret-0123456789abcdef";
const ROOM: &str = "keys-room";
const WAIT: Duration = Duration::from_secs(20);

/// A `huddle-server` process logging everything, and its log so far.
struct Server {
    child: std::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    http: SocketAddr,
}

impl Server {
    fn spawn() -> Result<Self> {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_huddle-server"))
            .args(["--http", "127.0.0.1:0", "--media-udp", "127.0.0.1:0"])
            .env("HUDDLE_SECRET", SECRET)
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .env_remove("HUDDLE_CONFIG")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stderr.take().context("stderr")?) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().context("stdout")?),
        ] {
            let (log, started_tx) = (log.clone(), started_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains("started") {
                        if let Some(addr) = line.split("http=").nth(1) {
                            let addr = addr.split_whitespace().next().unwrap_or_default();
                            let _ = started_tx.send(addr.to_owned());
                        }
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let http = started
            .recv_timeout(WAIT)
            .context("the server did not start")?
            .parse()?;
        Ok(Server { child, log, http })
    }

    fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// `GET path` with an admin token: the body, which must come with 200.
    async fn get(&self, path: &str) -> Result<String> {
        let token = mint(SECRET, &Claims::admin("operator", 60))?;
        let mut tcp = tokio::net::TcpStream::connect(self.http).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            self.http
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        tcp.read_to_string(&mut response).await?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {response}");
        }
        Ok(response)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A member of the room's group: its group client, driven over the
/// WebSocket by a task until told to leave.
struct Member {
    client: Arc<Mutex<GroupClient>>,
    leave: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    async fn join(server: &Server, identity: &str) -> Result<Member> {
        let url = format!("ws://{}/ws", server.http);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        let mut claims = Claims::new(identity, ROOM, true, true, 600);
        claims.e2ee = true;
        let join = ClientMessage::Join {
            token: mint(SECRET, &claims)?,
            e2ee: true,
        };
        ws.send(Message::text(serde_json::to_string(&join)?))
            .await?;
        let (client, key_package) = GroupClient::new(identity, ROOM, Instant::now())?;
        ws.send(Message::text(serde_json::to_string(&key_package)?))
            .await?;
        let client = Arc::new(Mutex::new(client));
        let (leave, mut leaving) = tokio::sync::oneshot::channel::<()>();
        let shared = client.clone();
        let task = tokio::spawn(async move {
            loop {
                let text = tokio::select! {
                    Some(Ok(Message::Text(text))) = ws.next() => text,
                    _ = &mut leaving => {
                        let bye = serde_json::to_string(&ClientMessage::Leave).unwrap_or_default();
                        let _ = ws.send(Message::text(bye)).await;
                        return;
                    }
                    else => return,
                };
                let Ok(msg) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                    continue;
                };
                let replies = match shared.lock() {
                    Ok(mut c) => c.handle(&msg, Instant::now()).map(|h| h.send),
                    Err(_) => return,
                };
                for reply in replies.unwrap_or_default() {
                    let Ok(text) = serde_json::to_string(&reply) else {
                        continue;
                    };
                    let _ = ws.send(Message::text(text)).await;
                }
            }
        });
        Ok(Member {
            client,
            leave: Some(leave),
            task,
        })
    }

    /// Its epoch and the identities of the group's members.
    fn epoch(&self) -> Option<(u64, BTreeSet<String>)> {
        let client = self.client.lock().ok()?;
        let info = client.epoch_info()?;
        Some((info.epoch, info.members.into_iter().collect()))
    }

    /// The secrets of its current epoch: the SFrame base key, and the key
    /// of every member's every stream.
    fn secrets(&self) -> Result<Vec<Vec<u8>>> {
        let mut client = self.client.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let member = client.session().member();
        let epoch = member.epoch().context("no epoch")?;
        let base = member.base_key(SUITE.key_len())?;
        let layout = KidLayout::new(EPOCH_BITS, INDEX_BITS)?;
        let mut secrets = vec![base.clone()];
        for (leaf, _) in member.members() {
            for stream in Stream::ALL {
                let kid = layout.kid(stream.context(), u64::from(leaf), epoch)?;
                secrets.push(KeyMaterial::derive(SUITE, kid, &base)?.key().to_vec());
            }
        }
        Ok(secrets)
    }

    async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        let _ = self.task.await;
    }
}

/// Wait until every one of `members` is in one epoch of exactly
/// `identities`, and add its secrets to `secrets`.
async fn agree(
    members: &[&Member],
    identities: &[&str],
    secrets: &mut BTreeSet<Vec<u8>>,
) -> Result<u64> {
    let want: BTreeSet<String> = identities.iter().map(|s| (*s).to_owned()).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let epochs: Vec<_> = members.iter().map(|m| m.epoch()).collect();
        if let Some(Some((epoch, who))) = epochs.first() {
            if *who == want && epochs.iter().all(|e| e.as_ref() == epochs[0].as_ref()) {
                for m in members {
                    secrets.extend(m.secrets()?);
                }
                return Ok(*epoch);
            }
        }
        if Instant::now() > deadline {
            bail!("no agreement on {identities:?}: {epochs:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ways a key could be written in text: hex, base64, a byte list.
fn spellings(key: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{key:?}");
    vec![
        hex.to_uppercase(),
        hex,
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(key),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
        list[1..list.len() - 1].to_owned(),
    ]
}

/// How many of `keys` (16 bytes each) are somewhere in the readable memory
/// of process `pid`.
fn found_in_memory(pid: u32, keys: &BTreeSet<Vec<u8>>) -> Result<usize> {
    // A first look by the first two bytes, then the whole key.
    let mut first = vec![false; 1 << 16];
    for k in keys {
        first[usize::from(u16::from_le_bytes([k[0], k[1]]))] = true;
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut found = BTreeSet::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut read_any = false;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        if !perms.starts_with('r') || path == "[vvar]" || path == "[vsyscall]" {
            continue;
        }
        let (start, end) = range.split_once('-').context("maps")?;
        let (start, end) = (
            u64::from_str_radix(start, 16)?,
            u64::from_str_radix(end, 16)?,
        );
        let mut at = start;
        while at < end {
            // Each chunk overlaps the last by a key's length but one.
            let len = usize::try_from(end - at)?.min(chunk.len());
            if mem.seek(SeekFrom::Start(at)).is_err() {
                break;
            }
            let Ok(n) = mem.read(&mut chunk[..len]) else {
                break;
            };
            if n == 0 {
                break;
            }
            read_any = true;
            let bytes = &chunk[..n];
            for i in 0..n.saturating_sub(15) {
                if first[usize::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]))] {
                    if let Some(k) = keys.iter().find(|k| bytes[i..].starts_with(k)) {
                        found.insert(k.clone());
                    }
                }
            }
            if n < 16 || at + n as u64 >= end {
                break;
            }
            at += n as u64 - 15;
        }
    }
    if !read_any {
        bail!("could not read the memory of process {pid}");
    }
    Ok(found.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_holds_no_key_of_an_e2ee_room() -> Result<()> {
    let server = Server::spawn()?;
    let mut secrets = BTreeSet::new();
    let mut epochs = Vec::new();

    let alice = Member::join(&server, "alice").await?;
    epochs.push(agree(&[&alice], &["alice"], &mut secrets).await?);
    let bob = Member::join(&server, "bob").await?;
    epochs.push(agree(&[&alice, &bob], &["alice", "bob"], &mut secrets).await?);
    let carol = Member::join(&server, "carol").await?;
    let all = ["alice", "bob", "carol"];
    epochs.push(agree(&[&alice, &bob, &carol], &all, &mut secrets).await?);
    bob.leave().await;
    epochs.push(agree(&[&alice, &carol], &["alice", "carol"], &mut secrets).await?);
    println!(
        "epochs {epochs:?}: {} keys (base keys and every member's SFrame keys)",
        secrets.len()
    );
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "each join and leave started an epoch: {epochs:?}"
    );

    let mut answers = String::new();
    for path in [
        "/api/rooms",
        &format!("/api/rooms/{ROOM}/participants"),
        "/healthz",
    ] {
        answers += &server.get(path).await?;
    }
    assert!(
        answers.contains("alice"),
        "the API shows the room: {answers}"
    );
    // Let the log catch up with what the server did.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log();
    assert!(log.contains("e2ee"), "the log shows the group's messages");
    println!("server log: {} lines", log.lines().count());
    for key in &secrets {
        for spelling in spellings(key) {
            assert!(!log.contains(&spelling), "a key in the server's log");
            assert!(!answers.contains(&spelling), "a key in the API's answers");
        }
    }

    let in_server = found_in_memory(server.child.id(), &secrets)?;
    let in_members = found_in_memory(std::process::id(), &secrets)?;
    println!(
        "keys found in the server's memory: {in_server} of {}; in the members' (this test's): {in_members}",
        secrets.len()
    );
    assert_eq!(
        in_members,
        secrets.len(),
        "the control: the search finds them"
    );
    assert_eq!(in_server, 0, "the server holds a key");

    alice.leave().await;
    carol.leave().await;
    Ok(())
}
