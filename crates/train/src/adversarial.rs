//! Adversarial training: small discriminators that learn to tell decoded speech from real
//! speech, and the losses that train them and, against them, the codec.
//!
//! Why: the spectral losses compare magnitudes averaged over frames and bins, so a decoder
//! trained on them alone is paid for a smooth spectrum whatever its fine structure; every
//! codec that sounds natural adds a critic that hears harmonics, noise texture and phase.
//! Two families, sized for two CPU cores:
//! - period discriminators (periods 2, 3, 5, 7, 11): the waveform folded into columns of
//!   one period and convolved along them, so periodic structure lines up;
//! - spectrogram discriminators (frames of 512, 1024 and 2048 samples): 2-D convolutions
//!   over the log power spectrogram, which see harmonic stripes and their absence.
//!
//! Least-squares losses; feature matching is the L1 distance between the discriminators'
//! layer outputs on decoded and real audio, each layer's divided by the real outputs' mean
//! magnitude so that no layer dominates. Neither is a metric that evaluation reports.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, backend::Backend};
use tokenwave_core::dsp::{analysis_basis, power};

use crate::loss::complex_spectrum;

/// Periods of the period discriminators: primes, so their folds share few alignments.
const PERIODS: [usize; 5] = [2, 3, 5, 7, 11];
/// Frame lengths of the spectrogram discriminators (hop a quarter of each).
const SPECTRUM_FRAMES: [usize; 3] = [512, 1024, 2048];
/// Channels of the period discriminators' strided layers.
const PERIOD_CHANNELS: [usize; 4] = [8, 16, 32, 64];
/// Channels of the spectrogram discriminators' layers.
const SPECTRUM_CHANNELS: usize = 8;
/// Samples of each crop the discriminators judge (a stretch that moves from step to step):
/// at twice this, and twice the channels, they took 9 times the codec's own step time on
/// two cores (journal, 2026-12-03).
pub(crate) const JUDGED_SAMPLES: usize = 4096;
/// Slope of the leaky ReLU between layers.
const SLOPE: f64 = 0.1;
/// Added to power before its logarithm (−100 dB).
const POWER_FLOOR: f64 = 1e-10;

/// Weight of the codec's least-squares term once ramped in.
const GENERATOR_WEIGHT: f64 = 1.0;
/// Weight of feature matching once ramped in: a distance per layer, so of the order of the
/// spectral terms.
const FEATURE_MATCHING_WEIGHT: f64 = 2.0;
/// Steps over which the codec's terms ramp in from zero, while the discriminators, which
/// start untrained, learn what decoded speech sounds like.
const RAMP_STEPS: f64 = 1000.0;

/// The factor on the codec's adversarial terms at `step` of the run.
pub(crate) fn ramp(step: u64) -> f64 {
    (step as f64 / RAMP_STEPS).min(1.0)
}

/// One discriminator's verdict on a batch: its logits and every hidden layer's output,
/// each flattened to `[batch, values]`.
pub(crate) struct Verdict<B: Backend> {
    logits: Tensor<B, 2>,
    features: Vec<Tensor<B, 2>>,
}

/// Folds the waveform by a period and convolves along the folds.
#[derive(Module, Debug)]
struct PeriodDiscriminator<B: Backend> {
    layers: Vec<Conv1d<B>>,
    output: Conv1d<B>,
    period: usize,
}

impl<B: Backend> PeriodDiscriminator<B> {
    fn new(period: usize, device: &B::Device) -> Self {
        let mut layers = Vec::new();
        let mut channels = 1;
        for &next in &PERIOD_CHANNELS {
            layers.push(
                Conv1dConfig::new(channels, next, 5)
                    .with_stride(3)
                    .with_padding(burn::nn::PaddingConfig1d::Explicit(2, 2))
                    .init(device),
            );
            channels = next;
        }
        layers.push(
            Conv1dConfig::new(channels, channels, 5)
                .with_padding(burn::nn::PaddingConfig1d::Explicit(2, 2))
                .init(device),
        );
        let output =
            Conv1dConfig::new(channels, 1, 3).with_padding(burn::nn::PaddingConfig1d::Explicit(1, 1)).init(device);
        Self { layers, output, period }
    }

    /// `audio` `[batch, len]`, zero-padded to a whole number of periods.
    fn judge(&self, audio: Tensor<B, 2>) -> Verdict<B> {
        let [batch, len] = audio.dims();
        let p = self.period;
        let rows = len.div_ceil(p);
        let audio = if rows * p > len {
            Tensor::cat(vec![audio.clone(), Tensor::zeros([batch, rows * p - len], &audio.device())], 1)
        } else {
            audio
        };
        let mut x = audio.reshape([batch, rows, p]).swap_dims(1, 2).reshape([batch * p, 1, rows]);
        let mut features = Vec::new();
        for layer in &self.layers {
            x = leaky_relu(layer.forward(x), SLOPE);
            features.push(x.clone().reshape([batch as i64, -1]));
        }
        Verdict { logits: self.output.forward(x).reshape([batch as i64, -1]), features }
    }
}

/// 2-D convolutions over a log power spectrogram, strided along frequency.
#[derive(Module, Debug)]
struct SpectrumDiscriminator<B: Backend> {
    layers: Vec<Conv2d<B>>,
    output: Conv2d<B>,
}

impl<B: Backend> SpectrumDiscriminator<B> {
    fn new(device: &B::Device) -> Self {
        let c = SPECTRUM_CHANNELS;
        let strided = |from: usize| {
            Conv2dConfig::new([from, c], [3, 9])
                .with_stride([1, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 4, 1, 4))
                .init(device)
        };
        let square = |to: usize| {
            Conv2dConfig::new([c, to], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device)
        };
        Self { layers: vec![strided(1), strided(c), strided(c), square(c)], output: square(1) }
    }

    /// `spectrogram` `[batch, 1, frames, bins]`.
    fn judge(&self, spectrogram: Tensor<B, 4>) -> Verdict<B> {
        let batch = spectrogram.dims()[0] as i64;
        let mut x = spectrogram;
        let mut features = Vec::new();
        for layer in &self.layers {
            x = leaky_relu(layer.forward(x), SLOPE);
            features.push(x.clone().reshape([batch, -1]));
        }
        Verdict { logits: self.output.forward(x).reshape([batch, -1]), features }
    }
}

/// All discriminators of a run. Trained by their own optimizer; never exported with the
/// model, but kept in checkpoints so that a resumed run goes on against the same critic.
#[derive(Module, Debug)]
pub(crate) struct Discriminators<B: Backend> {
    periods: Vec<PeriodDiscriminator<B>>,
    spectra: Vec<SpectrumDiscriminator<B>>,
}

impl<B: Backend> Discriminators<B> {
    /// Freshly initialised discriminators, their parameters drawn now: burn draws a new
    /// parameter when first used, so copies made before that (the frozen judge of
    /// [`game`]) would each draw different weights.
    pub fn new(device: &B::Device) -> Self {
        let discriminators = Self {
            periods: PERIODS.iter().map(|&p| PeriodDiscriminator::new(p, device)).collect(),
            spectra: SPECTRUM_FRAMES.iter().map(|_| SpectrumDiscriminator::new(device)).collect(),
        };
        discriminators.visit(&mut Draw);
        discriminators
    }

    /// Every discriminator's verdict on `audio` `[batch, len]`, whose length must be a
    /// multiple of [`Spectrograms::length_multiple`].
    pub fn judge(&self, audio: Tensor<B, 2>, spectrograms: &Spectrograms<B>) -> Vec<Verdict<B>> {
        let mut verdicts: Vec<Verdict<B>> = self.periods.iter().map(|d| d.judge(audio.clone())).collect();
        for (d, basis) in self.spectra.iter().zip(&spectrograms.bases) {
            verdicts.push(d.judge(spectrograms.log_power(audio.clone(), basis)));
        }
        verdicts
    }
}

/// The discriminators' optimizer: Adam with the short memory adversarial training uses
/// (β₁ 0.8, β₂ 0.99), gradients clipped to norm 1.
pub(crate) type CriticOptimizer<B> = OptimizerAdaptor<Adam, Discriminators<B>, B>;

pub(crate) fn critic_optimizer<B: AutodiffBackend>() -> CriticOptimizer<B> {
    AdamConfig::new()
        .with_beta_1(0.8)
        .with_beta_2(0.99)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init()
}

/// The discriminators of an adversarial run, their optimizer and their fixed analysis.
pub(crate) struct Critic<B: AutodiffBackend> {
    pub discriminators: Discriminators<B>,
    pub optimizer: CriticOptimizer<B>,
    spectrograms: Spectrograms<B>,
}

impl<B: AutodiffBackend> Critic<B> {
    /// Fresh discriminators.
    pub fn new(device: &B::Device) -> Self {
        Self::from_parts(Discriminators::new(device), critic_optimizer(), device)
    }

    /// Trained discriminators and their optimizer, as a checkpoint holds them.
    pub fn from_parts(discriminators: Discriminators<B>, optimizer: CriticOptimizer<B>, device: &B::Device) -> Self {
        Self { discriminators, optimizer, spectrograms: Spectrograms::new(device) }
    }

    /// What the shards of a step at `ramp` need, judging `stretch` of every crop.
    pub fn judge(&self, ramp: f64, stretch: (usize, usize)) -> Judge<'_, B> {
        Judge { discriminators: &self.discriminators, spectrograms: &self.spectrograms, ramp, stretch }
    }

    /// One optimizer step of the discriminators at learning rate `lr` on `grads`.
    pub fn step(self, lr: f64, grads: GradientsParams) -> Self {
        let Self { discriminators, mut optimizer, spectrograms } = self;
        let discriminators = optimizer.step(lr, discriminators, grads);
        Self { discriminators, optimizer, spectrograms }
    }
}

/// Draws every parameter of a module.
struct Draw;

impl<B: Backend> ModuleVisitor<B> for Draw {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// The fixed analysis bases of the spectrogram discriminators (not parameters).
pub(crate) struct Spectrograms<B: Backend> {
    bases: Vec<Tensor<B, 2>>,
}

impl<B: Backend> Spectrograms<B> {
    pub fn new(device: &B::Device) -> Self {
        Self { bases: SPECTRUM_FRAMES.iter().map(|&n| analysis_basis(n, device)).collect() }
    }

    /// Signal lengths must be multiples of this.
    pub fn length_multiple() -> usize {
        SPECTRUM_FRAMES.iter().max().copied().unwrap_or(4) / 4
    }

    /// `[batch, 1, frames, bins]` log power of `audio` `[batch, len]`.
    fn log_power(&self, audio: Tensor<B, 2>, basis: &Tensor<B, 2>) -> Tensor<B, 4> {
        let batch = audio.dims()[0];
        let spectrum = power(complex_spectrum(audio, basis)).add_scalar(POWER_FLOOR).log();
        let [rows, bins] = spectrum.dims();
        spectrum.reshape([batch, 1, rows / batch, bins])
    }
}

/// What one shard of a step needs of the critic.
pub(crate) struct Judge<'a, B: Backend> {
    /// The discriminators to train.
    pub discriminators: &'a Discriminators<B>,
    pub spectrograms: &'a Spectrograms<B>,
    /// [`ramp`] at this step.
    pub ramp: f64,
    /// First sample and length of the stretch of every crop that is judged.
    pub stretch: (usize, usize),
}

impl<B: Backend> Clone for Judge<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for Judge<'_, B> {}

impl<B: Backend> Judge<'_, B> {
    /// The adversarial terms for `decoded` against `real` (`[batch, len]`), on this
    /// step's stretch of them.
    pub fn play(&self, decoded: Tensor<B, 2>, real: Tensor<B, 2>) -> GameLosses<B> {
        let (start, len) = self.stretch;
        let frozen = self.discriminators.clone().no_grad();
        game(self.discriminators, &frozen, self.spectrograms, decoded.narrow(1, start, len), real.narrow(1, start, len))
    }
}

impl<B: Backend> GameLosses<B> {
    /// The codec's share of the loss at this step's ramp.
    pub fn codec_loss(&self, ramp: f64) -> Tensor<B, 1> {
        (self.generator.clone().mul_scalar(GENERATOR_WEIGHT)
            + self.feature_matching.clone().mul_scalar(FEATURE_MATCHING_WEIGHT))
        .mul_scalar(ramp)
    }
}

/// The three adversarial terms of one batch, each a scalar tensor.
pub(crate) struct GameLosses<B: Backend> {
    /// The codec's least-squares loss: its output judged as real.
    pub generator: Tensor<B, 1>,
    /// Feature matching, normalised per layer.
    pub feature_matching: Tensor<B, 1>,
    /// The discriminators' least-squares loss on real and (detached) decoded audio.
    pub discriminator: Tensor<B, 1>,
}

/// The adversarial losses between `decoded` and `real` audio `[batch, len]`.
///
/// The codec's terms are judged by `frozen`, a copy of `discriminators` whose parameters
/// take no gradient, and the discriminators' term sees `decoded` detached; so one backward
/// pass of their sum gives the codec's gradients of its terms only and the discriminators'
/// gradients of theirs only.
pub(crate) fn game<B: Backend>(
    discriminators: &Discriminators<B>,
    frozen: &Discriminators<B>,
    spectrograms: &Spectrograms<B>,
    decoded: Tensor<B, 2>,
    real: Tensor<B, 2>,
) -> GameLosses<B> {
    let device = decoded.device();
    let on_real = discriminators.judge(real, spectrograms);
    let on_detached = discriminators.judge(decoded.clone().detach(), spectrograms);
    let on_decoded = frozen.judge(decoded, spectrograms);
    let count = on_real.len() as f64;
    let mut discriminator = Tensor::zeros([1], &device);
    let mut generator = Tensor::zeros([1], &device);
    let mut feature_matching = Tensor::zeros([1], &device);
    let mut layers = 0usize;
    for ((real, detached), decoded) in on_real.into_iter().zip(on_detached).zip(on_decoded) {
        let real_term = real.logits.clone().sub_scalar(1.0).powi_scalar(2).mean();
        discriminator = discriminator + real_term + detached.logits.powi_scalar(2).mean();
        generator = generator + decoded.logits.sub_scalar(1.0).powi_scalar(2).mean();
        for (target, output) in real.features.into_iter().zip(decoded.features) {
            let target = target.detach();
            let scale = target.clone().abs().mean().add_scalar(1e-5);
            feature_matching = feature_matching + (output - target).abs().mean() / scale;
            layers += 1;
        }
    }
    GameLosses {
        generator: generator.div_scalar(count),
        feature_matching: feature_matching.div_scalar(layers.max(1) as f64),
        discriminator: discriminator.div_scalar(count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData};

    type B = Autodiff<Flex>;

    fn signals(device: &burn::tensor::Device<B>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let len = 4096;
        let voiced: Vec<f32> = (0..2 * len)
            .map(|i| {
                let t = (i % len) as f32 / 16_000.0;
                (1..8).map(|k| (std::f32::consts::TAU * 150.0 * k as f32 * t).sin() / k as f32).sum::<f32>() * 0.2
            })
            .collect();
        let real = Tensor::<B, 2>::from_data(TensorData::new(voiced, [2, len]), device);
        let noise = Tensor::<B, 2>::random([2, len], Distribution::Normal(0.0, 0.1), device);
        (real, noise)
    }

    /// Largest relative difference between two sets of gradients of the same module.
    struct Differences<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        worst: f32,
        compared: usize,
    }

    impl ModuleVisitor<B> for Differences<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let (Some(a), Some(b)) = (self.a.get::<Flex, D>(param.id), self.b.get::<Flex, D>(param.id)) {
                let scale = a.clone().abs().max().into_scalar().max(1e-12);
                self.worst = self.worst.max((a - b).abs().max().into_scalar() / scale);
                self.compared += 1;
            }
        }
    }

    #[test]
    fn the_codecs_terms_do_not_train_the_discriminators() {
        let device = Default::default();
        B::seed(&device, 5);
        let discriminators = Discriminators::<B>::new(&device);
        let spectrograms = Spectrograms::new(&device);
        let (real, noise) = signals(&device);
        let decoded = noise.require_grad();

        let losses =
            game(&discriminators, &discriminators.clone().no_grad(), &spectrograms, decoded.clone(), real.clone());
        let mut all = (losses.generator + losses.feature_matching + losses.discriminator).backward();
        let combined = GradientsParams::from_module(&mut all, &discriminators);
        assert!(decoded.grad(&all).is_some(), "the codec's terms reach the decoded audio");

        let alone = game(&discriminators, &discriminators.clone().no_grad(), &spectrograms, decoded, real);
        let mut only = alone.discriminator.backward();
        let reference = GradientsParams::from_module(&mut only, &discriminators);
        let mut differences = Differences { a: &combined, b: &reference, worst: 0.0, compared: 0 };
        discriminators.visit(&mut differences);
        assert!(differences.compared > 20, "only {} parameters had gradients", differences.compared);
        assert!(differences.worst < 1e-5, "the codec's terms moved the discriminators by {}", differences.worst);
    }

    #[test]
    fn the_discriminators_learn_to_tell_noise_from_a_voice() {
        let device = Default::default();
        B::seed(&device, 9);
        let mut discriminators = Discriminators::<B>::new(&device);
        let spectrograms = Spectrograms::new(&device);
        let mut optimizer = AdamConfig::new().init::<B, Discriminators<B>>();
        let (real, noise) = signals(&device);
        let loss = |d: &Discriminators<B>| {
            let frozen = d.clone().no_grad();
            game(d, &frozen, &spectrograms, noise.clone(), real.clone()).discriminator
        };
        let first = loss(&discriminators).into_scalar();
        for _ in 0..15 {
            let mut grads = loss(&discriminators).backward();
            let grads = GradientsParams::from_module(&mut grads, &discriminators);
            discriminators = optimizer.step(1e-3, discriminators, grads);
        }
        let last = loss(&discriminators).into_scalar();
        assert!(last < first * 0.5, "discriminator loss went from {first} to {last}");
    }
}
