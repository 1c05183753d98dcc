//! Audio in and out: decoding files to mono samples at the model's rate, and writing WAV.

mod read;
mod resample;
mod write;

use std::path::{Path, PathBuf};

pub use read::AudioReader;
pub use resample::Resampler;
pub use write::WavSink;

use crate::error::{Error, Result};

/// File extensions taken for audio when searching directories.
const AUDIO_EXTENSIONS: [&str; 5] = ["wav", "flac", "ogg", "mp3", "oga"];

/// Audio files (by extension) under `dir`, recursively, sorted by path.
pub fn find_audio_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

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
