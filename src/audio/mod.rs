//! Audio in and out: decoding files to mono samples at the model's rate, and writing WAV.

mod read;
mod resample;
mod write;

use std::path::Path;

pub use read::AudioReader;
pub use resample::Resampler;
pub use write::WavSink;

use crate::error::Result;

/// An audio file decoded, downmixed and resampled to one rate, piece by piece.
pub struct AudioSource {
    reader: AudioReader,
    resampler: Resampler,
    finished: bool,
}

impl AudioSource {
    /// Opens `path` (`-` for stdin), delivering mono samples at `rate` Hz.
    pub fn open(path: &Path, rate: u32) -> Result<Self> {
        Self::new(AudioReader::open(path)?, rate)
    }

    /// Wraps an open reader, delivering mono samples at `rate` Hz.
    pub fn new(reader: AudioReader, rate: u32) -> Result<Self> {
        let resampler = Resampler::new(reader.sample_rate(), rate)?;
        Ok(Self { reader, resampler, finished: false })
    }

    /// The underlying file reader (for its rate, channels and declared length).
    pub fn reader(&self) -> &AudioReader {
        &self.reader
    }

    /// Duration of the input in seconds, if its container declares its length.
    pub fn declared_seconds(&self) -> Option<f64> {
        self.reader.declared_frames().map(|f| f as f64 / f64::from(self.reader.sample_rate()))
    }

    /// The next piece at the target rate, or `None` once the file is done.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<f32>>> {
        if self.finished {
            return Ok(None);
        }
        match self.reader.next_chunk()? {
            Some(piece) => Ok(Some(self.resampler.process(&piece))),
            None => {
                self.finished = true;
                Ok(Some(self.resampler.finish()))
            }
        }
    }
}
