//! The decision logic: which [`Operation`] produces the next frame.
//!
//! [`decide`] is a pure function of a [`DecisionInput`] snapshot, so the rules
//! can be read (and tested) in one place:
//!
//! | state of the packet buffer at this pull                  | operation |
//! |-----------------------------------------------------------|-----------|
//! | empty, or the next packet is not due yet (timestamp gap)   | `ComfortNoise` after a DTX packet, else `Expand` (up to `max_expands` in a row), then `Silence` |
//! | the expected packet is due and present                     | `Accelerate` if the filtered playout lag is above the band and the packet after it is there and contiguous; `PreemptiveExpand` if the lag is below the band; else `Normal` |
//! | the expected packet is missing, the one after it is there  | `FecRecover` |
//! | the expected packet is missing, a later one is there       | `Expand` (up to `max_expands` in a row), then `Silence` |
//!
//! The *playout lag* is how far the playout timeline runs behind the arrival
//! line of the best-placed packet of the last 2 s (see
//! [`DelayEstimator`](super::delay::DelayEstimator)); the target is the 95th
//! percentile of the packets' relative delays on the same scale, so a lag at
//! the target has 95% of the packets in time. Playout moves in whole packets
//! (one accelerate or preemptive expand moves the lag by one packet, 20 ms),
//! so while the last frame was quiet the lag is kept in
//! `[target, target + packet + 5 ms]`: the lower edge is the target itself,
//! and the band is one packet plus 5 ms of hysteresis wide, so one stretch
//! cannot push the lag straight across to the other side. While speech is
//! playing, a stretch is audible (a concealment frame inserted, two frames
//! cross-faded), so the band widens to `[target - packet / 2, target + 2
//! packets]` and most corrections wait for a pause (NetEQ likewise stretches
//! freely in passive speech and only when it can do so cleanly in active
//! speech). At the start of a talkspurt after DTX the lag is set to the
//! target for free (see `JitterBuffer`).
//! This is NetEQ's idea (a target level from the delay histogram, a band
//! around it that decides between accelerate, normal and preemptive expand),
//! with the band measured on the lag rather than on the packet count, which
//! moves in 20 ms steps and reads 20 ms high when a packet is about to play.

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
    /// Filtered playout lag in ms (see the module docs).
    pub lag_ms: f64,
    /// Target lag in ms.
    pub target_ms: f64,
    /// Duration of one packet in ms (what one stretch moves the lag by).
    pub packet_ms: f64,
    /// The last decoded frame was quiet (a stretch now is inaudible).
    pub quiet: bool,
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

/// While quiet, accelerate when the filtered lag exceeds the target by more
/// than one packet plus this (hysteresis against timer noise).
pub(crate) const ACCELERATE_HYSTERESIS_MS: f64 = 5.0;

/// The band `[low, high]` the lag is kept in (see the module docs).
pub(crate) fn band(input: &DecisionInput) -> (f64, f64) {
    band_for(input.target_ms, input.packet_ms, input.quiet)
}

/// The band for a target, a packet duration and whether the audio is quiet.
pub(crate) fn band_for(target_ms: f64, packet_ms: f64, quiet: bool) -> (f64, f64) {
    let (t, p) = (target_ms, packet_ms);
    if quiet {
        (t, t + p + ACCELERATE_HYSTERESIS_MS)
    } else {
        (t - p / 2.0, t + 2.0 * p)
    }
}

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
            let (low, high) = band(input);
            if input.lag_ms > high && input.next_contiguous && !after_gap {
                Operation::Accelerate
            } else if input.lag_ms < low && !after_gap && (!input.in_dtx || input.quiet) {
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

    fn input(head: Head, lag_ms: f64) -> DecisionInput {
        DecisionInput {
            head,
            lag_ms,
            target_ms: 40.0,
            packet_ms: 20.0,
            quiet: true,
            next_contiguous: true,
            in_dtx: false,
            consecutive_expands: 0,
            max_expands: 10,
            last: Operation::Normal,
        }
    }

    #[test]
    fn table() {
        // Target 40 ms, 20 ms packets, quiet: the lag is kept in [40, 65].
        assert_eq!(decide(&input(Head::Due, 40.0)), Operation::Normal);
        assert_eq!(decide(&input(Head::Due, 64.0)), Operation::Normal);
        assert_eq!(decide(&input(Head::Due, 66.0)), Operation::Accelerate);
        assert_eq!(decide(&input(Head::Due, 39.0)), Operation::PreemptiveExpand);
        // During speech: [30, 80].
        let speech = |lag| DecisionInput {
            quiet: false,
            ..input(Head::Due, lag)
        };
        assert_eq!(decide(&speech(31.0)), Operation::Normal);
        assert_eq!(decide(&speech(79.0)), Operation::Normal);
        assert_eq!(decide(&speech(81.0)), Operation::Accelerate);
        assert_eq!(decide(&speech(29.0)), Operation::PreemptiveExpand);
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
