//! Writes mono audio as 16-bit PCM WAV (hound).

use std::io::{Seek, Write};

use hound::{SampleFormat, WavSpec, WavWriter};

use crate::error::{Error, Result};

/// A WAV file being written; call [`WavSink::finish`] to complete its header.
pub struct WavSink<W: Write + Seek> {
    writer: WavWriter<W>,
}

impl<W: Write + Seek> WavSink<W> {
    /// Starts a mono 16-bit WAV at `sample_rate` Hz.
    pub fn new(out: W, sample_rate: u32) -> Result<Self> {
        let spec = WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: SampleFormat::Int };
        let writer = WavWriter::new(out, spec).map_err(wav_error)?;
        Ok(Self { writer })
    }

    /// Appends samples, clipping to [-1, 1].
    pub fn write(&mut self, samples: &[f32]) -> Result<()> {
        let mut pcm = self.writer.get_i16_writer(samples.len() as u32);
        for &s in samples {
            pcm.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16);
        }
        pcm.flush().map_err(wav_error)
    }

    /// Finalises the header.
    pub fn finish(self) -> Result<()> {
        self.writer.finalize().map_err(wav_error)
    }
}

fn wav_error(e: hound::Error) -> Error {
    match e {
        hound::Error::IoError(io) => Error::io("cannot write WAV", io),
        other => Error::InvalidArgument(format!("cannot write WAV: {other}")),
    }
}
