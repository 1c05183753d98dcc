//! One training step's arithmetic: the forward pass through encoder, quantizer (straight
//! through) and decoder, the weighted loss, and its gradients, split over workers.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use tokenwave_core::model::rvq::Rvq;
use tokenwave_core::model::{Model, Streaming};
use tokenwave_core::{Error, Result};

use crate::adversarial::{Discriminators, GameLosses, Judge};
use crate::data::Batch;
use crate::loss::{Losses, SpectralLoss};
use crate::options::AdversarialLog;

/// Weight of the waveform term: it keeps phase roughly aligned; the spectral terms carry
/// the perceptual quality.
const WAVEFORM_WEIGHT: f64 = 0.1;
/// Weight of the commitment term, which keeps encoder outputs near their codes.
const COMMITMENT_WEIGHT: f64 = 0.25;
/// Weight of [`SpectralLoss::harmonic_fit`] at a run's first step; it falls linearly to 0
/// over [`HARMONIC_FIT_STEPS`]: a start for the harmonic source, after which the output as
/// a whole is what training judges.
const HARMONIC_FIT_WEIGHT: f64 = 1.0;
const HARMONIC_FIT_STEPS: f64 = 4000.0;

/// The weight of the harmonic fit at `step` of a run.
pub(crate) fn harmonic_fit_weight(step: u64) -> f64 {
    HARMONIC_FIT_WEIGHT * (1.0 - step as f64 / HARMONIC_FIT_STEPS).max(0.0)
}

/// One 0/1 per frame of the mel loss's resolution, row-major over `crops` crops of `crop`
/// samples: whether the codec frame holding the frame's centre is voiced in `f0`.
fn voiced_mel_frames<B: Backend>(loss: &SpectralLoss<B>, f0: &[f32], crops: usize, crop: usize) -> Vec<f32> {
    let frames = f0.len() / crops;
    let hop = crop / frames;
    let centres = loss.mel_frame_centres(crop);
    (0..crops)
        .flat_map(|c| {
            centres
                .iter()
                .map(move |&centre| if f0[c * frames + (centre / hop).min(frames - 1)] > 0.0 { 1.0 } else { 0.0 })
        })
        .collect()
}

/// A batch through the model: the reconstruction, the commitment loss, and per stage the
/// chosen codes and the residuals they were chosen for (for the EMA codebook update).
pub(crate) struct Forward<B: Backend> {
    reconstruction: Tensor<B, 2>,
    /// The harmonic source's part of the reconstruction, for a decoder with one.
    harmonic: Option<Tensor<B, 2>>,
    commitment: Tensor<B, 1>,
    codes: Vec<Vec<i64>>,
    residuals: Vec<Vec<f32>>,
}

/// The decoder's input: `latents` `[batch, frames, dim]`, followed by each frame's F0 when
/// the model has a harmonic source (`f0`, `[batch * frames]`).
pub(crate) fn decoder_input<B: Backend>(latents: Tensor<B, 3>, f0: Option<&[f32]>) -> Tensor<B, 3> {
    let Some(f0) = f0 else { return latents };
    let [batch, frames, _] = latents.dims();
    let f0 = Tensor::from_data(TensorData::new(f0.to_vec(), [batch, frames, 1]), &latents.device());
    Tensor::cat(vec![latents, f0], 2)
}

/// The forward pass of `audio` `[batch, len, 1]` (with its frames' transmitted F0 for a
/// harmonic source) with the first `stages` codebooks, which must be initialised
/// ([`crate::vq::EmaCodebooks`]). Gradients pass the quantizer straight through.
pub(crate) fn forward<B: Backend>(
    model: &Model<B>,
    audio: Tensor<B, 3>,
    f0: Option<&[f32]>,
    stages: usize,
) -> Forward<B> {
    let [batch, len, _] = audio.dims();
    let device = audio.device();
    let latents = model.encoder.step(audio, &mut model.encoder.init_state(batch, &device));
    let [_, frames, dim] = latents.dims();
    let flat = latents.reshape([batch * frames, dim]);
    let mut residual = flat.clone().detach();
    let mut quantized = Tensor::zeros([batch * frames, dim], &device);
    let (mut codes, mut residuals) = (Vec::new(), Vec::new());
    for stage in 0..stages {
        let residual_data = residual.clone().into_data().into_vec::<f32>().expect("float residual");
        let codebook = model.rvq.codebook(stage).detach();
        let index = Rvq::nearest(&codebook, &residual);
        let chosen = codebook.select(0, index.clone());
        quantized = quantized + chosen.clone();
        residual = residual - chosen;
        codes.push(index.into_data().convert::<i64>().into_vec::<i64>().expect("int codes"));
        residuals.push(residual_data);
    }
    let error = flat.clone() - quantized.clone();
    let commitment = (error.clone() * error).mean();
    let straight_through = flat.clone() + (quantized - flat).detach();
    let latents = decoder_input(straight_through.reshape([batch, frames, dim]), f0);
    let (decoded, harmonic) = model.decoder.step_parts(latents, &mut model.decoder.init_state(batch, &device));
    let harmonic = harmonic.map(|h| h.reshape([batch, len]));
    Forward { reconstruction: decoded.reshape([batch, len]), harmonic, commitment, codes, residuals }
}

/// The weighted sum that training minimises. A model with a harmonic source drops the
/// waveform term: its harmonics' phases follow the decoder's own clock, not the input's,
/// so matching samples would only teach it to keep them quiet.
fn total_loss<B: Backend>(terms: &Losses<B>, commitment: &Tensor<B, 1>, clocked: bool) -> Tensor<B, 1> {
    let waveform_weight = if clocked { 0.0 } else { WAVEFORM_WEIGHT };
    terms.spectral_convergence.clone()
        + terms.log_magnitude.clone()
        + terms.mel.clone()
        + terms.waveform.clone().mul_scalar(waveform_weight)
        + commitment.clone().mul_scalar(COMMITMENT_WEIGHT)
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f32 {
    t.into_scalar().elem::<f32>()
}

/// A batch's loss terms as numbers, for the metrics log.
#[derive(Default, Clone, Copy)]
pub(crate) struct LossFigures {
    pub total: f32,
    pub spectral_convergence: f32,
    pub log_magnitude: f32,
    pub mel: f32,
    pub waveform: f32,
    pub commitment: f32,
    pub harmonic_fit: Option<f32>,
    pub adversarial: Option<AdversarialLog>,
}

impl LossFigures {
    fn of<B: Backend>(
        terms: &Losses<B>,
        commitment: &Tensor<B, 1>,
        total: &Tensor<B, 1>,
        harmonic_fit: Option<&Tensor<B, 1>>,
        game: Option<(&GameLosses<B>, f64)>,
    ) -> Self {
        Self {
            harmonic_fit: harmonic_fit.map(|fit| scalar(fit.clone())),
            adversarial: game.map(|(game, ramp)| AdversarialLog {
                generator: scalar(game.generator.clone()),
                feature_matching: scalar(game.feature_matching.clone()),
                discriminator: scalar(game.discriminator.clone()),
                weight: ramp,
            }),
            total: scalar(total.clone()),
            spectral_convergence: scalar(terms.spectral_convergence.clone()),
            log_magnitude: scalar(terms.log_magnitude.clone()),
            mel: scalar(terms.mel.clone()),
            waveform: scalar(terms.waveform.clone()),
            commitment: scalar(commitment.clone()),
        }
    }

    /// Adds `share` of `other`: a shard's figures weighted by its part of the batch.
    pub fn add(&mut self, other: &Self, share: f32) {
        self.total += share * other.total;
        self.spectral_convergence += share * other.spectral_convergence;
        self.log_magnitude += share * other.log_magnitude;
        self.mel += share * other.mel;
        self.waveform += share * other.waveform;
        self.commitment += share * other.commitment;
        if let Some(theirs) = other.harmonic_fit {
            *self.harmonic_fit.get_or_insert(0.0) += share * theirs;
        }
        if let Some(theirs) = other.adversarial {
            let ours = self.adversarial.get_or_insert(AdversarialLog { weight: theirs.weight, ..Default::default() });
            ours.generator += share * theirs.generator;
            ours.feature_matching += share * theirs.feature_matching;
            ours.discriminator += share * theirs.discriminator;
        }
    }
}

/// What every shard of a batch shares.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    /// Crops in the whole batch.
    pub crops: usize,
    /// Samples per crop.
    pub crop: usize,
    /// Quantizer stages of this step.
    pub stages: usize,
    /// Whether the step is logged: reading the loss terms back waits for the device.
    pub log: bool,
    /// [`harmonic_fit_weight`] at this step.
    pub harmonic_fit: f64,
}

/// One worker's part of a step: gradients of its share of the batch loss, and what the EMA
/// codebooks and the metrics need.
pub(crate) struct ShardResult {
    pub grads: GradientsParams,
    /// The discriminators' gradients, in adversarial runs.
    pub critic_grads: Option<GradientsParams>,
    pub share: f32,
    pub figures: Option<LossFigures>,
    pub codes: Vec<Vec<i64>>,
    pub residuals: Vec<Vec<f32>>,
}

/// Forward and backward pass of `model` (and of the discriminators of `judge`) over
/// `crops` crops (`samples`), the loss scaled by their share of the batch so that shard
/// gradients add up to the batch's.
#[allow(clippy::too_many_arguments)]
fn train_shard<B: AutodiffBackend>(
    model: &Model<B>,
    judge: Option<Judge<'_, B>>,
    loss: &SpectralLoss<B>,
    samples: &[f32],
    f0: Option<&[f32]>,
    crops: usize,
    shape: Shape,
    device: &B::Device,
) -> ShardResult {
    let audio = Tensor::<B, 3>::from_data(TensorData::new(samples.to_vec(), [crops, shape.crop, 1]), device);
    let target = audio.clone().reshape([crops, shape.crop]);
    let pass = forward(model, audio, f0, shape.stages);
    let terms = loss.losses(pass.reconstruction.clone(), target.clone());
    let mut total = total_loss(&terms, &pass.commitment, f0.is_some());
    let fit = match (&pass.harmonic, f0) {
        (Some(harmonic), Some(f0)) if shape.harmonic_fit > 0.0 => {
            let voiced = voiced_mel_frames(loss, f0, crops, shape.crop);
            Some(loss.harmonic_fit(harmonic.clone(), target.clone(), &voiced))
        }
        _ => None,
    };
    if let Some(fit) = &fit {
        total = total + fit.clone().mul_scalar(shape.harmonic_fit);
    }
    let game = judge.map(|judge| (judge.play(pass.reconstruction.clone(), target), judge.ramp));
    let mut objective = total.clone();
    if let Some((game, ramp)) = &game {
        total = total + game.codec_loss(*ramp);
        objective = total.clone() + game.discriminator.clone();
    }
    let share = crops as f32 / shape.crops as f32;
    let figures = shape
        .log
        .then(|| LossFigures::of(&terms, &pass.commitment, &total, fit.as_ref(), game.as_ref().map(|(g, r)| (g, *r))));
    let mut gradients = objective.mul_scalar(share).backward();
    let grads = GradientsParams::from_module(&mut gradients, model);
    let critic_grads = judge.map(|judge| GradientsParams::from_module(&mut gradients, judge.discriminators));
    ShardResult { grads, critic_grads, share, figures, codes: pass.codes, residuals: pass.residuals }
}

/// Trains on a batch split over `workers`, one one-thread pool each, in parallel; with no
/// workers, the whole batch on this thread. Each worker differentiates its own copy of the
/// model: shared parameters would join the workers' autodiff graphs into one, whose
/// backward passes run one at a time. The copies keep the parameter ids, so their gradients
/// add up onto the model. They copy the values too: copies made with `from_inner`, which
/// share the buffers, got no gradients at all when differentiated on another thread
/// (measured with burn 0.21; the test below would catch it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_shards<B: AutodiffBackend>(
    model: &Model<B>,
    judge: Option<Judge<'_, B>>,
    workers: &[rayon::ThreadPool],
    loss: &SpectralLoss<B>,
    batch: &Batch,
    shape: Shape,
    device: &B::Device,
) -> Vec<ShardResult> {
    let (samples, f0) = (batch.samples.as_slice(), batch.f0.as_deref());
    if workers.len() <= 1 {
        return vec![train_shard(model, judge, loss, samples, f0, shape.crops, shape, device)];
    }
    let copies: Vec<Model<B>> = (0..workers.len()).map(|_| model.clone().map(&mut FreshLeaves { device })).collect();
    let critics: Vec<Discriminators<B>> = match judge {
        Some(judge) => {
            (0..workers.len()).map(|_| judge.discriminators.clone().map(&mut FreshLeaves { device })).collect()
        }
        None => Vec::new(),
    };
    let per_crop = samples.len() / shape.crops;
    let frames_per_crop = f0.map_or(0, |f0| f0.len() / shape.crops);
    let pieces = (0..workers.len()).map(|w| {
        let first = shape.crops * w / workers.len();
        (first, shape.crops * (w + 1) / workers.len() - first)
    });
    std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter()
            .zip(pieces)
            .zip(&copies)
            .enumerate()
            .filter(|(_, ((_, (_, crops)), _))| *crops > 0)
            .map(|(w, ((pool, (first, crops)), copy))| {
                let judge = judge.zip(critics.get(w)).map(|(judge, discriminators)| Judge { discriminators, ..judge });
                scope.spawn(move || {
                    pool.install(|| {
                        let samples = &samples[first * per_crop..(first + crops) * per_crop];
                        let f0 = f0.map(|f0| &f0[first * frames_per_crop..(first + crops) * frames_per_crop]);
                        train_shard(copy, judge, loss, samples, f0, crops, shape, device)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// Gives every parameter a copy of its values as a new autodiff leaf, keeping its id.
struct FreshLeaves<'a, B: Backend> {
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModuleMapper<B> for FreshLeaves<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let copy = Tensor::from_data(tensor.into_data(), self.device).require_grad();
        Param::from_mapped_value(id, copy, mapper)
    }
}

/// `count` one-thread pools for [`run_shards`]; none for a single worker.
pub(crate) fn worker_pools(count: usize) -> Result<Vec<rayon::ThreadPool>> {
    if count <= 1 {
        return Ok(Vec::new());
    }
    (0..count)
        .map(|worker| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(move |_| format!("train-worker-{worker}"))
                .build()
                .map_err(|e| Error::InvalidArgument(format!("cannot start training worker {worker}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::ModuleVisitor;
    use burn::optim::GradientsAccumulator;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use tokenwave_core::model::{ConvNextConfig, ModelConfig};

    use crate::loss::DEFAULT_FLOOR;
    use crate::vq::EmaCodebooks;

    type B = Autodiff<Flex>;

    /// Counts the parameters whose gradients in `a` and `b` differ (or exist in one only).
    struct CompareGradients<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        compared: usize,
        worst: f32,
        missing: usize,
    }

    impl ModuleVisitor<B> for CompareGradients<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            match (self.a.get::<Flex, D>(param.id), self.b.get::<Flex, D>(param.id)) {
                (Some(a), Some(b)) => {
                    let scale = a.clone().abs().max().into_scalar().max(1e-12);
                    let difference = (a - b).abs().max().into_scalar() / scale;
                    self.worst = self.worst.max(difference);
                    self.compared += 1;
                }
                (None, None) => {}
                _ => self.missing += 1,
            }
        }
    }

    #[test]
    fn gradients_of_shards_add_up_to_the_whole_batchs() {
        let stack = ConvNextConfig { dim: 32, hidden: 64, blocks: 1, kernel: 3 };
        let config = ModelConfig {
            latent_dim: 16,
            codebook_size: 32,
            max_stages: 2,
            encoder: stack.clone(),
            decoder: stack,
            ..Default::default()
        };
        let device = Default::default();
        B::seed(&device, 7);
        let mut model = Model::<B>::new(&config, &device);
        let loss = SpectralLoss::<B>::new(config.sample_rate, DEFAULT_FLOOR, &device);
        let (crop, crops) = (1280, 5);
        let samples: Vec<f32> = (0..crops * crop).map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * 0.6).collect();
        let mut ema = EmaCodebooks::new(config.max_stages, config.codebook_size, config.latent_dim);
        ema.initialise_from(&mut model, &samples, [crops, crop], &config, &device, &mut StdRng::seed_from_u64(3));
        let shape = Shape { crops, crop, stages: 2, log: false, harmonic_fit: 0.0 };
        let run = |pools: &[rayon::ThreadPool]| {
            let mut accumulator = GradientsAccumulator::<Model<B>>::new();
            let mut codes = Vec::new();
            let batch = Batch { samples: samples.clone(), f0: None };
            for shard in run_shards(&model, None, pools, &loss, &batch, shape, &device) {
                accumulator.accumulate(&model, shard.grads);
                codes.extend(shard.codes[1].iter().copied());
            }
            (accumulator.grads(), codes)
        };
        let (whole, whole_codes) = run(&[]);
        let (sharded, sharded_codes) = run(&worker_pools(2).unwrap());

        assert_eq!(whole_codes, sharded_codes, "the shards must choose the whole batch's codes, in order");
        let mut compare = CompareGradients { a: &whole, b: &sharded, compared: 0, worst: 0.0, missing: 0 };
        model.visit(&mut compare);
        assert_eq!(compare.missing, 0, "a parameter got gradients from one path only");
        assert!(compare.compared > 10, "only {} parameters had gradients", compare.compared);
        assert!(compare.worst < 1e-4, "sharded gradients differ from the whole batch's by {}", compare.worst);
    }
}
