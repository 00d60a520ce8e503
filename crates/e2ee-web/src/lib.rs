//! The web client's end-to-end encryption: `huddle_e2ee`'s group client
//! and SFrame, as WebAssembly for a page (or the worker its encoded
//! transforms run in). `scripts/build_e2ee_wasm.sh` builds it with
//! wasm-bindgen into `crates/server/web/e2ee/`, which the server serves.
//!
//! Messages cross as the signaling protocol's JSON text, frames as bytes.
//! The clock is the browser's (`web_time`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use huddle_e2ee::client::{EpochInfo, GroupClient};
use huddle_e2ee::session::Stream;
use huddle_proto::ServerMessage;
use wasm_bindgen::prelude::*;
use web_time::Instant;

/// A stream by its name in the page: `audio`, `camera` or `screen`.
fn stream(name: &str) -> Result<Stream, JsError> {
    match name {
        "audio" => Ok(Stream::Audio),
        "camera" => Ok(Stream::Camera),
        "screen" => Ok(Stream::Screen),
        other => Err(JsError::new(&format!("no stream {other:?}"))),
    }
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Audio => "audio",
        Stream::Camera => "camera",
        Stream::Screen => "screen",
    }
}

fn epoch_json(e: &EpochInfo) -> serde_json::Value {
    serde_json::json!({
        "epoch": e.epoch,
        "safety_code": e.safety_code,
        "members": e.members,
    })
}

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// One participant's E2EE state in a room.
#[wasm_bindgen]
pub struct E2eeClient {
    client: GroupClient,
    key_package: String,
}

/// A decrypted frame: its plaintext and who sent it.
#[wasm_bindgen(getter_with_clone)]
pub struct Opened {
    /// The frame.
    pub plaintext: Vec<u8>,
    /// The sender's identity, if a member of the current epoch.
    pub identity: Option<String>,
    /// The sender's stream: `audio`, `camera` or `screen`.
    pub stream: Option<String>,
}

#[wasm_bindgen]
impl E2eeClient {
    /// The state of `identity` (the token's) in `room`, after `joined`.
    #[wasm_bindgen(constructor)]
    pub fn new(identity: &str, room: &str) -> Result<E2eeClient, JsError> {
        let (client, key_package) = GroupClient::new(identity, room, Instant::now()).map_err(js)?;
        Ok(E2eeClient {
            client,
            key_package: serde_json::to_string(&key_package).map_err(js)?,
        })
    }

    /// The `e2ee_key_package` message to send first (JSON).
    #[wasm_bindgen(js_name = keyPackageMessage)]
    pub fn key_package_message(&self) -> String {
        self.key_package.clone()
    }

    /// Handle a server message (its JSON text; those not about E2EE change
    /// nothing). Returns JSON: `{"send": [messages to send, as JSON
    /// values], "epoch": {"epoch", "safety_code", "members"} or null,
    /// "removed": bool}`.
    pub fn handle(&mut self, message: &str) -> Result<String, JsError> {
        let msg: ServerMessage = serde_json::from_str(message).map_err(js)?;
        let handled = self.client.handle(&msg, Instant::now()).map_err(js)?;
        let out = serde_json::json!({
            "send": handled.send,
            "epoch": handled.epoch.as_ref().map(epoch_json),
            "removed": handled.removed,
        });
        Ok(out.to_string())
    }

    /// The current epoch as JSON (`{"epoch", "safety_code", "members"}`),
    /// or `undefined` before the group.
    pub fn epoch(&self) -> Option<String> {
        self.client.epoch_info().map(|e| epoch_json(&e).to_string())
    }

    /// `frame` of `stream` encrypted with `metadata` authenticated beside
    /// it, or `undefined` while not in a group (send nothing then).
    pub fn encrypt(
        &mut self,
        stream_name: &str,
        metadata: &[u8],
        frame: &[u8],
    ) -> Result<Option<Vec<u8>>, JsError> {
        let stream = stream(stream_name)?;
        let mut out = Vec::with_capacity(frame.len() + 32);
        match self
            .client
            .session()
            .encrypt(stream, metadata, frame, &mut out)
        {
            Ok(_) => Ok(Some(out)),
            Err(_) => Ok(None),
        }
    }

    /// Decrypt `sframe` with `metadata`; throws when it does not
    /// authenticate, is a replay, or is under no key held.
    pub fn decrypt(&mut self, metadata: &[u8], sframe: &[u8]) -> Result<Opened, JsError> {
        let mut plaintext = Vec::with_capacity(sframe.len());
        let sender = self
            .client
            .session()
            .decrypt(Instant::now(), metadata, sframe, &mut plaintext)
            .map_err(js)?;
        Ok(Opened {
            plaintext,
            identity: sender.identity,
            stream: sender.stream.map(|s| stream_name(s).to_owned()),
        })
    }

    /// Whether `sframe` is under a key of an epoch not begun here yet.
    #[wasm_bindgen(js_name = isAhead)]
    pub fn is_ahead(&self, sframe: &[u8]) -> bool {
        self.client.session_ref().is_ahead(sframe)
    }

    /// Whether `sframe` is new: not a copy of a frame taken already.
    #[wasm_bindgen(js_name = isFresh)]
    pub fn is_fresh(&self, sframe: &[u8]) -> bool {
        self.client.session_ref().is_fresh(sframe)
    }
}
