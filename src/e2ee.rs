//! End-to-end encryption of a call (`CallOptions::e2ee`): this
//! participant's side of the room's MLS group, through the signaling, and
//! the SFrame keys of its current epoch (docs/e2ee.md).
//!
//! One [`E2ee`] per call, shared by the signaling loop (which feeds it the
//! server's `e2ee_*` messages), the local audio tracks (which encrypt each
//! Opus frame before RED wraps it) and the remote ones (which decrypt,
//! see `e2ee_recv`).

use crate::e2ee_stats::{DropReason, Drops, E2eeStats};
use crate::error::CallError;
use huddle_e2ee::client::{EpochInfo, GroupClient, Handled};
use huddle_e2ee::session::{Session, Stream};
use huddle_proto::{ClientMessage, ServerMessage};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// A call's E2EE state.
pub(crate) struct E2ee {
    room: String,
    client: Mutex<GroupClient>,
    /// Frames the receiving side dropped for reasons of its own.
    drops: Drops,
}

impl std::fmt::Debug for E2ee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2ee")
            .field("epoch", &self.info().map(|i| i.epoch))
            .finish()
    }
}

/// A key package or group that cannot be made is the crate's fault or the
/// platform's (no randomness): reported as a WebRTC-level failure would be.
fn failed(e: impl std::fmt::Display) -> CallError {
    CallError::E2ee(e.to_string())
}

impl E2ee {
    /// The E2EE state of `identity` (its token's) in `room`, and the key
    /// package message to send after `joined`.
    pub(crate) fn start(identity: &str, room: &str) -> Result<(E2ee, ClientMessage), CallError> {
        let (client, key_package) =
            GroupClient::new(identity, room, Instant::now()).map_err(failed)?;
        Ok((
            E2ee {
                room: room.to_owned(),
                client: Mutex::new(client),
                drops: Drops::default(),
            },
            key_package,
        ))
    }

    /// The call joined again (a new session: the server's group is a new
    /// one too): a new member with a new signature key, and the key package
    /// message to send.
    pub(crate) fn restart(&self, identity: &str) -> Result<ClientMessage, CallError> {
        let (client, key_package) =
            GroupClient::new(identity, &self.room, Instant::now()).map_err(failed)?;
        *self.client() = client;
        Ok(key_package)
    }

    fn client(&self) -> MutexGuard<'_, GroupClient> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handle a server message (those not about E2EE change nothing).
    pub(crate) fn handle(&self, msg: &ServerMessage) -> Result<Handled, CallError> {
        let mut client = self.client();
        let handled = client.handle(msg, Instant::now()).map_err(failed);
        // Frames the session held itself: none, the tracks keep theirs
        // (see `e2ee_recv`); nothing to hand on.
        client.session().take_released();
        handled
    }

    /// The group's current epoch, once in one.
    pub(crate) fn info(&self) -> Option<EpochInfo> {
        self.client().epoch_info()
    }

    /// Append the SFrame ciphertext of `frame` of `stream` to `out`, with
    /// `metadata` authenticated beside it. `false` (nothing appended)
    /// while not in a group: no key to send with, and nothing goes out in
    /// clear.
    pub(crate) fn seal(
        &self,
        stream: Stream,
        metadata: &[u8],
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        self.client()
            .session()
            .encrypt(stream, metadata, frame, out)
            .is_ok()
    }

    /// What the receiving side decrypted and dropped so far, by reason.
    pub(crate) fn stats(&self) -> E2eeStats {
        self.drops.with(self.client().session_ref().stats())
    }

    /// Count a frame the receiving side dropped for `why`.
    pub(crate) fn dropped(&self, why: DropReason) {
        self.drops.count(why);
    }

    /// Run `f` on the session (to decrypt), under its lock.
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        f(self.client().session())
    }
}
