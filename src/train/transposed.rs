//! The other decoder design of the comparison (issue 3): the encoder mirrored — causal
//! convolutions at rising sample rates, each upsampling a transposed convolution. A causal
//! transposed conv with kernel 2·stride is written as a stride-1 conv over two frames
//! producing `stride` output samples per frame (sub-pixel form), which keeps it causal and
//! streamable like every other layer here.
//!
//! Training only, for now: the winner of the comparison goes into the inference model.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;

use crate::model::conv::CausalConv1d;
use crate::model::{ModelConfig, Streaming};

const SLOPE: f64 = 0.2;

/// One upsampling stage: transposed conv, then a residual unit at the new rate.
#[derive(Module, Debug)]
struct UpStage<B: Backend> {
    up: CausalConv1d<B>,
    residual: CausalConv1d<B>,
    stride: usize,
}

/// Latents `[batch, frames, latent]` to samples, through the encoder's strides in reverse.
#[derive(Module, Debug)]
pub struct TransposedDecoder<B: Backend> {
    input: CausalConv1d<B>,
    stages: Vec<UpStage<B>>,
    output: CausalConv1d<B>,
}

fn run<B: Backend>(conv: &CausalConv1d<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let mut state = conv.init_state(x.dims()[0], &x.device());
    conv.step(x, &mut state)
}

impl<B: Backend> TransposedDecoder<B> {
    /// Channel widths mirror the encoder's: halved at every upsampling, ending at
    /// `encoder_channels` at the full rate.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let strides: Vec<usize> = config.strides.iter().rev().copied().collect();
        let last = config.encoder_channels;
        let widths: Vec<usize> = (0..=strides.len()).map(|i| last << (strides.len() - i)).collect();
        let stages = strides
            .iter()
            .enumerate()
            .map(|(i, &stride)| {
                let (cin, cout) = (widths[i], widths[i + 1]);
                UpStage {
                    up: CausalConv1d::new(cin, cout * stride, 2, 1, 1, device),
                    residual: CausalConv1d::new(cout, cout, 3, 1, 1, device),
                    stride,
                }
            })
            .collect();
        Self {
            input: CausalConv1d::new(config.latent_dim, widths[0], 7, 1, 1, device),
            stages,
            output: CausalConv1d::new(last, 1, 7, 1, 1, device),
        }
    }

    /// Samples `[batch, frames * hop]`.
    pub fn forward(&self, latents: Tensor<B, 3>) -> Tensor<B, 2> {
        let mut x = run(&self.input, latents);
        for stage in &self.stages {
            let [batch, frames, _] = x.dims();
            let up = run(&stage.up, leaky_relu(x, SLOPE));
            let channels = up.dims()[2] / stage.stride;
            x = up.reshape([batch, frames * stage.stride, channels]);
            x = x.clone() + run(&stage.residual, leaky_relu(x, SLOPE));
        }
        let out = run(&self.output, leaky_relu(x, SLOPE));
        let [batch, len, _] = out.dims();
        out.reshape([batch, len])
    }
}
