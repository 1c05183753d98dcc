//! The adversarial critic of `tokenwave train --adversarial W`: it tells originals from
//! decoded audio by their complex spectra at the spectral losses' resolutions (computed
//! once, for both), none aligned with the decoder's frames. Magnitude losses cannot ask
//! for phase that adds up across the decoder's overlapping frames, and a loss against the
//! input's exact phase asks for what the codes do not carry; a critic that sees real and
//! imaginary parts asks for phase that is plausible — coherent from frame to frame, like
//! speech's.
//!
//! Least-squares objectives (originals scored toward 1, decoded audio toward 0) plus
//! feature matching on the critic's hidden layers. Each resolution's critic is a stack of
//! dilated convolutions over time with the spectrum's bins as channels: a linear layer over
//! consecutive frames can already tell a bin whose phase advances steadily from one whose
//! phase jumps.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;

use crate::model::spectral::power;

/// Hidden channels of every layer.
const WIDTH: usize = 64;
/// `(kernel, dilation)` of the hidden layers: the first, over all bins, the narrowest (it
/// costs most); 15 frames seen in all.
const HIDDEN: [(usize, usize); 3] = [(3, 1), (5, 2), (5, 4)];
const SLOPE: f64 = 0.2;
/// Magnitudes are compressed to this power, phase kept, so quiet bins count too.
const COMPRESSION: f64 = 0.3;
/// Keeps the compression's gradient finite at silent bins.
const EPSILON: f64 = 1e-8;

/// A convolution over time that keeps the length: the `kernel` taps, `dilation` frames
/// apart and centred, side by side through one linear layer (a single matrix product,
/// faster here than burn's dilated conv1d).
#[derive(Module, Debug)]
struct TimeConv<B: Backend> {
    taps: Linear<B>,
    kernel: usize,
    dilation: usize,
}

impl<B: Backend> TimeConv<B> {
    fn new(channels: usize, out: usize, (kernel, dilation): (usize, usize), device: &B::Device) -> Self {
        Self { taps: LinearConfig::new(kernel * channels, out).init(device), kernel, dilation }
    }

    /// `[batch, frames, channels]` to `[batch, frames, out]`.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, frames, channels] = x.dims();
        let pad = self.dilation * (self.kernel - 1) / 2;
        let zeros = Tensor::zeros([batch, pad, channels], &x.device());
        let padded = Tensor::cat(vec![zeros.clone(), x, zeros], 1);
        let taps = (0..self.kernel).map(|tap| padded.clone().narrow(1, tap * self.dilation, frames)).collect();
        self.taps.forward(Tensor::cat(taps, 2))
    }
}

/// The critic of one resolution.
#[derive(Module, Debug)]
struct ScaleCritic<B: Backend> {
    hidden: Vec<TimeConv<B>>,
    score: TimeConv<B>,
}

/// A critic per STFT resolution.
#[derive(Module, Debug)]
pub struct Critic<B: Backend> {
    scales: Vec<ScaleCritic<B>>,
}

/// What the critic makes of a batch, per resolution.
pub struct Judgement<B: Backend> {
    /// `[batch, frames, 1]` per resolution: toward 1 for originals, 0 for decoded audio.
    pub scores: Vec<Tensor<B, 3>>,
    /// The hidden layers' activations per resolution, for feature matching.
    pub features: Vec<Vec<Tensor<B, 3>>>,
}

impl<B: Backend> Judgement<B> {
    /// The same values cut from the autodiff graph: targets for the generator's feature
    /// matching.
    pub fn detach(self) -> Self {
        Self {
            scores: self.scores.into_iter().map(Tensor::detach).collect(),
            features: self
                .features
                .into_iter()
                .map(|layers| layers.into_iter().map(Tensor::detach).collect())
                .collect(),
        }
    }
}

impl<B: Backend> Critic<B> {
    /// A freshly initialised critic for spectra of these frame lengths.
    pub fn new(resolutions: &[usize], device: &B::Device) -> Self {
        let scales = resolutions
            .iter()
            .map(|&n_fft| {
                let mut channels = n_fft + 2;
                let hidden = HIDDEN
                    .iter()
                    .map(|&shape| {
                        let conv = TimeConv::new(channels, WIDTH, shape, device);
                        channels = WIDTH;
                        conv
                    })
                    .collect();
                ScaleCritic { hidden, score: TimeConv::new(WIDTH, 1, (3, 1), device) }
            })
            .collect();
        Self { scales }
    }

    /// Judges `batch` signals by their complex spectra `[batch * frames, 2 * bins]` (real
    /// parts, then imaginary) at each resolution the critic was made for.
    pub fn judge(&self, spectra: &[Tensor<B, 2>], batch: usize) -> Judgement<B> {
        let mut judgement = Judgement { scores: Vec::new(), features: Vec::new() };
        for (critic, spectrum) in self.scales.iter().zip(spectra) {
            let [rows, columns] = spectrum.dims();
            let frames = rows / batch;
            // |X|^c e^{iφ} = X · |X|^(c−1); |X|^(c−1) = (|X|²)^((c−1)/2).
            let gain = power(spectrum.clone()).add_scalar(EPSILON).powf_scalar((COMPRESSION - 1.0) / 2.0);
            let compressed = spectrum.clone() * Tensor::cat(vec![gain.clone(), gain], 1);
            let mut x = compressed.reshape([batch, frames, columns]);
            let mut features = Vec::with_capacity(critic.hidden.len());
            for conv in &critic.hidden {
                x = leaky_relu(conv.forward(x), SLOPE);
                features.push(x.clone());
            }
            judgement.scores.push(critic.score.forward(x));
            judgement.features.push(features);
        }
        judgement
    }
}

/// The critic's loss: originals' scores toward 1, decoded audio's toward 0, summed over
/// resolutions.
pub fn critic_loss<B: Backend>(originals: &Judgement<B>, decoded: &Judgement<B>) -> Tensor<B, 1> {
    squared_distance(originals, 1.0) + squared_distance(decoded, 0.0)
}

/// The mean squared distance of a judgement's scores from `target`, summed over
/// resolutions.
fn squared_distance<B: Backend>(judgement: &Judgement<B>, target: f64) -> Tensor<B, 1> {
    judgement
        .scores
        .iter()
        .map(|scores| scores.clone().sub_scalar(target).powi_scalar(2).mean())
        .reduce(|a, b| a + b)
        .expect("at least one resolution")
}

/// The decoder's side: `(adversarial, feature_matching)`. Adversarial: decoded audio's
/// scores toward 1, summed over resolutions. Feature matching: the L1 distance between the
/// critic's hidden activations for decoded audio and for the originals (`originals`
/// detached), relative to the originals' mean magnitude per crop, averaged over crops,
/// layers and resolutions.
pub fn generator_losses<B: Backend>(decoded: &Judgement<B>, originals: &Judgement<B>) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let adversarial = squared_distance(decoded, 1.0);
    let pairs: Vec<_> = decoded.features.iter().flatten().zip(originals.features.iter().flatten()).collect();
    let layers = pairs.len();
    let matching = pairs
        .into_iter()
        .map(|(fake, real)| {
            // Per crop, so that the mean over a batch equals the mean over its shards.
            let per_crop = |x: Tensor<B, 3>| x.abs().mean_dim(2).mean_dim(1).flatten::<1>(0, 2);
            (per_crop(fake.clone() - real.clone()) / per_crop(real.clone()).add_scalar(1e-6)).mean()
        })
        .reduce(|a, b| a + b)
        .expect("at least one layer")
        .div_scalar(layers as f64);
    (adversarial, matching)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::loss::{DEFAULT_FLOOR, SpectralLoss};
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
    use burn::tensor::TensorData;

    type B = Autodiff<Flex>;

    /// Harmonics whose phase runs on (originals) or restarts at a new random phase every
    /// 320 samples (the failure the critic is for), at the same magnitudes.
    fn harmonics(crops: usize, len: usize, coherent: bool, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut random = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as f32 / (1u64 << 31) as f32
        };
        let mut out = Vec::with_capacity(crops * len);
        for _ in 0..crops {
            let f0 = 100.0 + 150.0 * random();
            let mut phases: Vec<f32> = (0..6).map(|_| random() * std::f32::consts::TAU).collect();
            for n in 0..len {
                if !coherent && n % 320 == 0 {
                    phases.iter_mut().for_each(|p| *p = random() * std::f32::consts::TAU);
                }
                let t = n as f32 / 16_000.0;
                let sample: f32 = phases
                    .iter()
                    .enumerate()
                    .map(|(h, p)| (std::f32::consts::TAU * f0 * (h + 1) as f32 * t + p).sin() / (h + 1) as f32)
                    .sum();
                out.push(0.2 * sample);
            }
        }
        out
    }

    /// The critic and its spectra as training makes them.
    fn critic_and_loss<Bk: Backend>(device: &Bk::Device) -> (Critic<Bk>, SpectralLoss<Bk>) {
        let loss = SpectralLoss::new(16_000, DEFAULT_FLOOR, device);
        (Critic::new(&loss.resolutions(), device), loss)
    }

    #[test]
    fn the_critic_learns_to_tell_coherent_from_restarted_phase() {
        let device = Default::default();
        B::seed(&device, 11);
        let (mut critic, loss) = critic_and_loss::<B>(&device);
        let inner_loss = SpectralLoss::<Flex>::new(16_000, DEFAULT_FLOOR, &device);
        let mut optimizer = AdamWConfig::new().with_beta_1(0.8).with_beta_2(0.99).init::<B, Critic<B>>();
        let (crops, len) = (4, 256 * 24);
        let batch = |coherent: bool, seed: u64| {
            Tensor::<B, 2>::from_data(TensorData::new(harmonics(crops, len, coherent, seed), [crops, len]), &device)
        };
        let gap = |critic: &Critic<B>, seed: u64| {
            let critic = critic.valid();
            let mean = |coherent: bool| {
                let scores = critic.judge(&inner_loss.spectra(batch(coherent, seed).inner()), crops).scores;
                let resolutions = scores.len() as f32;
                scores.into_iter().map(|s| s.mean().into_scalar()).sum::<f32>() / resolutions
            };
            mean(true) - mean(false)
        };
        let before = gap(&critic, 999);
        for step in 0..60 {
            let real = critic.judge(&loss.spectra(batch(true, step)), crops);
            let fake = critic.judge(&loss.spectra(batch(false, step + 1000)), crops);
            let total = critic_loss(&real, &fake);
            let grads = GradientsParams::from_grads(total.backward(), &critic);
            critic = optimizer.step(1e-3, critic, grads);
        }
        let after = gap(&critic, 999);
        assert!(after > 0.5, "critic's score gap on unseen clips: {before:.3} before, {after:.3} after training");
    }

    #[test]
    fn feature_matching_is_zero_for_the_originals_themselves() {
        let device = Default::default();
        let (critic, loss) = critic_and_loss::<Flex>(&device);
        let (crops, len) = (2, 256 * 8);
        let spectra = |coherent: bool, seed: u64| {
            let audio = TensorData::new(harmonics(crops, len, coherent, seed), [crops, len]);
            loss.spectra(Tensor::<Flex, 2>::from_data(audio, &device))
        };
        let originals = critic.judge(&spectra(true, 5), crops).detach();
        let (_, same) = generator_losses(&critic.judge(&spectra(true, 5), crops), &originals);
        let (_, different) = generator_losses(&critic.judge(&spectra(false, 6), crops), &originals);
        let (same, different) = (same.into_scalar(), different.into_scalar());
        assert!(same < 1e-6, "feature matching against itself: {same}");
        assert!(different > 0.05, "feature matching against other audio: {different}");
    }
}
