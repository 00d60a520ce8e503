//! The code people in a call compare to know they share one group with
//! no one else in it: 30 digits from the MLS epoch authenticator (RFC 9420
//! §8.7), which every member of an epoch has and no one outside it can
//! compute. Anyone added to the group, a "ghost" the server slipped in
//! included, makes a new epoch and so a new code for everyone.
//!
//! `SHA-512("huddle safety code 1" || authenticator)`, its first 30 bytes
//! in 6 chunks of 5; each chunk, big-endian, modulo 100000 is a group of
//! 5 digits (the bias of 2^40 mod 10^5 is under 10^-7).

use sha2::{Digest, Sha512};

/// Domain separation: the code is not any other use of the authenticator.
const LABEL: &[u8] = b"huddle safety code 1";
/// Groups of 5 digits.
const GROUPS: usize = 6;

/// The safety code of an epoch authenticator: `"01234 56789 ..."`, 6
/// groups of 5 digits.
pub fn safety_code(epoch_authenticator: &[u8]) -> String {
    let digest = Sha512::new()
        .chain_update(LABEL)
        .chain_update(epoch_authenticator)
        .finalize();
    let mut code = String::with_capacity(GROUPS * 6);
    for (i, chunk) in digest.chunks(5).take(GROUPS).enumerate() {
        let value = chunk.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        if i > 0 {
            code.push(' ');
        }
        code.push_str(&format!("{:05}", value % 100_000));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_digits_that_follow_the_authenticator() {
        let a = safety_code(&[1; 32]);
        assert_eq!(a.len(), 35);
        assert_eq!(a.split(' ').count(), 6);
        assert!(a
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(a, safety_code(&[1; 32]), "the same for everyone");
        assert_ne!(a, safety_code(&[2; 32]));
    }
}
