//! [`AudioLevel`]: the RFC 6464 level a sender attaches to each audio frame.

/// How loud one audio frame is, as sent in the RFC 6464 header extension so
/// the server can tell who is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// Level in -dBov: 0 is the loudest, 127 silence.
    pub dbov: u8,
    /// Whether the sender's voice activity detection heard a voice.
    pub voice: bool,
}

impl AudioLevel {
    /// Silence: 127 -dBov, no voice.
    pub const SILENCE: AudioLevel = AudioLevel {
        dbov: 127,
        voice: false,
    };

    /// The level of a PCM frame: its RMS in -dBov, and a voice flag from a
    /// plain level threshold (-50 dBov).
    pub fn of_pcm(pcm: &[i16]) -> AudioLevel {
        let rms = huddle_media::analysis::rms(pcm);
        if rms < 1.0 {
            return AudioLevel::SILENCE;
        }
        let dbov = 20.0 * (rms / 32768.0).log10();
        let dbov = (-dbov).round().clamp(0.0, 127.0) as u8;
        AudioLevel {
            dbov,
            voice: dbov < 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AudioLevel;

    fn level(pcm: &[i16]) -> (u8, bool) {
        let l = AudioLevel::of_pcm(pcm);
        (l.dbov, l.voice)
    }

    #[test]
    fn levels_follow_rfc_6464() {
        assert_eq!(level(&[0; 960]), (127, false));
        // A full-scale square wave is 0 dBov.
        let square: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert_eq!(level(&square), (0, true));
        // -20 dBov.
        let quiet: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 3277 } else { -3277 })
            .collect();
        assert_eq!(level(&quiet), (20, true));
        let faint: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 33 } else { -33 })
            .collect();
        assert!(!level(&faint).1, "-60 dBov is not voice");
    }
}
