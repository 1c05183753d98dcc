//! Residual vector quantization: each stage codes what the stages before it left over.

use burn::module::{Module, Param};
use burn::tensor::{Distribution, Int, Tensor, backend::Backend};

use super::config::ModelConfig;

/// `stages` codebooks of `size` entries of `dim` values each, stored as one tensor
/// `[stages, size, dim]`.
#[derive(Module, Debug)]
pub struct Rvq<B: Backend> {
    /// The codewords. Trained by EMA updates rather than gradients.
    pub codebooks: Param<Tensor<B, 3>>,
}

impl<B: Backend> Rvq<B> {
    /// Codebooks drawn from a unit normal; training replaces them with data.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let shape = [config.max_stages, config.codebook_size, config.latent_dim];
        Self { codebooks: Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)) }
    }

    /// Number of stages the quantizer has.
    pub fn stages(&self) -> usize {
        self.codebooks.dims()[0]
    }

    /// Codebook of one stage, `[size, dim]`.
    pub fn codebook(&self, stage: usize) -> Tensor<B, 2> {
        let [_, size, dim] = self.codebooks.dims();
        self.codebooks.val().narrow(0, stage, 1).reshape([size, dim])
    }

    /// Index of the nearest codeword for each row of `residual` `[rows, dim]`.
    pub fn nearest(codebook: &Tensor<B, 2>, residual: &Tensor<B, 2>) -> Tensor<B, 1, Int> {
        let rows = residual.dims()[0];
        let norms = (codebook.clone() * codebook.clone()).sum_dim(1).reshape([1, codebook.dims()[0]]);
        let scores = norms - residual.clone().matmul(codebook.clone().transpose()).mul_scalar(2.0);
        scores.argmin(1).reshape([rows])
    }

    /// Codes `[batch, frames, stages]` for latents `[batch, frames, dim]`, using the first
    /// `stages` codebooks.
    pub fn encode(&self, latents: Tensor<B, 3>, stages: usize) -> Tensor<B, 3, Int> {
        let [batch, frames, dim] = latents.dims();
        let mut residual = latents.reshape([batch * frames, dim]);
        let mut codes = Vec::with_capacity(stages);
        for stage in 0..stages {
            let codebook = self.codebook(stage);
            let index = Self::nearest(&codebook, &residual);
            residual = residual - codebook.select(0, index.clone());
            codes.push(index.reshape([batch * frames, 1]));
        }
        Tensor::cat(codes, 1).reshape([batch, frames, stages])
    }

    /// Latents `[batch, frames, dim]` for codes `[batch, frames, stages]`.
    pub fn decode(&self, codes: Tensor<B, 3, Int>) -> Tensor<B, 3> {
        let [batch, frames, stages] = codes.dims();
        let dim = self.codebooks.dims()[2];
        let mut sum: Tensor<B, 2> = Tensor::zeros([batch * frames, dim], &codes.device());
        for stage in 0..stages {
            let index = codes.clone().narrow(2, stage, 1).reshape([batch * frames]);
            sum = sum + self.codebook(stage).select(0, index);
        }
        sum.reshape([batch, frames, dim])
    }
}
