//! Access tokens: JWTs signed with HS256 and a secret shared by the server and
//! whoever mints tokens (the `huddle-server token` command, an app backend).
//!
//! A token grants one room and rights in it ([`Claims`]). Verification
//! ([`verify_with`] and its [`Policy`]) accepts only HS256 and requires:
//! - `exp` not past and `nbf`, when present, not in the future, both with a
//!   clock-skew leeway of [`DEFAULT_LEEWAY_SECS`] seconds unless configured
//!   otherwise (tokens minted on another machine may see a slightly
//!   different clock);
//! - a non-blank identity (`sub`);
//! - a lifetime no longer than [`DEFAULT_MAX_LIFETIME_SECS`] unless
//!   configured otherwise: `exp` minus `iat` (or minus now, if `iat` is
//!   later than now), so a leaked token is not good forever.
//!
//! Revoking tokens (bans) is the service's job, on top of this
//! (the `bans` module, which builds on this one).

use huddle_proto::ErrorCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds a token is still accepted after its `exp`, to absorb clock skew
/// between the minting machine and the server.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// Longest lifetime (`exp` - `iat`) a token may have by default: 24 hours.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 24 * 3600;

/// Shortest secret, in bytes, a server should sign with: HS256 needs a key
/// at least as long as its hash output (RFC 7518 §3.2), 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token grants. Serialized as the JWT payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The participant's identity (shown to others as `identity`).
    pub sub: String,
    /// The room the token grants. May be empty in an admin-only token.
    #[serde(default)]
    pub room: String,
    /// May send media.
    #[serde(default)]
    pub publish: bool,
    /// May receive media.
    #[serde(default)]
    pub subscribe: bool,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not before: the token is refused until then (seconds since the Unix
    /// epoch, with the same leeway as `exp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id, for revoking this one token (`POST /api/bans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Grants the REST admin API (`/api/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// The room is end-to-end encrypted (docs/e2ee.md): the client must
    /// take part, and WHIP/WHEP sessions are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e2ee: bool,
}

impl Claims {
    /// Claims for `identity` in `room`, issued now and valid for `ttl_secs`.
    pub fn new(
        identity: impl Into<String>,
        room: impl Into<String>,
        publish: bool,
        subscribe: bool,
        ttl_secs: u64,
    ) -> Self {
        let now = now_secs();
        Self {
            sub: identity.into(),
            room: room.into(),
            publish,
            subscribe,
            exp: now.saturating_add(ttl_secs),
            iat: now,
            nbf: None,
            jti: None,
            name: None,
            admin: None,
            e2ee: false,
        }
    }

    /// Admin claims for `identity`, granting the REST admin API and no room.
    pub fn admin(identity: impl Into<String>, ttl_secs: u64) -> Self {
        let mut c = Self::new(identity, "", false, false, ttl_secs);
        c.admin = Some(true);
        c
    }

    /// Whether the token grants the REST admin API.
    pub fn is_admin(&self) -> bool {
        self.admin == Some(true)
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token was given.
    #[error("no access token given")]
    Missing,
    /// The token is not a well-formed JWT, its claims are malformed, or its
    /// signature does not verify.
    #[error("access token is invalid")]
    Invalid,
    /// The token has expired.
    #[error("access token has expired")]
    Expired,
    /// The token's `nbf` is still in the future.
    #[error("access token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// The token's identity (`sub`) is empty or blank.
    #[error("access token has an empty identity (sub)")]
    EmptyIdentity,
    /// The token lives longer than the server allows.
    #[error("access token lifetime exceeds the maximum of {max_secs} s")]
    LifetimeTooLong {
        /// The maximum, in seconds.
        max_secs: u64,
    },
    /// The token, or its identity, has been banned by an administrator.
    #[error("access token has been revoked")]
    Revoked,
    /// Signing failed (only from [`mint`]).
    #[error("could not sign token: {0}")]
    Signing(String),
}

impl AuthError {
    /// The protocol error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::TokenMissing,
            AuthError::Invalid
            | AuthError::NotYetValid
            | AuthError::EmptyIdentity
            | AuthError::LifetimeTooLong { .. } => ErrorCode::TokenInvalid,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Revoked => ErrorCode::TokenRevoked,
            AuthError::Signing(_) => ErrorCode::Internal,
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token of an `Authorization: Bearer <token>` header, if the request
/// has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Sign `claims` with HS256 and `secret`.
pub fn mint(secret: &str, claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Signing(e.to_string()))
}

/// What [`verify_with`] demands of a token beyond its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Longest lifetime allowed, in seconds (see the module doc).
    pub max_lifetime_secs: u64,
}

impl Default for Policy {
    /// [`DEFAULT_LEEWAY_SECS`] and [`DEFAULT_MAX_LIFETIME_SECS`].
    fn default() -> Self {
        Self {
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

/// Verify `token` against `secret` with the default [`Policy`].
pub fn verify(secret: &str, token: &str) -> Result<Claims, AuthError> {
    verify_with(secret, token, &Policy::default())
}

/// Verify `token` against `secret`, accepting it up to `leeway_secs` past
/// `exp` (other rules as in the default [`Policy`]).
pub fn verify_with_leeway(
    secret: &str,
    token: &str,
    leeway_secs: u64,
) -> Result<Claims, AuthError> {
    let policy = Policy {
        leeway_secs,
        ..Policy::default()
    };
    verify_with(secret, token, &policy)
}

/// Verify `token` against `secret` as `policy` says.
pub fn verify_with(secret: &str, token: &str, policy: &Policy) -> Result<Claims, AuthError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = policy.leeway_secs;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        _ => AuthError::Invalid,
    })?;
    check_claims(&claims, policy, now_secs())?;
    Ok(claims)
}

/// The rules on verified claims that the JWT library does not apply.
fn check_claims(claims: &Claims, policy: &Policy, now: u64) -> Result<(), AuthError> {
    if claims.sub.trim().is_empty() {
        return Err(AuthError::EmptyIdentity);
    }
    // An `iat` in the future does not buy a longer life: count from now then.
    let lifetime = claims.exp.saturating_sub(claims.iat.min(now));
    if lifetime > policy.max_lifetime_secs.saturating_add(policy.leeway_secs) {
        return Err(AuthError::LifetimeTooLong {
            max_secs: policy.max_lifetime_secs,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret";

    #[test]
    fn round_trip() {
        let mut c = Claims::new("alice", "r1", true, false, 60);
        c.name = Some("Alice".into());
        let t = mint(SECRET, &c).expect("mint");
        assert_eq!(verify(SECRET, &t), Ok(c));
    }

    #[test]
    fn refusals() {
        assert_eq!(verify(SECRET, ""), Err(AuthError::Missing));
        assert_eq!(verify(SECRET, "garbage"), Err(AuthError::Invalid));
        assert_eq!(verify(SECRET, "a.b.c"), Err(AuthError::Invalid));
        let t = mint("other", &Claims::new("a", "r", true, true, 60)).expect("mint");
        assert_eq!(verify(SECRET, &t), Err(AuthError::Invalid));
        let mut c = Claims::new("a", "r", true, true, 0);
        c.exp = now_secs() - 3600;
        let t = mint(SECRET, &c).expect("mint");
        assert_eq!(verify(SECRET, &t), Err(AuthError::Expired));
        // Within the leeway it is still accepted; with zero leeway it is not.
        c.exp = now_secs() - 2;
        let t = mint(SECRET, &c).expect("mint");
        assert!(verify(SECRET, &t).is_ok());
        assert_eq!(verify_with_leeway(SECRET, &t, 0), Err(AuthError::Expired));
    }

    #[test]
    fn refuses_a_token_not_valid_yet() {
        let mut c = Claims::new("a", "r", true, true, 600);
        c.nbf = Some(now_secs() + 300);
        let t = mint(SECRET, &c).expect("mint");
        assert_eq!(verify(SECRET, &t), Err(AuthError::NotYetValid));
        assert_eq!(
            AuthError::NotYetValid.code(),
            huddle_proto::ErrorCode::TokenInvalid
        );
        // Within the clock-skew leeway, and in the past, it is accepted.
        c.nbf = Some(now_secs() + 2);
        assert!(verify(SECRET, &mint(SECRET, &c).expect("mint")).is_ok());
        c.nbf = Some(now_secs() - 60);
        assert!(verify(SECRET, &mint(SECRET, &c).expect("mint")).is_ok());
    }

    #[test]
    fn refuses_an_empty_or_blank_identity() {
        for sub in ["", " ", "\t\n"] {
            let t = mint(SECRET, &Claims::new(sub, "r", true, true, 60)).expect("mint");
            assert_eq!(verify(SECRET, &t), Err(AuthError::EmptyIdentity), "{sub:?}");
        }
    }

    #[test]
    fn refuses_a_lifetime_beyond_the_maximum() {
        let day = DEFAULT_MAX_LIFETIME_SECS;
        let t = mint(SECRET, &Claims::new("a", "r", true, true, day)).expect("mint");
        assert!(verify(SECRET, &t).is_ok(), "exactly the maximum");
        let t = mint(SECRET, &Claims::new("a", "r", true, true, 2 * day)).expect("mint");
        assert_eq!(
            verify(SECRET, &t),
            Err(AuthError::LifetimeTooLong { max_secs: day })
        );
        // An iat in the future does not stretch the lifetime.
        let mut c = Claims::new("a", "r", true, true, 0);
        c.iat = now_secs() + 10 * day;
        c.exp = c.iat + 60;
        let t = mint(SECRET, &c).expect("mint");
        assert!(matches!(
            verify(SECRET, &t),
            Err(AuthError::LifetimeTooLong { .. })
        ));
        // The maximum is configurable.
        let short = Policy {
            max_lifetime_secs: 600,
            ..Policy::default()
        };
        let t = mint(SECRET, &Claims::new("a", "r", true, true, 3600)).expect("mint");
        assert_eq!(
            verify_with(SECRET, &t, &short),
            Err(AuthError::LifetimeTooLong { max_secs: 600 })
        );
        let t = mint(SECRET, &Claims::new("a", "r", true, true, 600)).expect("mint");
        assert!(verify_with(SECRET, &t, &short).is_ok());
    }

    #[test]
    fn refuses_unsigned_and_other_algorithms() {
        use base64_url as b64;
        let header = b64::encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = b64::encode(&format!(
            r#"{{"sub":"a","room":"r","publish":true,"subscribe":true,"exp":{},"iat":0}}"#,
            now_secs() + 60
        ));
        assert_eq!(
            verify(SECRET, &format!("{header}.{body}.")),
            Err(AuthError::Invalid)
        );
        let header = b64::encode(r#"{"alg":"HS512","typ":"JWT"}"#);
        assert_eq!(
            verify(SECRET, &format!("{header}.{body}.AAAA")),
            Err(AuthError::Invalid)
        );
    }

    /// Minimal unpadded base64url, enough to forge test tokens.
    mod base64_url {
        pub fn encode(s: &str) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let b = s.as_bytes();
            let mut out = String::new();
            for chunk in b.chunks(3) {
                let n = chunk.len();
                let v = (u32::from(chunk[0]) << 16)
                    | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*chunk.get(2).unwrap_or(&0));
                for i in 0..=n {
                    out.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
