//! The stop signal a serving process waits for: `huddle-server` itself, and
//! the examples that run until stopped.

use std::future::Future;

/// Listens for Ctrl-C (SIGINT), and SIGTERM on Unix, and returns a future
/// that resolves when one arrives.
///
/// On Unix the handlers are installed when this is called, not when the
/// future is first polled: call it before announcing that the process is
/// ready, so a signal sent right after the announcement shuts down cleanly
/// instead of killing the process. Must be called inside a tokio runtime.
/// If a handler cannot be installed, the error is logged and that signal is
/// not waited for.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "Ctrl-C");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            tokio::select! {
                () = arrival(interrupt) => {}
                () = arrival(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::ctrl_c();
        async move {
            if let Err(e) = ctrl_c.await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Resolves when `signal` arrives; never, if it has no handler.
#[cfg(unix)]
async fn arrival(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
