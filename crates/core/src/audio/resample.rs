//! Sample-rate conversion for streams of any length (rubato's FFT resampler), with the
//! resampler's delay removed so output sample `n` lines up with input time `n / rate`.

use rubato::{FftFixedIn, Resampler as _};

use crate::error::{Error, Result};

/// Input samples per resampler call; small enough to keep memory flat, large enough to be fast.
const CHUNK: usize = 1024;

/// Converts a mono stream from one rate to another, piece by piece.
pub struct Resampler {
    inner: Option<FftFixedIn<f32>>,
    chunk: usize,
    ratio: f64,
    pending: Vec<f32>,
    /// Output samples still to drop at the start (the resampler's delay).
    skip: usize,
    consumed: u64,
    produced: u64,
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz; a no-op when they are equal.
    pub fn new(from: u32, to: u32) -> Result<Self> {
        Self::with_chunk(from, to, CHUNK)
    }

    /// A resampler that works in 10 ms pieces, for live audio: with the default 1024-sample
    /// pieces a 16 kHz stream waits 64 ms before the first output.
    pub fn low_latency(from: u32, to: u32) -> Result<Self> {
        Self::with_chunk(from, to, (from as usize / 100).max(1))
    }

    fn with_chunk(from: u32, to: u32, chunk: usize) -> Result<Self> {
        if from == 0 || to == 0 {
            return Err(Error::InvalidArgument(format!("cannot resample from {from} Hz to {to} Hz")));
        }
        let inner = if from == to {
            None
        } else {
            Some(
                FftFixedIn::new(from as usize, to as usize, chunk, 2, 1)
                    .map_err(|e| Error::InvalidArgument(format!("cannot resample from {from} Hz to {to} Hz: {e}")))?,
            )
        };
        let skip = inner.as_ref().map_or(0, |r| r.output_delay());
        Ok(Self {
            inner,
            chunk,
            ratio: f64::from(to) / f64::from(from),
            pending: Vec::new(),
            skip,
            consumed: 0,
            produced: 0,
        })
    }

    /// Resamples the next piece; returns whatever output is ready.
    pub fn process(&mut self, input: &[f32]) -> Vec<f32> {
        self.consumed += input.len() as u64;
        let Some(inner) = self.inner.as_mut() else {
            self.produced += input.len() as u64;
            return input.to_vec();
        };
        self.pending.extend_from_slice(input);
        let mut out = Vec::with_capacity((input.len() as f64 * self.ratio) as usize + self.chunk);
        let mut start = 0;
        while self.pending.len() - start >= self.chunk {
            let block = inner.process(&[&self.pending[start..start + self.chunk]], None).expect("sizes are right");
            start += self.chunk;
            Self::emit(&mut self.skip, &block[0], &mut out);
        }
        self.pending.drain(..start);
        self.produced += out.len() as u64;
        out
    }

    /// Flushes the resampler; the total output is `round(input_len * to / from)` samples.
    pub fn finish(&mut self) -> Vec<f32> {
        let Some(inner) = self.inner.as_mut() else { return Vec::new() };
        let wanted = (self.consumed as f64 * self.ratio).round() as u64;
        let mut out = Vec::new();
        let mut tail = std::mem::take(&mut self.pending);
        while self.produced + (out.len() as u64) < wanted {
            tail.resize(self.chunk, 0.0);
            let block = inner.process(&[&tail[..]], None).expect("sizes are right");
            Self::emit(&mut self.skip, &block[0], &mut out);
            tail.clear();
        }
        out.truncate((wanted - self.produced) as usize);
        self.produced = wanted;
        out
    }

    fn emit(skip: &mut usize, block: &[f32], out: &mut Vec<f32>) {
        let dropped = (*skip).min(block.len());
        *skip -= dropped;
        out.extend_from_slice(&block[dropped..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, len: usize) -> Vec<f32> {
        (0..len).map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin()).collect()
    }

    #[test]
    fn low_latency_pieces_keep_the_length_and_answer_within_10_ms() {
        for (from, to) in [(16_000, 48_000), (48_000, 16_000), (44_100, 16_000)] {
            let mut resampler = Resampler::low_latency(from, to).unwrap();
            let input = sine(from, 440.0, from as usize);
            let first = resampler.process(&input[..from as usize / 50]);
            assert!(!first.is_empty(), "{from}->{to}: nothing after 20 ms");
            let mut out = first;
            out.extend(resampler.process(&input[from as usize / 50..]));
            out.extend(resampler.finish());
            assert_eq!(out.len(), to as usize, "{from}->{to}");
        }
    }

    #[test]
    fn keeps_length_and_timing_in_pieces() {
        let input = sine(44_100, 440.0, 44_100);
        let mut resampler = Resampler::new(44_100, 16_000).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(777) {
            out.extend(resampler.process(piece));
        }
        out.extend(resampler.finish());
        assert_eq!(out.len(), 16_000);
        let reference = sine(16_000, 440.0, 16_000);
        let error: f32 =
            out[500..15_500].iter().zip(&reference[500..15_500]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(error < 0.01, "resampled sine is off by {error}");
    }

    #[test]
    fn same_rate_is_identity() {
        let mut resampler = Resampler::new(16_000, 16_000).unwrap();
        assert_eq!(resampler.process(&[0.5, -0.5]), vec![0.5, -0.5]);
        assert!(resampler.finish().is_empty());
    }
}
