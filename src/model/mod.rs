//! The neural network, generic over burn backends. Knows nothing of files or sockets
//! (apart from weights) — tensors in, tensors out.

pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod harmonic;
mod matmul;
pub mod rvq;
pub mod spectral;
pub mod weights;

use burn::module::Module;
use burn::tensor::backend::Backend;

pub use config::{ConvNextConfig, ModelConfig};
pub use conv::Streaming;
pub use weights::{ModelId, Weights};

/// Encoder, quantizer and decoder of one model.
#[derive(Module, Debug)]
pub struct Model<B: Backend> {
    /// Waveform to latents.
    pub encoder: encoder::Encoder<B>,
    /// Latents to codes and back.
    pub rvq: rvq::Rvq<B>,
    /// Latents to waveform.
    pub decoder: decoder::Decoder<B>,
}

impl<B: Backend> Model<B> {
    /// A freshly initialised network; seed the backend first for a reproducible one.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        Self {
            encoder: encoder::Encoder::new(config, device),
            rvq: rvq::Rvq::new(config, device),
            decoder: decoder::Decoder::new(config, device),
        }
    }
}
