//! The codec: a loaded model plus the frame logic around it, for whole signals and streams.

mod stream;

use std::sync::Arc;

use burn::tensor::backend::Backend;

pub use stream::{StreamDecoder, StreamEncoder};

use crate::bitstream::Header;
use crate::codes::Codes;
use crate::error::{Error, Result};
use crate::lowband::LowBand;
use crate::model::rvq::QuantizerTables;
use crate::model::{Model, ModelConfig, ModelId, Weights};

/// Frames the offline path hands to the model at once: bounds memory for any input length.
const OFFLINE_CHUNK_FRAMES: usize = 500;

/// How many low-band codes a frame of `n` codes gives to the low band: entry `n - 1`, so
/// the neural stages get the rest. Each total is the split that scored best on held-out
/// speech (docs/journal, session 17); past the table, the extra codes go to
/// the neural stages.
const LOW_BAND_LADDER: [usize; 13] = [0, 0, 0, 0, 2, 3, 3, 4, 5, 6, 7, 7, 8];

/// How a frame's codes divide between the neural stages, the low band and the pitch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    /// Neural quantizer stages, first in every frame.
    pub stages: usize,
    /// The low band, whose codes follow the stages, if any.
    pub low_band: Option<LowBand>,
    /// Whether the frame ends with its pitch code ([`crate::pitch`]: 0 unvoiced, 1 to 255
    /// a log-F0 level), which drives a decoder's harmonic source.
    pub pitch: bool,
}

impl FrameLayout {
    /// `stages` neural stages, no low band and no pitch.
    pub fn neural(stages: usize) -> Self {
        Self { stages, low_band: None, pitch: false }
    }

    /// Codes per frame.
    pub fn codes_per_frame(&self) -> usize {
        self.stages + self.low_band_digits() + usize::from(self.pitch)
    }

    /// Low-band codes per frame (0 without the low band).
    pub fn low_band_digits(&self) -> usize {
        self.low_band.map_or(0, |layer| layer.digits())
    }

    /// Bits of one frame's codes when each stage and low-band code takes `bits_per_code`.
    pub fn bits_per_frame(&self, bits_per_code: u32) -> u32 {
        (self.stages + self.low_band_digits()) as u32 * bits_per_code + if self.pitch { PITCH_BITS } else { 0 }
    }
}

/// Bits of a frame's pitch code.
pub const PITCH_BITS: u32 = 8;

impl std::fmt::Display for FrameLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} stages", self.stages)?;
        let digits = self.low_band_digits();
        match (digits, self.pitch) {
            (0, false) => Ok(()),
            (0, true) => write!(f, " and pitch"),
            (_, false) => write!(f, " and {digits} low-band codes"),
            (_, true) => write!(f, ", {digits} low-band codes and pitch"),
        }
    }
}

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

    /// Whether the model's decoder has a harmonic source, so that its layouts carry pitch.
    pub fn uses_pitch(&self) -> bool {
        self.config.harmonic_source.is_some()
    }

    /// Bitrate of the codes of `layout` (no container), bits per second.
    pub fn bitrate(&self, layout: FrameLayout) -> f64 {
        self.config.frame_rate() * f64::from(layout.bits_per_frame(self.config.bits_per_code()))
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

    /// The layout for `kbps` of raw codes (rounded to the nearest code per frame; the pitch
    /// of a model that uses it counts against the rate). With `low_band` given, that many
    /// of them go to the low band; without, the split that scored best: the neural stages
    /// alone at low rates, a share for the low band above.
    pub fn layout_for_kbps(&self, kbps: f64, low_band: Option<usize>) -> Result<FrameLayout> {
        let pitch_kbps =
            if self.uses_pitch() { self.config.frame_rate() * f64::from(PITCH_BITS) / 1000.0 } else { 0.0 };
        if kbps.is_finite() && kbps > 0.0 && kbps <= pitch_kbps {
            return Err(Error::InvalidArgument(format!(
                "{kbps} kbps leaves nothing for the codes after this model's {pitch_kbps} kbps of pitch"
            )));
        }
        let codes = self.codes_for_kbps(kbps - pitch_kbps)?;
        if let Some(digits @ 1..) = low_band {
            self.low_band(digits)?;
        }
        let most = self.config.max_stages + 8;
        if codes > most {
            return Err(Error::InvalidArgument(format!(
                "{kbps} kbps is more than this model codes: at most {} kbps ({} stages and 8 low-band codes)",
                self.config.bitrate(most) / 1000.0,
                self.config.max_stages
            )));
        }
        let low_band = low_band.unwrap_or_else(|| {
            let best = LOW_BAND_LADDER.get(codes - 1).copied().unwrap_or(LOW_BAND_LADDER[LOW_BAND_LADDER.len() - 1]);
            // A model with fewer stages than the ladder assumes gives the low band more.
            match best.max(codes.saturating_sub(self.config.max_stages)) {
                1 => 2,
                n => n,
            }
        });
        let stages = codes.checked_sub(low_band).filter(|&s| s > 0).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{kbps} kbps leaves nothing for the neural stages after {low_band} low-band codes; ask for more than {} kbps",
                self.config.bitrate(low_band) / 1000.0
            ))
        })?;
        self.layout(stages, low_band)
    }

    /// The layout of `stages` neural stages and `low_band` low-band codes (0: none, or 2 to
    /// 8), with the pitch if the model uses it.
    pub fn layout(&self, stages: usize, low_band: usize) -> Result<FrameLayout> {
        self.check_stages(stages)?;
        let low_band = if low_band == 0 { None } else { Some(self.low_band(low_band)?) };
        Ok(FrameLayout { stages, low_band, pitch: self.uses_pitch() })
    }

    /// Codes per frame for `kbps` of raw codes (rounded to the nearest, at least one).
    fn codes_for_kbps(&self, kbps: f64) -> Result<usize> {
        let per_code = self.config.bitrate(1) / 1000.0;
        if !kbps.is_finite() || kbps <= 0.0 {
            return Err(Error::InvalidArgument(format!("bitrate must be positive, not {kbps}")));
        }
        Ok((kbps / per_code).round().max(1.0) as usize)
    }

    /// Stages needed for `kbps` of raw codes (rounded to the nearest stage, at least one).
    pub fn stages_for_kbps(&self, kbps: f64) -> Result<usize> {
        let stages = self.codes_for_kbps(kbps)?;
        self.check_stages(stages)?;
        Ok(stages)
    }

    /// A streaming encoder emitting `layout`'s codes per frame: the neural stages, then the
    /// low band's codes and the pitch code if the layout has them.
    pub fn stream_encoder(&self, layout: FrameLayout) -> Result<StreamEncoder<B>> {
        self.check_stages(layout.stages)?;
        Ok(StreamEncoder::new(self.model.clone(), self.quantizer.clone(), &self.config, layout, self.device.clone()))
    }

    /// A streaming decoder for codes in `layout`. Codes without pitch decode on a model
    /// that uses it as if every frame were unvoiced; pitch is ignored by a model without a
    /// harmonic source.
    pub fn stream_decoder(&self, layout: FrameLayout) -> Result<StreamDecoder<B>> {
        self.check_stages(layout.stages)?;
        Ok(StreamDecoder::new(self.model.clone(), self.quantizer.clone(), &self.config, layout, self.device.clone()))
    }

    /// The low-band layer ([`crate::lowband`]) of `digits` codes per frame for this model.
    pub fn low_band(&self, digits: usize) -> Result<LowBand> {
        LowBand::new(digits, self.config.bits_per_code(), self.config.hop(), self.config.sample_rate)
    }

    /// The `.tkw` header of a stream this codec writes with `layout`, from an input at
    /// `source_rate` Hz of `original_samples` samples at the model rate (when known).
    pub fn tkw_header(&self, layout: FrameLayout, source_rate: u32, original_samples: Option<u64>) -> Header {
        Header {
            // Streams without pitch stay readable by releases that predate it.
            version: if layout.pitch { crate::bitstream::container::VERSION } else { 3 },
            model_id: self.id.0,
            sample_rate: self.config.sample_rate,
            hop: self.config.hop() as u32,
            stages: layout.stages as u8,
            low_band: layout.low_band_digits() as u8,
            pitch: layout.pitch,
            bits_per_code: self.config.bits_per_code() as u8,
            source_rate,
            original_samples,
        }
    }

    /// The layout a `.tkw` stream with `header` was coded with (container version 1 used
    /// [`LowBand::first_edition`] of the low band, version 2 [`LowBand::second_edition`]).
    pub fn layout_of(&self, header: &Header) -> Result<FrameLayout> {
        let (bits, hop, rate) = (self.config.bits_per_code(), self.config.hop(), self.config.sample_rate);
        let digits = usize::from(header.low_band);
        let low_band = match (digits, header.version) {
            (0, _) => None,
            (_, 1) => Some(LowBand::first_edition(digits, bits, hop, rate)?),
            (_, 2) => Some(LowBand::second_edition(digits, bits, hop, rate)?),
            _ => Some(self.low_band(digits)?),
        };
        let stages = usize::from(header.stages);
        self.check_stages(stages)?;
        Ok(FrameLayout { stages, low_band, pitch: header.pitch })
    }

    /// Encodes a whole signal at the model rate (the last frame padded with silence) into
    /// `layout`'s codes per frame.
    pub fn encode(&self, samples: &[f32], layout: FrameLayout) -> Result<Codes> {
        let mut encoder = self.stream_encoder(layout)?;
        let mut codes = Codes::empty(encoder.codes_per_frame());
        for piece in samples.chunks(OFFLINE_CHUNK_FRAMES * self.config.hop()) {
            codes.extend(&encoder.push(piece)?)?;
        }
        codes.extend(&encoder.flush())?;
        Ok(codes)
    }

    /// Decodes whole codes in `layout`: `frames * hop` samples at the model rate, one hop
    /// fewer with the low band (its encoder added that frame).
    pub fn decode(&self, codes: &Codes, layout: FrameLayout) -> Result<Vec<f32>> {
        let mut decoder = self.stream_decoder(layout)?;
        let mut samples = Vec::with_capacity(codes.frames() * self.config.hop());
        for start in (0..codes.frames()).step_by(OFFLINE_CHUNK_FRAMES) {
            let count = OFFLINE_CHUNK_FRAMES.min(codes.frames() - start);
            samples.extend(decoder.push(&codes.slice_frames(start, count))?);
        }
        Ok(samples)
    }
}
