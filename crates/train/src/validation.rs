//! The run's own validation: log-mel L1 on fixed crops of the held-out files, at half and
//! full depth, every few hundred steps. A training diagnostic: the verdict on a model comes
//! from `tokenwave eval` and the perceptual panel on whole held-out sources.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use tokenwave_core::model::{Model, Streaming};

use tokenwave_core::ModelConfig;

use crate::data::{Corpus, transmitted_f0};
use crate::loss::{DEFAULT_FLOOR, SpectralLoss};
use crate::step::decoder_input;

/// Validation clips: this many crops of [`CLIP_SECONDS`] each, always the same ones.
const CLIPS: usize = 24;
const CLIP_SECONDS: f32 = 2.0;

/// The fixed validation clips and the loss that scores them.
pub(crate) struct Validation<B: Backend> {
    clips: Vec<f32>,
    /// The clips' transmitted F0, for a model with a harmonic source.
    f0: Option<Vec<f32>>,
    clip_len: usize,
    loss: SpectralLoss<B>,
}

impl<B: Backend> Validation<B> {
    /// Clips of `corpus`, each a whole number of `multiple` samples long.
    pub fn new(corpus: &Corpus, config: &ModelConfig, multiple: usize, device: &B::Device) -> Self {
        let rate = config.sample_rate;
        let clip_len = ((CLIP_SECONDS * rate as f32) as usize).div_ceil(multiple) * multiple;
        let clips = corpus.batch(0x5EED, 0, CLIPS, clip_len);
        let f0 = config.harmonic_source.is_some().then(|| transmitted_f0(&clips, clip_len, rate, config.hop()));
        Self { clips, f0, clip_len, loss: SpectralLoss::new(rate, DEFAULT_FLOOR, device) }
    }

    /// Log-mel L1 of `model` on the clips at each stage count in `stage_counts`.
    pub fn run(&self, model: &Model<B>, stage_counts: &[usize], device: &B::Device) -> Vec<(usize, f32)> {
        let batch = self.clips.len() / self.clip_len;
        let audio = Tensor::<B, 3>::from_data(TensorData::new(self.clips.clone(), [batch, self.clip_len, 1]), device);
        let latents = model.encoder.step(audio.clone(), &mut model.encoder.init_state(batch, device));
        let target = audio.reshape([batch, self.clip_len]);
        stage_counts
            .iter()
            .map(|&stages| {
                let quantized = model.rvq.decode(model.rvq.encode(latents.clone(), stages));
                let quantized = decoder_input(quantized, self.f0.as_deref());
                let decoded = model.decoder.step(quantized, &mut model.decoder.init_state(batch, device));
                let terms = self.loss.losses(decoded.reshape([batch, self.clip_len]), target.clone());
                (stages, terms.mel.into_scalar().elem::<f32>())
            })
            .collect()
    }
}
