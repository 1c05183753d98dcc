//! `tokenwave train`: trains a model on a directory of audio, resumably.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Args;
use tokenwave_core::model::HarmonicSourceConfig;
use tokenwave_train::{Event, TrainOptions, train};

use super::{DeviceKind, Global, INTERRUPTED};

#[derive(Args)]
pub struct TrainArgs {
    /// Directories searched recursively for audio (WAV, FLAC, Ogg Vorbis, MP3).
    #[arg(long, required = true, num_args = 1.., value_name = "DIR")]
    data: Vec<PathBuf>,
    /// Run directory: corpus cache, checkpoints, metrics.jsonl, model.safetensors.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Model config (JSON) for a new run; default: the standard 16 kHz speech model.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Start a new run from trained weights (safetensors) and their config, e.g. the shipped
    /// model when the previous run's checkpoints are gone.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    init_from: Option<PathBuf>,
    /// Add this many blocks to the decoder of the --init-from weights, each starting as the
    /// identity: a trained model gains capacity and keeps what it learned.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "init_from")]
    grow_decoder: usize,
    /// Add this many blocks to the encoder of the --init-from weights, likewise.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "init_from")]
    grow_encoder: usize,
    /// Give the decoder of the --init-from weights a harmonic source driven by the
    /// transmitted pitch, with an amplitude envelope of this many points (e.g. 65); it
    /// starts quiet, so the model first sounds as before.
    #[arg(long, value_name = "BANDS", requires = "init_from")]
    add_harmonic_source: Option<usize>,
    /// Stop after this many steps in total (also the length of the learning-rate schedule).
    #[arg(long, default_value_t = 200_000)]
    steps: u64,
    /// Crops per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Crop length in milliseconds (rounded up to a whole number of frames).
    #[arg(long, default_value_t = 800)]
    crop_ms: u32,
    /// Peak learning rate (AdamW; linear warmup, cosine decay to a tenth).
    #[arg(long, default_value_t = 8e-4)]
    lr: f64,
    /// Added to spectral magnitudes inside the training losses' logarithms; larger values
    /// stop near-silent bins from dominating (validation figures always use 1e-5).
    #[arg(long, default_value_t = 1e-5, value_name = "X", allow_negative_numbers = true)]
    loss_floor: f64,
    /// Seed of a new run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train this many quantizer stages on a quarter of the steps (the rate to be best at,
    /// e.g. 5 for 2.5 kbps); by default half the steps use every stage and half any count.
    #[arg(long, value_name = "N")]
    focus_stages: Option<usize>,
    /// Minutes between checkpoints.
    #[arg(long, default_value_t = 5.0)]
    checkpoint_minutes: f64,
    /// Split every batch over this many one-thread workers, whose gradients are summed
    /// (CPU only) [default: one per --threads, else per core, at most --batch; 1 on cuda].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Train against discriminators (period and spectrogram) besides the spectral losses,
    /// with feature matching; their terms ramp in over the first 1000 steps. Start such a
    /// run from trained weights with --init-from.
    #[arg(long)]
    adversarial: bool,
}

pub fn run(args: &TrainArgs, global: &Global) -> Result<()> {
    let config = super::read_config(args.config.as_deref())?;
    if args.batch == 0 || args.crop_ms == 0 {
        bail!("--batch and --crop-ms must be positive");
    }
    let workers = match (args.workers, global.device) {
        (Some(workers), _) if workers == 0 || workers > args.batch => {
            bail!("--workers must be between 1 and --batch ({}), got {workers}", args.batch)
        }
        (Some(workers), DeviceKind::Cuda) if workers > 1 => {
            bail!("--workers splits batches over CPU threads; on --device cuda leave it at 1")
        }
        (Some(workers), _) => workers,
        (None, DeviceKind::Cuda) => 1,
        (None, DeviceKind::Cpu) => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            global.threads.unwrap_or(cores).min(args.batch)
        }
    };
    if !(args.loss_floor > 0.0 && args.loss_floor < 1.0) {
        bail!("--loss-floor must be between 0 and 1 (exclusive), got {}", args.loss_floor);
    }
    let options = TrainOptions {
        data: args.data.clone(),
        out: args.out.clone(),
        crop: (config.sample_rate as u64 * u64::from(args.crop_ms) / 1000) as usize,
        config,
        resume: args.resume,
        init_from: args.init_from.clone(),
        grow_decoder: args.grow_decoder,
        grow_encoder: args.grow_encoder,
        add_harmonic_source: args.add_harmonic_source.map(|bands| HarmonicSourceConfig { bands }),
        steps: args.steps,
        batch: args.batch,
        learning_rate: args.lr,
        loss_floor: args.loss_floor,
        seed: args.seed,
        focus_stages: args.focus_stages,
        checkpoint_minutes: args.checkpoint_minutes,
        workers,
        adversarial: args.adversarial,
    };
    match global.device {
        DeviceKind::Cpu => run_on::<Autodiff<tokenwave_core::CpuBackend>>(&options, global, Default::default()),
        DeviceKind::Cuda => run_cuda(&options, global),
    }
}

#[cfg(feature = "cuda")]
fn run_cuda(options: &TrainOptions, global: &Global) -> Result<()> {
    run_on::<Autodiff<tokenwave_core::CudaBackend>>(options, global, super::cuda_device()?)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(_: &TrainOptions, _: &Global) -> Result<()> {
    bail!("this tokenwave was built without CUDA support; rebuild with `cargo build --release --features cuda`")
}

fn run_on<B: burn::tensor::backend::AutodiffBackend>(
    options: &TrainOptions,
    global: &Global,
    device: B::Device,
) -> Result<()>
where
    B::InnerBackend: Backend,
{
    let quiet = global.quiet;
    let steps = options.steps;
    let mut report = |event: Event<'_>| match event {
        Event::Corpus { train_hours, train_files, validation_hours, validation_files } if !quiet => eprintln!(
            "corpus: {train_hours:.2} h in {train_files} files for training, {validation_hours:.2} h in {validation_files} files held out"
        ),
        Event::Step(log) => {
            let worst = log.codebooks.iter().take(log.stages).map(|s| s.utilization).fold(1.0f32, f32::min);
            if !quiet {
                eprintln!(
                    "step {}/{steps} | {:.2} audio-s/s | loss {:.3} (sc {:.3} mag {:.3} mel {:.3} wav {:.4} commit {:.4}) | stages {} | worst codebook use {:.0}% | lr {:.2e}",
                    log.step,
                    log.audio_seconds_per_second,
                    log.loss,
                    log.spectral_convergence,
                    log.log_magnitude,
                    log.mel,
                    log.waveform,
                    log.commitment,
                    log.stages,
                    worst * 100.0,
                    log.learning_rate
                );
                if let Some(fit) = log.harmonic_fit {
                    eprintln!("  harmonic source's own fit {fit:.3}");
                }
                if let Some(game) = &log.adversarial {
                    eprintln!(
                        "  adversarial (weight {:.2}): generator {:.3} feature matching {:.3} discriminator {:.3}",
                        game.weight, game.generator, game.feature_matching, game.discriminator
                    );
                }
            }
            for (stage, stats) in log.codebooks.iter().enumerate().take(log.stages) {
                if stats.utilization < 0.5 {
                    eprintln!(
                        "warning: step {}: codebook {stage} uses only {:.0}% of its codes",
                        log.step,
                        stats.utilization * 100.0
                    );
                }
            }
        }
        Event::Validation(log) if !quiet => {
            let figures: Vec<String> = log.mel_l1.iter().map(|(s, m)| format!("{s} stages {m:.3}")).collect();
            eprintln!("validation at step {}: log-mel L1 {}", log.step, figures.join(", "));
        }
        Event::Checkpoint { step } if !quiet => eprintln!("checkpoint at step {step}"),
        _ => {}
    };
    let last = train::<B>(options, device, &INTERRUPTED, &mut report)?;
    if !quiet {
        let weights = options.out.join("model.safetensors");
        if weights.exists() {
            eprintln!("stopped at step {last}; weights in {}", weights.display());
        } else {
            eprintln!("stopped at step {last}; checkpoint in {}", options.out.join("checkpoint").display());
        }
    }
    Ok(())
}
