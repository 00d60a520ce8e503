//! The decision logic: which [`Operation`] produces the next frame.
//!
//! [`decide`] is a pure function of a [`DecisionInput`] snapshot, so the rules
//! can be read (and tested) in one place:
//!
//! | state of the packet buffer at this pull                  | operation |
//! |-----------------------------------------------------------|-----------|
//! | empty, or the next packet is not due yet (timestamp gap)   | `ComfortNoise` after a DTX packet, else `Expand` (up to `max_expands` in a row), then `Silence` |
//! | the expected packet is due and present                     | `Accelerate` if the filtered buffer level is above `target + 35 ms` and the packet after it is there and contiguous; `PreemptiveExpand` if the level is below `target + 5 ms`; else `Normal` |
//! | the expected packet is missing, the one after it is there  | `FecRecover` |
//! | the expected packet is missing, a later one is there       | `Expand` (up to `max_expands` in a row), then `Silence` |
//!
//! The buffer level is measured before the pull and includes the packet about
//! to be played, so with 20 ms packets it moves in 20 ms steps; the band
//! `[target + 5, target + 35]` ms is wider than one step, so one accelerate or
//! one preemptive expand (each moves the level by one frame) cannot push it
//! straight across to the other side.

/// How one output frame was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// The expected packet was decoded.
    Normal,
    /// Packet-loss concealment (codec PLC): the packet was missing or late, or
    /// the buffer ran dry.
    Expand,
    /// The expected packet was missing; it was rebuilt from the in-band FEC of
    /// the packet after it.
    FecRecover,
    /// The buffer is above target: two packets were decoded and time-compressed
    /// into one frame (cross-fade), dropping 20 ms of delay.
    Accelerate,
    /// The buffer is below target: a concealment frame was inserted before the
    /// expected packet, adding 20 ms of delay without losing anything.
    PreemptiveExpand,
    /// The sender is in DTX (its last packet was a DTX packet): silence until
    /// the next talkspurt. No loss, no concealment.
    ComfortNoise,
    /// Nothing to play: before playout starts, or after concealment has run for
    /// `max_expands` frames in a row.
    Silence,
}

/// Where the buffer stands with respect to the next sequence number to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// No packet buffered.
    Empty,
    /// Packets are buffered, but the next one's timestamp is still in the future
    /// (a DTX gap, or the sender paused).
    Early,
    /// The expected packet is present and due.
    Due,
    /// The expected packet is missing and the next one is present.
    MissingNextPresent,
    /// The expected packet is missing, and so is the one after it; a later one
    /// is present and due.
    MissingLaterPresent,
}

/// Snapshot of the state the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DecisionInput {
    pub head: Head,
    /// Filtered buffer level in ms (see the module docs).
    pub level_ms: f64,
    /// Target delay in ms.
    pub target_ms: f64,
    /// The packet after the expected one is present with a contiguous timestamp.
    pub next_contiguous: bool,
    /// The last decoded packet was a DTX packet.
    pub in_dtx: bool,
    /// Concealment frames produced in a row so far.
    pub consecutive_expands: u32,
    /// Most concealment frames in a row before switching to silence.
    pub max_expands: u32,
    /// The previous operation.
    pub last: Operation,
}

/// Accelerate when the filtered level exceeds the target by more than this.
pub(crate) const ACCELERATE_ABOVE_MS: f64 = 35.0;
/// Preemptively expand when the filtered level is below target plus this.
pub(crate) const PREEMPTIVE_BELOW_MS: f64 = 5.0;

/// The operation for the next frame.
pub(crate) fn decide(input: &DecisionInput) -> Operation {
    let conceal_or_silence = if input.consecutive_expands < input.max_expands {
        Operation::Expand
    } else {
        Operation::Silence
    };
    match input.head {
        Head::Empty | Head::Early => {
            if input.in_dtx {
                Operation::ComfortNoise
            } else {
                conceal_or_silence
            }
        }
        Head::MissingNextPresent => Operation::FecRecover,
        Head::MissingLaterPresent => conceal_or_silence,
        Head::Due => {
            let after_gap = matches!(
                input.last,
                Operation::Expand | Operation::ComfortNoise | Operation::Silence
            );
            if input.level_ms > input.target_ms + ACCELERATE_ABOVE_MS
                && input.next_contiguous
                && !after_gap
            {
                Operation::Accelerate
            } else if input.level_ms < input.target_ms + PREEMPTIVE_BELOW_MS
                && !after_gap
                && !input.in_dtx
            {
                Operation::PreemptiveExpand
            } else {
                Operation::Normal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(head: Head, level_ms: f64) -> DecisionInput {
        DecisionInput {
            head,
            level_ms,
            target_ms: 40.0,
            next_contiguous: true,
            in_dtx: false,
            consecutive_expands: 0,
            max_expands: 10,
            last: Operation::Normal,
        }
    }

    #[test]
    fn table() {
        assert_eq!(decide(&input(Head::Due, 60.0)), Operation::Normal);
        assert_eq!(decide(&input(Head::Due, 80.0)), Operation::Accelerate);
        assert_eq!(decide(&input(Head::Due, 44.0)), Operation::PreemptiveExpand);
        assert_eq!(
            decide(&input(Head::MissingNextPresent, 60.0)),
            Operation::FecRecover
        );
        assert_eq!(
            decide(&input(Head::MissingLaterPresent, 60.0)),
            Operation::Expand
        );
        assert_eq!(decide(&input(Head::Empty, 0.0)), Operation::Expand);
        assert_eq!(decide(&input(Head::Early, 0.0)), Operation::Expand);
    }

    #[test]
    fn dtx_gives_comfort_noise_not_concealment() {
        let mut i = input(Head::Empty, 0.0);
        i.in_dtx = true;
        assert_eq!(decide(&i), Operation::ComfortNoise);
        i.head = Head::Early;
        assert_eq!(decide(&i), Operation::ComfortNoise);
    }

    #[test]
    fn concealment_gives_up_to_silence() {
        let mut i = input(Head::Empty, 0.0);
        i.consecutive_expands = 10;
        assert_eq!(decide(&i), Operation::Silence);
        i.head = Head::MissingLaterPresent;
        assert_eq!(decide(&i), Operation::Silence);
    }

    #[test]
    fn no_time_stretch_right_after_a_gap_or_without_a_next_packet() {
        let mut i = input(Head::Due, 80.0);
        i.next_contiguous = false;
        assert_eq!(decide(&i), Operation::Normal);
        let mut i = input(Head::Due, 80.0);
        i.last = Operation::Expand;
        assert_eq!(decide(&i), Operation::Normal);
        let mut i = input(Head::Due, 20.0);
        i.last = Operation::ComfortNoise;
        assert_eq!(decide(&i), Operation::Normal);
    }
}
