//! The PCM format every audio buffer of the crate uses: 48 kHz, 20 ms frames,
//! mono or interleaved stereo.

/// Sample rate of every PCM buffer in this crate, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;

/// Duration of one audio frame, in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE / 1000 * FRAME_MS) as usize;

/// Channel layout of a PCM stream (interleaved when stereo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channels {
    /// One channel.
    Mono,
    /// Two channels, interleaved left/right.
    Stereo,
}

impl Channels {
    /// Number of channels (1 or 2).
    pub fn count(self) -> usize {
        match self {
            Channels::Mono => 1,
            Channels::Stereo => 2,
        }
    }

    /// Number of interleaved samples in one 20 ms frame with this layout.
    pub fn frame_len(self) -> usize {
        FRAME_SAMPLES * self.count()
    }

    /// The layout with `n` channels, if it is 1 or 2.
    pub fn from_count(n: usize) -> Option<Self> {
        match n {
            1 => Some(Channels::Mono),
            2 => Some(Channels::Stereo),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels() {
        assert_eq!(Channels::Mono.frame_len(), 960);
        assert_eq!(Channels::Stereo.frame_len(), 1920);
        assert_eq!(Channels::from_count(2), Some(Channels::Stereo));
        assert_eq!(Channels::from_count(3), None);
    }
}
