//! Frame-by-frame encoding and decoding with per-layer state.

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::FrameLayout;
use crate::codes::Codes;
use crate::error::{Error, Result};
use crate::lowband::{LowBandDecoder, LowBandEncoder};
use crate::model::decoder::DecoderState;
use crate::model::encoder::EncoderState;
use crate::model::rvq::QuantizerTables;
use crate::model::{Model, ModelConfig, Streaming};
use crate::pitch::{self, PitchTracker};

/// Turns samples at the model rate, given in pieces of any size, into whole frames of codes.
pub struct StreamEncoder<B: Backend> {
    model: Arc<Model<B>>,
    quantizer: Arc<QuantizerTables<B>>,
    state: EncoderState<B>,
    pending: Vec<f32>,
    hop: usize,
    samples_in: u64,
    layout: FrameLayout,
    /// Codes the band below the low band's cut as a waveform ([`crate::lowband`]).
    low_band: Option<LowBandEncoder>,
    /// Measures each frame's F0 for the pitch code ([`crate::pitch`]).
    pitch: Option<PitchTracker>,
    device: B::Device,
}

impl<B: Backend> StreamEncoder<B> {
    /// With a low band, [`flush`](Self::flush) adds one frame, which the low band's decoder
    /// needs to finish the last hop.
    pub(crate) fn new(
        model: Arc<Model<B>>,
        quantizer: Arc<QuantizerTables<B>>,
        config: &ModelConfig,
        layout: FrameLayout,
        device: B::Device,
    ) -> Self {
        let state = model.encoder.init_state(1, &device);
        let hop = config.hop();
        let low_band = layout.low_band.map(|layer| LowBandEncoder::new(layer, hop));
        let pitch = layout.pitch.then(|| PitchTracker::new(config.sample_rate, hop));
        Self { model, quantizer, state, pending: Vec::new(), hop, samples_in: 0, layout, low_band, pitch, device }
    }

    /// Neural quantizer stages per frame.
    pub fn stages(&self) -> usize {
        self.layout.stages
    }

    /// The layout of the codes this encoder emits.
    pub fn layout(&self) -> FrameLayout {
        self.layout
    }

    /// Codes per frame this encoder emits: the stages, the low band's digits, the pitch.
    pub fn codes_per_frame(&self) -> usize {
        self.layout.codes_per_frame()
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
        let frames = len / self.hop;
        let low_band: Option<Vec<Vec<u16>>> =
            self.low_band.as_mut().map(|layer| samples.chunks_exact(self.hop).map(|hop| layer.push_hop(hop)).collect());
        let pitch: Option<Vec<u8>> =
            self.pitch.as_mut().map(|tracker| tracker.push(&samples).iter().map(pitch::quantize).collect());
        let input = Tensor::<B, 3>::from_data(TensorData::new(samples, [1, len, 1]), &self.device);
        let latents = self.model.encoder.step(input, &mut self.state);
        let codes = self.quantizer.encode(latents, self.layout.stages);
        let values = codes.into_data().convert::<i64>().into_vec::<i64>().expect("int codes");
        let mut data = Vec::with_capacity(frames * self.codes_per_frame());
        for (frame, neural) in values.chunks_exact(self.layout.stages).enumerate() {
            data.extend(neural.iter().map(|&c| c as u16));
            if let Some(digits) = &low_band {
                data.extend_from_slice(&digits[frame]);
            }
            if let Some(pitch) = &pitch {
                data.push(u16::from(pitch[frame]));
            }
        }
        Codes::from_frame_major(self.codes_per_frame(), data).expect("whole frames")
    }
}

/// Turns frames of codes into samples at the model rate, `hop` samples per frame.
pub struct StreamDecoder<B: Backend> {
    model: Arc<Model<B>>,
    quantizer: Arc<QuantizerTables<B>>,
    state: DecoderState<B>,
    codebook_size: usize,
    frames_out: u64,
    layout: FrameLayout,
    /// Decodes the low band's codes, whose output runs one hop behind the frames: the first
    /// frame gives no samples, and the encoder's extra last frame gives the last hop.
    low_band: Option<LowBandDecoder>,
    /// Whether the model's decoder takes each frame's F0.
    harmonic_source: bool,
    hop: usize,
    device: B::Device,
}

impl<B: Backend> StreamDecoder<B> {
    pub(crate) fn new(
        model: Arc<Model<B>>,
        quantizer: Arc<QuantizerTables<B>>,
        config: &ModelConfig,
        layout: FrameLayout,
        device: B::Device,
    ) -> Self {
        let state = model.decoder.init_state(1, &device);
        let codebook_size = config.codebook_size;
        let hop = config.hop();
        let low_band = layout.low_band.map(|layer| LowBandDecoder::new(layer, hop));
        let harmonic_source = config.harmonic_source.is_some();
        Self { model, quantizer, state, codebook_size, frames_out: 0, layout, low_band, harmonic_source, hop, device }
    }

    /// Decodes the next frames. Every code is checked first: a bad one is an error naming it.
    pub fn push(&mut self, codes: &Codes) -> Result<Vec<f32>> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let per_frame = self.layout.codes_per_frame();
        if codes.stages() != per_frame {
            return Err(Error::InvalidArgument(format!(
                "codes have {} per frame, but this stream's layout ({}) has {per_frame}",
                codes.stages(),
                self.layout
            )));
        }
        let (stages, digits) = (self.layout.stages, self.layout.low_band_digits());
        for (i, &code) in codes.as_frame_major().iter().enumerate() {
            let column = i % per_frame;
            let limit =
                if self.layout.pitch && column == per_frame - 1 { 1 << super::PITCH_BITS } else { self.codebook_size };
            if usize::from(code) >= limit {
                let what = if column < stages + digits { format!("stage {column}") } else { "pitch".to_string() };
                return Err(Error::InvalidArgument(format!(
                    "code {code} at frame {}, {what} is out of range (at most {})",
                    self.frames_out + (i / per_frame) as u64,
                    limit - 1
                )));
            }
        }
        let frames = codes.frames();
        let data: Vec<i64> = codes
            .as_frame_major()
            .chunks_exact(per_frame)
            .flat_map(|frame| frame[..stages].iter().map(|&c| i64::from(c)))
            .collect();
        let indices = Tensor::<B, 3, Int>::from_data(TensorData::new(data, [1, frames, stages]), &self.device);
        let mut latents = self.quantizer.decode(indices);
        if self.harmonic_source {
            let f0: Vec<f32> = codes
                .as_frame_major()
                .chunks_exact(per_frame)
                .map(|frame| if self.layout.pitch { pitch::decoded_f0(frame[per_frame - 1] as u8) } else { 0.0 })
                .collect();
            let f0 = Tensor::<B, 3>::from_data(TensorData::new(f0, [1, frames, 1]), &self.device);
            latents = Tensor::cat(vec![latents, f0], 2);
        }
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
            let before = layer.push_hop(&frame[stages..stages + digits], hop)?;
            // The first frame finishes the hop before the stream began.
            if first_frame + i as u64 > 0 {
                samples.extend(before);
            }
        }
        Ok(samples)
    }
}
