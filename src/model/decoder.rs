//! Frame-rate decoder: causal ConvNeXt blocks, then a head that predicts one short
//! spectrum per frame, turned into samples by a fixed inverse DFT and overlap-add.
//! Nothing runs at the sample rate except that last matrix product.

use std::f64::consts::{PI, TAU};

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::config::{ConvNextConfig, ModelConfig};
use super::conv::{CausalConv1d, ConvState, DepthwiseConv1d, Streaming, previous_frames};
use super::matmul::{linear, matmul};

/// Log-magnitudes are clamped here before `exp`, so an untrained head cannot overflow.
const MAX_LOG_MAGNITUDE: f64 = 6.0;

/// Depthwise causal conv, LayerNorm, pointwise MLP, layer scale, residual. ReLU rather than
/// ConvNeXt's GELU: GELU's `erf` cost 60x a ReLU on flex, 15 % of decode time.
#[derive(Module, Debug)]
pub struct ConvNextBlock<B: Backend> {
    depthwise: DepthwiseConv1d<B>,
    norm: LayerNorm<B>,
    expand: Linear<B>,
    project: Linear<B>,
    scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> ConvNextBlock<B> {
    pub(super) fn new(dim: usize, hidden: usize, kernel: usize, device: &B::Device) -> Self {
        Self {
            depthwise: DepthwiseConv1d::new(dim, kernel, device),
            norm: LayerNormConfig::new(dim).init(device),
            expand: LinearConfig::new(dim, hidden).init(device),
            project: LinearConfig::new(hidden, dim).init(device),
            scale: Param::from_tensor(Tensor::full([dim], 0.1, device)),
        }
    }

    /// A block that passes its input through unchanged until training moves its layer
    /// scale off zero: added to a trained stack, it keeps what the stack already does.
    pub(crate) fn identity(dim: usize, hidden: usize, kernel: usize, device: &B::Device) -> Self {
        Self { scale: Param::from_tensor(Tensor::zeros([dim], device)), ..Self::new(dim, hidden, kernel, device) }
    }
}

impl<B: Backend> Streaming<B> for ConvNextBlock<B> {
    type State = ConvState<B>;

    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State {
        self.depthwise.init_state(batch, device)
    }

    fn step(&self, input: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        let x = self.depthwise.step(input.clone(), state);
        let x = linear(&self.project, relu(linear(&self.expand, self.norm.forward(x))));
        input + x * self.scale.val().unsqueeze::<3>()
    }
}

/// The whole decoder: latents `[batch, frames, latent_dim]` to samples
/// `[batch, frames * hop, 1]`.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    input: CausalConv1d<B>,
    blocks: Vec<ConvNextBlock<B>>,
    norm: LayerNorm<B>,
    head: Linear<B>,
    /// Inverse real DFT times a Hann window, `[2 * bins, 2 * hop]`; derived, never stored.
    synthesis: Tensor<B, 2>,
    hop: usize,
    /// Whether the head's phase outputs are frame-to-frame changes (see [`ModelConfig`]).
    accumulated_phase: bool,
}

/// State of the whole [`Decoder`]: conv contexts, the second half of the last frame, and
/// for accumulated phase the last frame's phases and whether the next frame is odd.
#[derive(Debug, Clone)]
pub struct DecoderState<B: Backend> {
    input: ConvState<B>,
    blocks: Vec<ConvState<B>>,
    overlap: Tensor<B, 3>,
    phase: Tensor<B, 3>,
    odd_frame: bool,
}

impl<B: Backend> Decoder<B> {
    /// A freshly initialised decoder for `config`.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let c = &config.decoder;
        let n_fft = config.n_fft();
        let bins = n_fft / 2 + 1;
        Self {
            input: CausalConv1d::new(config.latent_dim, c.dim, c.kernel, 1, 1, device),
            blocks: (0..c.blocks).map(|_| ConvNextBlock::new(c.dim, c.hidden, c.kernel, device)).collect(),
            norm: LayerNormConfig::new(c.dim).init(device),
            head: LinearConfig::new(c.dim, 2 * bins).init(device),
            synthesis: synthesis_basis(n_fft, device),
            hop: config.hop(),
            accumulated_phase: config.accumulated_phase,
        }
    }

    /// This decoder with `extra` more blocks (sized by `stack`) after its own, each starting
    /// as the identity, so a trained decoder gains capacity without losing what it learned.
    pub fn with_blocks_added(mut self, extra: usize, stack: &ConvNextConfig, device: &B::Device) -> Self {
        self.blocks.extend((0..extra).map(|_| ConvNextBlock::identity(stack.dim, stack.hidden, stack.kernel, device)));
        self
    }
}

/// `(-1)^(k * t)` for bin `k` of frame `t` (counted from an even or odd first frame),
/// `[1, frames, bins]`: the phase advance `pi * k` per hop of a steady tone at bin `k`.
fn steady_advance<B: Backend>(frames: usize, bins: usize, first_odd: bool, device: &B::Device) -> Tensor<B, 3> {
    let signs: Vec<f32> = (0..frames)
        .flat_map(|t| {
            let odd_frame = (t % 2 == 1) != first_odd;
            (0..bins).map(move |k| if odd_frame && k % 2 == 1 { -1.0 } else { 1.0 })
        })
        .collect();
    Tensor::from_data(TensorData::new(signs, [1, frames, bins]), device)
}

/// Rows `0..bins` turn real parts into windowed samples, rows `bins..` imaginary parts.
fn synthesis_basis<B: Backend>(n_fft: usize, device: &B::Device) -> Tensor<B, 2> {
    let bins = n_fft / 2 + 1;
    let n = n_fft as f64;
    let mut basis = vec![0f32; 2 * bins * n_fft];
    for k in 0..bins {
        let weight = if k == 0 || k == bins - 1 { 1.0 } else { 2.0 };
        for t in 0..n_fft {
            let window = 0.5 - 0.5 * (2.0 * PI * t as f64 / n).cos();
            let angle = 2.0 * PI * ((k * t) % n_fft) as f64 / n;
            basis[k * n_fft + t] = (window * weight * angle.cos() / n) as f32;
            basis[(bins + k) * n_fft + t] = (-window * weight * angle.sin() / n) as f32;
        }
    }
    Tensor::from_data(TensorData::new(basis, [2 * bins, n_fft]), device)
}

impl<B: Backend> Streaming<B> for Decoder<B> {
    type State = DecoderState<B>;

    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State {
        DecoderState {
            input: self.input.init_state(batch, device),
            blocks: self.blocks.iter().map(|b| b.init_state(batch, device)).collect(),
            overlap: Tensor::zeros([batch, 1, self.hop], device),
            phase: Tensor::zeros([batch, 1, self.hop + 1], device),
            odd_frame: false,
        }
    }

    fn step(&self, latents: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        let mut x = self.input.step(latents, &mut state.input);
        for (block, block_state) in self.blocks.iter().zip(&mut state.blocks) {
            x = block.step(x, block_state);
        }
        let [batch, frames, _] = x.dims();
        let spectrum = linear(&self.head, self.norm.forward(x));
        let bins = spectrum.dims()[2] / 2;
        let mut magnitude = spectrum.clone().narrow(2, 0, bins).clamp_max(MAX_LOG_MAGNITUDE).exp();
        let mut phase = spectrum.narrow(2, bins, bins);
        if self.accumulated_phase {
            // Phase = last frame's phase + this frame's change; wrapped so it stays small.
            phase = phase.cumsum(1) + state.phase.clone();
            let last = phase.clone().narrow(1, frames - 1, 1);
            state.phase = last.clone() - (last / TAU).floor() * TAU;
            // A steady tone at bin k advances by pi * k per hop (hop = n_fft / 2): a sign
            // flip of odd bins on odd frames, applied to the magnitude.
            magnitude = magnitude * steady_advance::<B>(frames, bins, state.odd_frame, &phase.device());
            state.odd_frame ^= frames % 2 == 1;
        }
        let real = magnitude.clone() * phase.clone().cos();
        let imaginary = magnitude * phase.sin();
        let rows = Tensor::cat(vec![real, imaginary], 2).reshape([batch * frames, 2 * bins]);
        let windows = matmul(rows, self.synthesis.clone()).reshape([batch, frames, 2 * self.hop]);
        let heads = windows.clone().narrow(2, 0, self.hop);
        let tails = windows.narrow(2, self.hop, self.hop);
        let previous = previous_frames(tails, &mut state.overlap);
        (heads + previous).reshape([batch, frames * self.hop, 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    /// A one-block decoder small enough for unit tests.
    fn tiny_config(accumulated_phase: bool) -> ModelConfig {
        ModelConfig {
            strides: vec![4, 5],
            latent_dim: 8,
            accumulated_phase,
            decoder: ConvNextConfig { dim: 16, hidden: 32, blocks: 1, kernel: 3 },
            ..Default::default()
        }
    }

    #[test]
    fn accumulated_phase_streams_like_the_whole_signal() {
        let device = Default::default();
        let config = tiny_config(true);
        let decoder = Decoder::<Flex>::new(&config, &device);
        let latents = Tensor::<Flex, 3>::random([1, 9, 8], Distribution::Normal(0.0, 1.0), &device);
        let whole: Vec<f32> =
            decoder.step(latents.clone(), &mut decoder.init_state(1, &device)).into_data().into_vec().unwrap();
        let mut state = decoder.init_state(1, &device);
        let (mut pieces, mut start) = (Vec::new(), 0);
        for frames in [1, 3, 2, 3] {
            let piece = latents.clone().narrow(1, start, frames);
            pieces.extend(decoder.step(piece, &mut state).into_data().into_vec::<f32>().unwrap());
            start += frames;
        }
        assert_eq!(whole.len(), pieces.len());
        let worst = whole.iter().zip(&pieces).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = whole.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-4 * scale.max(1.0), "streamed samples differ by {worst} (peak {scale})");
    }

    #[test]
    fn added_blocks_leave_the_output_unchanged_until_trained() {
        let device = Default::default();
        let config = tiny_config(false);
        let decoder = Decoder::<Flex>::new(&config, &device);
        let latents = Tensor::<Flex, 3>::random([2, 7, 8], Distribution::Normal(0.0, 1.0), &device);
        let decode = |d: &Decoder<Flex>| -> Vec<f32> {
            d.step(latents.clone(), &mut d.init_state(2, &device)).into_data().into_vec().unwrap()
        };
        let before = decode(&decoder);
        let grown = decoder.with_blocks_added(2, &config.decoder, &device);
        assert_eq!(grown.blocks.len(), 3);
        assert_eq!(decode(&grown), before);
    }

    #[test]
    fn odd_bins_flip_on_odd_frames() {
        let signs: Vec<f32> = steady_advance::<Flex>(3, 3, true, &Default::default()).into_data().into_vec().unwrap();
        assert_eq!(signs, [1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0]);
    }
}
