//! Frame-by-frame encoding and decoding with per-layer state.

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::codes::Codes;
use crate::error::{Error, Result};
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
        Self { model, quantizer, state, pending: Vec::new(), hop: config.hop(), stages, samples_in: 0, device }
    }

    /// Codes per frame this encoder emits.
    pub fn stages(&self) -> usize {
        self.stages
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
            return Ok(Codes::empty(self.stages));
        }
        let frame: Vec<f32> = self.pending.drain(..whole).collect();
        Ok(self.encode_frames(frame))
    }

    /// Pads the last partial frame with silence and encodes it; the encoder can go on after.
    pub fn flush(&mut self) -> Codes {
        if self.pending.is_empty() {
            return Codes::empty(self.stages);
        }
        let mut frame = std::mem::take(&mut self.pending);
        frame.resize(self.hop, 0.0);
        self.encode_frames(frame)
    }

    fn encode_frames(&mut self, samples: Vec<f32>) -> Codes {
        let len = samples.len();
        let input = Tensor::<B, 3>::from_data(TensorData::new(samples, [1, len, 1]), &self.device);
        let latents = self.model.encoder.step(input, &mut self.state);
        let codes = self.quantizer.encode(latents, self.stages);
        let values = codes.into_data().convert::<i64>().into_vec::<i64>().expect("int codes");
        let data = values.into_iter().map(|c| c as u16).collect();
        Codes::from_frame_major(self.stages, data).expect("whole frames")
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
        Self { model, quantizer, state, codebook_size, max_stages, frames_out: 0, device }
    }

    /// Decodes the next frames. Every code is checked first: a bad one is an error naming it.
    pub fn push(&mut self, codes: &Codes) -> Result<Vec<f32>> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        if codes.stages() > self.max_stages {
            return Err(Error::InvalidArgument(format!(
                "codes have {} stages but the model has only {}",
                codes.stages(),
                self.max_stages
            )));
        }
        if let Some(i) = codes.as_frame_major().iter().position(|&c| c as usize >= self.codebook_size) {
            return Err(Error::InvalidArgument(format!(
                "code {} at frame {}, stage {} is out of range (codebook size {})",
                codes.as_frame_major()[i],
                self.frames_out + (i / codes.stages()) as u64,
                i % codes.stages(),
                self.codebook_size
            )));
        }
        let (stages, frames) = (codes.stages(), codes.frames());
        let data: Vec<i64> = codes.as_frame_major().iter().map(|&c| i64::from(c)).collect();
        let indices = Tensor::<B, 3, Int>::from_data(TensorData::new(data, [1, frames, stages]), &self.device);
        let latents = self.quantizer.decode(indices);
        let audio = self.model.decoder.step(latents, &mut self.state);
        self.frames_out += frames as u64;
        Ok(audio.into_data().convert::<f32>().into_vec::<f32>().expect("float samples"))
    }
}
