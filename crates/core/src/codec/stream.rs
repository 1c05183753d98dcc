//! Frame-by-frame encoding and decoding with per-layer state.

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::codes::Codes;
use crate::error::{Error, Result};
use crate::lowband::{LowBand, LowBandDecoder, LowBandEncoder};
use crate::model::decoder::DecoderState;
use crate::model::encoder::EncoderState;
use crate::model::rvq::QuantizerTables;
use crate::model::{Model, ModelConfig, Streaming};

/// Turns samples at the model rate, given in pieces of any size, into whole frames of codes.
pub struct StreamEncoder<B: Backend> {
    model: Arc<Model<B>>,
    quantizer: Arc<QuantizerTables<B>>,
    state: EncoderState<B>,
    pending: Vec<f32>,
    hop: usize,
    stages: usize,
    samples_in: u64,
    low_band: Option<LowBandEncoder>,
    device: B::Device,
}

impl<B: Backend> StreamEncoder<B> {
    pub(crate) fn new(
        model: Arc<Model<B>>,
        quantizer: Arc<QuantizerTables<B>>,
        config: &ModelConfig,
        stages: usize,
        device: B::Device,
    ) -> Self {
        let state = model.encoder.init_state(1, &device);
        let hop = config.hop();
        Self { model, quantizer, state, pending: Vec::new(), hop, stages, samples_in: 0, low_band: None, device }
    }

    /// This encoder also coding the band below `layer`'s cut as a waveform: each frame gets
    /// `layer.digits()` more codes after the neural stages ([`crate::lowband`]), and
    /// [`flush`](Self::flush) adds one frame, which the low band's decoder needs to finish
    /// the last hop.
    pub fn with_low_band(mut self, layer: LowBand) -> Self {
        self.low_band = Some(LowBandEncoder::new(layer, self.hop));
        self
    }

    /// Neural quantizer stages per frame.
    pub fn stages(&self) -> usize {
        self.stages
    }

    /// Codes per frame this encoder emits: the stages, then the low band's digits.
    pub fn codes_per_frame(&self) -> usize {
        self.stages + self.low_band.as_ref().map_or(0, |layer| layer.digits())
    }

    /// Samples taken so far (including those waiting for a whole frame).
    pub fn samples_in(&self) -> u64 {
        self.samples_in
    }

    /// Adds samples; returns the codes of every frame they complete (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Result<Codes> {
        if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "sample {} is not a finite number",
                self.samples_in + i as u64
            )));
        }
        self.samples_in += samples.len() as u64;
        self.pending.extend_from_slice(samples);
        let whole = self.pending.len() / self.hop * self.hop;
        if whole == 0 {
            return Ok(Codes::empty(self.codes_per_frame()));
        }
        let frame: Vec<f32> = self.pending.drain(..whole).collect();
        Ok(self.encode_frames(frame))
    }

    /// Pads the last partial frame with silence and encodes it (with a low band, one more
    /// frame of silence after it); the encoder can go on after.
    pub fn flush(&mut self) -> Codes {
        let mut samples = std::mem::take(&mut self.pending);
        samples.resize(samples.len().div_ceil(self.hop) * self.hop, 0.0);
        if self.low_band.is_some() {
            samples.resize(samples.len() + self.hop, 0.0);
        }
        if samples.is_empty() {
            return Codes::empty(self.codes_per_frame());
        }
        self.encode_frames(samples)
    }

    fn encode_frames(&mut self, samples: Vec<f32>) -> Codes {
        let len = samples.len();
        let low_band: Option<Vec<Vec<u16>>> =
            self.low_band.as_mut().map(|layer| samples.chunks_exact(self.hop).map(|hop| layer.push_hop(hop)).collect());
        let input = Tensor::<B, 3>::from_data(TensorData::new(samples, [1, len, 1]), &self.device);
        let latents = self.model.encoder.step(input, &mut self.state);
        let codes = self.quantizer.encode(latents, self.stages);
        let values = codes.into_data().convert::<i64>().into_vec::<i64>().expect("int codes");
        let neural: Vec<u16> = values.into_iter().map(|c| c as u16).collect();
        let data = match low_band {
            None => neural,
            Some(digits) => neural.chunks_exact(self.stages).zip(digits).flat_map(|(n, d)| [n, &d].concat()).collect(),
        };
        Codes::from_frame_major(self.codes_per_frame(), data).expect("whole frames")
    }
}

/// Turns frames of codes into samples at the model rate, `hop` samples per frame.
pub struct StreamDecoder<B: Backend> {
    model: Arc<Model<B>>,
    quantizer: Arc<QuantizerTables<B>>,
    state: DecoderState<B>,
    codebook_size: usize,
    max_stages: usize,
    frames_out: u64,
    low_band: Option<LowBandDecoder>,
    hop: usize,
    device: B::Device,
}

impl<B: Backend> StreamDecoder<B> {
    pub(crate) fn new(
        model: Arc<Model<B>>,
        quantizer: Arc<QuantizerTables<B>>,
        config: &ModelConfig,
        device: B::Device,
    ) -> Self {
        let state = model.decoder.init_state(1, &device);
        let (codebook_size, max_stages) = (config.codebook_size, config.max_stages);
        let hop = config.hop();
        Self { model, quantizer, state, codebook_size, max_stages, frames_out: 0, low_band: None, hop, device }
    }

    /// This decoder taking the last `layer.digits()` codes of every frame as the low band
    /// ([`StreamEncoder::with_low_band`]). Its output runs one hop behind the frames: the
    /// first frame gives no samples, and the encoder's extra last frame gives the last hop.
    pub fn with_low_band(mut self, layer: LowBand) -> Self {
        self.low_band = Some(LowBandDecoder::new(layer, self.hop));
        self
    }

    /// Decodes the next frames. Every code is checked first: a bad one is an error naming it.
    pub fn push(&mut self, codes: &Codes) -> Result<Vec<f32>> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let digits = self.low_band.as_ref().map_or(0, |layer| layer.digits());
        let stages = codes.stages().saturating_sub(digits);
        if stages == 0 || stages > self.max_stages {
            return Err(Error::InvalidArgument(format!(
                "codes have {stages} stages (and {digits} low-band codes) per frame; the model has 1 to {}",
                self.max_stages
            )));
        }
        let per_frame = codes.stages();
        if let Some(i) = codes.as_frame_major().iter().position(|&c| c as usize >= self.codebook_size) {
            return Err(Error::InvalidArgument(format!(
                "code {} at frame {}, stage {} is out of range (codebook size {})",
                codes.as_frame_major()[i],
                self.frames_out + (i / per_frame) as u64,
                i % per_frame,
                self.codebook_size
            )));
        }
        let frames = codes.frames();
        let data: Vec<i64> = codes
            .as_frame_major()
            .chunks_exact(per_frame)
            .flat_map(|frame| frame[..stages].iter().map(|&c| i64::from(c)))
            .collect();
        let indices = Tensor::<B, 3, Int>::from_data(TensorData::new(data, [1, frames, stages]), &self.device);
        let latents = self.quantizer.decode(indices);
        let audio = self.model.decoder.step(latents, &mut self.state);
        let neural = audio.into_data().convert::<f32>().into_vec::<f32>().expect("float samples");
        let first_frame = self.frames_out;
        self.frames_out += frames as u64;
        let Some(layer) = self.low_band.as_mut() else {
            return Ok(neural);
        };
        let mut samples = Vec::with_capacity(neural.len());
        for (i, (frame, hop)) in
            codes.as_frame_major().chunks_exact(per_frame).zip(neural.chunks_exact(self.hop)).enumerate()
        {
            let before = layer.push_hop(&frame[stages..], hop)?;
            // The first frame finishes the hop before the stream began.
            if first_frame + i as u64 > 0 {
                samples.extend(before);
            }
        }
        Ok(samples)
    }
}
