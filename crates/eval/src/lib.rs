//! tokenwave-eval: judging the codec.
//!
//! Objective measures between a reference and a decoded signal (SI-SDR, STOI and extended
//! STOI, log-mel L1, harmonic contrast with the encoder's pitch tracker: plain DSP on `f32`
//! slices), the [`harness`] that scores tokenwave at
//! several layouts beside Opus and Codec2 on the same clips with the real bitrate
//! (container included), and [`plot`]ted spectrograms. The perceptual panel (PESQ, ViSQOL,
//! DNSMOS) comes from `scripts/panel.py` with a Python venv (docs/EVAL.md).

#![deny(missing_docs)]

mod error;
mod harmonic;
pub mod harness;
pub mod plot;
mod stoi;

use tokenwave_core::dsp::{Stft, mel_filterbank, periodic_hann_window};

pub use error::{Error, Result};
pub use harmonic::harmonic_contrast;
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
        let window = periodic_hann_window(n_fft);
        Self { stft: Stft::new(n_fft, 256, window), filters: mel_filterbank(n_fft, sample_rate, 64), mels: 64 }
    }

    /// `[frames][mels]` natural-log mel magnitudes.
    pub fn spectrogram(&self, signal: &[f32]) -> Vec<Vec<f64>> {
        let signal: Vec<f64> = signal.iter().map(|&v| f64::from(v)).collect();
        let bins = self.stft.n_fft() / 2 + 1;
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
