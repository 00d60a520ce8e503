//! A TCP relay on 127.0.0.1 whose connections a test can cut (both sides
//! see the TCP connection end, without a WebSocket close), and which can
//! refuse new ones: a network change or a dead server, for signaling.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay toward `to` whose connections can be cut, and which can
/// refuse new ones.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    refusing: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Relay to `to`.
    pub async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let refusing = Arc::new(AtomicBool::new(false));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (r, p) = (refusing.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if r.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection end
                }
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                p.lock().expect("lock").push(pipe);
            }
        });
        Self {
            addr,
            refusing,
            pipes,
            accept,
        }
    }

    /// End every connection through the relay (both sockets close).
    pub fn cut(&self) {
        for pipe in self.pipes.lock().expect("lock").drain(..) {
            pipe.abort();
        }
    }

    /// Drop new connections as soon as they come (or take them again).
    pub fn refuse(&self, refuse: bool) {
        self.refusing.store(refuse, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Join `room` as `identity` on `server` through `relay`.
pub async fn join_through(
    relay: &Relay,
    server: &huddle_server::RunningServer,
    room: &str,
    identity: &str,
) -> (huddle::Call, huddle::CallEvents) {
    let token = server
        .mint_token(room, identity, super::BOTH)
        .expect("token");
    super::within(
        20,
        &format!("{identity} joins through the relay"),
        huddle::Call::join(&format!("ws://{}/ws", relay.addr), &token),
    )
    .await
    .expect("join")
}
