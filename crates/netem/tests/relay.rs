//! The relay over real UDP on loopback: it applies the configured loss, keeps
//! one upstream address per client, and delivers what it does not drop.

use huddle_netem::{Impairment, Relay, RelayConfig};
use std::collections::HashSet;
use std::time::Duration;
use tokio::net::UdpSocket;

/// An upstream that echoes every datagram and records who sent it.
async fn echo_server() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<std::net::SocketAddr>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = sock.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = tx.send(from);
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn relays_with_seeded_loss_and_one_upstream_address_per_client() {
    let (upstream, mut seen) = echo_server().await;
    let mut config = RelayConfig::new(upstream);
    config.to_upstream = Impairment::random_loss(0.1, 11);
    config.to_client.delay = Duration::from_millis(5);
    let relay = Relay::start(config).await.expect("relay");

    let a = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind a"));
    let b = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind b"));
    // Read echoes while sending, so the test's own socket buffers never overflow;
    // each reader stops after 500 ms without an echo.
    let readers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|sock| {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let mut n = 0u32;
                while let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
                {
                    n += 1;
                }
                n
            })
        })
        .collect();
    const N: u32 = 2000;
    for i in 0..N {
        let sock = if i % 2 == 0 { &a } else { &b };
        sock.send_to(&i.to_be_bytes(), relay.local_addr())
            .await
            .expect("send");
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut echoed = 0;
    for r in readers {
        echoed += r.await.expect("reader");
    }
    let stats = relay.stats();
    println!("echoed {echoed}/{N}, relay {stats:?}");
    assert_eq!(stats.to_upstream.offered, N as u64);
    assert_eq!(
        echoed as u64,
        N as u64 - stats.to_upstream.lost,
        "delivered = offered - lost"
    );
    let rate = stats.to_upstream.lost as f64 / N as f64;
    assert!((0.07..0.13).contains(&rate), "loss rate {rate}");

    let mut sources = HashSet::new();
    while let Ok(from) = seen.try_recv() {
        sources.insert(from);
    }
    assert_eq!(sources.len(), 2, "one upstream address per client");
    assert!(!sources.contains(&relay.local_addr()));
}
