//! The writer task of one WebSocket: drains a participant's queue toward
//! the socket, recording what it writes so a resumed session can send it
//! again (see `resume.rs`), and hands the queue back when told to stop, so
//! the next connection of the session goes on from there.

use crate::outbound::Outbound;
use crate::resume::Outlet;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use huddle_proto::ServerMessage;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The sending half of a WebSocket.
pub(crate) type Sink = SplitSink<WebSocket, Message>;

/// A running writer.
pub(crate) struct Writer {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<(Sink, Outlet)>,
}

impl Writer {
    /// Write `first` (not recorded: they are sent again, or belong to this
    /// connection alone), then whatever `outlet` queues, joins and leaves
    /// held for `batch_window` to gather.
    pub(crate) fn spawn(
        sink: Sink,
        outlet: Outlet,
        first: Vec<Utf8Bytes>,
        batch_window: Duration,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write_loop(sink, outlet, first, batch_window, stopped));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stop at once (the socket is gone, or another connection takes the
    /// session) and return the socket and the queue with what was written.
    /// `None` if the task failed.
    pub(crate) async fn stop(mut self) -> Option<(Sink, Outlet)> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.ok()
    }

    /// Let the writer send what is queued, up to its close frame, for at
    /// most `limit`; then stop it.
    pub(crate) async fn finish(mut self, limit: Duration) {
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// Serialize a message for the socket.
pub(crate) fn encode(msg: &ServerMessage) -> Option<Utf8Bytes> {
    match serde_json::to_string(msg) {
        Ok(text) => Some(text.into()),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize server message");
            None
        }
    }
}

async fn write_loop(
    mut sink: Sink,
    outlet: Outlet,
    first: Vec<Utf8Bytes>,
    batch_window: Duration,
    stop: oneshot::Receiver<()>,
) -> (Sink, Outlet) {
    let outlet = write_all(&mut sink, outlet, first, batch_window, stop).await;
    (sink, outlet)
}

async fn write_all(
    sink: &mut Sink,
    mut outlet: Outlet,
    first: Vec<Utf8Bytes>,
    batch_window: Duration,
    mut stop: oneshot::Receiver<()>,
) -> Outlet {
    for text in first {
        if !write(sink, text, &mut stop).await {
            return outlet;
        }
    }
    loop {
        let out = tokio::select! {
            biased;
            _ = &mut stop => return outlet,
            out = outlet.rx.recv() => out,
        };
        let Some(out) = out else {
            let _ = sink.close().await;
            return outlet;
        };
        let msg = match out {
            Outbound::Msg(msg) => Some(msg),
            Outbound::Presence(batch) => {
                // Let more joins and leaves gather in the batch; stopped
                // meanwhile, it is recorded as written so it is not lost.
                let until = Instant::from_std(batch.opened() + batch_window);
                let stopped = tokio::select! {
                    biased;
                    _ = &mut stop => true,
                    _ = tokio::time::sleep_until(until) => false,
                };
                if stopped {
                    if let Some(text) = batch.take().as_ref().and_then(encode) {
                        outlet.replay.record(text);
                    }
                    return outlet;
                }
                batch.take()
            }
            Outbound::Close(code, reason) => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                return outlet;
            }
        };
        let Some(text) = msg.as_ref().and_then(encode) else {
            continue;
        };
        // Recorded before it is written: if the write fails the client
        // counts it missing and gets it again on resuming.
        outlet.replay.record(text.clone());
        if !write(sink, text, &mut stop).await {
            return outlet;
        }
    }
}

/// Write one frame unless told to stop first. `false`: stop now (told to;
/// or the socket is gone, and then once told to, so that the queue is kept
/// for whoever stops the writer).
async fn write(sink: &mut Sink, text: Utf8Bytes, stop: &mut oneshot::Receiver<()>) -> bool {
    tokio::select! {
        biased;
        _ = &mut *stop => false,
        sent = sink.send(Message::Text(text)) => {
            if sent.is_err() {
                let _ = stop.await;
                return false;
            }
            true
        }
    }
}
