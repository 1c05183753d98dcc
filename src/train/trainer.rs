//! The training loop: AdamW with warmup and cosine decay, gradient clipping, quantizer
//! dropout, EMA codebooks, validation, JSONL metrics and periodic checkpoints.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use super::checkpoint::{self, TrainState};
use super::critic::{Critic, critic_loss, generator_losses};
use super::data::{Corpus, Loader};
use super::factorized::{FactorizedRvq, Usage};
use super::loss::{DEFAULT_FLOOR, Losses, SpectralLoss};
use super::pitch;
use super::transposed::TransposedDecoder;
use super::vq::{EmaCodebooks, StageStats};
use crate::error::{Error, Result};
use crate::model::decoder::Reference;
use crate::model::harmonic::{HarmonicPrediction, PitchTrack};
use crate::model::rvq::Rvq;
use crate::model::{Model, ModelConfig, Streaming, weights};

/// Loss weights. The spectral terms carry the perceptual quality; the waveform term keeps
/// phase roughly aligned; the commitment term keeps encoder outputs near their codes.
const WAVEFORM_WEIGHT: f64 = 0.1;
const COMMITMENT_WEIGHT: f64 = 0.25;
/// Weight of the harmonic source's pitch loss (mean absolute error of the natural-log pitch
/// on voiced frames: 0.05 is about a semitone off).
const PITCH_WEIGHT: f64 = 1.0;
/// Weight of the harmonic source's amplitude loss (mean absolute error of the natural-log
/// amplitude of each harmonic, against silence on unvoiced frames). Without it a quiet new source beside a
/// trained inverse-STFT head gets almost no gradient: added at random phase to the head's
/// output, its first-order effect on the spectral losses averages out.
const AMPLITUDE_WEIGHT: f64 = 1.0;
/// Weight of the voicing head's loss (binary cross-entropy against the pitch tracker's
/// voiced frames), for models with the voicing gate.
const VOICING_WEIGHT: f64 = 1.0;
/// Weight of the rebuilt-phase decoder's log-magnitude loss on its synthesis frames: the
/// phase is rebuilt from those magnitudes, so they must be the original's own.
const MAGNITUDE_WEIGHT: f64 = 1.0;
/// Linear warmup of the learning rate, in steps.
const WARMUP_STEPS: u64 = 500;
/// Steps between validation passes.
const VALIDATION_EVERY: u64 = 250;
/// The low-dimensional quantizer of a run that uses it, its optimizer and its code usage.
type FactorizedState<B> = (FactorizedRvq<B>, OptimizerAdaptor<AdamW, FactorizedRvq<B>, B>, Usage);

/// The transposed-conv decoder of a run that uses it, and its optimizer.
type TransposedState<B> = (TransposedDecoder<B>, OptimizerAdaptor<AdamW, TransposedDecoder<B>, B>);

fn transposed_decoder<B: AutodiffBackend>(state: &Option<TransposedState<B>>) -> Option<&TransposedDecoder<B>> {
    state.as_ref().map(|(decoder, _)| decoder)
}

/// File name of the transposed-conv decoder in a checkpoint.
const TRANSPOSED: &str = "transposed";
/// The modules a run may train beside the model, for its checkpoints.
type TrainedBeside<'a, B> =
    (&'a Option<FactorizedState<B>>, &'a Option<TransposedState<B>>, &'a Option<CriticState<B>>);

/// File name of the adversarial critic in a checkpoint.
const CRITIC: &str = "critic";
/// The critic of an adversarial run, and its optimizer.
type CriticState<B> = (Critic<B>, OptimizerAdaptor<AdamW, Critic<B>, B>);
/// File name of the low-dimensional quantizer in a checkpoint.
const FACTORIZED: &str = "factorized";
/// Steps between metric lines.
const LOG_EVERY: u64 = 10;
/// Longest wait between metric lines, so that slow steps (a GPU still compiling its kernels)
/// still show progress.
const LOG_AT_LEAST_EVERY: Duration = Duration::from_secs(60);
/// Validation clips: this many crops of [`VALIDATION_SECONDS`] each, always the same ones.
const VALIDATION_CLIPS: usize = 24;
const VALIDATION_SECONDS: f32 = 2.0;

/// What `tokenwave train` was asked to do.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Directories searched recursively for audio.
    pub data: Vec<PathBuf>,
    /// Run directory: cache, checkpoints, metrics, exported weights.
    pub out: PathBuf,
    /// Model sizes for a new run (ignored when resuming).
    pub config: ModelConfig,
    /// Continue from the run's last checkpoint.
    pub resume: bool,
    /// Start a new run from these weights (and their config) instead of a random init.
    pub init_from: Option<PathBuf>,
    /// Blocks added to the decoder of the `init_from` weights, each starting as the identity
    /// (more capacity for a trained model without starting over); 0 for none.
    pub grow_decoder: usize,
    /// Blocks added to the spectral encoder of the `init_from` weights, likewise.
    pub grow_encoder: usize,
    /// Switch the `init_from` weights' decoder to accumulated phase, its phase outputs
    /// reset to no change ([`crate::model::decoder::Decoder::with_phase_accumulated`]).
    pub accumulate_phase: bool,
    /// Give the `init_from` weights' decoder a harmonic source of this many harmonics,
    /// starting quiet ([`crate::model::decoder::Decoder::with_harmonics_added`]); 0 for none.
    pub add_harmonics: usize,
    /// Give the harmonic source of the `init_from` weights (or the one `add_harmonics`
    /// adds) the voicing gate ([`crate::model::ModelConfig::voicing_gate`]).
    pub add_voicing_gate: bool,
    /// Switch the `init_from` weights' decoder to magnitudes only, the phase rebuilt
    /// ([`crate::model::decoder::Decoder::with_phase_rebuilt`]).
    pub rebuild_phase: bool,
    /// Stop after this step.
    pub steps: u64,
    /// Crops per batch.
    pub batch: usize,
    /// Crop length in samples (rounded to what the model and losses need).
    pub crop: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Added to magnitudes inside the training losses' logarithms (validation keeps
    /// [`DEFAULT_FLOOR`]): a larger floor stops near-silent bins from dominating them.
    pub loss_floor: f64,
    /// Weight of the phase-derivative loss in the total (0: not computed).
    pub phase_weight: f64,
    /// Weight of the intelligibility loss in the total (0: not computed).
    pub intelligibility_weight: f64,
    /// Weight of the frame-consistency loss: how much the decoder's overlapping synthesis
    /// frames disagree on the samples they share (0: not computed). Shipped design only.
    pub consistency_weight: f64,
    /// Weight of the adversarial and feature-matching losses against a critic trained
    /// alongside (0: no critic). Shipped design only.
    pub adversarial_weight: f64,
    /// Seed for a new run.
    pub seed: u64,
    /// A stage count to train more often (see `draw_stages`): the rate that matters most
    /// to the run's users. `None`: full depth on half the steps, any depth on the rest.
    pub focus_stages: Option<usize>,
    /// Minutes between checkpoints.
    pub checkpoint_minutes: f64,
    /// One-thread workers that each train on a share of every batch (CPU only; 1: the
    /// whole batch on the calling thread and its thread pool). The comparison designs
    /// always train on one ([`Event::OneWorker`]).
    pub workers: usize,
}

/// One line of training metrics.
#[derive(Clone, Debug, Serialize)]
pub struct StepLog {
    /// Step just finished.
    pub step: u64,
    /// Total weighted loss.
    pub loss: f32,
    /// Spectral convergence (sum over resolutions).
    pub spectral_convergence: f32,
    /// Log-magnitude L1 (sum over resolutions).
    pub log_magnitude: f32,
    /// Log-mel L1.
    pub mel: f32,
    /// Waveform L1.
    pub waveform: f32,
    /// Phase-derivative loss (mean over resolutions), when trained on.
    pub phase: Option<f32>,
    /// Intelligibility loss, when trained on.
    pub intelligibility: Option<f32>,
    /// Frame disagreement of the decoder, when trained on.
    pub consistency: Option<f32>,
    /// L1 distance of the predicted log magnitudes from the original's on the synthesis
    /// frames, when the decoder rebuilds its phase.
    pub magnitude: Option<f32>,
    /// Pitch loss of the harmonic source (mean absolute natural-log pitch error on voiced
    /// frames), when the model has one.
    pub pitch: Option<f32>,
    /// Amplitude loss of the harmonic source (mean absolute natural-log error of each
    /// harmonic's amplitude, against silence on unvoiced frames), when the model has one.
    pub amplitude: Option<f32>,
    /// Voicing loss of the voicing gate (binary cross-entropy against the tracker's voiced
    /// frames), when the model has one.
    pub voicing: Option<f32>,
    /// Adversarial loss of the decoder (decoded audio's critic scores toward 1), when
    /// trained on.
    pub adversarial: Option<f32>,
    /// Feature-matching loss against the critic's view of the originals, when trained on.
    pub feature_matching: Option<f32>,
    /// The critic's own loss, when one is trained.
    pub critic: Option<f32>,
    /// Commitment loss.
    pub commitment: f32,
    /// Stages used in this batch (quantizer dropout).
    pub stages: usize,
    /// Learning rate of this step.
    pub learning_rate: f64,
    /// Seconds of audio trained on per wall-clock second, since the (re)start.
    pub audio_seconds_per_second: f64,
    /// Per-stage codebook health.
    pub codebooks: Vec<StageStats>,
}

/// Validation figures.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationLog {
    /// Step validated.
    pub step: u64,
    /// Log-mel L1 at each tested stage count, `(stages, mel_l1)`.
    pub mel_l1: Vec<(usize, f32)>,
}

/// Reports from the loop to whoever runs it.
pub enum Event<'a> {
    /// Corpus ready.
    Corpus { train_hours: f64, train_files: usize, validation_hours: f64, validation_files: usize },
    /// A step's metrics.
    Step(&'a StepLog),
    /// A validation pass.
    Validation(&'a ValidationLog),
    /// A checkpoint was written.
    Checkpoint { step: u64 },
    /// More than one worker was asked for a comparison design, which trains on one.
    OneWorker,
}

/// How many quantizer stages a step trains with: all of them on half the steps, so the
/// full rate is always learned, and on the rest any count from 1 (quantizer dropout: every
/// prefix of the codes must decode). With a focus, half of that rest trains the focus
/// count: 27 % of steps instead of 4 % for one of twelve.
fn draw_stages(rng: &mut StdRng, max_stages: usize, focus: Option<usize>) -> usize {
    if rng.random::<f32>() < 0.5 {
        return max_stages;
    }
    match focus {
        Some(stages) if rng.random::<f32>() < 0.5 => stages,
        _ => rng.random_range(1..=max_stages),
    }
}

fn learning_rate(peak: f64, step: u64, total: u64) -> f64 {
    if step < WARMUP_STEPS {
        return peak * (step + 1) as f64 / WARMUP_STEPS as f64;
    }
    let progress = ((step - WARMUP_STEPS) as f64 / (total.saturating_sub(WARMUP_STEPS).max(1)) as f64).min(1.0);
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// Forward pass of a training batch: reconstruction, commitment loss, and per stage the
/// chosen codes and the residuals they were chosen for (for the EMA update; the projected
/// inputs for the low-dimensional codebooks, to restart dead codes from).
struct Forward<B: Backend> {
    reconstruction: Tensor<B, 2>,
    commitment: Tensor<B, 1>,
    /// How much the decoder's overlapping frames disagree, when measured
    /// (`Decoder::decode_for_training`).
    disagreement: Option<Tensor<B, 1>>,
    /// What the harmonic source predicted, when the model has one.
    harmonic: Option<HarmonicPrediction<B>>,
    /// With rebuilt phase, the predicted magnitudes' error (`TrainingDecode::magnitude_error`).
    magnitude_error: Option<Tensor<B, 1>>,
    /// Its losses ([`harmonic_losses`]), once measured against the batch.
    harmonic_losses: Option<HarmonicLosses<B>>,
    codes: Vec<Vec<i64>>,
    residuals: Vec<Vec<f32>>,
}

/// Samples `[batch, frames * hop]` for latents `[batch, frames, dim]`: the model's decoder,
/// or the transposed-conv one of the decoder comparison.
fn decode<B: Backend>(
    model: &Model<B>,
    transposed: Option<&TransposedDecoder<B>>,
    latents: Tensor<B, 3>,
) -> Tensor<B, 2> {
    let (batch, device) = (latents.dims()[0], latents.device());
    match transposed {
        Some(decoder) => decoder.forward(latents),
        None => {
            let audio = model.decoder.step(latents, &mut model.decoder.init_state(batch, &device));
            let len = audio.shape().num_elements() / batch;
            audio.reshape([batch, len])
        }
    }
}

/// The same with the low-dimensional, L2-normalised codebooks; its `commitment` already
/// holds the weighted commitment and codebook losses.
fn forward_factorized<B: Backend>(
    model: &Model<B>,
    transposed: Option<&TransposedDecoder<B>>,
    quantizer: &FactorizedRvq<B>,
    audio: Tensor<B, 3>,
    stages: usize,
) -> Forward<B> {
    let [batch, len, _] = audio.dims();
    let device = audio.device();
    let latents = model.encoder.step(audio, &mut model.encoder.init_state(batch, &device));
    let [_, frames, dim] = latents.dims();
    let quantized = quantizer.quantize(latents.reshape([batch * frames, dim]), stages, COMMITMENT_WEIGHT);
    let decoded = decode(model, transposed, quantized.latents.reshape([batch, frames, dim]));
    Forward {
        reconstruction: decoded.reshape([batch, len]),
        commitment: quantized.loss,
        disagreement: None,
        harmonic: None,
        magnitude_error: None,
        harmonic_losses: None,
        codes: quantized.codes,
        residuals: quantized.projected,
    }
}

/// The forward pass with the EMA codebooks, which must all be initialised
/// ([`initialise_codebooks`]); with `measure_disagreement`, the model's decoder also
/// measures how much its frames disagree; with `magnitude_floor`, a decoder that rebuilds
/// its phase measures its magnitudes against the original's (floored there).
fn forward<B: Backend>(
    model: &Model<B>,
    transposed: Option<&TransposedDecoder<B>>,
    audio: Tensor<B, 3>,
    stages: usize,
    (measure_disagreement, track, magnitude_floor): (bool, Option<&PitchTrack<B>>, Option<f64>),
) -> Forward<B> {
    let [batch, len, _] = audio.dims();
    let device = audio.device();
    let reference = magnitude_floor.map(|floor| Reference { signal: audio.clone().reshape([batch, len]), floor });
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
    let latents = straight_through.reshape([batch, frames, dim]);
    let (decoded, disagreement, harmonic, magnitude_error) = match transposed {
        None => {
            let decoded = model.decoder.decode_for_training(latents, measure_disagreement, track, reference.as_ref());
            (decoded.audio.reshape([batch, len]), decoded.disagreement, decoded.harmonic, decoded.magnitude_error)
        }
        Some(_) => (decode(model, transposed, latents), None, None, None),
    };
    Forward {
        reconstruction: decoded,
        commitment,
        disagreement,
        harmonic,
        magnitude_error,
        harmonic_losses: None,
        codes,
        residuals,
    }
}

/// Initialises the EMA codebooks of a new run from the residuals of `audio` `[batch, len]`
/// at every stage, each stage quantized with its new codewords before the next is drawn.
fn initialise_codebooks<B: AutodiffBackend>(
    model: &mut Model<B>,
    ema: &mut EmaCodebooks,
    audio: &[f32],
    [batch, len]: [usize; 2],
    (config, device): (&ModelConfig, &B::Device),
    rng: &mut StdRng,
) {
    if (0..config.max_stages).all(|stage| ema.is_initialised(stage)) {
        return;
    }
    let encoder = model.valid().encoder;
    let audio = Tensor::<B::InnerBackend, 3>::from_data(TensorData::new(audio.to_vec(), [batch, len, 1]), device);
    let latents = encoder.step(audio, &mut encoder.init_state(batch, device));
    let [_, frames, dim] = latents.dims();
    let mut residual = latents.reshape([batch * frames, dim]);
    for stage in 0..config.max_stages {
        if !ema.is_initialised(stage) {
            ema.initialise(stage, &residual.clone().into_data().into_vec::<f32>().expect("float residual"), rng);
            apply_codebooks(model, ema, config, device);
        }
        let codebook = model.rvq.codebook(stage).inner();
        let index = Rvq::nearest(&codebook, &residual);
        residual = residual - codebook.select(0, index);
    }
}

/// Writes `ema`'s codewords into the model.
fn apply_codebooks<B: Backend>(model: &mut Model<B>, ema: &EmaCodebooks, config: &ModelConfig, device: &B::Device) {
    let shape = [config.max_stages, config.codebook_size, config.latent_dim];
    let tensor = Tensor::from_data(TensorData::new(ema.codewords(), shape), device);
    model.rvq.codebooks = Param::from_tensor(tensor);
}

/// Log-mel L1 of the model (with the comparison's other decoder and/or codebooks, when the
/// run uses them) on the validation clips at each stage count in `stage_counts`.
fn validate<B: Backend>(
    model: &Model<B>,
    (transposed, factorized): (Option<&TransposedDecoder<B>>, Option<&FactorizedRvq<B>>),
    clips: &[f32],
    clip_len: usize,
    stage_counts: &[usize],
    loss: &SpectralLoss<B>,
    device: &B::Device,
) -> Vec<(usize, f32)> {
    let batch = clips.len() / clip_len;
    let audio = Tensor::<B, 3>::from_data(TensorData::new(clips.to_vec(), [batch, clip_len, 1]), device);
    let latents = model.encoder.step(audio.clone(), &mut model.encoder.init_state(batch, device));
    let target = audio.reshape([batch, clip_len]);
    stage_counts
        .iter()
        .map(|&stages| {
            let quantized = match factorized {
                Some(quantizer) => {
                    let [_, frames, dim] = latents.dims();
                    let flat = latents.clone().reshape([batch * frames, dim]);
                    quantizer.quantize(flat, stages, COMMITMENT_WEIGHT).latents.reshape([batch, frames, dim])
                }
                None => model.rvq.decode(model.rvq.encode(latents.clone(), stages)),
            };
            let decoded = decode(model, transposed, quantized);
            let terms = loss.losses(decoded.reshape([batch, clip_len]), target.clone());
            (stages, terms.mel.into_scalar().elem_f32())
        })
        .collect()
}

trait ElemF32 {
    fn elem_f32(self) -> f32;
}

impl<E: burn::tensor::ElementConversion> ElemF32 for E {
    fn elem_f32(self) -> f32 {
        self.elem::<f32>()
    }
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f32 {
    t.into_scalar().elem_f32()
}

/// The weighted sum that training minimises.
fn total_loss<B: Backend>(
    terms: &Losses<B>,
    pass: &Forward<B>,
    quantizer_weight: f64,
    weights: OptionalWeights,
) -> Tensor<B, 1> {
    let mut total = terms.spectral_convergence.clone()
        + terms.log_magnitude.clone()
        + terms.mel.clone()
        + terms.waveform.clone().mul_scalar(WAVEFORM_WEIGHT)
        + pass.commitment.clone().mul_scalar(quantizer_weight);
    if let Some(phase) = &terms.phase {
        total = total + phase.clone().mul_scalar(weights.phase);
    }
    if let Some(intelligibility) = &terms.intelligibility {
        total = total + intelligibility.clone().mul_scalar(weights.intelligibility);
    }
    if let Some(disagreement) = &pass.disagreement {
        total = total + disagreement.clone().mul_scalar(weights.consistency);
    }
    if let Some(error) = &pass.magnitude_error {
        total = total + error.clone().mul_scalar(MAGNITUDE_WEIGHT);
    }
    if let Some(losses) = &pass.harmonic_losses {
        total = total
            + losses.pitch.clone().mul_scalar(PITCH_WEIGHT)
            + losses.amplitude.clone().mul_scalar(AMPLITUDE_WEIGHT);
        if let Some(voicing) = &losses.voicing {
            total = total + voicing.clone().mul_scalar(VOICING_WEIGHT);
        }
    }
    total
}

/// What the harmonic source is trained towards on a batch: the pitch tracker's track
/// (which also drives its oscillators), and the log amplitude of each harmonic of that
/// pitch `[crops, frames, harmonics]`, with 1 where that amplitude is a target; and 1 on
/// the frames `[crops, frames]` the tracker could judge (voiced or not).
struct HarmonicTargets<B: Backend> {
    track: PitchTrack<B>,
    log_amplitudes: Tensor<B, 3>,
    measured: Tensor<B, 3>,
    judged: Tensor<B, 2>,
}

/// [`HarmonicTargets`] of each crop of `samples` (`crops` of them, `frames` frames each).
fn harmonic_targets<B: Backend>(
    samples: &[f32],
    [crops, frames, harmonics]: [usize; 3],
    (hop, sample_rate): (usize, u32),
    device: &B::Device,
) -> HarmonicTargets<B> {
    let per_crop: Vec<_> = samples
        .par_chunks(samples.len() / crops)
        .map(|crop| {
            let log_f0 = pitch::log_f0_targets(crop, frames, hop, sample_rate);
            let (amplitudes, measured) = pitch::log_amplitude_targets(crop, &log_f0, hop, sample_rate, harmonics);
            (log_f0, amplitudes, measured)
        })
        .collect();
    let voiced: Vec<f32> = per_crop.iter().flat_map(|c| c.0.iter().map(|t| f32::from(u8::from(t.is_some())))).collect();
    let log_f0: Vec<f32> = per_crop.iter().flat_map(|c| c.0.iter().map(|t| t.unwrap_or(0.0))).collect();
    let amplitudes: Vec<f32> = per_crop.iter().flat_map(|c| c.1.iter().copied()).collect();
    let measured: Vec<f32> = per_crop.iter().flat_map(|c| c.2.iter().copied()).collect();
    let crop_len = samples.len() / crops;
    let judged: Vec<f32> = (0..crops)
        .flat_map(|_| (0..frames).map(|frame| f32::from(u8::from(pitch::judged(crop_len, frame, hop, sample_rate)))))
        .collect();
    HarmonicTargets {
        track: PitchTrack {
            log_f0: Tensor::from_data(TensorData::new(log_f0, [crops, frames]), device),
            voiced: Tensor::from_data(TensorData::new(voiced, [crops, frames]), device),
        },
        log_amplitudes: Tensor::from_data(TensorData::new(amplitudes, [crops, frames, harmonics]), device),
        measured: Tensor::from_data(TensorData::new(measured, [crops, frames, harmonics]), device),
        judged: Tensor::from_data(TensorData::new(judged, [crops, frames]), device),
    }
}

/// The harmonic source's training losses on a batch.
#[derive(Clone)]
struct HarmonicLosses<B: Backend> {
    /// Mean absolute error of the natural-log pitch on voiced frames.
    pitch: Tensor<B, 1>,
    /// Mean absolute error of log(amplitude + floor) over the harmonics measured.
    amplitude: Tensor<B, 1>,
    /// Binary cross-entropy of the voicing head on the frames the tracker judged.
    voicing: Option<Tensor<B, 1>>,
}

/// The harmonic source's [`HarmonicLosses`]; each 0 when the batch has nothing to measure.
fn harmonic_losses<B: Backend>(prediction: &HarmonicPrediction<B>, targets: &HarmonicTargets<B>) -> HarmonicLosses<B> {
    let track = &targets.track;
    let voiced = track.voiced.clone().sum().clamp_min(1.0);
    let pitch = ((prediction.log_f0.clone() - track.log_f0.clone()).abs() * track.voiced.clone()).sum() / voiced;
    let measured = targets.measured.clone().sum().clamp_min(1.0);
    let predicted = prediction.log_amplitudes.clone().exp().add_scalar(f64::from(pitch::AMPLITUDE_FLOOR)).log();
    let amplitude = ((predicted - targets.log_amplitudes.clone()).abs() * targets.measured.clone()).sum() / measured;
    let voicing = prediction.voicing.clone().map(|logits| {
        let voiced = track.voiced.clone();
        let likelihood =
            log_sigmoid(logits.clone()) * voiced.clone() + log_sigmoid(logits.neg()) * voiced.neg().add_scalar(1.0);
        (likelihood * targets.judged.clone()).sum().neg() / targets.judged.clone().sum().clamp_min(1.0)
    });
    HarmonicLosses { pitch, amplitude, voicing }
}

/// Weights of the optional loss terms.
#[derive(Clone, Copy)]
struct OptionalWeights {
    phase: f64,
    intelligibility: f64,
    consistency: f64,
    adversarial: f64,
}

/// The adversarial terms of a batch as numbers.
#[derive(Clone, Copy, Default)]
struct AdversarialFigures {
    adversarial: f32,
    feature_matching: f32,
    critic: f32,
}

/// A batch's loss terms as numbers, for the metrics log.
#[derive(Default)]
struct LossFigures {
    total: f32,
    spectral_convergence: f32,
    log_magnitude: f32,
    mel: f32,
    waveform: f32,
    phase: Option<f32>,
    intelligibility: Option<f32>,
    consistency: Option<f32>,
    magnitude: Option<f32>,
    pitch: Option<f32>,
    amplitude: Option<f32>,
    voicing: Option<f32>,
    adversarial: Option<AdversarialFigures>,
    commitment: f32,
}

impl LossFigures {
    fn of<B: Backend>(terms: &Losses<B>, pass: &Forward<B>, total: &Tensor<B, 1>) -> Self {
        Self {
            total: scalar(total.clone()),
            spectral_convergence: scalar(terms.spectral_convergence.clone()),
            log_magnitude: scalar(terms.log_magnitude.clone()),
            mel: scalar(terms.mel.clone()),
            waveform: scalar(terms.waveform.clone()),
            phase: terms.phase.clone().map(scalar),
            intelligibility: terms.intelligibility.clone().map(scalar),
            consistency: pass.disagreement.clone().map(scalar),
            magnitude: pass.magnitude_error.clone().map(scalar),
            pitch: pass.harmonic_losses.as_ref().map(|l| scalar(l.pitch.clone())),
            amplitude: pass.harmonic_losses.as_ref().map(|l| scalar(l.amplitude.clone())),
            voicing: pass.harmonic_losses.as_ref().and_then(|l| l.voicing.clone().map(scalar)),
            adversarial: None,
            commitment: scalar(pass.commitment.clone()),
        }
    }

    /// Adds `share` of `other`: a shard's figures weighted by its part of the batch.
    fn add(&mut self, other: &Self, share: f32) {
        self.total += share * other.total;
        self.spectral_convergence += share * other.spectral_convergence;
        self.log_magnitude += share * other.log_magnitude;
        self.mel += share * other.mel;
        self.waveform += share * other.waveform;
        self.phase = other.phase.map(|p| self.phase.unwrap_or(0.0) + share * p);
        self.intelligibility = other.intelligibility.map(|i| self.intelligibility.unwrap_or(0.0) + share * i);
        self.consistency = other.consistency.map(|c| self.consistency.unwrap_or(0.0) + share * c);
        self.magnitude = other.magnitude.map(|m| self.magnitude.unwrap_or(0.0) + share * m);
        self.pitch = other.pitch.map(|p| self.pitch.unwrap_or(0.0) + share * p);
        self.amplitude = other.amplitude.map(|a| self.amplitude.unwrap_or(0.0) + share * a);
        self.voicing = other.voicing.map(|v| self.voicing.unwrap_or(0.0) + share * v);
        self.adversarial = other.adversarial.map(|o| {
            let sum = self.adversarial.unwrap_or_default();
            AdversarialFigures {
                adversarial: sum.adversarial + share * o.adversarial,
                feature_matching: sum.feature_matching + share * o.feature_matching,
                critic: sum.critic + share * o.critic,
            }
        });
        self.commitment += share * other.commitment;
    }
}

/// What every shard of a batch shares.
#[derive(Clone, Copy)]
struct Shape {
    crops: usize,
    crop: usize,
    hop: usize,
    sample_rate: u32,
    harmonics: usize,
    stages: usize,
    weights: OptionalWeights,
    /// Floor of the training losses' logarithms.
    loss_floor: f64,
    /// Whether the step is logged: reading the loss terms back waits for the device.
    log: bool,
}

/// One worker's part of a step: gradients of its share of the batch loss, and what the EMA
/// codebooks and the metrics need.
struct ShardResult {
    grads: GradientsParams,
    /// The critic's gradients, in an adversarial run.
    critic_grads: Option<GradientsParams>,
    share: f32,
    figures: Option<LossFigures>,
    codes: Vec<Vec<i64>>,
    residuals: Vec<Vec<f32>>,
}

/// Forward and backward pass of the model over `crops` of the batch's crops (`samples`),
/// the loss scaled by their share of the batch so that shard gradients add up to the
/// batch's. In an adversarial run the critic first scores originals and (detached) decoded
/// audio for its own gradients, then scores the decoded audio again for the model's.
fn train_shard<B: AutodiffBackend>(
    (model, critic): (&Model<B>, Option<&Critic<B>>),
    loss: &SpectralLoss<B>,
    samples: &[f32],
    crops: usize,
    shape: Shape,
    device: &B::Device,
) -> ShardResult {
    let audio = Tensor::<B, 3>::from_data(TensorData::new(samples.to_vec(), [crops, shape.crop, 1]), device);
    let target = audio.clone().reshape([crops, shape.crop]);
    let targets = (shape.harmonics > 0).then(|| {
        let frames = shape.crop / shape.hop;
        harmonic_targets(samples, [crops, frames, shape.harmonics], (shape.hop, shape.sample_rate), device)
    });
    let track = targets.as_ref().map(|t| &t.track);
    let mut pass =
        forward(model, None, audio, shape.stages, (shape.weights.consistency > 0.0, track, Some(shape.loss_floor)));
    pass.harmonic_losses = pass.harmonic.as_ref().zip(targets.as_ref()).map(|(p, t)| harmonic_losses(p, t));
    let (terms, predicted_spectra, target_spectra) = loss.losses_and_spectra(pass.reconstruction.clone(), target);
    let mut total = total_loss(&terms, &pass, COMMITMENT_WEIGHT, shape.weights);
    let share = crops as f32 / shape.crops as f32;
    let mut critic_grads = None;
    let mut adversarial_figures = None;
    if let Some(critic) = critic {
        let originals = critic.judge(&target_spectra, crops);
        let detached: Vec<_> = predicted_spectra.iter().map(|s| s.clone().detach()).collect();
        let decoded = critic.judge(&detached, crops);
        let critic_total = critic_loss(&originals, &decoded);
        let critic_figure = shape.log.then(|| scalar(critic_total.clone()));
        let mut gradients = critic_total.mul_scalar(share).backward();
        critic_grads = Some(GradientsParams::from_module(&mut gradients, critic));
        let (adversarial, matching) = generator_losses(&critic.judge(&predicted_spectra, crops), &originals.detach());
        adversarial_figures = critic_figure.map(|critic| AdversarialFigures {
            adversarial: scalar(adversarial.clone()),
            feature_matching: scalar(matching.clone()),
            critic,
        });
        total = total + (adversarial + matching).mul_scalar(shape.weights.adversarial);
    }
    let figures =
        shape.log.then(|| LossFigures { adversarial: adversarial_figures, ..LossFigures::of(&terms, &pass, &total) });
    let mut gradients = total.mul_scalar(share).backward();
    let grads = GradientsParams::from_module(&mut gradients, model);
    ShardResult { grads, critic_grads, share, figures, codes: pass.codes, residuals: pass.residuals }
}

/// Trains on a batch split over `workers`, one one-thread pool each, in parallel; with no
/// workers, the whole batch on this thread. Each worker differentiates its own copy of the
/// model: shared parameters would join the workers' autodiff graphs into one, whose
/// backward passes run one at a time. The copies keep the parameter ids, so their gradients
/// add up onto the model. They copy the values too: copies made with `from_inner`, which
/// share the buffers, got no gradients at all when differentiated on another thread
/// (measured with burn 0.21; the test below would catch it).
fn run_shards<B: AutodiffBackend>(
    (model, critic): (&Model<B>, Option<&Critic<B>>),
    workers: &[rayon::ThreadPool],
    loss: &SpectralLoss<B>,
    samples: &[f32],
    shape: Shape,
    device: &B::Device,
) -> Vec<ShardResult> {
    if workers.len() <= 1 {
        return vec![train_shard((model, critic), loss, samples, shape.crops, shape, device)];
    }
    let copies: Vec<(Model<B>, Option<Critic<B>>)> = (0..workers.len())
        .map(|_| {
            let critic = critic.map(|critic| critic.clone().map(&mut FreshLeaves { device }));
            (model.clone().map(&mut FreshLeaves { device }), critic)
        })
        .collect();
    let per_crop = samples.len() / shape.crops;
    let mut pieces = Vec::with_capacity(workers.len());
    let mut at = 0;
    for worker in 0..workers.len() {
        let crops = (shape.crops * (worker + 1)) / workers.len() - (shape.crops * worker) / workers.len();
        pieces.push((at, crops));
        at += crops;
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter()
            .zip(pieces)
            .zip(&copies)
            .filter(|((_, (_, crops)), _)| *crops > 0)
            .map(|((pool, (first, crops)), copy)| {
                scope.spawn(move || {
                    pool.install(|| {
                        let samples = &samples[first * per_crop..(first + crops) * per_crop];
                        train_shard((&copy.0, copy.1.as_ref()), loss, samples, crops, shape, device)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// Runs (or resumes) training until `options.steps` or until `stop` is set; returns the last
/// step done. Checkpoints go to `out/checkpoint`, inference weights to `out/model.safetensors`.
pub fn train<B: AutodiffBackend>(
    options: &TrainOptions,
    device: B::Device,
    stop: &AtomicBool,
    report: &mut dyn FnMut(Event<'_>),
) -> Result<u64> {
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(format!("cannot create {}", out.display()), e))?;
    let previous = checkpoint::latest(out);
    if previous.is_some() && !options.resume {
        return Err(Error::InvalidArgument(format!(
            "{} already holds a training run; pass --resume to continue it or choose another --out",
            out.display()
        )));
    }
    let reshapes = options.grow_decoder + options.grow_encoder + options.add_harmonics > 0
        || options.accumulate_phase
        || options.add_voicing_gate
        || options.rebuild_phase;
    if reshapes && (previous.is_some() || options.init_from.is_none()) {
        return Err(Error::InvalidArgument(
            "--grow-decoder, --grow-encoder, --accumulate-phase, --rebuild-phase, --add-harmonics and \
             --add-voicing-gate change the weights of --init-from for a new run; a run's own design is fixed by \
             its config"
                .into(),
        ));
    }
    let start_weights = match (&previous, &options.init_from) {
        (None, Some(path)) => Some(weights::Weights::from_file(path)?),
        _ => None,
    };
    let state = match (&previous, &start_weights) {
        (Some(dir), _) => checkpoint::load_state(dir)?,
        (None, Some(w)) => {
            let mut config = w.config().clone();
            config.decoder.blocks += options.grow_decoder;
            if options.accumulate_phase {
                if config.accumulated_phase {
                    return Err(Error::InvalidArgument(
                        "--accumulate-phase: these weights already accumulate phase".into(),
                    ));
                }
                if config.transposed_decoder {
                    return Err(Error::InvalidArgument(
                        "--accumulate-phase needs the inverse-STFT decoder; these weights use the transposed one"
                            .into(),
                    ));
                }
                config.accumulated_phase = true;
            }
            if options.rebuild_phase {
                if config.rebuilt_phase {
                    return Err(Error::InvalidArgument("--rebuild-phase: these weights already rebuild phase".into()));
                }
                config.rebuilt_phase = true;
            }
            if options.add_harmonics > 0 {
                if config.harmonics > 0 {
                    return Err(Error::InvalidArgument(
                        "--add-harmonics: these weights already have a harmonic source".into(),
                    ));
                }
                config.harmonics = options.add_harmonics;
            }
            if options.add_voicing_gate {
                if config.voicing_gate {
                    return Err(Error::InvalidArgument("--add-voicing-gate: these weights already have one".into()));
                }
                if config.harmonics == 0 {
                    return Err(Error::InvalidArgument(
                        "--add-voicing-gate needs a harmonic source: add --add-harmonics K".into(),
                    ));
                }
                config.voicing_gate = true;
            }
            if options.grow_encoder > 0 {
                let Some(stack) = config.spectral_encoder.as_mut() else {
                    return Err(Error::InvalidArgument(
                        "--grow-encoder needs a spectral encoder; these weights have the waveform encoder".into(),
                    ));
                };
                stack.blocks += options.grow_encoder;
            }
            TrainState { step: 0, seed: options.seed, config, seconds: 0.0 }
        }
        (None, None) => TrainState { step: 0, seed: options.seed, config: options.config.clone(), seconds: 0.0 },
    };
    let config = state.config.clone();
    config.validate().map_err(Error::InvalidArgument)?;
    if let Some(stages) = options.focus_stages
        && !(1..=config.max_stages).contains(&stages)
    {
        return Err(Error::InvalidArgument(format!(
            "--focus-stages must be between 1 and the model's {} stages, got {stages}",
            config.max_stages
        )));
    }
    let comparison_design = config.codebook_dim > 0 || config.transposed_decoder;
    if options.adversarial_weight > 0.0 && comparison_design {
        return Err(Error::InvalidArgument(
            "adversarial training is for the shipped design only; drop --adversarial for a comparison run".into(),
        ));
    }
    if options.consistency_weight > 0.0 && comparison_design {
        return Err(Error::InvalidArgument(
            "the consistency loss is for the shipped design only; drop --consistency-loss for a comparison run".into(),
        ));
    }
    if options.workers > 1 && comparison_design {
        report(Event::OneWorker);
    }

    let (train_corpus, validation_corpus) =
        Corpus::load_or_build(&options.data, &out.join("cache"), config.sample_rate)?;
    if train_corpus.files() == 0 || validation_corpus.files() == 0 {
        return Err(Error::InvalidArgument("need audio for both training and validation; add more files".into()));
    }
    report(Event::Corpus {
        train_hours: train_corpus.hours(config.sample_rate),
        train_files: train_corpus.files(),
        validation_hours: validation_corpus.hours(config.sample_rate),
        validation_files: validation_corpus.files(),
    });

    let loss = SpectralLoss::<B>::new(config.sample_rate, options.loss_floor, &device);
    let loss = if options.phase_weight > 0.0 { loss.with_phase() } else { loss };
    let loss = if options.intelligibility_weight > 0.0 { loss.with_intelligibility() } else { loss };
    let optional_weights = OptionalWeights {
        phase: options.phase_weight,
        intelligibility: options.intelligibility_weight,
        consistency: options.consistency_weight,
        adversarial: options.adversarial_weight,
    };
    let valid_loss = SpectralLoss::<B::InnerBackend>::new(config.sample_rate, DEFAULT_FLOOR, &device);
    let multiple = lcm(config.hop(), loss.length_multiple());
    let crop = options.crop.div_ceil(multiple).max(1) * multiple;
    let clip_len = ((VALIDATION_SECONDS * config.sample_rate as f32) as usize).div_ceil(multiple) * multiple;
    let validation_clips = validation_corpus.batch(0x5EED, 0, VALIDATION_CLIPS, clip_len);

    B::seed(&device, state.seed);
    let mut model = Model::<B>::new(&config, &device);
    let mut optimizer: OptimizerAdaptor<_, Model<B>, B> =
        AdamWConfig::new().with_weight_decay(1e-4).with_grad_clipping(Some(GradientClippingConfig::Norm(1.0))).init();
    let mut ema = EmaCodebooks::new(config.max_stages, config.codebook_size, config.latent_dim);
    if let Some(dir) = &previous {
        (model, optimizer, ema) = checkpoint::load(dir, model, optimizer, &device)?;
    } else if let Some(w) = &start_weights {
        model = w.build::<B>(&device)?;
        model.decoder = model.decoder.with_blocks_added(options.grow_decoder, &config.decoder, &device);
        if options.accumulate_phase {
            model.decoder = model.decoder.with_phase_accumulated();
        }
        if options.rebuild_phase {
            model.decoder = model.decoder.with_phase_rebuilt();
        }
        if options.add_harmonics > 0 {
            model.decoder = model.decoder.with_harmonics_added(options.add_harmonics, &config, &device);
        }
        if options.add_voicing_gate {
            model.decoder = model.decoder.with_voicing_gate_added(&config, &device);
        }
        if let Some(stack) = &config.spectral_encoder {
            model.encoder = model.encoder.with_blocks_added(options.grow_encoder, stack, &device);
        }
        let codewords =
            model.rvq.codebooks.val().into_data().convert::<f32>().into_vec::<f32>().expect("float codebooks");
        ema = EmaCodebooks::from_codewords(config.max_stages, config.codebook_size, config.latent_dim, &codewords);
    }

    // The other codebook design, when the config asks for it: its own module and optimizer,
    // checkpointed beside the model.
    let mut factorized = (config.codebook_dim > 0).then(|| {
        let quantizer = FactorizedRvq::<B>::new(
            config.max_stages,
            config.codebook_size,
            config.latent_dim,
            config.codebook_dim,
            &device,
        );
        let optimizer: OptimizerAdaptor<AdamW, FactorizedRvq<B>, B> = AdamWConfig::new()
            .with_weight_decay(1e-4)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
            .init();
        (quantizer, optimizer, Usage::new(config.max_stages, config.codebook_size))
    });
    if let Some(dir) = &previous
        && let Some((quantizer, optimizer, usage)) = factorized.take()
    {
        let (quantizer, optimizer) = checkpoint::load_part(dir, FACTORIZED, quantizer, optimizer, &device)?;
        factorized = Some((quantizer, optimizer, usage));
    }

    // The other decoder design, when the config asks for it, likewise.
    let mut transposed = config.transposed_decoder.then(|| {
        let decoder = TransposedDecoder::<B>::new(&config, &device);
        let optimizer: OptimizerAdaptor<AdamW, TransposedDecoder<B>, B> = AdamWConfig::new()
            .with_weight_decay(1e-4)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
            .init();
        (decoder, optimizer)
    });
    if let Some(dir) = &previous
        && let Some((decoder, optimizer)) = transposed.take()
    {
        transposed = Some(checkpoint::load_part(dir, TRANSPOSED, decoder, optimizer, &device)?);
    }

    // The critic of an adversarial run: from the checkpoint when it has one, else new (an
    // adversarial phase may start in the middle of a run).
    let mut critic: Option<CriticState<B>> = (options.adversarial_weight > 0.0).then(|| {
        let optimizer: OptimizerAdaptor<AdamW, Critic<B>, B> = AdamWConfig::new()
            .with_beta_1(0.8)
            .with_beta_2(0.99)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
            .init();
        (Critic::new(&loss.resolutions(), &device), optimizer)
    });
    if let Some(dir) = previous.as_ref().filter(|dir| checkpoint::has_part(dir, CRITIC))
        && let Some((module, optimizer)) = critic.take()
    {
        critic = Some(checkpoint::load_part(dir, CRITIC, module, optimizer, &device)?);
    }

    let workers = worker_pools(if comparison_design { 1 } else { options.workers })?;
    let corpus = Arc::new(train_corpus);
    let loader = Loader::start(corpus, state.seed, state.step, options.batch, crop);
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut last_log = Instant::now();
    let mut step = state.step;
    let mut metrics = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("metrics.jsonl"))
        .map_err(|e| Error::io("cannot open metrics.jsonl", e))?;
    let save = |model: &Model<B>,
                optimizer: &OptimizerAdaptor<_, Model<B>, B>,
                ema: &EmaCodebooks,
                (factorized, transposed, critic): TrainedBeside<'_, B>,
                step: u64|
     -> Result<()> {
        let seconds = state.seconds + started.elapsed().as_secs_f64();
        let train_state = TrainState { step, seed: state.seed, config: config.clone(), seconds };
        checkpoint::save(out, model, optimizer, ema, &train_state, |dir| {
            if let Some((quantizer, optimizer, _)) = factorized {
                checkpoint::save_part(dir, FACTORIZED, quantizer, optimizer)?;
            }
            if let Some((decoder, optimizer)) = transposed {
                checkpoint::save_part(dir, TRANSPOSED, decoder, optimizer)?;
            }
            if let Some((module, optimizer)) = critic {
                checkpoint::save_part(dir, CRITIC, module, optimizer)?;
            }
            Ok(())
        })?;
        // Inference weights exist for the shipped designs only.
        if factorized.is_none() && transposed.is_none() { export(out, &model.valid(), &config) } else { Ok(()) }
    };

    while step < options.steps && !stop.load(Ordering::SeqCst) {
        let mut rng = StdRng::seed_from_u64(state.seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let stages = draw_stages(&mut rng, config.max_stages, options.focus_stages);
        let samples = loader.next();
        let lr = learning_rate(options.learning_rate, step, options.steps);
        let log = (step + 1) % LOG_EVERY == 0 || step + 1 == options.steps || last_log.elapsed() >= LOG_AT_LEAST_EVERY;
        if factorized.is_none() {
            initialise_codebooks(&mut model, &mut ema, &samples, [options.batch, crop], (&config, &device), &mut rng);
        }
        let figures = if factorized.is_none() && transposed.is_none() {
            let shape = Shape {
                crops: options.batch,
                crop,
                hop: config.hop(),
                sample_rate: config.sample_rate,
                harmonics: config.harmonics,
                stages,
                weights: optional_weights,
                loss_floor: options.loss_floor,
                log,
            };
            let shards = run_shards(
                (&model, critic.as_ref().map(|(module, _)| module)),
                &workers,
                &loss,
                &samples,
                shape,
                &device,
            );
            let mut accumulator = GradientsAccumulator::<Model<B>>::new();
            let mut critic_accumulator = GradientsAccumulator::<Critic<B>>::new();
            let mut figures = log.then(LossFigures::default);
            let (mut codes, mut residuals) = (vec![Vec::new(); stages], vec![Vec::new(); stages]);
            for shard in shards {
                accumulator.accumulate(&model, shard.grads);
                if let (Some((module, _)), Some(grads)) = (&critic, shard.critic_grads) {
                    critic_accumulator.accumulate(module, grads);
                }
                if let (Some(sum), Some(shard_figures)) = (&mut figures, &shard.figures) {
                    sum.add(shard_figures, shard.share);
                }
                for stage in 0..stages {
                    codes[stage].extend_from_slice(&shard.codes[stage]);
                    residuals[stage].extend_from_slice(&shard.residuals[stage]);
                }
            }
            model = optimizer.step(lr, model, accumulator.grads());
            if let Some((module, mut critic_optimizer)) = critic.take() {
                critic = Some((critic_optimizer.step(lr, module, critic_accumulator.grads()), critic_optimizer));
            }
            for (stage, (codes, residuals)) in codes.iter().zip(&residuals).enumerate() {
                ema.update(stage, codes, residuals, step, state.seed);
            }
            apply_codebooks(&mut model, &ema, &config, &device);
            figures
        } else {
            // The comparison designs train on one worker.
            let audio = Tensor::<B, 3>::from_data(TensorData::new(samples, [options.batch, crop, 1]), &device);
            let target = audio.clone().reshape([options.batch, crop]);
            let (pass, quantizer_weight) = match &factorized {
                Some((quantizer, _, _)) => {
                    (forward_factorized(&model, transposed_decoder(&transposed), quantizer, audio, stages), 1.0)
                }
                None => (
                    forward(&model, transposed_decoder(&transposed), audio, stages, (false, None, None)),
                    COMMITMENT_WEIGHT,
                ),
            };
            let terms = loss.losses(pass.reconstruction.clone(), target);
            let total = total_loss(&terms, &pass, quantizer_weight, optional_weights);
            let figures = log.then(|| LossFigures::of(&terms, &pass, &total));
            let mut gradients = total.backward();
            let grads = GradientsParams::from_module(&mut gradients, &model);
            model = optimizer.step(lr, model, grads);
            if let Some((decoder, mut decoder_optimizer)) = transposed.take() {
                let grads = GradientsParams::from_module(&mut gradients, &decoder);
                transposed = Some((decoder_optimizer.step(lr, decoder, grads), decoder_optimizer));
            }
            match factorized.take() {
                Some((quantizer, mut quantizer_optimizer, mut usage)) => {
                    let grads = GradientsParams::from_module(&mut gradients, &quantizer);
                    let quantizer = quantizer_optimizer.step(lr, quantizer, grads);
                    for (stage, codes) in pass.codes.iter().enumerate() {
                        usage.record(stage, codes, step + 1);
                    }
                    let (quantizer, _) = quantizer.restart_dead(&mut usage, &pass.residuals, step + 1, &mut rng);
                    factorized = Some((quantizer, quantizer_optimizer, usage));
                }
                None => {
                    for (stage, (codes, residuals)) in pass.codes.iter().zip(&pass.residuals).enumerate() {
                        ema.update(stage, codes, residuals, step, state.seed);
                    }
                    apply_codebooks(&mut model, &ema, &config, &device);
                }
            }
            figures
        };
        step += 1;

        if let Some(figures) = figures {
            last_log = Instant::now();
            let trained_seconds =
                (step - state.step) as f64 * (options.batch * crop) as f64 / f64::from(config.sample_rate);
            let log = StepLog {
                step,
                loss: figures.total,
                spectral_convergence: figures.spectral_convergence,
                log_magnitude: figures.log_magnitude,
                mel: figures.mel,
                waveform: figures.waveform,
                phase: figures.phase,
                intelligibility: figures.intelligibility,
                consistency: figures.consistency,
                magnitude: figures.magnitude,
                pitch: figures.pitch,
                amplitude: figures.amplitude,
                voicing: figures.voicing,
                adversarial: figures.adversarial.map(|a| a.adversarial),
                feature_matching: figures.adversarial.map(|a| a.feature_matching),
                critic: figures.adversarial.map(|a| a.critic),
                commitment: figures.commitment,
                stages,
                learning_rate: lr,
                audio_seconds_per_second: trained_seconds / started.elapsed().as_secs_f64(),
                codebooks: match &factorized {
                    Some((_, _, usage)) => usage.stats(step),
                    None => ema.stats(step),
                },
            };
            writeln!(metrics, "{}", serde_json::to_string(&log).expect("serializes"))
                .map_err(|e| Error::io("metrics.jsonl", e))?;
            report(Event::Step(&log));
        }
        if step % VALIDATION_EVERY == 0 {
            let quantizer = factorized.as_ref().map(|(quantizer, _, _)| quantizer.valid());
            let decoder = transposed.as_ref().map(|(decoder, _)| decoder.valid());
            let figures = validate(
                &model.valid(),
                (decoder.as_ref(), quantizer.as_ref()),
                &validation_clips,
                clip_len,
                &[config.max_stages / 2, config.max_stages],
                &valid_loss,
                &device,
            );
            let log = ValidationLog { step, mel_l1: figures };
            writeln!(metrics, "{}", serde_json::json!({ "validation": &log }))
                .map_err(|e| Error::io("metrics.jsonl", e))?;
            report(Event::Validation(&log));
        }
        if last_checkpoint.elapsed().as_secs_f64() >= options.checkpoint_minutes * 60.0 {
            save(&model, &optimizer, &ema, (&factorized, &transposed, &critic), step)?;
            last_checkpoint = Instant::now();
            report(Event::Checkpoint { step });
        }
    }
    if step > state.step {
        save(&model, &optimizer, &ema, (&factorized, &transposed, &critic), step)?;
        report(Event::Checkpoint { step });
    }
    Ok(step)
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
fn worker_pools(count: usize) -> Result<Vec<rayon::ThreadPool>> {
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

/// Writes the inference weights of the run to `out/model.safetensors` (atomically).
fn export<B: Backend>(out: &Path, model: &Model<B>, config: &ModelConfig) -> Result<()> {
    let temp = out.join("model.safetensors.partial");
    weights::save(model, config, &temp)?;
    std::fs::rename(&temp, out.join("model.safetensors")).map_err(|e| Error::io("cannot export model.safetensors", e))
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut x: usize, mut y: usize| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{Module, ModuleVisitor};

    #[test]
    fn a_focus_trains_its_stage_count_on_a_quarter_more_of_the_steps() {
        let share = |focus: Option<usize>, stages: usize| {
            let mut rng = StdRng::seed_from_u64(1);
            let draws = 40_000;
            (0..draws).filter(|_| draw_stages(&mut rng, 12, focus) == stages).count() as f64 / draws as f64
        };
        let (full, five) = (share(None, 12), share(None, 5));
        assert!((full - (0.5 + 0.5 / 12.0)).abs() < 0.01, "full depth on {full} of steps");
        assert!((five - 0.5 / 12.0).abs() < 0.005, "5 stages on {five} of steps");
        let (full, five, six) = (share(Some(5), 12), share(Some(5), 5), share(Some(5), 6));
        assert!((full - (0.5 + 0.25 / 12.0)).abs() < 0.01, "full depth on {full} of steps with a focus");
        assert!((five - (0.25 + 0.25 / 12.0)).abs() < 0.01, "the focus on {five} of steps");
        assert!((six - 0.25 / 12.0).abs() < 0.005, "6 stages on {six} of steps with a focus on 5");
    }

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
            let a = self.a.get::<Flex, D>(param.id);
            let b = self.b.get::<Flex, D>(param.id);
            match (a, b) {
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
        shards_add_up(false);
    }

    #[test]
    fn gradients_of_shards_add_up_to_the_whole_batchs_with_a_critic() {
        shards_add_up(true);
    }

    /// Whole-batch gradients (the model's and, with `adversarial`, the critic's) against
    /// the sum over two workers' shards.
    fn shards_add_up(adversarial: bool) {
        let config: ModelConfig = serde_json::from_str(
            r#"{"sample_rate":16000,"encoder_channels":4,"strides":[2,4,5,8],"residual_dilations":[1],
            "latent_dim":16,"codebook_size":32,"max_stages":2,"decoder":{"dim":32,"hidden":64,"blocks":1,"kernel":3},
            "spectral_encoder":{"dim":32,"hidden":64,"blocks":1,"kernel":3}}"#,
        )
        .unwrap();
        let device = Default::default();
        B::seed(&device, 7);
        let mut model = Model::<B>::new(&config, &device);
        let loss = SpectralLoss::<B>::new(config.sample_rate, DEFAULT_FLOOR, &device);
        let crop = lcm(config.hop(), loss.length_multiple()) * 2;
        let crops = 5;
        let samples: Vec<f32> = (0..crops * crop).map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * 0.6).collect();
        let mut ema = EmaCodebooks::new(config.max_stages, config.codebook_size, config.latent_dim);
        let mut rng = StdRng::seed_from_u64(3);
        initialise_codebooks(&mut model, &mut ema, &samples, [crops, crop], (&config, &device), &mut rng);
        let weights = OptionalWeights { phase: 0.0, intelligibility: 0.0, consistency: 0.5, adversarial: 0.5 };
        let shape = Shape {
            crops,
            crop,
            hop: config.hop(),
            sample_rate: config.sample_rate,
            harmonics: 0,
            stages: 2,
            weights,
            loss_floor: DEFAULT_FLOOR,
            log: false,
        };
        let critic = adversarial.then(|| Critic::<B>::new(&loss.resolutions(), &device));

        let sum_of = |shards: Vec<ShardResult>| {
            let mut accumulator = GradientsAccumulator::<Model<B>>::new();
            let mut critic_accumulator = GradientsAccumulator::<Critic<B>>::new();
            let mut codes = Vec::new();
            for shard in shards {
                accumulator.accumulate(&model, shard.grads);
                if let (Some(critic), Some(grads)) = (&critic, shard.critic_grads) {
                    critic_accumulator.accumulate(critic, grads);
                }
                codes.extend(shard.codes[1].iter().copied());
            }
            (accumulator.grads(), critic_accumulator.grads(), codes)
        };
        let run = |pools: &[rayon::ThreadPool]| {
            sum_of(run_shards((&model, critic.as_ref()), pools, &loss, &samples, shape, &device))
        };
        let (whole, whole_critic, whole_codes) = run(&[]);
        let (sharded, sharded_critic, sharded_codes) = run(&worker_pools(2).unwrap());

        assert_eq!(whole_codes, sharded_codes, "the shards must choose the whole batch's codes, in order");
        let mut compare = CompareGradients { a: &whole, b: &sharded, compared: 0, worst: 0.0, missing: 0 };
        model.visit(&mut compare);
        assert_eq!(compare.missing, 0, "a parameter got gradients from one path only");
        assert!(compare.compared > 10, "only {} parameters had gradients", compare.compared);
        assert!(compare.worst < 1e-4, "sharded gradients differ from the whole batch's by {}", compare.worst);
        if let Some(critic) = &critic {
            let mut compare =
                CompareGradients { a: &whole_critic, b: &sharded_critic, compared: 0, worst: 0.0, missing: 0 };
            critic.visit(&mut compare);
            assert_eq!(compare.missing, 0, "a critic parameter got gradients from one path only");
            assert_eq!(compare.compared, 24, "every critic weight and bias (3 resolutions × 4 convs) needs gradients");
            assert!(compare.worst < 1e-4, "sharded critic gradients differ by {}", compare.worst);
        }
    }
}
