//! The training loop: draws a batch, takes a step, logs, validates and checkpoints until
//! the run is done or told to stop.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokenwave_core::model::{Model, ModelConfig, weights};
use tokenwave_core::{Error, Result};

use crate::adversarial::{Discriminators, JUDGED_SAMPLES, Spectrograms, ramp};
use crate::checkpoint::{self, TrainState};
use crate::data::{Batch, Corpus, Loader};
use crate::loss::SpectralLoss;
use crate::options::{Event, StepLog, TrainOptions, ValidationLog};
use crate::schedule::{draw_stages, learning_rate};
use crate::setup::{self, Start};
use crate::step::{LossFigures, Shape, harmonic_fit_weight, run_shards, worker_pools};
use crate::validation::Validation;

/// Steps between validation passes.
const VALIDATION_EVERY: u64 = 250;
/// Steps between metric lines.
const LOG_EVERY: u64 = 10;
/// Longest wait between metric lines, so that slow steps (a GPU still compiling its
/// kernels) still show progress.
const LOG_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

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
    let start = setup::start::<B>(options, &device)?;
    let config = start.state.config.clone();
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
    let critic_multiple = if start.critic.is_some() { Spectrograms::<B>::length_multiple() } else { 1 };
    let multiple = lcm(lcm(config.hop(), loss.length_multiple()), critic_multiple);
    let crop = options.crop.div_ceil(multiple).max(1) * multiple;
    let validation = Validation::<B::InnerBackend>::new(&validation_corpus, &config, multiple, &device);
    let pitch = config.harmonic_source.is_some().then_some((config.sample_rate, config.hop()));
    let loader =
        Loader::start(Arc::new(train_corpus), start.state.seed, start.state.step, [options.batch, crop], pitch);
    let mut trainer = Trainer { workers: worker_pools(options.workers)?, loss, crop, device, start };
    let mut metrics = Metrics::open(out)?;
    let started = Instant::now();
    let (mut last_checkpoint, mut last_log) = (Instant::now(), Instant::now());
    let first = trainer.start.state.step;
    let mut step = first;
    while step < options.steps && !stop.load(Ordering::SeqCst) {
        let log = (step + 1) % LOG_EVERY == 0 || step + 1 == options.steps || last_log.elapsed() >= LOG_AT_LEAST_EVERY;
        let taken;
        (trainer, taken) = trainer.step(&loader.next(), step, options, log);
        step += 1;
        if let Some((figures, stages, lr)) = taken {
            last_log = Instant::now();
            let seconds = (step - first) as f64 * (options.batch * crop) as f64 / f64::from(config.sample_rate);
            let line = step_log(step, figures, stages, lr, seconds / started.elapsed().as_secs_f64(), &trainer);
            metrics.write(&line)?;
            report(Event::Step(&line));
        }
        if step % VALIDATION_EVERY == 0 {
            let model = trainer.start.model.valid();
            let figures = validation.run(&model, &[config.max_stages / 2, config.max_stages], &trainer.device);
            let line = ValidationLog { step, mel_l1: figures };
            metrics.write(&serde_json::json!({ "validation": &line }))?;
            report(Event::Validation(&line));
        }
        if last_checkpoint.elapsed().as_secs_f64() >= options.checkpoint_minutes * 60.0 {
            trainer.save(out, step, started.elapsed())?;
            last_checkpoint = Instant::now();
            report(Event::Checkpoint { step });
        }
    }
    if step > first {
        trainer.save(out, step, started.elapsed())?;
        report(Event::Checkpoint { step });
    }
    Ok(step)
}

/// The model, its optimizer and codebooks, and what every step needs.
struct Trainer<B: AutodiffBackend> {
    start: Start<B>,
    workers: Vec<rayon::ThreadPool>,
    loss: SpectralLoss<B>,
    crop: usize,
    device: B::Device,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// One optimizer step on `batch`; with `log`, the loss figures,
    /// stage count and learning rate of the step. Takes the trainer by value so that the
    /// optimizer gets the one reference to the model and can update its tensors in place.
    fn step(
        mut self,
        batch: &Batch,
        step: u64,
        options: &TrainOptions,
        log: bool,
    ) -> (Self, Option<(LossFigures, usize, f64)>) {
        let Start { state, model, ema, critic, .. } = &mut self.start;
        let config = &state.config;
        let mut rng = StdRng::seed_from_u64(state.seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let stages = draw_stages(&mut rng, config.max_stages, options.focus_stages);
        let lr = learning_rate(options.learning_rate, step, options.steps);
        ema.initialise_from(model, &batch.samples, [options.batch, self.crop], config, &self.device, &mut rng);
        let shape =
            Shape { crops: options.batch, crop: self.crop, stages, log, harmonic_fit: harmonic_fit_weight(step) };
        let judge = critic.as_ref().map(|critic| {
            let judged = JUDGED_SAMPLES.min(self.crop);
            critic.judge(ramp(step), (rng.random_range(0..=self.crop - judged), judged))
        });
        let shards = run_shards(model, judge, &self.workers, &self.loss, batch, shape, &self.device);
        let mut accumulator = GradientsAccumulator::<Model<B>>::new();
        let mut critic_accumulator = GradientsAccumulator::<Discriminators<B>>::new();
        let mut figures = log.then(LossFigures::default);
        let (mut codes, mut residuals) = (vec![Vec::new(); stages], vec![Vec::new(); stages]);
        for shard in shards {
            accumulator.accumulate(model, shard.grads);
            if let (Some(critic), Some(grads)) = (critic.as_ref(), shard.critic_grads) {
                critic_accumulator.accumulate(&critic.discriminators, grads);
            }
            if let (Some(sum), Some(shard_figures)) = (&mut figures, &shard.figures) {
                sum.add(shard_figures, shard.share);
            }
            for stage in 0..stages {
                codes[stage].extend_from_slice(&shard.codes[stage]);
                residuals[stage].extend_from_slice(&shard.residuals[stage]);
            }
        }
        let grads = accumulator.grads();
        for (stage, (codes, residuals)) in codes.iter().zip(&residuals).enumerate() {
            ema.update(stage, codes, residuals, step, state.seed);
        }
        self.start.model = self.start.optimizer.step(lr, self.start.model, grads);
        self.start.critic = self.start.critic.take().map(|critic| critic.step(lr, critic_accumulator.grads()));
        self.start.ema.apply_to(&mut self.start.model, &self.device);
        (self, figures.map(|f| (f, stages, lr)))
    }

    /// A checkpoint at `step`, `elapsed` after this (re)start, and the inference weights.
    fn save(&self, out: &Path, step: u64, elapsed: Duration) -> Result<()> {
        let Start { state, model, optimizer, ema, critic } = &self.start;
        let seconds = state.seconds + elapsed.as_secs_f64();
        let saved =
            TrainState { step, seed: state.seed, config: state.config.clone(), seconds, adversarial: critic.is_some() };
        checkpoint::save(out, model, optimizer, ema, critic.as_ref(), &saved)?;
        export(out, &model.valid(), &state.config)
    }
}

fn step_log<B: AutodiffBackend>(
    step: u64,
    figures: LossFigures,
    stages: usize,
    learning_rate: f64,
    audio_seconds_per_second: f64,
    trainer: &Trainer<B>,
) -> StepLog {
    StepLog {
        step,
        loss: figures.total,
        spectral_convergence: figures.spectral_convergence,
        log_magnitude: figures.log_magnitude,
        mel: figures.mel,
        waveform: figures.waveform,
        commitment: figures.commitment,
        harmonic_fit: figures.harmonic_fit,
        adversarial: figures.adversarial,
        stages,
        learning_rate,
        audio_seconds_per_second,
        codebooks: trainer.start.ema.stats(step),
    }
}

/// `metrics.jsonl` of the run, appended to across restarts.
struct Metrics {
    file: File,
}

impl Metrics {
    fn open(out: &Path) -> Result<Self> {
        let path = out.join("metrics.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open metrics.jsonl", e))?;
        Ok(Self { file })
    }

    fn write(&mut self, line: &impl Serialize) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(line).expect("metrics serialize"))
            .map_err(|e| Error::io("cannot write metrics.jsonl", e))
    }
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
