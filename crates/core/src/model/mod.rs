//! The neural network, generic over burn backends: the [`encoder`], the residual vector
//! quantizer ([`rvq`]) and the [`decoder`], each a [`Streaming`] layer that keeps its own
//! state. Tensors in, tensors out; the only file it knows is its [`Weights`].
//!
//! Coding needs none of this directly ([`crate::Codec`] wraps it); the trainer
//! (`tokenwave-train`) builds and updates these modules.

pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod harmonic;
mod matmul;
pub mod rvq;
pub mod weights;

use burn::module::Module;
use burn::tensor::backend::Backend;

pub use config::{ConvNextConfig, HarmonicSourceConfig, ModelConfig};
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;

    type Trained = Autodiff<Flex>;

    /// Float parameters, and those the optimizer would never update (not tracked for
    /// gradients): a `Param::map` in a constructor once made such parameters, and a head's
    /// weights never moved in three training runs.
    #[derive(Default)]
    struct Frozen {
        total: usize,
        frozen: usize,
    }

    impl ModuleVisitor<Trained> for Frozen {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Trained, D>>) {
            self.total += 1;
            self.frozen += usize::from(!param.val().is_require_grad());
        }
    }

    fn assert_trainable(module: &impl Module<Trained>, what: &str) {
        let mut count = Frozen::default();
        module.visit(&mut count);
        assert!(count.total > 0 && count.frozen == 0, "{what}: {} of {} parameters frozen", count.frozen, count.total);
    }

    #[test]
    fn every_way_of_building_the_networks_leaves_every_parameter_trainable() {
        let device = Default::default();
        let small = ConvNextConfig { dim: 16, hidden: 32, blocks: 1, kernel: 3 };
        let config = ModelConfig { decoder: small.clone(), encoder: small.clone(), ..Default::default() };
        let model = Model::<Trained>::new(&config, &device);
        assert_trainable(&model.encoder, "new encoder");
        assert_trainable(&model.decoder, "new decoder");
        let grown = decoder::Decoder::<Trained>::new(&config, &device).with_blocks_added(1, &small, &device);
        assert_trainable(&grown, "grown decoder");
        let grown = encoder::Encoder::<Trained>::new(&config, &device).with_blocks_added(1, &small, &device);
        assert_trainable(&grown, "grown encoder");
        let source = HarmonicSourceConfig { bands: 9 };
        let clocked =
            decoder::Decoder::<Trained>::new(&config, &device).with_harmonic_source(&source, &config, &device);
        assert_trainable(&clocked, "decoder with a harmonic source added");
        let with_source = ModelConfig { harmonic_source: Some(source), ..config.clone() };
        assert_trainable(
            &decoder::Decoder::<Trained>::new(&with_source, &device),
            "new decoder with a harmonic source",
        );

        let path = std::env::temp_dir().join(format!("tokenwave-trainable-{}.safetensors", std::process::id()));
        weights::save(&model, &config, &path).unwrap();
        let loaded = Weights::from_file(&path).and_then(|w| w.build::<Trained>(&device));
        std::fs::remove_file(&path).unwrap();
        let loaded = loaded.unwrap();
        assert_trainable(&loaded.encoder, "loaded encoder");
        assert_trainable(&loaded.decoder, "loaded decoder");
    }
}
