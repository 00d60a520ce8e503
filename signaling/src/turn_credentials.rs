//! Short-lived TURN credentials for each participant, in the TURN REST API
//! scheme (draft-uberti-behave-turn-rest-00, which coturn's
//! `use-auth-secret` checks): the username is `<expiry>:<participant id>`
//! (expiry in Unix seconds) and the password is
//! `base64(HMAC-SHA1(secret, username))`. The TURN server shares only the
//! secret with huddle-server; it checks each request's username by
//! recomputing the password, and refuses it once the expiry has passed. No
//! credential is stored anywhere.

use huddle_proto::IceServerInfo;
use std::time::Duration;

/// The REST scheme's credentials and clock, shared with the embedded TURN
/// server (which checks them).
pub use huddle_turn::credentials::{credentials, unix_now};

/// TURN servers to hand out, and how their credentials are made.
#[derive(Clone)]
pub struct TurnConfig {
    /// The servers' URLs (`turn:host:3478?transport=udp`, `turns:host:443`).
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's
    /// `static-auth-secret`).
    pub secret: String,
    /// How long credentials are valid. A TURN server checks the expiry on
    /// every request, allocation refreshes included, so it bounds how long a
    /// relayed call lasts without new credentials.
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TurnConfig {
    /// The ICE servers for `participant`, with credentials valid until
    /// `now_unix + ttl` (Unix seconds).
    pub fn ice_servers(&self, now_unix: u64, participant: &str) -> Vec<IceServerInfo> {
        if self.urls.is_empty() {
            return Vec::new();
        }
        let (username, credential) =
            credentials(&self.secret, now_unix + self.ttl.as_secs(), participant);
        vec![IceServerInfo {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_carry_an_expiry_ttl_ahead() {
        let cfg = TurnConfig {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret: "s".into(),
            ttl: Duration::from_secs(600),
        };
        let servers = cfg.ice_servers(1000, "PA_y");
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].username.as_deref(), Some("1600:PA_y"));
        assert_eq!(
            servers[0].credential,
            Some(credentials("s", 1600, "PA_y").1)
        );
        let none = TurnConfig {
            urls: vec![],
            ..cfg
        };
        assert!(none.ice_servers(1000, "PA_y").is_empty());
        assert!(
            !format!("{none:?}").contains("\"s\""),
            "the secret is not logged"
        );
    }
}
