//! Reconstruction losses: multi-resolution STFT (spectral convergence + log magnitude),
//! log-mel L1, waveform L1, a phase-derivative loss and an intelligibility (STOI-like)
//! loss. The STFT is framing plus a matrix product with a fixed windowed DFT basis, so it
//! is differentiable on every burn backend (burn 0.21 has no FFT).

use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::model::spectral::{analysis_basis, power};

/// The default floor added to magnitudes inside logarithms (about −120 dB below a
/// full-scale sine); validation always uses it, so figures compare across runs.
pub const DEFAULT_FLOOR: f64 = 1e-5;

/// One STFT resolution: frame length `n_fft`, hop `n_fft / 4`, Hann window.
struct Resolution<B: Backend> {
    n_fft: usize,
    /// `[n_fft, 2 * bins]`: windowed cosines, then windowed negated sines.
    basis: Tensor<B, 2>,
    /// `[bins, mels]` triangular mel filters, on the resolution used for the mel loss.
    mel: Option<Tensor<B, 2>>,
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
    /// Phase-derivative loss, mean over resolutions: how far the frame-to-frame phase
    /// advance (instantaneous frequency) and the bin-to-bin phase step (group delay) of the
    /// prediction are from the target's, `|e^{i d_pred} - e^{i d_target}|^2` weighted by the
    /// target's magnitude. Unlike the magnitude terms it sees whether overlapping frames
    /// add up coherently; it needs no phase wrapping. Computed only by a loss built
    /// [`SpectralLoss::with_phase`].
    pub phase: Option<Tensor<B, 1>>,
    /// Intelligibility loss: 1 − the mean correlation between the target's and the
    /// prediction's one-third-octave band envelopes over 384 ms segments, after STOI's
    /// normalisation and clipping, on voiced segments. STOI's own construction, made
    /// differentiable: it sees the envelope ripple that incoherent frames leave at a framing
    /// other than the decoder's. Computed only by a loss built
    /// [`SpectralLoss::with_intelligibility`].
    pub intelligibility: Option<Tensor<B, 1>>,
}

/// The spectral losses at a fixed set of resolutions.
pub struct SpectralLoss<B: Backend> {
    resolutions: Vec<Resolution<B>>,
    floor: f64,
    phase: bool,
    /// `[bins, bands]` one-third-octave bands on the [`INTELLIGIBILITY_FFT`] resolution.
    bands: Option<Tensor<B, 2>>,
    sample_rate: u32,
}

impl<B: Backend> SpectralLoss<B> {
    /// Resolutions 256, 512 and 1024 samples, mel loss (64 bands) on the 1024 one; `floor`
    /// is added to magnitudes before logarithms ([`DEFAULT_FLOOR`] unless a run asks).
    pub fn new(sample_rate: u32, floor: f64, device: &B::Device) -> Self {
        let resolutions = [256, 512, 1024]
            .into_iter()
            .map(|n_fft| Resolution {
                n_fft,
                basis: analysis_basis(n_fft, device),
                mel: (n_fft == 1024).then(|| mel_filters(n_fft, sample_rate, 64, device)),
            })
            .collect();
        Self { resolutions, floor, phase: false, bands: None, sample_rate }
    }

    /// Also computes the phase-derivative term ([`Losses::phase`]).
    pub fn with_phase(self) -> Self {
        Self { phase: true, ..self }
    }

    /// Also computes the intelligibility term ([`Losses::intelligibility`]).
    pub fn with_intelligibility(self) -> Self {
        let device = self.resolutions[0].basis.device();
        Self { bands: Some(third_octave_bands(INTELLIGIBILITY_FFT, self.sample_rate, &device)), ..self }
    }

    /// Signal lengths must be multiples of this.
    pub fn length_multiple(&self) -> usize {
        self.resolutions.iter().map(|r| r.n_fft / 4).max().unwrap_or(1)
    }

    /// All loss terms between `predicted` and `target`, both `[batch, len]`.
    pub fn losses(&self, predicted: Tensor<B, 2>, target: Tensor<B, 2>) -> Losses<B> {
        self.losses_and_spectra(predicted, target).0
    }

    /// STFT frame lengths, finest first.
    pub(super) fn resolutions(&self) -> Vec<usize> {
        self.resolutions.iter().map(|res| res.n_fft).collect()
    }

    /// Complex spectra of `signal` `[batch, len]` at each of [`Self::resolutions`], as
    /// [`complex_spectrum`] gives them.
    #[cfg(test)]
    pub(super) fn spectra(&self, signal: Tensor<B, 2>) -> Vec<Tensor<B, 2>> {
        self.resolutions.iter().map(|res| complex_spectrum(signal.clone(), &res.basis).0).collect()
    }

    /// [`Self::losses`], and the complex spectra of the prediction and of the target at
    /// each resolution (for the adversarial critic, which judges the same spectra).
    pub(super) fn losses_and_spectra(
        &self,
        predicted: Tensor<B, 2>,
        target: Tensor<B, 2>,
    ) -> (Losses<B>, Vec<Tensor<B, 2>>, Vec<Tensor<B, 2>>) {
        let (mut predicted_spectra, mut target_spectra) = (Vec::new(), Vec::new());
        let device = predicted.device();
        let batch = predicted.dims()[0];
        let mut sc = Tensor::zeros([1], &device);
        let mut log_mag = Tensor::zeros([1], &device);
        let mut mel = Tensor::zeros([1], &device);
        let mut phase = self.phase.then(|| Tensor::zeros([1], &device));
        let mut intelligibility = None;
        let floor_squared = self.floor * self.floor;
        for res in &self.resolutions {
            let (ps, frames) = complex_spectrum(predicted.clone(), &res.basis);
            let (ts, _) = complex_spectrum(target.clone(), &res.basis);
            predicted_spectra.push(ps.clone());
            target_spectra.push(ts.clone());
            let bins = ps.dims()[1] / 2;
            if let Some(sum) = &mut phase {
                let shape = [batch, frames, 2 * bins];
                *sum = sum.clone() + phase_derivative_loss(ps.clone().reshape(shape), ts.clone().reshape(shape));
            }
            let (p_power, t_power) = (power(ps), power(ts));
            if let Some(bands) = self.bands.as_ref().filter(|_| res.n_fft == INTELLIGIBILITY_FFT) {
                let shape = [batch, frames, bins];
                let hop = res.n_fft / 4;
                let term = intelligibility_loss(
                    p_power.clone().reshape(shape),
                    t_power.clone().reshape(shape),
                    bands,
                    (SEGMENT_SECONDS * self.sample_rate as f64 / hop as f64).round() as usize,
                );
                intelligibility = Some(term);
            }
            let p = p_power.add_scalar(floor_squared).sqrt();
            let t = t_power.add_scalar(floor_squared).sqrt();
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
        let losses = Losses {
            spectral_convergence: sc,
            log_magnitude: log_mag,
            mel,
            waveform: (predicted - target).abs().mean(),
            phase: phase.map(|sum| sum.div_scalar(self.resolutions.len() as f64)),
            intelligibility,
        };
        (losses, predicted_spectra, target_spectra)
    }
}

/// Complex spectra `[batch * frames, 2 * bins]` (real parts, then imaginary) of `signal`
/// `[batch, len]` at hop `n_fft / 4`, with `basis` from [`analysis_basis`] (`[n_fft, 2 *
/// bins]`), and the frame count per signal; `len` must be a multiple of the hop.
fn complex_spectrum<B: Backend>(signal: Tensor<B, 2>, basis: &Tensor<B, 2>) -> (Tensor<B, 2>, usize) {
    let [batch, len] = signal.dims();
    let n_fft = basis.dims()[0];
    let hop = n_fft / 4;
    let blocks = signal.reshape([batch, len / hop, hop]);
    let frames = len / hop - 3;
    let framed = Tensor::cat((0..4).map(|j| blocks.clone().narrow(1, j, frames)).collect(), 2);
    (framed.reshape([batch * frames, n_fft]).matmul(basis.clone()), frames)
}

/// Squared magnitude below which a bin's phase counts as undefined (no division by zero).
const PHASE_EPSILON: f64 = 1e-8;

/// The [`Losses::phase`] term for complex spectra `[batch, frames, 2 bins]`.
fn phase_derivative_loss<B: Backend>(predicted: Tensor<B, 3>, target: Tensor<B, 3>) -> Tensor<B, 1> {
    let [_, frames, columns] = target.dims();
    let bins = columns / 2;
    let unit = |spectrum: Tensor<B, 3>| {
        let real = spectrum.clone().narrow(2, 0, bins);
        let imaginary = spectrum.narrow(2, bins, bins);
        let magnitude =
            (real.clone() * real.clone() + imaginary.clone() * imaginary.clone()).add_scalar(PHASE_EPSILON).sqrt();
        (real / magnitude.clone(), imaginary / magnitude.clone(), magnitude)
    };
    let (pr, pi, _) = unit(predicted);
    let (tr, ti, magnitude) = unit(target);
    let scale = magnitude.clone().mean().add_scalar(PHASE_EPSILON).unsqueeze();
    // u_next * conj(u_previous) along `dim`: the phase step as a unit complex number.
    let step = |real: Tensor<B, 3>, imaginary: Tensor<B, 3>, dim: usize, len: usize| {
        let (r1, i1) = (real.clone().narrow(dim, 1, len - 1), imaginary.clone().narrow(dim, 1, len - 1));
        let (r0, i0) = (real.narrow(dim, 0, len - 1), imaginary.narrow(dim, 0, len - 1));
        (r1.clone() * r0.clone() + i1.clone() * i0.clone(), i1 * r0 - r1 * i0)
    };
    let mismatch = |dim: usize, len: usize| {
        let (pr_step, pi_step) = step(pr.clone(), pi.clone(), dim, len);
        let (tr_step, ti_step) = step(tr.clone(), ti.clone(), dim, len);
        let (dr, di) = (pr_step - tr_step, pi_step - ti_step);
        // A step counts as much as the geometric mean of its two bins' magnitudes: a step
        // from a bin with no signal (an undefined phase) counts for nothing.
        let weight = (magnitude.clone().narrow(dim, 1, len - 1) * magnitude.clone().narrow(dim, 0, len - 1)).sqrt()
            / scale.clone();
        ((dr.clone() * dr + di.clone() * di) * weight).mean()
    };
    mismatch(1, frames) + mismatch(2, bins)
}

/// STFT resolution of the intelligibility loss: a 32 ms window, 8 ms hop at 16 kHz (STOI:
/// 25.6 ms, 12.8 ms at 10 kHz).
const INTELLIGIBILITY_FFT: usize = 512;
/// STOI's segment: 30 frames of 12.8 ms.
const SEGMENT_SECONDS: f64 = 0.384;
/// Segments start this many frames apart (STOI: every frame); 4 costs a quarter as much.
const SEGMENT_STRIDE: usize = 4;
/// STOI's clipping: the scaled prediction may exceed the target by at most −15 dB of it.
const CLIP_FACTOR: f64 = 1.0 + 5.623_413_251_903_491; // 1 + 10^(15/20)
/// Frames this far below the crop's loudest (in power) count as silent, as in STOI.
const SILENCE_POWER_RATIO: f64 = 1e-4;
const ENVELOPE_EPSILON: f64 = 1e-10;

/// [`crate::eval::third_octave_edges`] as a 0/1 matrix `[n_fft / 2 + 1, bands]`; a band
/// narrower than a bin keeps its nearest one.
fn third_octave_bands<B: Backend>(n_fft: usize, sample_rate: u32, device: &B::Device) -> Tensor<B, 2> {
    let edges = crate::eval::third_octave_edges(n_fft, sample_rate);
    let (bins, bands) = (n_fft / 2 + 1, edges.len());
    let mut matrix = vec![0f32; bins * bands];
    for (band, &(low, high)) in edges.iter().enumerate() {
        for bin in low..high.max(low + 1) {
            matrix[bin * bands + band] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(matrix, [bins, bands]), device)
}

/// The [`Losses::intelligibility`] term for squared magnitudes `[batch, frames, bins]`.
fn intelligibility_loss<B: Backend>(
    predicted: Tensor<B, 3>,
    target: Tensor<B, 3>,
    bands: &Tensor<B, 2>,
    segment: usize,
) -> Tensor<B, 1> {
    let frames = target.dims()[1];
    if frames < segment {
        return Tensor::zeros([1], &target.device());
    }
    let envelope = |power: Tensor<B, 3>| power.matmul(bands.clone().unsqueeze()).add_scalar(ENVELOPE_EPSILON).sqrt();
    let (x, y) = (envelope(target.clone()), envelope(predicted));
    let starts: Vec<usize> = (0..=frames - segment).step_by(SEGMENT_STRIDE).collect();
    let segments = |e: Tensor<B, 3>| -> Tensor<B, 4> {
        Tensor::stack(starts.iter().map(|&s| e.clone().narrow(1, s, segment)).collect(), 1)
    };
    let (x, y) = (segments(x), segments(y));
    let norm = |t: Tensor<B, 4>| (t.clone() * t).sum_dim(2).add_scalar(ENVELOPE_EPSILON).sqrt();
    let scaled = y.clone() * (norm(x.clone()) / norm(y));
    let clipped = scaled.min_pair(x.clone().mul_scalar(CLIP_FACTOR));
    let centred = |t: Tensor<B, 4>| t.clone() - t.mean_dim(2);
    let (xc, yc) = (centred(x), centred(clipped));
    let correlation = (xc.clone() * yc.clone()).sum_dim(2) / (norm(xc) * norm(yc));
    // Voiced share of each segment: frames within 40 dB of the crop's loudest.
    let energy = target.sum_dim(2);
    let loudest = energy.clone().max_dim(1);
    let threshold = loudest.mul_scalar(SILENCE_POWER_RATIO).repeat_dim(1, frames);
    let weight = segments(energy.greater_equal(threshold).float()).mean_dim(2);
    let cells = weight.clone().sum().mul_scalar(bands.dims()[1] as f64).add_scalar(ENVELOPE_EPSILON);
    ((correlation * weight).sum() / cells).neg().add_scalar(1.0)
}

/// The mel filterbank of [`crate::eval::mel_filterbank`] as a tensor, `[bins, mels]`.
fn mel_filters<B: Backend>(n_fft: usize, sample_rate: u32, mels: usize, device: &B::Device) -> Tensor<B, 2> {
    let filters = crate::eval::mel_filterbank(n_fft, sample_rate, mels);
    Tensor::from_data(TensorData::new(filters, [n_fft / 2 + 1, mels]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn identical_signals_have_zero_loss_and_different_ones_do_not() {
        let device = Default::default();
        let loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device).with_phase();
        let len = 4096;
        let sine: Vec<f32> = (0..2 * len).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let a = Tensor::<Flex, 2>::from_data(TensorData::new(sine.clone(), [2, len]), &device);
        let same = loss.losses(a.clone(), a.clone());
        assert!(same.spectral_convergence.into_scalar() < 1e-4);
        assert!(same.mel.into_scalar() < 1e-4);
        assert!(same.phase.unwrap().into_scalar() < 1e-4);
        let noise: Vec<f32> = (0..2 * len).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3).collect();
        let b = Tensor::<Flex, 2>::from_data(TensorData::new(noise, [2, len]), &device);
        let different = loss.losses(b, a);
        assert!(different.spectral_convergence.into_scalar() > 0.5);
        assert!(different.mel.into_scalar() > 0.5);
        assert!(different.phase.unwrap().into_scalar() > 0.5);
    }

    /// A tone at 1000 Hz with the given phase offset per 256-sample block.
    fn tone_with_phases(blocks: &[f32]) -> Vec<f32> {
        (0..256 * blocks.len())
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0 + blocks[i / 256]).sin() * 0.3)
            .collect()
    }

    #[test]
    fn the_phase_loss_ignores_a_constant_phase_offset_and_sees_incoherent_frames() {
        let device = Default::default();
        let loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device).with_phase();
        let signal = |x: Vec<f32>| Tensor::<Flex, 2>::from_data(TensorData::new(x, [1, 4096]), &device);
        let steady = signal(tone_with_phases(&[0.0; 16]));
        // The same tone delayed: the waveform differs everywhere, the phase steps do not.
        let shifted = loss.losses(signal(tone_with_phases(&[1.3; 16])), steady.clone());
        assert!(shifted.waveform.into_scalar() > 0.2);
        let offset = shifted.phase.unwrap().into_scalar();
        assert!(offset < 1e-3, "{offset}");
        // The tone restarted at a random phase every block: what an incoherent decoder makes.
        let jumps = [0.0, 2.1, 4.4, 0.7, 3.3, 5.9, 1.6, 4.9, 2.8, 0.2, 3.9, 5.2, 1.1, 4.1, 2.5, 5.6];
        let jumpy = loss.losses(signal(tone_with_phases(&jumps)), steady).phase.unwrap().into_scalar();
        assert!(jumpy > 0.3, "{jumpy}");
    }

    /// Harmonics of 200 Hz under a syllable-rate envelope that starts at `delay` seconds,
    /// with the phase of every harmonic restarted at random every `restart` samples (0: never).
    fn syllables(delay: f32, restart: usize) -> Vec<f32> {
        (0..16_384usize)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let envelope = (2.0 * std::f32::consts::PI * 4.0 * (t - delay)).sin().max(0.0);
                let jump = i.checked_div(restart).map_or(0.0, |block| (block * 7919 % 628) as f32 / 100.0);
                (1..8)
                    .map(|h| (2.0 * std::f32::consts::PI * 200.0 * h as f32 * t + jump * h as f32).sin() / h as f32)
                    .sum::<f32>()
                    * envelope
                    * 0.2
            })
            .collect()
    }

    #[test]
    fn the_intelligibility_loss_follows_band_envelopes() {
        let device = Default::default();
        let loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device).with_intelligibility();
        let signal = |x: Vec<f32>| Tensor::<Flex, 2>::from_data(TensorData::new(x, [1, 16_384]), &device);
        let clean = signal(syllables(0.0, 0));
        let term = |other: Vec<f32>| loss.losses(signal(other), clean.clone()).intelligibility.unwrap().into_scalar();
        let same = term(syllables(0.0, 0));
        // Half the loudness: STOI normalises it away.
        let quieter = term(syllables(0.0, 0).iter().map(|v| v * 0.5).collect());
        // Incoherent frames: the harmonics restarted every 320 samples, as a decoder with
        // inconsistent phase makes them; the envelope ripples.
        let incoherent = term(syllables(0.0, 320));
        // Syllables in the gaps of the clean ones (clipping keeps them from correlating
        // negatively, as in STOI).
        let shifted = term(syllables(0.125, 0));
        assert!(same < 1e-3 && quieter < 1e-3, "identical envelopes: {same}, {quieter}");
        assert!(incoherent > 0.1, "incoherent frames: {incoherent}");
        assert!(shifted > 0.5, "envelopes out of step: {shifted}");
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
    fn a_sine_peaks_in_its_bin() {
        let device = Default::default();
        let loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device);
        let res = &loss.resolutions[2];
        // 1000 Hz at 16 kHz with n_fft 1024: bin 64.
        let sine: Vec<f32> =
            (0..4096).map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin()).collect();
        let (spectrum, _) = complex_spectrum(Tensor::from_data(TensorData::new(sine, [1, 4096]), &device), &res.basis);
        let mag = power(spectrum);
        let first: Vec<f32> = mag.narrow(0, 0, 1).into_data().into_vec().unwrap();
        let peak = first.iter().enumerate().fold((0, 0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
        assert_eq!(peak, 64);
    }
}
