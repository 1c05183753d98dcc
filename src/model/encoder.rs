//! Causal SEANet-style waveform encoder: samples `[batch, time, 1]` to latents
//! `[batch, time / hop, latent_dim]`.
//!
//! LeakyReLU instead of SEANet's ELU: `exp` costs ~25x an add on the flex backend, and the
//! activations at full rate were a fifth of encode time.

use burn::module::Module;
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Tensor, backend::Backend};

use super::config::{ConvNextConfig, ModelConfig};
use super::conv::{CausalConv1d, ConvState, Streaming};
use super::spectral::{SpectralEncoder, SpectralState};

const SLOPE: f64 = 0.1;

fn act<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    leaky_relu(x, SLOPE)
}

/// `x + conv1x1(act(conv3(act(x))))`, with a dilated causal conv.
#[derive(Module, Debug)]
pub struct ResidualUnit<B: Backend> {
    dilated: CausalConv1d<B>,
    pointwise: CausalConv1d<B>,
}

impl<B: Backend> ResidualUnit<B> {
    fn new(channels: usize, dilation: usize, device: &B::Device) -> Self {
        Self {
            dilated: CausalConv1d::new(channels, channels, 3, 1, dilation, device),
            pointwise: CausalConv1d::new(channels, channels, 1, 1, 1, device),
        }
    }
}

impl<B: Backend> Streaming<B> for ResidualUnit<B> {
    type State = ConvState<B>;

    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State {
        self.dilated.init_state(batch, device)
    }

    fn step(&self, input: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        let hidden = self.dilated.step(act(input.clone()), state);
        input + self.pointwise.step(act(hidden), &mut ConvState::default())
    }
}

/// Residual units, then a strided conv that divides time by `stride` and doubles channels.
#[derive(Module, Debug)]
pub struct EncoderStage<B: Backend> {
    units: Vec<ResidualUnit<B>>,
    down: CausalConv1d<B>,
}

/// State of one [`EncoderStage`].
#[derive(Debug, Clone)]
pub struct StageState<B: Backend> {
    units: Vec<ConvState<B>>,
    down: ConvState<B>,
}

impl<B: Backend> Streaming<B> for EncoderStage<B> {
    type State = StageState<B>;

    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State {
        StageState {
            units: self.units.iter().map(|u| u.init_state(batch, device)).collect(),
            down: self.down.init_state(batch, device),
        }
    }

    fn step(&self, input: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        let mut x = input;
        for (unit, unit_state) in self.units.iter().zip(&mut state.units) {
            x = unit.step(x, unit_state);
        }
        self.down.step(act(x), &mut state.down)
    }
}

/// The whole encoder: either the waveform convs (`input`, `stages`, `output`) or the
/// spectral encoder, as the config says. Optional fields rather than an enum keep the
/// tensor names of weights and checkpoints written before the spectral design existed.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    input: Option<CausalConv1d<B>>,
    stages: Vec<EncoderStage<B>>,
    output: Option<CausalConv1d<B>>,
    spectral: Option<SpectralEncoder<B>>,
}

/// State of the whole [`Encoder`].
#[derive(Debug, Clone)]
pub struct EncoderState<B: Backend> {
    input: ConvState<B>,
    stages: Vec<StageState<B>>,
    output: ConvState<B>,
    spectral: Option<SpectralState<B>>,
}

impl<B: Backend> Encoder<B> {
    /// A freshly initialised encoder for `config`.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        if let Some(stack) = &config.spectral_encoder {
            let spectral = SpectralEncoder::new(config.hop(), stack, config.latent_dim, device);
            return Self { input: None, stages: Vec::new(), output: None, spectral: Some(spectral) };
        }
        let base = config.encoder_channels;
        let input = CausalConv1d::new(1, base, 7, 1, 1, device);
        let mut channels = base;
        let stages = config
            .strides
            .iter()
            .map(|&stride| {
                let units = config.residual_dilations.iter().map(|&d| ResidualUnit::new(channels, d, device)).collect();
                let down = CausalConv1d::new(channels, channels * 2, 2 * stride, stride, 1, device);
                channels *= 2;
                EncoderStage { units, down }
            })
            .collect();
        let output = CausalConv1d::new(channels, config.latent_dim, 3, 1, 1, device);
        Self { input: Some(input), stages, output: Some(output), spectral: None }
    }

    /// The same encoder with `extra` identity blocks appended to its spectral stack (see
    /// [`SpectralEncoder::with_blocks_added`]); the waveform encoder has no such stack and
    /// comes back unchanged.
    pub fn with_blocks_added(mut self, extra: usize, stack: &ConvNextConfig, device: &B::Device) -> Self {
        self.spectral = self.spectral.map(|spectral| spectral.with_blocks_added(extra, stack, device));
        self
    }
}

impl<B: Backend> Streaming<B> for Encoder<B> {
    type State = EncoderState<B>;

    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State {
        let conv_state = |conv: &Option<CausalConv1d<B>>| conv.as_ref().map(|c| c.init_state(batch, device));
        EncoderState {
            input: conv_state(&self.input).unwrap_or_default(),
            stages: self.stages.iter().map(|s| s.init_state(batch, device)).collect(),
            output: conv_state(&self.output).unwrap_or_default(),
            spectral: self.spectral.as_ref().map(|s| s.init_state(batch, device)),
        }
    }

    /// `input` must hold a whole number of hops.
    fn step(&self, input: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        if let (Some(spectral), Some(spectral_state)) = (&self.spectral, &mut state.spectral) {
            return spectral.step(input, spectral_state);
        }
        let mut x = match &self.input {
            Some(conv) => conv.step(input, &mut state.input),
            None => input,
        };
        for (stage, stage_state) in self.stages.iter().zip(&mut state.stages) {
            x = stage.step(x, stage_state);
        }
        match &self.output {
            Some(conv) => conv.step(act(x), &mut state.output),
            None => x,
        }
    }
}
