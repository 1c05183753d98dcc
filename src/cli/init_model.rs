//! `tokenwave init-model OUT`: freshly initialised weights from a config and a seed.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use tokenwave_core::CpuBackend;
use tokenwave_core::model::{Model, weights};

#[derive(Args)]
pub struct InitModelArgs {
    /// Where to write the safetensors file.
    output: PathBuf,
    /// Model config as JSON (default: the standard 16 kHz speech model).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: &InitModelArgs) -> Result<()> {
    let config = super::read_config(args.config.as_deref())?;
    if let Err(e) = config.validate() {
        bail!("invalid model config: {e}");
    }
    let device = Default::default();
    CpuBackend::seed(&device, args.seed);
    let model = Model::<CpuBackend>::new(&config, &device);
    weights::save(&model, &config, &args.output)?;
    Ok(())
}
