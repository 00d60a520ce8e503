//! Which counters a receiver has decrypted under one key: a frame is taken
//! once. Without this, an SFU could send a participant's earlier frames
//! again (they still authenticate) and make them heard twice.

/// How far behind the newest counter a frame may still come (frames
/// reordered on the way). An older one is refused.
pub const WINDOW: u64 = 128;

/// The counters seen under one key: the newest, and which of the
/// [`WINDOW`] before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    newest: Option<u64>,
    /// Bit `i`: counter `newest - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// Whether a frame with counter `ctr` may be taken: not seen yet and
    /// not older than the window.
    pub fn fresh(&self, ctr: u64) -> bool {
        let Some(newest) = self.newest else {
            return true;
        };
        if ctr > newest {
            return true;
        }
        let back = newest - ctr;
        back < WINDOW && self.seen & (1 << back) == 0
    }

    /// Counter `ctr` was taken (after its frame authenticated).
    pub fn mark(&mut self, ctr: u64) {
        match self.newest {
            Some(newest) if ctr <= newest => {
                let back = newest - ctr;
                if back < WINDOW {
                    self.seen |= 1 << back;
                }
            }
            Some(newest) => {
                let ahead = ctr - newest;
                self.seen = if ahead >= WINDOW {
                    0
                } else {
                    self.seen << ahead
                };
                self.seen |= 1;
                self.newest = Some(ctr);
            }
            None => {
                self.seen = 1;
                self.newest = Some(ctr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_once_reordering_within_the_window() {
        let mut w = ReplayWindow::default();
        assert!(w.fresh(5));
        w.mark(5);
        assert!(!w.fresh(5));
        assert!(w.fresh(3), "late but inside the window");
        w.mark(3);
        assert!(!w.fresh(3));
        w.mark(200);
        assert!(!w.fresh(5), "older than the window now");
        assert!(w.fresh(200 - 127));
        assert!(!w.fresh(200 - 128));
        w.mark(u64::MAX);
        assert!(!w.fresh(u64::MAX));
        assert!(w.fresh(u64::MAX - 1));
    }
}
