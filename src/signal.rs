//! The WebSocket to the signaling service: one writer task fed by a channel,
//! and a reader stream of parsed [`ServerMessage`]s.

use crate::error::CallError;
use futures_util::{SinkExt, StreamExt};
use huddle_proto::{ClientMessage, ServerMessage};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

/// Sending half: cheap to clone, messages are written in order.
pub(crate) type Outbox = mpsc::UnboundedSender<ClientMessage>;

/// Open the WebSocket; returns the outbox and a channel of server messages
/// that closes when the socket does.
pub(crate) async fn connect(
    url: &str,
) -> Result<(Outbox, mpsc::UnboundedReceiver<ServerMessage>), CallError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| match e {
            WsError::Http(response) => CallError::Signaling(format!(
                "{url} answered HTTP {} instead of a WebSocket: is this a huddle \
                 server's address (its signaling WebSocket is at /ws)?",
                response.status()
            )),
            other => CallError::Signaling(format!("{url}: {other}")),
        })?;
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ClientMessage>();
    let (in_tx, in_rx) = mpsc::unbounded_channel::<ServerMessage>();
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let text = match serde_json::to_string(&msg) {
                Ok(t) => t,
                Err(e) => {
                    debug!("cannot encode {msg:?}: {e}");
                    continue;
                }
            };
            let leaving = matches!(msg, ClientMessage::Leave);
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
            if leaving {
                let _ = sink.close().await;
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let text = match frame {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(m) => {
                    if in_tx.send(m).is_err() {
                        break;
                    }
                }
                Err(e) => debug!("unparseable server message: {e}"),
            }
        }
    });
    Ok((out_tx, in_rx))
}
