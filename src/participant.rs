//! [`Participant`]: someone in the room, as the app shows them.

use crate::ids::ParticipantId;
use huddle_proto::ParticipantInfo;

/// A participant of the room: the server's id, the identity their token was
/// issued for, and the token's display name if it has one.
///
/// ```
/// let p = huddle::Participant::new("PA_1".into(), "alice".into());
/// assert_eq!(p.name(), "alice");
/// let p = p.with_display_name("Alice Liddell");
/// assert_eq!(p.name(), "Alice Liddell");
/// assert_eq!(p.identity, "alice");
/// assert_eq!(p.id, "PA_1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Participant {
    /// Server-assigned id.
    pub id: ParticipantId,
    /// The identity their token was issued for (unique per person in your
    /// app's terms; the server does not check that).
    pub identity: String,
    /// The display name of their token (its `name` claim), if any.
    pub display_name: Option<String>,
}

impl Participant {
    /// A participant with this id and identity, and no display name.
    pub fn new(id: ParticipantId, identity: String) -> Self {
        Self {
            id,
            identity,
            display_name: None,
        }
    }

    /// The same participant with a display name.
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// The name to show for them: their display name, else their identity.
    pub fn name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.identity)
    }
}

impl From<&ParticipantInfo> for Participant {
    fn from(p: &ParticipantInfo) -> Self {
        Participant {
            id: p.id.clone().into(),
            identity: p.identity.clone(),
            display_name: p.name.clone().filter(|n| !n.trim().is_empty()),
        }
    }
}

impl std::fmt::Display for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
