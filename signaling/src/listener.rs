//! The HTTP/1.1 server loop: accepts connections, records each one's peer
//! address ([`ConnectInfo`]) for the per-address limits, and closes a
//! connection that does not deliver a complete request header within
//! [`crate::limits::Limits::header_read_timeout`] (a slowloris client would
//! otherwise hold its socket forever). WebSocket upgrades are supported.
//!
//! `axum::serve` offers no header-read timeout, hence this loop; it shuts down
//! like `axum::serve`'s graceful shutdown: stop accepting, let requests in
//! flight finish, close idle connections.

use axum::extract::ConnectInfo;
use axum::Router;
use huddle_proto::throttle::LogThrottle;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serve `routes` on `listener` until `shutdown` completes, then wait for
/// the HTTP connections to finish (upgraded WebSockets are not waited for).
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Dropping `stop_tx` tells every connection to finish; every connection
    // holds a `done_rx` until it has.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                static LOG: LogThrottle = LogThrottle::per_second();
                if let Some(suppressed) = LOG.check() {
                    tracing::warn!(error = %e, suppressed, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            routes.clone().oneshot(request)
        });
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            if !header_read_timeout.is_zero() {
                builder.header_read_timeout(header_read_timeout);
            }
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(peer, result),
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    log_end(peer, conn.await);
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

fn log_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}
