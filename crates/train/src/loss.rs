//! Reconstruction losses: multi-resolution STFT (spectral convergence + log magnitude),
//! log-mel L1 and waveform L1. The STFT is framing plus a matrix product with a fixed
//! windowed DFT basis ([`analysis_basis`]), so it is differentiable on every burn backend
//! (burn 0.21 has no FFT). None of them is a metric that the evaluation reports as a
//! verdict: log-mel L1 is reported, but as a training diagnostic beside PESQ, ViSQOL,
//! DNSMOS and STOI, which no loss copies.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use tokenwave_core::dsp::{analysis_basis, mel_filterbank, power, spectrum_bins};

/// The default floor added to magnitudes inside logarithms (about −120 dB below a
/// full-scale sine); validation always uses it, so figures compare across runs.
pub const DEFAULT_FLOOR: f64 = 1e-5;

/// One STFT resolution: frame length `n_fft`, hop `n_fft / 4`, Hann window.
struct Resolution<B: Backend> {
    /// `[n_fft, 2 * bins]`: windowed cosines, then windowed negated sines.
    basis: Tensor<B, 2>,
    /// `[bins, mels]` triangular mel filters, on the resolution used for the mel loss.
    mel: Option<Tensor<B, 2>>,
    n_fft: usize,
}

/// Loss terms of one batch, each a scalar tensor.
pub struct Losses<B: Backend> {
    /// Spectral convergence summed over resolutions.
    pub spectral_convergence: Tensor<B, 1>,
    /// Log-magnitude L1 summed over resolutions.
    pub log_magnitude: Tensor<B, 1>,
    /// Log-mel L1.
    pub mel: Tensor<B, 1>,
    /// Waveform L1.
    pub waveform: Tensor<B, 1>,
}

/// The spectral losses at a fixed set of resolutions.
pub struct SpectralLoss<B: Backend> {
    resolutions: Vec<Resolution<B>>,
    floor: f64,
    /// `[1, mels]`: 1 for the mel bands [`Self::harmonic_fit`] compares (peak below
    /// [`HARMONIC_FIT_TOP_HZ`]), else 0; and how many there are.
    fit_bands: (Tensor<B, 2>, usize),
}

/// Frame length of the resolution that carries the mel loss, and its mel bands.
const MEL_FFT: usize = 1024;
const MELS: usize = 64;

impl<B: Backend> SpectralLoss<B> {
    /// Resolutions 256, 512 and 1024 samples, mel loss (64 bands) on the 1024 one; `floor`
    /// is added to magnitudes before logarithms ([`DEFAULT_FLOOR`] unless a run asks).
    pub fn new(sample_rate: u32, floor: f64, device: &B::Device) -> Self {
        let filterbank = mel_filterbank(MEL_FFT, sample_rate, MELS);
        let bins = spectrum_bins(MEL_FFT);
        let resolutions = [256, 512, MEL_FFT]
            .into_iter()
            .map(|n_fft| Resolution {
                basis: analysis_basis(n_fft, device),
                mel: (n_fft == MEL_FFT)
                    .then(|| Tensor::from_data(TensorData::new(filterbank.clone(), [bins, MELS]), device)),
                n_fft,
            })
            .collect();
        let top_bin = (HARMONIC_FIT_TOP_HZ / f64::from(sample_rate) * MEL_FFT as f64) as usize;
        let bands: Vec<f32> = (0..MELS)
            .map(|m| {
                let peak = (0..bins).max_by(|&a, &b| filterbank[a * MELS + m].total_cmp(&filterbank[b * MELS + m]));
                if peak.is_some_and(|p| p < top_bin) { 1.0 } else { 0.0 }
            })
            .collect();
        let count = bands.iter().filter(|&&b| b > 0.0).count();
        let fit_bands = (Tensor::from_data(TensorData::new(bands, [1, MELS]), device), count);
        Self { resolutions, floor, fit_bands }
    }

    /// Signal lengths must be multiples of this.
    pub fn length_multiple(&self) -> usize {
        self.resolutions.iter().map(|r| r.n_fft / 4).max().unwrap_or(1)
    }

    /// All loss terms between `predicted` and `target`, both `[batch, len]`.
    pub fn losses(&self, predicted: Tensor<B, 2>, target: Tensor<B, 2>) -> Losses<B> {
        let device = predicted.device();
        let mut sc = Tensor::zeros([1], &device);
        let mut log_mag = Tensor::zeros([1], &device);
        let mut mel = Tensor::zeros([1], &device);
        let floor_squared = self.floor * self.floor;
        for res in &self.resolutions {
            let p = power(complex_spectrum(predicted.clone(), &res.basis)).add_scalar(floor_squared).sqrt();
            let t = power(complex_spectrum(target.clone(), &res.basis)).add_scalar(floor_squared).sqrt();
            let diff = t.clone() - p.clone();
            let numerator = (diff.clone() * diff).sum().sqrt();
            let denominator = (t.clone() * t.clone()).sum().add_scalar(DEFAULT_FLOOR).sqrt();
            sc = sc + numerator / denominator;
            log_mag = log_mag + (t.clone().log() - p.clone().log()).abs().mean();
            if let Some(filters) = &res.mel {
                let pm = p.matmul(filters.clone()).add_scalar(self.floor).log();
                let tm = t.matmul(filters.clone()).add_scalar(self.floor).log();
                mel = (tm - pm).abs().mean();
            }
        }
        Losses { spectral_convergence: sc, log_magnitude: log_mag, mel, waveform: (predicted - target).abs().mean() }
    }
}

/// Highest frequency (Hz) of the mel bands [`SpectralLoss::harmonic_fit`] compares: above
/// it, voiced speech is as much noise as harmonics.
const HARMONIC_FIT_TOP_HZ: f64 = 4000.0;

impl<B: Backend> SpectralLoss<B> {
    /// The centre sample of each frame of the mel loss's resolution, for a signal of `len`
    /// samples.
    pub fn mel_frame_centres(&self, len: usize) -> Vec<usize> {
        let n_fft = self.mel_resolution().n_fft;
        let hop = n_fft / 4;
        (0..len / hop - 3).map(|j| j * hop + n_fft / 2).collect()
    }

    fn mel_resolution(&self) -> &Resolution<B> {
        self.resolutions.iter().find(|r| r.mel.is_some()).expect("one resolution has the mel filters")
    }

    /// Log-mel L1 between the harmonic part of a decoder's output alone and the target,
    /// `[batch, len]` both, over the frames that `voiced` marks (one 0/1 per frame of
    /// [`Self::mel_frame_centres`], row-major) and the mel bands below 4 kHz. Why: added to
    /// the rest of the output, the harmonics' gradient averages out over their phase against
    /// what the rest already puts there, and the source stays where it started; fitted
    /// alone, it learns the voice's envelope.
    pub fn harmonic_fit(&self, harmonic: Tensor<B, 2>, target: Tensor<B, 2>, voiced: &[f32]) -> Tensor<B, 1> {
        let device = harmonic.device();
        let res = self.mel_resolution();
        let filters = res.mel.clone().expect("mel filters");
        let (bands, band_count) = &self.fit_bands;
        let used = *band_count as f32 * voiced.iter().sum::<f32>();
        if used == 0.0 {
            return Tensor::zeros([1], &device);
        }
        let floor_squared = self.floor * self.floor;
        let mel = |x: Tensor<B, 2>| {
            power(complex_spectrum(x, &res.basis)).add_scalar(floor_squared).sqrt().matmul(filters.clone())
        };
        let difference = (mel(target).add_scalar(self.floor).log() - mel(harmonic).add_scalar(self.floor).log()).abs();
        let frames = voiced.len();
        let mask = Tensor::<B, 2>::from_data(TensorData::new(voiced.to_vec(), [frames, 1]), &device) * bands.clone();
        (difference * mask).sum().div_scalar(f64::from(used))
    }
}

/// Complex spectra `[batch * frames, 2 * bins]` (real parts, then imaginary) of `signal`
/// `[batch, len]` at hop `n_fft / 4`, with `basis` from [`analysis_basis`] (`[n_fft, 2 *
/// bins]`); `len` must be a multiple of the hop.
pub(crate) fn complex_spectrum<B: Backend>(signal: Tensor<B, 2>, basis: &Tensor<B, 2>) -> Tensor<B, 2> {
    let [batch, len] = signal.dims();
    let n_fft = basis.dims()[0];
    let hop = n_fft / 4;
    let blocks = signal.reshape([batch, len / hop, hop]);
    let frames = len / hop - 3;
    let framed = Tensor::cat((0..4).map(|j| blocks.clone().narrow(1, j, frames)).collect(), 2);
    framed.reshape([batch * frames, n_fft]).matmul(basis.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn identical_signals_have_zero_loss_and_different_ones_do_not() {
        let device = Default::default();
        let loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device);
        let len = 4096;
        let sine: Vec<f32> = (0..2 * len).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let a = Tensor::<Flex, 2>::from_data(TensorData::new(sine.clone(), [2, len]), &device);
        let same = loss.losses(a.clone(), a.clone());
        assert!(same.spectral_convergence.into_scalar() < 1e-4);
        assert!(same.mel.into_scalar() < 1e-4);
        let noise: Vec<f32> = (0..2 * len).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3).collect();
        let b = Tensor::<Flex, 2>::from_data(TensorData::new(noise, [2, len]), &device);
        let different = loss.losses(b, a);
        assert!(different.spectral_convergence.into_scalar() > 0.5);
        assert!(different.mel.into_scalar() > 0.5);
    }

    #[test]
    fn a_higher_floor_ignores_differences_far_below_the_signal() {
        let device = Default::default();
        let len = 4096;
        let tone: Vec<f32> = (0..len).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        // The same tone plus hiss 100 dB below it.
        let hissy: Vec<f32> =
            tone.iter().enumerate().map(|(i, v)| v + ((i * 7919 % 1000) as f32 - 500.0) * 6e-9).collect();
        let signal = |x: Vec<f32>| Tensor::<Flex, 2>::from_data(TensorData::new(x, [1, len]), &device);
        let log_magnitude = |floor: f64| {
            let loss = SpectralLoss::<Flex>::new(16_000, floor, &device);
            loss.losses(signal(hissy.clone()), signal(tone.clone())).log_magnitude.into_scalar()
        };
        let (fine, coarse) = (log_magnitude(DEFAULT_FLOOR), log_magnitude(1e-3));
        assert!(fine > 0.05, "the default floor sees the hiss: {fine}");
        assert!(coarse < fine / 10.0, "a 1e-3 floor mostly ignores it: {coarse} vs {fine}");
    }

    #[test]
    fn the_harmonic_fit_compares_voiced_frames_below_4_khz_only() {
        let device = Default::default();
        let loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device);
        let len = 4096;
        let comb: Vec<f32> = (0..len)
            .map(|i| {
                (1..40).map(|k| (std::f32::consts::TAU * 150.0 * k as f32 * i as f32 / 16_000.0).sin()).sum::<f32>()
                    * 0.01
            })
            .collect();
        let signal = |x: Vec<f32>| Tensor::<Flex, 2>::from_data(TensorData::new(x, [1, len]), &device);
        let frames = loss.mel_frame_centres(len).len();
        let fit = |h: Vec<f32>, t: Vec<f32>, voiced: f32| {
            loss.harmonic_fit(signal(h), signal(t), &vec![voiced; frames]).into_scalar()
        };
        assert!(fit(comb.clone(), comb.clone(), 1.0) < 1e-4, "a perfect fit costs nothing");
        assert!(fit(vec![0.0; len], comb.clone(), 1.0) > 1.0, "silence against a voice costs");
        assert_eq!(fit(vec![0.0; len], comb.clone(), 0.0), 0.0, "unvoiced frames are not compared");
        // A tone at 6 kHz is above the compared bands.
        let high: Vec<f32> =
            (0..len).map(|i| (std::f32::consts::TAU * 6000.0 * i as f32 / 16_000.0).sin() * 0.1).collect();
        let with_high: Vec<f32> = comb.iter().zip(&high).map(|(a, b)| a + b).collect();
        let above = fit(comb.clone(), with_high, 1.0);
        assert!(above < 0.05, "energy above 4 kHz is not compared: {above}");
    }

    #[test]
    fn a_sine_peaks_in_its_bin() {
        let device = Default::default();
        let loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device);
        let res = &loss.resolutions[2];
        // 1000 Hz at 16 kHz with n_fft 1024: bin 64.
        let sine: Vec<f32> =
            (0..4096).map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin()).collect();
        let spectrum = complex_spectrum(Tensor::from_data(TensorData::new(sine, [1, 4096]), &device), &res.basis);
        let mag = power(spectrum);
        let first: Vec<f32> = mag.narrow(0, 0, 1).into_data().into_vec().unwrap();
        let peak = first.iter().enumerate().fold((0, 0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
        assert_eq!(peak, 64);
    }
}
