//! The other codebook design of the comparison (issue 3): low-dimensional, L2-normalised
//! lookup. Each stage projects the residual down to a few dimensions, picks the codeword
//! with the highest cosine similarity, and projects the (gradient-trained) codeword back up.
//! Normalised low-dimensional codes are known to keep codebooks in use without EMA or
//! restarts; `tokenwave train` runs it when the config sets `codebook_dim`.
//!
//! Training only, for now: the winner of the comparison goes into the inference model.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use rand::RngExt;
use rand::rngs::StdRng;

use super::vq::{DEAD_AFTER_STEPS, StageStats};

/// Projections and codebooks of every stage.
#[derive(Module, Debug)]
pub struct FactorizedRvq<B: Backend> {
    /// `[stages, latent, dim]`.
    down: Param<Tensor<B, 3>>,
    /// `[stages, dim, latent]`.
    up: Param<Tensor<B, 3>>,
    /// `[stages, size, dim]`.
    codebooks: Param<Tensor<B, 3>>,
}

/// One quantization of a batch.
pub struct Quantized<B: Backend> {
    /// Sum of the stages' outputs, `[rows, latent]`; gradients reach the encoder through
    /// the straight-through estimator and the projections directly.
    pub latents: Tensor<B, 2>,
    /// Commitment (encoder towards codewords) plus codebook (codewords towards encoder)
    /// loss, in the projected space.
    pub loss: Tensor<B, 1>,
    /// Chosen codes per stage.
    pub codes: Vec<Vec<i64>>,
    /// Per stage the normalised projected inputs `[rows * dim]`, to restart dead codes from.
    pub projected: Vec<Vec<f32>>,
}

fn normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt().clamp_min(1e-6);
    x / norm
}

impl<B: Backend> FactorizedRvq<B> {
    /// Random projections and codebooks.
    pub fn new(stages: usize, size: usize, latent: usize, dim: usize, device: &B::Device) -> Self {
        let scale = |fan_in: usize| Distribution::Normal(0.0, 1.0 / (fan_in as f64).sqrt());
        Self {
            down: Param::from_tensor(Tensor::random([stages, latent, dim], scale(latent), device)),
            up: Param::from_tensor(Tensor::random([stages, dim, latent], scale(dim), device)),
            codebooks: Param::from_tensor(Tensor::random([stages, size, dim], Distribution::Normal(0.0, 1.0), device)),
        }
    }

    fn stage(param: &Param<Tensor<B, 3>>, stage: usize) -> Tensor<B, 2> {
        let [_, rows, cols] = param.dims();
        param.val().narrow(0, stage, 1).reshape([rows, cols])
    }

    /// Quantizes `latents` `[rows, latent]` with the first `stages` stages.
    pub fn quantize(&self, latents: Tensor<B, 2>, stages: usize, commitment_weight: f64) -> Quantized<B> {
        let [rows, latent] = latents.dims();
        let device = latents.device();
        let mut residual = latents;
        let mut sum = Tensor::<B, 2>::zeros([rows, latent], &device);
        let mut loss = Tensor::<B, 1>::zeros([1], &device);
        let mut codes = Vec::with_capacity(stages);
        let mut inputs = Vec::with_capacity(stages);
        for stage in 0..stages {
            let projected = residual.clone().matmul(Self::stage(&self.down, stage));
            let codebook = Self::stage(&self.codebooks, stage);
            let similarity = normalize(projected.clone()).matmul(normalize(codebook.clone()).transpose());
            let index: Tensor<B, 1, Int> = similarity.argmax(1).reshape([rows]);
            let chosen = normalize(codebook).select(0, index.clone());
            let target = normalize(projected);
            inputs.push(target.clone().into_data().convert::<f32>().into_vec::<f32>().expect("float inputs"));
            let commit = (target.clone() - chosen.clone().detach()).powi_scalar(2).mean();
            let pull = (chosen.clone() - target.clone().detach()).powi_scalar(2).mean();
            loss = loss + commit.mul_scalar(commitment_weight) + pull;
            let straight_through = target.clone() + (chosen - target).detach();
            let out = straight_through.matmul(Self::stage(&self.up, stage));
            sum = sum + out.clone();
            residual = residual - out;
            codes.push(index.into_data().convert::<i64>().into_vec::<i64>().expect("int codes"));
        }
        Quantized { latents: sum, loss, codes, projected: inputs }
    }

    /// Replaces the codewords `usage` reports dead (never chosen, or not for
    /// [`DEAD_AFTER_STEPS`]) by random inputs of this batch, as the EMA codebooks do: without
    /// it one code per stage took every input within 300 steps. Keeps the parameter's id, so
    /// the optimizer state stays attached. Returns the number restarted.
    pub fn restart_dead(self, usage: &mut Usage, projected: &[Vec<f32>], step: u64, rng: &mut StdRng) -> (Self, usize) {
        let [stages, size, dim] = self.codebooks.dims();
        let mut words = self.codebooks.val().into_data().convert::<f32>().into_vec::<f32>().expect("float codebooks");
        let mut restarted = 0;
        for (stage, inputs) in projected.iter().enumerate().take(stages) {
            let rows = inputs.len() / dim;
            if rows == 0 {
                continue;
            }
            for code in usage.dead(stage, step) {
                let row = rng.random_range(0..rows);
                let word = &mut words[(stage * size + code) * dim..(stage * size + code + 1) * dim];
                for (w, x) in word.iter_mut().zip(&inputs[row * dim..(row + 1) * dim]) {
                    *w = x + 0.01 * (rng.random::<f32>() - 0.5);
                }
                usage.revive(stage, code, step);
                restarted += 1;
            }
        }
        if restarted == 0 {
            return (self, 0);
        }
        let device = self.codebooks.device();
        let codebooks = self
            .codebooks
            .map(|_| Tensor::from_data(TensorData::new(words, [stages, size, dim]), &device).require_grad());
        (Self { codebooks, ..self }, restarted)
    }
}

/// Which codes each stage has chosen lately, for the same utilisation figures as the EMA
/// codebooks report.
pub struct Usage {
    size: usize,
    /// Step each code was last chosen or restarted: what decides it is dead.
    last_used: Vec<u64>,
    /// Step each code was last chosen: what the utilisation figure counts.
    last_chosen: Vec<u64>,
    counts: Vec<f32>,
}

impl Usage {
    /// Nothing used yet.
    pub fn new(stages: usize, size: usize) -> Self {
        Self {
            size,
            last_used: vec![0; stages * size],
            last_chosen: vec![0; stages * size],
            counts: vec![0.0; stages * size],
        }
    }

    /// Records the codes `stage` chose at `step`.
    pub fn record(&mut self, stage: usize, codes: &[i64], step: u64) {
        let range = stage * self.size..(stage + 1) * self.size;
        self.counts[range].iter_mut().for_each(|c| *c *= 0.99);
        for &code in codes {
            let i = stage * self.size + code as usize;
            self.last_used[i] = step;
            self.last_chosen[i] = step;
            self.counts[i] += 1.0;
        }
    }

    /// Codes of `stage` not chosen (or revived) within the last [`DEAD_AFTER_STEPS`] steps,
    /// or never.
    fn dead(&self, stage: usize, step: u64) -> Vec<usize> {
        let last = &self.last_used[stage * self.size..(stage + 1) * self.size];
        (0..self.size).filter(|&k| last[k] == 0 || step.saturating_sub(last[k]) > DEAD_AFTER_STEPS).collect()
    }

    /// Gives a restarted code of `stage` a fresh grace period.
    fn revive(&mut self, stage: usize, code: usize, step: u64) {
        self.last_used[stage * self.size + code] = step;
    }

    /// Share of codes used in the last 50 steps and perplexity, per stage.
    pub fn stats(&self, step: u64) -> Vec<StageStats> {
        self.counts
            .chunks(self.size)
            .zip(self.last_chosen.chunks(self.size))
            .map(|(counts, last)| StageStats::of(counts, last, step))
            .collect()
    }
}
