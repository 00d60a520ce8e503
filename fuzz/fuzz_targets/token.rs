//! An access token from a client (the `join` message's, a WHIP/WHEP
//! bearer, the admin API's), checked as the signaling checks it
//! (`huddle_signaling::auth::verify`): a forged or broken token is an
//! error, never a panic; one that passes, minted again, passes again.

#![no_main]

use huddle_signaling::auth::{mint, verify};
use libfuzzer_sys::fuzz_target;

/// The secret the corpus's valid tokens are signed with.
const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(claims) = verify(SECRET, token) {
        let again = mint(SECRET, &claims).expect("accepted claims sign");
        verify(SECRET, &again).expect("and verify again");
    }
});
