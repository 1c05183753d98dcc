//! Resumable checkpoints: model and optimizer (burn records, so parameter ids and Adam
//! moments survive), EMA codebooks, and the step. A new checkpoint is written beside the old
//! one and swapped in by renames, so a `kill -9` at any moment leaves one complete checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use tokenwave_core::model::{Model, ModelConfig};
use tokenwave_core::{Error, Result};

use crate::adversarial::{Critic, Discriminators, critic_optimizer};
use crate::vq::EmaCodebooks;

/// Everything besides tensors that a resumed run needs.
#[derive(Serialize, Deserialize)]
pub struct TrainState {
    /// Next step to run (also the next batch index of the data loader).
    pub step: u64,
    /// Seed of the run; batch `i` and all per-step randomness derive from it and `i`.
    pub seed: u64,
    /// The model's sizes.
    pub config: ModelConfig,
    /// Training seconds spent before this checkpoint.
    pub seconds: f64,
    /// Whether the run trains against discriminators (their weights and optimizer are in
    /// the checkpoint too).
    #[serde(default)]
    pub adversarial: bool,
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(format!("checkpoint {}", path.display()), e)
}

/// The newest complete checkpoint directory in `run`, if any.
pub fn latest(run: &Path) -> Option<PathBuf> {
    [run.join("checkpoint"), run.join("checkpoint.old")].into_iter().find(|d| d.join("state.json").exists())
}

/// Writes a checkpoint into `run/checkpoint`, replacing the previous one atomically.
pub fn save<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    run: &Path,
    model: &Model<B>,
    optimizer: &O,
    ema: &EmaCodebooks,
    critic: Option<&Critic<B>>,
    state: &TrainState,
) -> Result<()> {
    let (partial, current, old) = (run.join("checkpoint.partial"), run.join("checkpoint"), run.join("checkpoint.old"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    let record_error = |e: burn::record::RecorderError| Error::Weights(format!("cannot write checkpoint: {e}"));
    model.clone().save_file(partial.join("model"), &recorder()).map_err(record_error)?;
    recorder().record(optimizer.to_record(), partial.join("optimizer")).map_err(record_error)?;
    if let Some(critic) = critic {
        critic.discriminators.clone().save_file(partial.join("discriminators"), &recorder()).map_err(record_error)?;
        let record = critic.optimizer.to_record();
        recorder().record(record, partial.join("discriminator_optimizer")).map_err(record_error)?;
    }
    let ema_json = serde_json::to_vec(ema).expect("codebook state serializes");
    std::fs::write(partial.join("codebooks.json"), ema_json).map_err(io(&partial))?;
    let state_json = serde_json::to_vec_pretty(state).expect("state serializes");
    std::fs::write(partial.join("state.json"), state_json).map_err(io(&partial))?;
    if current.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        std::fs::rename(&current, &old).map_err(io(&current))?;
    }
    std::fs::rename(&partial, &current).map_err(io(&current))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Reads the state of a checkpoint directory.
pub fn load_state(dir: &Path) -> Result<TrainState> {
    let text = std::fs::read(dir.join("state.json")).map_err(io(dir))?;
    serde_json::from_slice(&text).map_err(|e| Error::Weights(format!("{}: bad state.json: {e}", dir.display())))
}

/// Restores model, optimizer and codebooks from a checkpoint directory.
pub fn load<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    dir: &Path,
    model: Model<B>,
    optimizer: O,
    device: &B::Device,
) -> Result<(Model<B>, O, EmaCodebooks)> {
    let record_error = |e: burn::record::RecorderError| Error::Weights(format!("{}: {e}", dir.display()));
    let model = model.load_file(dir.join("model"), &recorder(), device).map_err(record_error)?;
    let record = recorder().load(dir.join("optimizer"), device).map_err(record_error)?;
    let optimizer = optimizer.load_record(record);
    let text = std::fs::read(dir.join("codebooks.json")).map_err(io(dir))?;
    let ema = serde_json::from_slice(&text)
        .map_err(|e| Error::Weights(format!("{}: bad codebooks.json: {e}", dir.display())))?;
    Ok((model, optimizer, ema))
}

/// Restores the discriminators and their optimizer of an adversarial run's checkpoint.
pub fn load_critic<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Result<Critic<B>> {
    let record_error = |e: burn::record::RecorderError| Error::Weights(format!("{}: {e}", dir.display()));
    let discriminators =
        Discriminators::new(device).load_file(dir.join("discriminators"), &recorder(), device).map_err(record_error)?;
    let record = recorder().load(dir.join("discriminator_optimizer"), device).map_err(record_error)?;
    Ok(Critic::from_parts(discriminators, critic_optimizer().load_record(record), device))
}
