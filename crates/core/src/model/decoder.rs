//! Frame-rate decoder: causal ConvNeXt blocks, then a head that predicts one short spectrum
//! per frame (log magnitudes and phases), turned into samples by a fixed inverse DFT and
//! overlap-add (Vocos-style). Nothing learned runs at the sample rate.
//!
//! A model with a [`HarmonicSource`] also takes each frame's transmitted F0 (Hz, 0 when
//! unvoiced) as one more input channel after the latents, and adds the harmonic bank that
//! the source synthesizes from it to the inverse-STFT output.

use std::f64::consts::PI;

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::config::{ConvNextConfig, HarmonicSourceConfig, ModelConfig};
use super::conv::{CausalConv1d, ConvNextBlock, ConvState, Streaming, previous_frames};
use super::harmonic::{HarmonicSource, HarmonicState};
use super::matmul::{linear, matmul};
use crate::dsp::{periodic_hann, spectrum_bins};

/// Log-magnitudes are clamped here before `exp`, so an untrained head cannot overflow.
const MAX_LOG_MAGNITUDE: f64 = 6.0;

/// The whole decoder: latents `[batch, frames, latent_dim]` (with a harmonic source:
/// `latent_dim + 1`, the last channel each frame's F0) to samples `[batch, frames * hop, 1]`.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    input: CausalConv1d<B>,
    blocks: Vec<ConvNextBlock<B>>,
    norm: LayerNorm<B>,
    head: Linear<B>,
    /// Inverse real DFT times a Hann window, `[2 * bins, 2 * hop]`; derived, never stored.
    synthesis: Tensor<B, 2>,
    hop: usize,
    latent_dim: usize,
    harmonic: Option<HarmonicSource<B>>,
}

/// State of the whole [`Decoder`]: conv contexts and the half frame that the last frame
/// left to overlap-add.
#[derive(Debug, Clone)]
pub struct DecoderState<B: Backend> {
    input: ConvState<B>,
    blocks: Vec<ConvState<B>>,
    overlap: Tensor<B, 3>,
    harmonic: Option<HarmonicState<B>>,
}

impl<B: Backend> Decoder<B> {
    /// A freshly initialised decoder for `config`.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let c = &config.decoder;
        let n_fft = config.n_fft();
        Self {
            input: CausalConv1d::new(config.latent_dim, c.dim, c.kernel, 1, 1, device),
            blocks: (0..c.blocks).map(|_| ConvNextBlock::new(c.dim, c.hidden, c.kernel, device)).collect(),
            norm: LayerNormConfig::new(c.dim).init(device),
            head: LinearConfig::new(c.dim, 2 * spectrum_bins(n_fft)).init(device),
            synthesis: synthesis_basis(n_fft, device),
            hop: config.hop(),
            latent_dim: config.latent_dim,
            harmonic: config
                .harmonic_source
                .as_ref()
                .map(|source| HarmonicSource::new(c.dim, source.bands, config.hop(), config.sample_rate, device)),
        }
    }

    /// This decoder with a harmonic source of `source`'s size added, starting quiet, so a
    /// trained decoder learns to use the transmitted pitch without losing what it learned.
    pub fn with_harmonic_source(
        mut self,
        source: &HarmonicSourceConfig,
        config: &ModelConfig,
        device: &B::Device,
    ) -> Self {
        let dim = config.decoder.dim;
        self.harmonic = Some(HarmonicSource::new(dim, source.bands, config.hop(), config.sample_rate, device));
        self
    }

    /// This decoder with `extra` more blocks (sized by `stack`) after its own, each starting
    /// as the identity, so a trained decoder gains capacity without losing what it learned.
    pub fn with_blocks_added(mut self, extra: usize, stack: &ConvNextConfig, device: &B::Device) -> Self {
        self.blocks.extend((0..extra).map(|_| ConvNextBlock::identity(stack.dim, stack.hidden, stack.kernel, device)));
        self
    }

    /// The normalised output of the ConvNeXt stack `[batch, frames, dim]`, with the pitch
    /// features of `f0` `[batch, frames, 1]` added to its input when there is a source.
    fn trunk(&self, latents: Tensor<B, 3>, f0: Option<Tensor<B, 3>>, state: &mut DecoderState<B>) -> Tensor<B, 3> {
        let mut x = self.input.step(latents, &mut state.input);
        if let (Some(source), Some(f0)) = (&self.harmonic, f0) {
            x = x + source.pitch_features(f0);
        }
        for (block, block_state) in self.blocks.iter().zip(&mut state.blocks) {
            x = block.step(x, block_state);
        }
        self.norm.forward(x)
    }

    /// The windowed synthesis frames `[batch, frames, 2 * hop]` for trunk `features`.
    fn windows(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, frames, _] = features.dims();
        let spectrum = linear(&self.head, features);
        let bins = spectrum.dims()[2] / 2;
        let magnitude = spectrum.clone().narrow(2, 0, bins).clamp_max(MAX_LOG_MAGNITUDE).exp();
        let phase = spectrum.narrow(2, bins, bins);
        let real = magnitude.clone() * phase.clone().cos();
        let imaginary = magnitude * phase.sin();
        let rows = Tensor::cat(vec![real, imaginary], 2).reshape([batch * frames, 2 * bins]);
        matmul(rows, self.synthesis.clone()).reshape([batch, frames, 2 * self.hop])
    }

    /// Overlap-adds half-overlapping windowed frames `[batch, frames, 2 * hop]` onto the
    /// half that the last frame left; keeps what these leave for the next one.
    fn overlap_add(&self, windows: Tensor<B, 3>, state: &mut DecoderState<B>) -> Tensor<B, 3> {
        let [batch, frames, _] = windows.dims();
        let heads = windows.clone().narrow(2, 0, self.hop);
        let tails = windows.narrow(2, self.hop, self.hop);
        let previous = previous_frames(tails, &mut state.overlap);
        (heads + previous).reshape([batch, frames * self.hop, 1])
    }
}

/// Rows `0..bins` turn real parts into windowed samples, rows `bins..` imaginary parts.
fn synthesis_basis<B: Backend>(n_fft: usize, device: &B::Device) -> Tensor<B, 2> {
    let bins = spectrum_bins(n_fft);
    let n = n_fft as f64;
    let mut basis = vec![0f32; 2 * bins * n_fft];
    for k in 0..bins {
        let weight = if k == 0 || k == bins - 1 { 1.0 } else { 2.0 };
        for t in 0..n_fft {
            let window = periodic_hann(t, n_fft);
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
            harmonic: self.harmonic.as_ref().map(|source| source.init_state(batch, device)),
        }
    }

    fn step(&self, input: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        self.step_parts(input, state).0
    }
}

impl<B: Backend> Decoder<B> {
    /// [`Streaming::step`], also giving the harmonic part of the output alone when the
    /// decoder has a source (training fits that part to voiced speech on its own).
    pub fn step_parts(&self, input: Tensor<B, 3>, state: &mut DecoderState<B>) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let Some(source) = &self.harmonic else {
            let features = self.trunk(input, None, state);
            return (self.overlap_add(self.windows(features), state), None);
        };
        let [batch, frames, _] = input.dims();
        let latents = input.clone().narrow(2, 0, self.latent_dim);
        let f0 = input.narrow(2, self.latent_dim, 1);
        let f0_values: Vec<f32> = f0.clone().into_data().convert::<f32>().into_vec().expect("float pitch");
        debug_assert_eq!(f0_values.len(), batch * frames);
        let features = self.trunk(latents, Some(f0), state);
        let noise = self.overlap_add(self.windows(features.clone()), state);
        let source_state = state.harmonic.as_mut().expect("a source's state comes with it");
        let harmonic = source.synthesize(features, &f0_values, source_state);
        (noise + harmonic.clone(), Some(harmonic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    /// A one-block decoder small enough for unit tests.
    fn tiny_config() -> ModelConfig {
        ModelConfig {
            hop: 20,
            latent_dim: 8,
            decoder: ConvNextConfig { dim: 16, hidden: 32, blocks: 1, kernel: 3 },
            ..Default::default()
        }
    }

    /// `input` `[2, frames, _]` decoded whole, and decoded in pieces of `sizes` frames.
    fn whole_and_pieces(decoder: &Decoder<Flex>, input: Tensor<Flex, 3>, sizes: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let whole = decoder.step(input.clone(), &mut decoder.init_state(2, &device)).into_data().into_vec().unwrap();
        let mut state = decoder.init_state(2, &device);
        let (mut pieces, mut start) = (Vec::new(), 0);
        for &frames in sizes {
            pieces.push(decoder.step(input.clone().narrow(1, start, frames), &mut state));
            start += frames;
        }
        (whole, Tensor::cat(pieces, 1).into_data().into_vec().unwrap())
    }

    #[test]
    fn pieces_decode_like_the_whole_signal() {
        let device = Default::default();
        let decoder = Decoder::<Flex>::new(&tiny_config(), &device);
        let latents = Tensor::<Flex, 3>::random([2, 9, 8], Distribution::Normal(0.0, 1.0), &device);
        let (whole, pieces) = whole_and_pieces(&decoder, latents, &[1, 3, 2, 3]);
        assert_eq!(whole.len(), pieces.len());
        let worst = whole.iter().zip(&pieces).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = whole.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-4 * scale.max(1.0), "streamed samples differ by {worst} (peak {scale})");
    }

    #[test]
    fn a_decoder_with_a_harmonic_source_streams_like_the_whole_signal() {
        let device = Default::default();
        let config = ModelConfig { harmonic_source: Some(HarmonicSourceConfig { bands: 9 }), ..tiny_config() };
        let decoder = Decoder::<Flex>::new(&config, &device);
        let latents = Tensor::<Flex, 3>::random([2, 9, 8], Distribution::Normal(0.0, 1.0), &device);
        let f0: Vec<f32> = (0..18).map(|i| if i % 4 == 1 { 0.0 } else { 100.0 + 7.0 * i as f32 }).collect();
        let f0 = Tensor::<Flex, 3>::from_data(TensorData::new(f0, [2, 9, 1]), &device);
        let input = Tensor::cat(vec![latents, f0], 2);
        let (whole, pieces) = whole_and_pieces(&decoder, input, &[2, 1, 4, 2]);
        let worst = whole.iter().zip(&pieces).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "streamed samples differ by {worst}");
    }

    #[test]
    fn added_blocks_leave_the_output_unchanged_until_trained() {
        let device = Default::default();
        let config = tiny_config();
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
    fn the_synthesis_inverts_a_windowed_dft() {
        // A spectrum of one cosine at bin 3 comes back as that cosine under the window.
        let device = Default::default();
        let n_fft = 40;
        let bins = spectrum_bins(n_fft);
        let mut spectrum = vec![0f32; 2 * bins];
        spectrum[3] = n_fft as f32 / 2.0;
        let rows = Tensor::<Flex, 2>::from_data(TensorData::new(spectrum, [1, 2 * bins]), &device);
        let samples: Vec<f32> = matmul(rows, synthesis_basis(n_fft, &device)).into_data().into_vec().unwrap();
        for (t, s) in samples.iter().enumerate() {
            let expected = periodic_hann(t, n_fft) * (2.0 * PI * 3.0 * t as f64 / n_fft as f64).cos();
            assert!((f64::from(*s) - expected).abs() < 1e-5, "sample {t}: {s} vs {expected}");
        }
    }
}
