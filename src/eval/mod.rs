//! Objective quality measures between a reference and a decoded signal: SI-SDR, STOI and
//! extended STOI, and log-mel L1. Plain DSP on `f32` slices; knows nothing of the model.

mod stoi;

use std::f64::consts::PI;
use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub(crate) use stoi::third_octave_edges;
pub use stoi::{STOI_RATE, stoi};

/// Floor inside logarithms, as in the training loss.
const EPS: f64 = 1e-5;

/// Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), over the common
/// length, after removing each signal's mean.
pub fn si_sdr(reference: &[f32], estimate: &[f32]) -> f64 {
    let n = reference.len().min(estimate.len());
    let mean = |x: &[f32]| x[..n].iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
    let (mr, me) = (mean(reference), mean(estimate));
    let r: Vec<f64> = reference[..n].iter().map(|&v| f64::from(v) - mr).collect();
    let e: Vec<f64> = estimate[..n].iter().map(|&v| f64::from(v) - me).collect();
    let dot: f64 = r.iter().zip(&e).map(|(a, b)| a * b).sum();
    let energy: f64 = r.iter().map(|a| a * a).sum();
    let alpha = dot / energy.max(1e-20);
    let target: f64 = r.iter().map(|a| (alpha * a).powi(2)).sum();
    let noise: f64 = r.iter().zip(&e).map(|(a, b)| (alpha * a - b).powi(2)).sum();
    10.0 * (target.max(1e-20) / noise.max(1e-20)).log10()
}

/// Magnitude spectrogram: periodic Hann window of `n_fft`, hop `hop`, frames fully inside
/// the signal; `[frames][n_fft / 2 + 1]`.
pub(crate) struct Stft {
    n_fft: usize,
    hop: usize,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl Stft {
    pub(crate) fn new(n_fft: usize, hop: usize, window: Vec<f64>) -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Self { n_fft, hop, window, fft }
    }

    /// Magnitudes of frames starting at `0, hop, 2 hop, ...` while `start + window <= len`
    /// (`last_exclusive` drops a frame ending exactly at the end, as pystoi does).
    pub(crate) fn magnitudes(&self, signal: &[f64], last_exclusive: bool) -> Vec<Vec<f64>> {
        let win = self.window.len();
        let mut input = self.fft.make_input_vec();
        let mut output = self.fft.make_output_vec();
        let mut frames = Vec::new();
        let mut start = 0;
        while start + win < signal.len() + usize::from(!last_exclusive) {
            input.fill(0.0);
            for (i, (&x, &w)) in signal[start..start + win].iter().zip(&self.window).enumerate() {
                input[i] = x * w;
            }
            self.fft.process(&mut input, &mut output).expect("buffer sizes come from the plan");
            frames.push(output.iter().map(|c| c.norm()).collect());
            start += self.hop;
        }
        debug_assert!(self.n_fft >= win);
        frames
    }
}

/// Triangular filters on the HTK mel scale from 0 Hz to Nyquist, `[bins][mels]` flattened.
pub(crate) fn mel_filterbank(n_fft: usize, sample_rate: u32, mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let to_mel = |hz: f64| 2595.0 * (1.0 + hz / 700.0).log10();
    let to_hz = |mel: f64| 700.0 * (10f64.powf(mel / 2595.0) - 1.0);
    let top = to_mel(f64::from(sample_rate) / 2.0);
    let edges: Vec<f64> = (0..mels + 2).map(|i| to_hz(top * i as f64 / (mels + 1) as f64)).collect();
    let mut filters = vec![0f32; bins * mels];
    for m in 0..mels {
        let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        for b in 0..bins {
            let hz = b as f64 * f64::from(sample_rate) / n_fft as f64;
            let w = if hz <= lo || hz >= hi {
                0.0
            } else if hz <= mid {
                (hz - lo) / (mid - lo)
            } else {
                (hi - hz) / (hi - mid)
            };
            filters[b * mels + m] = w as f32;
        }
    }
    filters
}

/// Log-mel spectrograms for the log-mel L1 figure ([`LogMel::l1`]): 1024-point periodic-Hann STFT, hop 256, 64 mel
/// bands, natural log — the definition the training validation uses.
pub struct LogMel {
    stft: Stft,
    filters: Vec<f32>,
    mels: usize,
}

impl LogMel {
    /// For signals at `sample_rate` Hz.
    pub fn new(sample_rate: u32) -> Self {
        let n_fft = 1024;
        let window = (0..n_fft).map(|t| 0.5 - 0.5 * (2.0 * PI * t as f64 / n_fft as f64).cos()).collect();
        Self { stft: Stft::new(n_fft, 256, window), filters: mel_filterbank(n_fft, sample_rate, 64), mels: 64 }
    }

    /// `[frames][mels]` natural-log mel magnitudes.
    pub fn spectrogram(&self, signal: &[f32]) -> Vec<Vec<f64>> {
        let signal: Vec<f64> = signal.iter().map(|&v| f64::from(v)).collect();
        let bins = self.stft.n_fft / 2 + 1;
        self.stft
            .magnitudes(&signal, false)
            .iter()
            .map(|frame| {
                (0..self.mels)
                    .map(|m| {
                        let energy: f64 =
                            (0..bins).map(|b| frame[b] * f64::from(self.filters[b * self.mels + m])).sum();
                        (energy + EPS).ln()
                    })
                    .collect()
            })
            .collect()
    }

    /// Mean absolute difference of the log-mel spectrograms over the common length.
    pub fn l1(&self, reference: &[f32], estimate: &[f32]) -> f64 {
        let n = reference.len().min(estimate.len());
        let (a, b) = (self.spectrogram(&reference[..n]), self.spectrogram(&estimate[..n]));
        let total: f64 = a.iter().zip(&b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).sum();
        total / (a.len() * self.mels).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, hz: f32) -> Vec<f32> {
        (0..n).map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / 16_000.0).sin() * 0.3).collect()
    }

    #[test]
    fn si_sdr_is_scale_invariant_and_falls_with_noise() {
        let clean = tone(16_000, 440.0);
        let louder: Vec<f32> = clean.iter().map(|v| v * 3.0).collect();
        assert!(si_sdr(&clean, &louder) > 100.0);
        let noisy: Vec<f32> =
            clean.iter().enumerate().map(|(i, v)| v + 0.03 * ((i * 7919 % 101) as f32 / 50.0 - 1.0)).collect();
        let sdr = si_sdr(&clean, &noisy);
        assert!((10.0..30.0).contains(&sdr), "{sdr}");
    }

    #[test]
    fn log_mel_is_zero_for_equal_signals_and_grows_with_distortion() {
        let mel = LogMel::new(16_000);
        let a = tone(16_000, 440.0);
        assert_eq!(mel.l1(&a, &a), 0.0);
        assert!(mel.l1(&a, &tone(16_000, 880.0)) > 1.0);
    }
}
