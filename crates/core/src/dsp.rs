//! Signal processing that the model, the low band, the trainer and the evaluation share:
//! windows, short-time spectra (as plain `f64` frames, and as fixed DFT bases that burn can
//! differentiate through) and the mel filterbank. Defined once, so a loss and a metric
//! that claim the same spectrum really use the same one.

use std::f64::consts::PI;
use std::sync::Arc;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use realfft::{RealFftPlanner, RealToComplex};

/// Sample `t` of the periodic Hann window of `length` samples: the one whose copies half a
/// length apart sum to exactly 1, as overlap-add synthesis needs.
pub fn periodic_hann(t: usize, length: usize) -> f64 {
    0.5 - 0.5 * (2.0 * PI * t as f64 / length as f64).cos()
}

/// The whole periodic Hann window of `length` samples.
pub fn periodic_hann_window(length: usize) -> Vec<f64> {
    (0..length).map(|t| periodic_hann(t, length)).collect()
}

/// The symmetric Hann window of `n` samples without zero ends (numpy's `hanning(n + 2)[1:-1]`),
/// as STOI's reference implementation frames with it.
pub fn symmetric_hann_window(n: usize) -> Vec<f64> {
    (1..=n).map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / (n + 1) as f64).cos()).collect()
}

/// Bins of a real spectrum of `window` samples.
pub fn spectrum_bins(window: usize) -> usize {
    window / 2 + 1
}

/// Magnitude spectrogram with a given window and hop; `[frames][n_fft / 2 + 1]`.
pub struct Stft {
    n_fft: usize,
    hop: usize,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl Stft {
    /// Frames of `window.len()` samples (zero-padded to `n_fft`), `hop` apart.
    ///
    /// # Panics
    /// If the window is longer than `n_fft`.
    pub fn new(n_fft: usize, hop: usize, window: Vec<f64>) -> Self {
        assert!(window.len() <= n_fft, "a {}-sample window does not fit a {n_fft}-point FFT", window.len());
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Self { n_fft, hop, window, fft }
    }

    /// Points of the FFT.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Magnitudes of frames starting at `0, hop, 2 hop, ...` while `start + window <= len`
    /// (`last_exclusive` drops a frame ending exactly at the end, as pystoi does).
    pub fn magnitudes(&self, signal: &[f64], last_exclusive: bool) -> Vec<Vec<f64>> {
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
        frames
    }
}

/// Triangular filters on the HTK mel scale from 0 Hz to Nyquist, `[bins][mels]` flattened.
pub fn mel_filterbank(n_fft: usize, sample_rate: u32, mels: usize) -> Vec<f32> {
    let bins = spectrum_bins(n_fft);
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

/// Periodic Hann window times the real DFT, `[window, 2 bins]`: columns `0..bins` cosines,
/// then negated sines. A matrix product with it is a differentiable windowed DFT on every
/// burn backend (burn 0.21 has no FFT).
pub fn analysis_basis<B: Backend>(window: usize, device: &B::Device) -> Tensor<B, 2> {
    let bins = spectrum_bins(window);
    let n = window as f64;
    let mut basis = vec![0f32; window * 2 * bins];
    for t in 0..window {
        let hann = periodic_hann(t, window);
        for k in 0..bins {
            let angle = 2.0 * PI * ((k * t) % window) as f64 / n;
            basis[t * 2 * bins + k] = (hann * angle.cos()) as f32;
            basis[t * 2 * bins + bins + k] = (-hann * angle.sin()) as f32;
        }
    }
    Tensor::from_data(TensorData::new(basis, [window, 2 * bins]), device)
}

/// `[rows, bins]` squared magnitudes of complex spectra `[rows, 2 bins]` (real parts, then
/// imaginary parts), as an [`analysis_basis`] gives them.
pub fn power<B: Backend>(spectrum: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, columns] = spectrum.dims();
    let bins = columns / 2;
    (spectrum.clone() * spectrum).reshape([rows, 2, bins]).sum_dim(1).reshape([rows, bins])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn periodic_hann_copies_half_a_window_apart_sum_to_one() {
        for t in 0..64 {
            let sum = periodic_hann(t, 128) + periodic_hann(t + 64, 128);
            assert!((sum - 1.0).abs() < 1e-12, "{sum} at {t}");
        }
    }

    #[test]
    fn the_basis_and_the_fft_agree_on_a_tone() {
        let n = 64;
        let signal: Vec<f64> = (0..n).map(|t| (2.0 * PI * 5.0 * t as f64 / n as f64).sin()).collect();
        let fft = Stft::new(n, n, periodic_hann_window(n)).magnitudes(&signal, false);
        let samples: Vec<f32> = signal.iter().map(|&s| s as f32).collect();
        let device = Default::default();
        let row = Tensor::<Flex, 2>::from_data(TensorData::new(samples, [1, n]), &device);
        let basis: Vec<f32> = power(row.matmul(analysis_basis(n, &device))).sqrt().into_data().into_vec().unwrap();
        assert_eq!(fft.len(), 1);
        for (k, (a, b)) in fft[0].iter().zip(&basis).enumerate() {
            assert!((a - f64::from(*b)).abs() < 1e-3, "bin {k}: {a} vs {b}");
        }
        let peak = (0..basis.len()).max_by(|&a, &b| basis[a].total_cmp(&basis[b])).unwrap();
        assert_eq!(peak, 5);
    }

    #[test]
    fn mel_filters_cover_the_band_once() {
        let filters = mel_filterbank(512, 16_000, 40);
        let bins = spectrum_bins(512);
        // Between the first and last filter's peaks every bin's weights add up to 1.
        for b in 20..200 {
            let sum: f32 = (0..40).map(|m| filters[b * 40 + m]).sum();
            assert!((sum - 1.0).abs() < 1e-3, "bin {b} of {bins}: {sum}");
        }
    }
}
