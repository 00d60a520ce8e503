//! Access tokens for the participants, minted as `docs/signaling.md`
//! ("Tokens") specifies for any JWT library: HS256 with the server's secret
//! and the documented claims. (Not through the server's own code, so the
//! tool also checks the documented format.)

use crate::error::BenchError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// The claims of a participant token.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    room: &'a str,
    publish: bool,
    subscribe: bool,
    exp: u64,
    iat: u64,
    /// An end-to-end encrypted room's token (docs/e2ee.md).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    e2ee: bool,
}

/// A token for `identity` in `room`, valid `ttl_secs` from now; `e2ee`
/// for a room whose calls are end-to-end encrypted.
pub fn mint(
    secret: &str,
    room: &str,
    identity: &str,
    (publish, subscribe, e2ee): (bool, bool, bool),
    ttl_secs: u64,
) -> Result<String, BenchError> {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| BenchError::Server(e.to_string()))?
        .as_secs();
    let claims = Claims {
        sub: identity,
        room,
        publish,
        subscribe,
        exp: iat + ttl_secs,
        iat,
        e2ee,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| BenchError::Server(format!("cannot mint a token: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_a_three_part_jwt() {
        let t = super::mint("s", "room", "alice", (true, false, false), 60).expect("mint");
        assert_eq!(t.split('.').count(), 3);
    }
}
