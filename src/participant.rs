//! [`Participant`]: someone in the room, as the app shows them.

use crate::ids::ParticipantId;
use huddle_proto::ParticipantInfo;

/// A participant of the room: the server's id and the identity from their
/// token.
///
/// The server sends the token's identity (`sub`), not its optional display
/// name; [`Participant::name`] is therefore the identity.
///
/// ```
/// let p = huddle::Participant::new("PA_1".into(), "alice".into());
/// assert_eq!(p.name(), "alice");
/// assert_eq!(p.id, "PA_1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Participant {
    /// Server-assigned id.
    pub id: ParticipantId,
    /// The identity their token was issued for.
    pub identity: String,
}

impl Participant {
    /// A participant with this id and identity.
    pub fn new(id: ParticipantId, identity: String) -> Self {
        Self { id, identity }
    }

    /// The name to show for them (their identity).
    pub fn name(&self) -> &str {
        &self.identity
    }
}

impl From<&ParticipantInfo> for Participant {
    fn from(p: &ParticipantInfo) -> Self {
        Participant::new(p.id.clone().into(), p.identity.clone())
    }
}

impl std::fmt::Display for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.identity)
    }
}
