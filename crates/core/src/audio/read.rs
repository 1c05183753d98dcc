//! Reads any audio file symphonia understands as a stream of mono `f32` pieces.

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{
    CODEC_TYPE_MP1, CODEC_TYPE_MP2, CODEC_TYPE_MP3, CODEC_TYPE_NULL, CODEC_TYPE_VORBIS, Decoder, DecoderOptions,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::error::{Error, Result};

/// Reader of one audio file (or stdin), decoding packet by packet: memory does not grow with
/// the file's length.
pub struct AudioReader {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track: u32,
    sample_rate: u32,
    declared_frames: Option<u64>,
    /// Lossy codecs' declared lengths include encoder padding, so only lossless ones are
    /// held to theirs when checking for truncation.
    exact_length: bool,
    frames_read: u64,
    buffer: Option<SampleBuffer<f32>>,
}

impl AudioReader {
    /// Opens `path`; `-` reads standard input.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Audio { path: path.to_path_buf(), reason };
        let mut hint = Hint::new();
        let stream = if path == Path::new("-") {
            MediaSourceStream::new(Box::new(ReadOnlySource::new(std::io::stdin())), Default::default())
        } else {
            if path.is_dir() {
                return Err(bad("is a directory, not an audio file".into()));
            }
            let file = File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            let len = file.metadata().map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?.len();
            if len == 0 {
                return Err(bad("the file is empty".into()));
            }
            if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
                hint.with_extension(ext);
            }
            MediaSourceStream::new(Box::new(file), Default::default())
        };
        Self::from_stream(stream, hint, path)
    }

    fn from_stream(stream: MediaSourceStream, hint: Hint, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Audio { path: path.to_path_buf(), reason };
        let probed = symphonia::default::get_probe()
            .format(
                &hint,
                stream,
                &FormatOptions { enable_gapless: true, ..Default::default() },
                &MetadataOptions::default(),
            )
            .map_err(|e| match e {
                SymphoniaError::IoError(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    bad("the file is empty or too short to be audio".into())
                }
                SymphoniaError::Unsupported(what) if !what.contains("no suitable format reader") => bad(format!(
                    "uses an audio encoding that is not supported ({what}); convert it to PCM WAV or FLAC first"
                )),
                _ => bad("not a recognised audio format (tokenwave reads WAV, FLAC, MP3 and Ogg Vorbis)".into()),
            })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| bad("contains no audio track".into()))?;
        let params = track.codec_params.clone();
        let decoder = symphonia::default::get_codecs().make(&params, &DecoderOptions::default()).map_err(|_| {
            let name = symphonia::default::get_codecs()
                .get_codec(params.codec)
                .map_or_else(|| format!("{:?}", params.codec), |d| d.short_name.to_string());
            bad(format!("its audio codec ({name}) is not supported; convert it to WAV or FLAC first"))
        })?;
        let sample_rate = params.sample_rate.ok_or_else(|| bad("does not declare a sample rate".into()))?;
        if sample_rate == 0 {
            return Err(bad("declares a sample rate of 0 Hz".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            track: track.id,
            format,
            decoder,
            sample_rate,
            declared_frames: params.n_frames,
            exact_length: ![CODEC_TYPE_MP1, CODEC_TYPE_MP2, CODEC_TYPE_MP3, CODEC_TYPE_VORBIS].contains(&params.codec),
            frames_read: 0,
            buffer: None,
        })
    }

    /// The file's own sample rate, in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Length in samples per channel, if the container declares it.
    pub fn declared_frames(&self) -> Option<u64> {
        self.declared_frames
    }

    /// The next decoded piece, downmixed to mono, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<f32>>> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(packet) => packet,
                Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return self.check_complete().map(|()| None);
                }
                Err(SymphoniaError::ResetRequired) => return self.check_complete().map(|()| None),
                Err(e) => return Err(self.bad(format!("cannot read: {e}"))),
            };
            if packet.track_id() != self.track {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(decoded) => decoded,
                Err(SymphoniaError::DecodeError(e)) => {
                    return Err(self.bad(format!("damaged audio data after {} samples: {e}", self.frames_read)));
                }
                Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(self.bad(format!("truncated after {} samples", self.frames_read)));
                }
                Err(e) => return Err(self.bad(format!("cannot decode: {e}"))),
            };
            let spec = *decoded.spec();
            let frames = decoded.frames();
            if frames == 0 {
                continue;
            }
            let buffer = match &mut self.buffer {
                Some(b) if b.capacity() >= frames * spec.channels.count() => b,
                slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
            };
            buffer.copy_interleaved_ref(decoded);
            let channels = spec.channels.count().max(1);
            // Gapless trimming (encoder delay and padding, e.g. in LAME MP3s).
            let start = (packet.trim_start as usize).min(frames);
            let end = frames.saturating_sub(packet.trim_end as usize).max(start);
            let mono = downmix(&buffer.samples()[start * channels..end * channels], channels);
            if mono.is_empty() {
                continue;
            }
            if let Some(bad) = mono.iter().position(|s| !s.is_finite()) {
                let at = self.frames_read + bad as u64;
                return Err(
                    self.bad(format!("sample {at} is not a finite number (NaN or infinity); the file is corrupt"))
                );
            }
            self.frames_read += mono.len() as u64;
            return Ok(Some(mono));
        }
    }

    fn check_complete(&self) -> Result<()> {
        match self.declared_frames {
            Some(declared) if self.exact_length && self.frames_read < declared => Err(self.bad(format!(
                "truncated: the header declares {declared} samples but the data ends after {}",
                self.frames_read
            ))),
            _ => Ok(()),
        }
    }

    fn bad(&self, reason: String) -> Error {
        Error::Audio { path: self.path.clone(), reason }
    }
}

/// Averages interleaved channels into one.
fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    let scale = 1.0 / channels as f32;
    interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() * scale).collect()
}
