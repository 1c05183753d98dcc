//! The codec: a loaded model plus the frame logic around it, for whole signals and streams.

mod stream;

use std::sync::Arc;

use burn::tensor::backend::Backend;

pub use stream::{StreamDecoder, StreamEncoder};

use crate::codes::Codes;
use crate::error::{Error, Result};
use crate::lowband::LowBand;
use crate::model::rvq::QuantizerTables;
use crate::model::{Model, ModelConfig, ModelId, Weights};

/// Frames the offline path hands to the model at once: bounds memory for any input length.
const OFFLINE_CHUNK_FRAMES: usize = 500;

/// A model ready to encode and decode, on one device.
#[derive(Clone)]
pub struct Codec<B: Backend> {
    model: Arc<Model<B>>,
    quantizer: Arc<QuantizerTables<B>>,
    config: ModelConfig,
    id: ModelId,
    device: B::Device,
}

impl<B: Backend> Codec<B> {
    /// Builds the network from `weights` on `device`.
    pub fn new(weights: &Weights, device: B::Device) -> Result<Self> {
        let model = weights.build::<B>(&device)?;
        let quantizer = Arc::new(model.rvq.tables());
        Ok(Self { model: Arc::new(model), quantizer, config: weights.config().clone(), id: weights.id(), device })
    }

    /// The model's sizes.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The id written into every stream this codec makes.
    pub fn model_id(&self) -> ModelId {
        self.id
    }

    /// Checks that `stages` is usable with this model.
    pub fn check_stages(&self, stages: usize) -> Result<()> {
        if stages == 0 || stages > self.config.max_stages {
            return Err(Error::InvalidArgument(format!(
                "this model has 1 to {} quantizer stages ({} to {} kbps); {stages} were asked for",
                self.config.max_stages,
                self.config.bitrate(1) / 1000.0,
                self.config.bitrate(self.config.max_stages) / 1000.0
            )));
        }
        Ok(())
    }

    /// Stages needed for `kbps` of raw codes (rounded to the nearest stage, at least one).
    pub fn stages_for_kbps(&self, kbps: f64) -> Result<usize> {
        let per_stage = self.config.bitrate(1) / 1000.0;
        if !kbps.is_finite() || kbps <= 0.0 {
            return Err(Error::InvalidArgument(format!("bitrate must be positive, not {kbps}")));
        }
        let stages = (kbps / per_stage).round().max(1.0) as usize;
        self.check_stages(stages)?;
        Ok(stages)
    }

    /// A streaming encoder emitting `stages` codes per frame.
    pub fn stream_encoder(&self, stages: usize) -> Result<StreamEncoder<B>> {
        self.check_stages(stages)?;
        Ok(StreamEncoder::new(self.model.clone(), self.quantizer.clone(), &self.config, stages, self.device.clone()))
    }

    /// A streaming decoder.
    pub fn stream_decoder(&self) -> StreamDecoder<B> {
        StreamDecoder::new(self.model.clone(), self.quantizer.clone(), &self.config, self.device.clone())
    }

    /// A streaming encoder emitting `stages` codes per frame, then the low band's if given.
    pub fn layered_stream_encoder(&self, stages: usize, low_band: Option<LowBand>) -> Result<StreamEncoder<B>> {
        let encoder = self.stream_encoder(stages)?;
        Ok(match low_band {
            Some(layer) => encoder.with_low_band(layer),
            None => encoder,
        })
    }

    /// A streaming decoder for codes whose last columns are `low_band`'s, if given.
    pub fn layered_stream_decoder(&self, low_band: Option<LowBand>) -> StreamDecoder<B> {
        let decoder = self.stream_decoder();
        match low_band {
            Some(layer) => decoder.with_low_band(layer),
            None => decoder,
        }
    }

    /// The low-band layer ([`crate::lowband`]) of `digits` codes per frame for this model.
    pub fn low_band(&self, digits: usize) -> Result<LowBand> {
        LowBand::new(digits, self.config.bits_per_code(), self.config.hop(), self.config.sample_rate)
    }

    /// Encodes a whole signal at the model rate (the last frame padded with silence).
    pub fn encode(&self, samples: &[f32], stages: usize) -> Result<Codes> {
        self.encode_layers(samples, stages, None)
    }

    /// Encodes a whole signal with `stages` neural stages and, if given, the low band.
    pub fn encode_layers(&self, samples: &[f32], stages: usize, low_band: Option<LowBand>) -> Result<Codes> {
        let mut encoder = self.layered_stream_encoder(stages, low_band)?;
        let mut codes = Codes::empty(encoder.codes_per_frame());
        for piece in samples.chunks(OFFLINE_CHUNK_FRAMES * self.config.hop()) {
            codes.extend(&encoder.push(piece)?)?;
        }
        codes.extend(&encoder.flush())?;
        Ok(codes)
    }

    /// Decodes whole codes to `frames * hop` samples at the model rate.
    pub fn decode(&self, codes: &Codes) -> Result<Vec<f32>> {
        self.decode_layers(codes, None)
    }

    /// Decodes whole codes whose last columns are `low_band`'s, if given: `frames * hop`
    /// samples, one hop fewer with the low band (its encoder added that frame).
    pub fn decode_layers(&self, codes: &Codes, low_band: Option<LowBand>) -> Result<Vec<f32>> {
        let mut decoder = self.layered_stream_decoder(low_band);
        let mut samples = Vec::with_capacity(codes.frames() * self.config.hop());
        for start in (0..codes.frames()).step_by(OFFLINE_CHUNK_FRAMES) {
            let count = OFFLINE_CHUNK_FRAMES.min(codes.frames() - start);
            samples.extend(decoder.push(&codes.slice_frames(start, count))?);
        }
        Ok(samples)
    }
}
