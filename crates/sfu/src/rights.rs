//! What a participant may do in its room.

/// Rights a participant has in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    /// May send media.
    pub publish: bool,
    /// May receive media.
    pub subscribe: bool,
}
