//! Typed identifiers: a track id is not a participant id, an SSRC is not a
//! sequence number.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id as the server spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// A track's room-wide id, as the server announces it (`track_published`).
    TrackId
);

string_id!(
    /// A participant's server-assigned id, unique within the server's life.
    ParticipantId
);

/// An RTP synchronization source: which stream a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ssrc(pub u32);

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// An RTP sequence number (16 bits, wraps around).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqNum(pub u16);

impl SeqNum {
    /// The number after this one, wrapping at 65535.
    pub fn next(self) -> SeqNum {
        SeqNum(self.0.wrapping_add(1))
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_with_their_text() {
        let t = TrackId::from("TR_1");
        assert_eq!(t, "TR_1");
        assert_eq!(t.to_string(), "TR_1");
        assert_ne!(ParticipantId::from("a"), ParticipantId::from("b"));
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert_eq!(SeqNum(65535).next(), SeqNum(0));
        assert_eq!(Ssrc(0x1234).to_string(), "0x00001234");
    }
}
