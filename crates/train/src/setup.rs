//! Where a run starts: a new model, trained weights (optionally grown), or the run's own
//! last checkpoint; and the one optimizer every run uses.

use std::path::Path;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::AutodiffBackend;
use tokenwave_core::model::{Model, Weights};
use tokenwave_core::{Error, Result};

use crate::adversarial::Critic;
use crate::checkpoint::{self, TrainState};
use crate::options::TrainOptions;
use crate::vq::EmaCodebooks;

/// The optimizer of every run: AdamW, light weight decay, gradients clipped to norm 1.
pub(crate) type ModelOptimizer<B> = OptimizerAdaptor<AdamW, Model<B>, B>;

fn optimizer<B: AutodiffBackend>() -> ModelOptimizer<B> {
    AdamWConfig::new().with_weight_decay(1e-4).with_grad_clipping(Some(GradientClippingConfig::Norm(1.0))).init()
}

/// A run ready for its next step.
pub(crate) struct Start<B: AutodiffBackend> {
    pub state: TrainState,
    pub model: Model<B>,
    pub optimizer: ModelOptimizer<B>,
    pub ema: EmaCodebooks,
    /// The discriminators of an adversarial run.
    pub critic: Option<Critic<B>>,
}

/// The run's state from `out`'s checkpoint (with `resume`), from `init_from` (grown as
/// asked), or new from `config`; refuses to overwrite a run by accident.
pub(crate) fn start<B: AutodiffBackend>(options: &TrainOptions, device: &B::Device) -> Result<Start<B>> {
    let previous = checkpoint::latest(&options.out);
    if previous.is_some() && !options.resume {
        return Err(Error::InvalidArgument(format!(
            "{} already holds a training run; pass --resume to continue it or choose another --out",
            options.out.display()
        )));
    }
    let grows = options.grow_decoder + options.grow_encoder > 0 || options.add_harmonic_source.is_some();
    if grows && (previous.is_some() || options.init_from.is_none()) {
        return Err(Error::InvalidArgument(
            "--grow-decoder, --grow-encoder and --add-harmonic-source change the weights of --init-from for a \
             new run; a run's own design is fixed by its config"
                .into(),
        ));
    }
    let mut start = match (&previous, &options.init_from) {
        (Some(dir), _) => resume(dir, device)?,
        (None, Some(path)) => from_weights(&Weights::from_file(path)?, options, device)?,
        (None, None) => {
            let config = options.config.clone();
            config.validate().map_err(Error::InvalidArgument)?;
            B::seed(device, options.seed);
            let model = Model::new(&config, device);
            let ema = EmaCodebooks::new(config.max_stages, config.codebook_size, config.latent_dim);
            Start {
                state: TrainState { step: 0, seed: options.seed, config, seconds: 0.0, adversarial: false },
                model,
                optimizer: optimizer(),
                ema,
                critic: None,
            }
        }
    };
    match (previous.is_some(), options.adversarial, start.state.adversarial) {
        (true, true, false) => {
            return Err(Error::InvalidArgument(
                "--adversarial starts a new run; this one trained without discriminators: start one with \
                 --init-from its model.safetensors and another --out"
                    .into(),
            ));
        }
        (false, true, _) => {
            start.state.adversarial = true;
            start.critic = Some(Critic::new(device));
        }
        _ => {}
    }
    if let Some(stages) = options.focus_stages
        && !(1..=start.state.config.max_stages).contains(&stages)
    {
        return Err(Error::InvalidArgument(format!(
            "--focus-stages must be between 1 and the model's {} stages, got {stages}",
            start.state.config.max_stages
        )));
    }
    Ok(start)
}

fn resume<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Result<Start<B>> {
    let state = checkpoint::load_state(dir)?;
    state.config.validate().map_err(Error::InvalidArgument)?;
    let (model, optimizer, ema) = checkpoint::load(dir, Model::new(&state.config, device), optimizer(), device)?;
    let critic = if state.adversarial { Some(checkpoint::load_critic(dir, device)?) } else { None };
    Ok(Start { state, model, optimizer, ema, critic })
}

fn from_weights<B: AutodiffBackend>(weights: &Weights, options: &TrainOptions, device: &B::Device) -> Result<Start<B>> {
    let mut config = weights.config().clone();
    config.decoder.blocks += options.grow_decoder;
    config.encoder.blocks += options.grow_encoder;
    let mut model = weights.build::<B>(device)?;
    if let Some(source) = &options.add_harmonic_source {
        if config.harmonic_source.is_some() {
            return Err(Error::InvalidArgument("the --init-from model already has a harmonic source".into()));
        }
        config.harmonic_source = Some(source.clone());
        config.validate().map_err(Error::InvalidArgument)?;
        model.decoder = model.decoder.with_harmonic_source(source, &config, device);
    }
    model.decoder = model.decoder.with_blocks_added(options.grow_decoder, &config.decoder, device);
    model.encoder = model.encoder.with_blocks_added(options.grow_encoder, &config.encoder, device);
    let codewords = model.rvq.codebooks.val().into_data().convert::<f32>().into_vec::<f32>().expect("float codebooks");
    let ema = EmaCodebooks::from_codewords(config.max_stages, config.codebook_size, config.latent_dim, &codewords);
    let state = TrainState { step: 0, seed: options.seed, config, seconds: 0.0, adversarial: false };
    Ok(Start { state, model, optimizer: optimizer(), ema, critic: None })
}
