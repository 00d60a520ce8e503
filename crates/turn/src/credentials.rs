//! Short-lived TURN credentials in the TURN REST API scheme
//! (draft-uberti-behave-turn-rest-00, which coturn's `use-auth-secret`
//! checks too): the username is `<expiry>:<participant id>` (expiry in Unix
//! seconds) and the password is `base64(HMAC-SHA1(secret, username))`.
//! Whoever knows the secret can check a username by recomputing its
//! password; nothing is stored.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The username and password for `participant`, valid until `expiry`
/// (Unix seconds).
pub fn credentials(secret: &str, expiry: u64, participant: &str) -> (String, String) {
    let username = format!("{expiry}:{participant}");
    let password = password(secret, &username);
    (username, password)
}

/// The password of `username`: `base64(HMAC-SHA1(secret, username))`.
pub fn password(secret: &str, username: &str) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A username in the REST scheme, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestUsername<'a> {
    /// When its credentials stop being accepted (Unix seconds).
    pub expiry: u64,
    /// Whom they were made for.
    pub participant: &'a str,
}

/// Why a username is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Not `<expiry>:<participant>`.
    #[error("not a <expiry>:<participant> username")]
    Malformed,
    /// Its expiry has passed.
    #[error("credentials expired {0} s ago")]
    Expired(u64),
}

/// Takes `username` apart (expired or not).
pub fn parse_username(username: &str) -> Result<RestUsername<'_>, UsernameError> {
    let (expiry, participant) = username.split_once(':').ok_or(UsernameError::Malformed)?;
    let expiry: u64 = expiry.parse().map_err(|_| UsernameError::Malformed)?;
    if participant.is_empty() {
        return Err(UsernameError::Malformed);
    }
    Ok(RestUsername {
        expiry,
        participant,
    })
}

/// Takes `username` apart and checks that it has not expired at `now_unix`.
/// (Whether its password is right is for the message's integrity to show.)
pub fn check_username(username: &str, now_unix: u64) -> Result<RestUsername<'_>, UsernameError> {
    let parsed = parse_username(username)?;
    if parsed.expiry <= now_unix {
        return Err(UsernameError::Expired(now_unix - parsed.expiry));
    }
    Ok(parsed)
}

/// Seconds since the Unix epoch, now (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_the_rest_api_ones() {
        // Known answer: python3 -c 'import hmac,hashlib,base64;
        //   print(base64.b64encode(hmac.new(b"north", b"1700000000:PA_x",
        //   hashlib.sha1).digest()).decode())'
        let (user, pass) = credentials("north", 1_700_000_000, "PA_x");
        assert_eq!(user, "1700000000:PA_x");
        assert_eq!(pass, "bJNHYqfyCkl+PF7CTIj5CKSY9i0=");
    }

    #[test]
    fn usernames_are_checked_for_shape_and_expiry() {
        assert_eq!(
            check_username("1700000100:PA_x", 1_700_000_000),
            Ok(RestUsername {
                expiry: 1_700_000_100,
                participant: "PA_x"
            })
        );
        assert_eq!(
            check_username("1700000000:PA_x", 1_700_000_000),
            Err(UsernameError::Expired(0))
        );
        for bad in ["", "PA_x", "x:PA_x", "1700000100:", ":PA_x", "-1:PA_x"] {
            assert_eq!(
                check_username(bad, 1_700_000_000),
                Err(UsernameError::Malformed),
                "{bad:?}"
            );
        }
    }
}
