//! What a run is asked to do, and what it reports back.

use std::path::PathBuf;

use serde::Serialize;
use tokenwave_core::ModelConfig;
use tokenwave_core::model::HarmonicSourceConfig;

use crate::vq::StageStats;

/// What `tokenwave train` was asked to do.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Directories searched recursively for audio.
    pub data: Vec<PathBuf>,
    /// Run directory: cache, checkpoints, metrics, exported weights.
    pub out: PathBuf,
    /// Model sizes for a new run (ignored when resuming or starting from weights).
    pub config: ModelConfig,
    /// Continue from the run's last checkpoint.
    pub resume: bool,
    /// Start a new run from these weights (and their config) instead of a random init.
    pub init_from: Option<PathBuf>,
    /// Blocks added to the decoder of the `init_from` weights, each starting as the identity
    /// (more capacity for a trained model without starting over); 0 for none.
    pub grow_decoder: usize,
    /// Blocks added to the encoder of the `init_from` weights, likewise.
    pub grow_encoder: usize,
    /// A harmonic source given to the decoder of the `init_from` weights, starting quiet.
    pub add_harmonic_source: Option<HarmonicSourceConfig>,
    /// Stop after this step (also the length of the learning-rate schedule).
    pub steps: u64,
    /// Crops per batch.
    pub batch: usize,
    /// Crop length in samples (rounded up to what the model and losses need).
    pub crop: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Added to magnitudes inside the training losses' logarithms (validation keeps
    /// [`crate::DEFAULT_FLOOR`]): a larger floor stops near-silent bins from dominating.
    pub loss_floor: f64,
    /// Seed for a new run.
    pub seed: u64,
    /// A stage count to train on a quarter of the steps besides the usual draw: the rate
    /// that matters most to the run's users. `None`: full depth on half the steps, any
    /// depth on the rest.
    pub focus_stages: Option<usize>,
    /// Minutes between checkpoints.
    pub checkpoint_minutes: f64,
    /// One-thread workers that each train on a share of every batch (CPU only; 1: the
    /// whole batch on the calling thread and its thread pool).
    pub workers: usize,
    /// Train against discriminators besides the spectral losses (a new run; best started
    /// from trained weights, since the critic's terms ramp in over its first steps).
    pub adversarial: bool,
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
    /// Commitment loss.
    pub commitment: f32,
    /// The harmonic source's own fit to voiced speech, while its weight lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harmonic_fit: Option<f32>,
    /// The adversarial terms, in adversarial runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adversarial: Option<AdversarialLog>,
    /// Stages used in this batch (quantizer dropout).
    pub stages: usize,
    /// Learning rate of this step.
    pub learning_rate: f64,
    /// Seconds of audio trained on per wall-clock second, since the (re)start.
    pub audio_seconds_per_second: f64,
    /// Per-stage codebook health.
    pub codebooks: Vec<StageStats>,
}

/// The adversarial terms of a step (unweighted).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AdversarialLog {
    /// The codec's least-squares term: its output judged as real.
    pub generator: f32,
    /// Feature matching, normalised per layer.
    pub feature_matching: f32,
    /// The discriminators' least-squares term.
    pub discriminator: f32,
    /// Weight of the codec's two terms at this step (they ramp in).
    pub weight: f64,
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
    Corpus {
        /// Hours of training audio.
        train_hours: f64,
        /// Files of training audio.
        train_files: usize,
        /// Hours held out for validation.
        validation_hours: f64,
        /// Files held out for validation.
        validation_files: usize,
    },
    /// A step's metrics.
    Step(&'a StepLog),
    /// A validation pass.
    Validation(&'a ValidationLog),
    /// A checkpoint was written.
    Checkpoint {
        /// Steps done.
        step: u64,
    },
}
