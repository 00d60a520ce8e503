//! Where decoded audio goes: the [`AudioSink`] trait and a [`NullSink`].
//!
//! The `wav` module's `WavSink` writes to a file; a `Vec<i16>` collects samples in
//! memory (handy in tests).

use crate::error::Result;

/// Something that consumes interleaved 48 kHz i16 PCM.
pub trait AudioSink {
    /// Consume `pcm` (normally one 20 ms frame; any whole number of
    /// sample frames is accepted).
    fn write_frame(&mut self, pcm: &[i16]) -> Result<()>;
}

/// Discards audio, counting how many samples it was given.
#[derive(Debug, Default, Clone)]
pub struct NullSink {
    samples: u64,
}

impl NullSink {
    /// A new sink with a zero count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total interleaved samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.samples
    }
}

impl AudioSink for NullSink {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<()> {
        self.samples += pcm.len() as u64;
        Ok(())
    }
}

impl AudioSink for Vec<i16> {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<()> {
        self.extend_from_slice(pcm);
        Ok(())
    }
}

impl<S: AudioSink + ?Sized> AudioSink for Box<S> {
    fn write_frame(&mut self, pcm: &[i16]) -> Result<()> {
        (**self).write_frame(pcm)
    }
}
