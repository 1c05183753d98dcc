//! The encoder: each frame's log-magnitude spectra (one long window for pitch, four short
//! ones for onsets), then causal ConvNeXt blocks to a latent, samples `[batch, frames * hop,
//! 1]` to latents `[batch, frames, latent_dim]`.
//!
//! Why spectra and not a waveform conv stack: the waveform encoder spent most of its
//! compute at 16 kHz in 8–32 channels and limited quality more than the quantizer did
//! (docs/journal). Here the only sample-rate work is two fixed matrix products; everything
//! learned runs at 50 frames/s, as in the decoder.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};

use super::config::ModelConfig;
use super::conv::{ConvNextBlock, ConvState, Streaming, previous_frames};
use super::matmul::{linear, matmul};
use crate::dsp::{analysis_basis, power, spectrum_bins};

/// Short windows per frame; each spans half a frame, and the last ends with the frame.
const SHORT_WINDOWS: usize = 4;
/// Added to magnitudes before the logarithm: about −80 dB below a full-scale sine.
const FLOOR: f64 = 1e-2;

/// Latents `[batch, frames, latent_dim]` from samples `[batch, frames * hop, 1]`.
/// Tensor names of weights written before release 0.2 carry an `encoder.spectral.` prefix;
/// [`crate::model::Weights::build`] maps them.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// Hann-windowed DFT of two hops (this frame and the previous one), `[2 hop, 2 bins]`;
    /// derived, never stored.
    long: Tensor<B, 2>,
    /// Hann-windowed DFT of half a hop's span, `[hop / 2, 2 bins]`; derived, never stored.
    short: Tensor<B, 2>,
    hop: usize,
    input: Linear<B>,
    blocks: Vec<ConvNextBlock<B>>,
    norm: LayerNorm<B>,
    output: Linear<B>,
}

/// State of a [`Encoder`]: the previous frame's samples and the blocks' contexts.
#[derive(Debug, Clone)]
pub struct EncoderState<B: Backend> {
    previous: Tensor<B, 3>,
    blocks: Vec<ConvState<B>>,
}

impl<B: Backend> Encoder<B> {
    /// A freshly initialised encoder for `config` (its hop a multiple of 4).
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let (hop, stack, latent_dim) = (config.hop, &config.encoder, config.latent_dim);
        let features = spectrum_bins(2 * hop) + SHORT_WINDOWS * spectrum_bins(hop / 2);
        Self {
            long: analysis_basis(2 * hop, device),
            short: analysis_basis(hop / 2, device),
            hop,
            input: LinearConfig::new(features, stack.dim).init(device),
            blocks: (0..stack.blocks)
                .map(|_| ConvNextBlock::new(stack.dim, stack.hidden, stack.kernel, device))
                .collect(),
            norm: LayerNormConfig::new(stack.dim).init(device),
            output: LinearConfig::new(stack.dim, latent_dim).init(device),
        }
    }

    /// The same encoder with `extra` ConvNeXt blocks appended, each the identity until
    /// trained: a trained encoder gains capacity and keeps its latents.
    pub fn with_blocks_added(mut self, extra: usize, stack: &super::ConvNextConfig, device: &B::Device) -> Self {
        self.blocks.extend((0..extra).map(|_| ConvNextBlock::identity(stack.dim, stack.hidden, stack.kernel, device)));
        self
    }

    /// Log magnitudes of `windows` `[rows, len]` through `basis` `[len, 2 bins]`.
    fn log_magnitude(windows: Tensor<B, 2>, basis: &Tensor<B, 2>) -> Tensor<B, 2> {
        power(matmul(windows, basis.clone())).sqrt().add_scalar(FLOOR).log()
    }
}

impl<B: Backend> Streaming<B> for Encoder<B> {
    type State = EncoderState<B>;

    fn init_state(&self, batch: usize, device: &B::Device) -> Self::State {
        EncoderState {
            previous: Tensor::zeros([batch, 1, self.hop], device),
            blocks: self.blocks.iter().map(|b| b.init_state(batch, device)).collect(),
        }
    }

    /// `input` must hold a whole number of hops.
    fn step(&self, input: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        let [batch, len, _] = input.dims();
        let hop = self.hop;
        let frames = len / hop;
        let current = input.reshape([batch, frames, hop]);
        let previous = previous_frames(current.clone(), &mut state.previous);
        let windows = Tensor::cat(vec![previous, current], 2);
        let rows = batch * frames;
        let mut features = vec![Self::log_magnitude(windows.clone().reshape([rows, 2 * hop]), &self.long)];
        let (short, step) = (hop / 2, hop / SHORT_WINDOWS);
        for k in 0..SHORT_WINDOWS {
            let start = 2 * hop - short - (SHORT_WINDOWS - 1 - k) * step;
            let piece = windows.clone().narrow(2, start, short).reshape([rows, short]);
            features.push(Self::log_magnitude(piece, &self.short));
        }
        let features = Tensor::cat(features, 1);
        let width = features.dims()[1];
        let mut x = linear(&self.input, features.reshape([batch, frames, width]));
        for (block, block_state) in self.blocks.iter().zip(&mut state.blocks) {
            x = block.step(x, block_state);
        }
        linear(&self.output, self.norm.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    use crate::model::ConvNextConfig;

    fn encoder() -> Encoder<Flex> {
        let stack = ConvNextConfig { dim: 32, hidden: 64, blocks: 2, kernel: 3 };
        // A real frame's 640-sample window: inner dimensions over 512 are where a lone row
        // used to be summed in another order (see `matmul`).
        let config = ModelConfig { encoder: stack, latent_dim: 16, ..Default::default() };
        Encoder::new(&config, &Default::default())
    }

    #[test]
    fn pieces_give_the_latents_of_the_whole_signal() {
        let device = Default::default();
        let encoder = encoder();
        let signal: Vec<f32> = (0..320 * 9).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.8).collect();
        let whole_input = Tensor::<Flex, 3>::from_data(TensorData::new(signal.clone(), [1, signal.len(), 1]), &device);
        let whole: Vec<f32> =
            encoder.step(whole_input, &mut encoder.init_state(1, &device)).into_data().into_vec().unwrap();
        let mut state = encoder.init_state(1, &device);
        let (mut pieces, mut start) = (Vec::new(), 0);
        for chunk in [320usize, 960, 640, 320, 640] {
            let piece = signal[start..start + chunk].to_vec();
            start += chunk;
            let input = Tensor::<Flex, 3>::from_data(TensorData::new(piece, [1, chunk, 1]), &device);
            pieces.extend(encoder.step(input, &mut state).into_data().into_vec::<f32>().unwrap());
        }
        assert_eq!(whole, pieces, "streamed latents must be bit-identical to the whole signal's");
    }

    #[test]
    fn added_blocks_leave_the_latents_unchanged_until_trained() {
        let device = Default::default();
        let encoder = encoder();
        let signal: Vec<f32> = (0..320 * 5).map(|i| (i as f32 * 0.07).sin() * 0.4).collect();
        let input = Tensor::<Flex, 3>::from_data(TensorData::new(signal, [1, 320 * 5, 1]), &device);
        let encode = |e: &Encoder<Flex>| -> Vec<f32> {
            e.step(input.clone(), &mut e.init_state(1, &device)).into_data().into_vec().unwrap()
        };
        let before = encode(&encoder);
        let stack = ConvNextConfig { dim: 32, hidden: 64, blocks: 2, kernel: 3 };
        let grown = encoder.with_blocks_added(3, &stack, &device);
        assert_eq!(grown.blocks.len(), 5);
        assert_eq!(encode(&grown), before);
    }

    #[test]
    fn the_latent_depends_only_on_the_past() {
        let device = Default::default();
        let encoder = encoder();
        let mut signal: Vec<f32> = (0..320 * 6).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
        let run = |s: &[f32]| -> Vec<f32> {
            let input = Tensor::<Flex, 3>::from_data(TensorData::new(s.to_vec(), [1, s.len(), 1]), &device);
            encoder.step(input, &mut encoder.init_state(1, &device)).into_data().into_vec().unwrap()
        };
        let before = run(&signal);
        for v in &mut signal[320 * 4..] {
            *v = -*v * 3.0;
        }
        let after = run(&signal);
        assert_eq!(before[..16 * 4], after[..16 * 4], "frames 0..4 changed when only frames 4.. did");
        assert_ne!(before[16 * 4..], after[16 * 4..]);
    }
}
