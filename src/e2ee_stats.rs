//! [`E2eeStats`]: what the receiving side of an E2EE call did with the
//! frames it got, and the counters behind the calling crate's own reasons
//! for dropping one (beside SFrame's).

use huddle_e2ee::sframe::ReceiverStats;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the receiving side of an end-to-end encrypted call did with the
/// frames that reached it: how many it decrypted, and how many it
/// dropped, by reason. A frame the SFU changed, made up or moved to
/// another track shows here and nowhere else: the app never sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct E2eeStats {
    /// Frames decrypted and handed on.
    pub decrypted: u64,
    /// Frames whose SFrame header could not be read.
    pub malformed: u64,
    /// Frames under a key ID with no key here (never given, removed,
    /// expired).
    pub unknown_kid: u64,
    /// Frames whose tag did not match: changed on the way (ciphertext or
    /// clear bytes), or made with another key.
    pub authentication_failed: u64,
    /// Frames whose (key ID, counter) was decrypted already or is too old.
    pub replayed: u64,
    /// Frames that decrypted but came on the track of another member, or
    /// of another stream (a camera's frame on a screen's track), than the
    /// one whose key made them.
    pub misattributed: u64,
    /// Packets with no frame to read: RED that does not parse, a video
    /// frame that is not VP8.
    pub unreadable: u64,
    /// Copies of frames already taken (resends, RED's repeats, replays):
    /// dropped before decrypting.
    pub duplicates: u64,
    /// Frames of the next epoch whose keys did not come while they waited
    /// (a second, and a bounded number of them per track).
    pub waited_too_long: u64,
}

/// The calling crate's own drop counters (see [`E2eeStats`]).
#[derive(Debug, Default)]
pub(crate) struct Drops {
    misattributed: AtomicU64,
    unreadable: AtomicU64,
    duplicates: AtomicU64,
    waited_too_long: AtomicU64,
}

/// Why the calling crate dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// See [`E2eeStats::misattributed`].
    Misattributed,
    /// See [`E2eeStats::unreadable`].
    Unreadable,
    /// See [`E2eeStats::duplicates`].
    Duplicate,
    /// See [`E2eeStats::waited_too_long`].
    WaitedTooLong,
}

impl Drops {
    /// Count one frame dropped for `why`.
    pub(crate) fn count(&self, why: DropReason) {
        let counter = match why {
            DropReason::Misattributed => &self.misattributed,
            DropReason::Unreadable => &self.unreadable,
            DropReason::Duplicate => &self.duplicates,
            DropReason::WaitedTooLong => &self.waited_too_long,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// These counts beside SFrame's.
    pub(crate) fn with(&self, sframe: ReceiverStats) -> E2eeStats {
        let misattributed = self.misattributed.load(Ordering::Relaxed);
        E2eeStats {
            // Frames moved to the wrong track decrypted, then were dropped.
            decrypted: sframe.decrypted.saturating_sub(misattributed),
            malformed: sframe.malformed,
            unknown_kid: sframe.unknown_kid,
            authentication_failed: sframe.authentication_failed,
            replayed: sframe.replayed,
            misattributed,
            unreadable: self.unreadable.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            waited_too_long: self.waited_too_long.load(Ordering::Relaxed),
        }
    }
}
