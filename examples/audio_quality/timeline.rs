//! `--timeline`: the receiver's jitter-buffer counters every half second
//! of a real call, as the change since the line before, to see when in
//! the call frames were concealed, stretched or squeezed.

use huddle_media::jitter::JitterStats;
use std::time::Duration;

/// How often a line is printed.
pub const EVERY: Duration = Duration::from_millis(500);

/// The header of the lines [`line`] prints.
pub const HEADER: &str =
    "    t  recv  late  lost  red  fec  conceal  accel  expand  delay_ms  target_ms  lag_ms";

/// One line: the time since the call started (s), what changed from
/// `before` to `now`, and the delays now.
pub fn line(t: Duration, before: &JitterStats, now: &JitterStats) -> String {
    let d = |f: fn(&JitterStats) -> u64| f(now).saturating_sub(f(before));
    format!(
        "{:5.1}  {:4}  {:4}  {:4}  {:3}  {:3}  {:7}  {:5}  {:6}  {:8.0}  {:9.0}  {:6.0}",
        t.as_secs_f64(),
        d(|s| s.packets_received),
        d(|s| s.late),
        d(|s| s.lost),
        d(|s| s.red_recovered_frames),
        d(|s| s.fec_recovered_frames),
        d(|s| s.concealed_frames),
        d(|s| s.accelerated_frames),
        d(|s| s.preemptive_expanded_frames),
        now.current_delay_ms,
        now.target_delay_ms,
        now.playout_lag_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_the_change_and_the_delays_now() {
        let mut before = JitterStats::default();
        before.packets_received = 100;
        before.concealed_frames = 3;
        let mut now = before;
        now.packets_received = 125;
        now.concealed_frames = 5;
        now.target_delay_ms = 160.0;
        let l = line(Duration::from_millis(2500), &before, &now);
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(cols.len(), HEADER.split_whitespace().count());
        assert_eq!(cols[0], "2.5");
        assert_eq!(cols[1], "25", "received in the half second");
        assert_eq!(cols[6], "2", "concealed in the half second");
        assert_eq!(cols[10], "160");
    }
}
