//! Codebooks learned by exponential moving averages of the residuals assigned to each code
//! (no gradients), with dead codes restarted from current residuals. Measured before this
//! project: gradient-trained codebooks collapsed within 200 steps; EMA with restarts held
//! ~93 % utilisation (shared/NOTES-BACKENDS.md).

use burn::module::{AutodiffModule, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokenwave_core::ModelConfig;
use tokenwave_core::model::rvq::Rvq;
use tokenwave_core::model::{Model, Streaming};

/// EMA decay of code counts and sums.
const DECAY: f32 = 0.99;
/// Laplace smoothing of the counts.
const SMOOTHING: f32 = 1e-5;
/// A code not chosen for this many steps is dead and gets restarted.
pub(crate) const DEAD_AFTER_STEPS: u64 = 50;

/// The codebooks' running statistics, `stages x size x dim`.
#[derive(Clone, Serialize, Deserialize)]
pub struct EmaCodebooks {
    stages: usize,
    size: usize,
    dim: usize,
    counts: Vec<f32>,
    sums: Vec<f32>,
    last_used: Vec<u64>,
    initialised: Vec<bool>,
    /// Step each code was last chosen (a restart does not count), for the utilisation
    /// figure; absent from checkpoints written before it existed.
    #[serde(default)]
    last_chosen: Vec<u64>,
}

/// Per-stage health figures.
#[derive(Clone, Debug, Serialize)]
pub struct StageStats {
    /// Share of codes chosen in the last 50 steps (restarts not counted; a code unused for
    /// longer is restarted).
    pub utilization: f32,
    /// `exp(entropy)` of the EMA code distribution.
    pub perplexity: f32,
}

impl StageStats {
    /// The figures of one stage from its (decaying) code counts and the step each code was
    /// last chosen (0: never).
    pub(crate) fn of(counts: &[f32], last_chosen: &[u64], step: u64) -> Self {
        let used = last_chosen.iter().filter(|&&s| s > 0 && step.saturating_sub(s) <= DEAD_AFTER_STEPS).count();
        let total: f32 = counts.iter().sum::<f32>().max(1e-12);
        let entropy: f32 = counts.iter().filter(|&&c| c > 0.0).map(|&c| -(c / total) * (c / total).ln()).sum();
        Self { utilization: used as f32 / counts.len() as f32, perplexity: entropy.exp() }
    }
}

impl EmaCodebooks {
    /// Empty statistics; each stage is initialised from the first residuals it sees.
    pub fn new(stages: usize, size: usize, dim: usize) -> Self {
        Self {
            stages,
            size,
            dim,
            counts: vec![0.0; stages * size],
            sums: vec![0.0; stages * size * dim],
            last_used: vec![0; stages * size],
            initialised: vec![false; stages],
            last_chosen: vec![0; stages * size],
        }
    }

    /// Statistics that reproduce `codewords` (`[stages * size * dim]`), each code counted
    /// once: for continuing from trained weights.
    pub fn from_codewords(stages: usize, size: usize, dim: usize, codewords: &[f32]) -> Self {
        Self {
            stages,
            size,
            dim,
            counts: vec![1.0; stages * size],
            sums: codewords.to_vec(),
            last_used: vec![0; stages * size],
            initialised: vec![true; stages],
            last_chosen: vec![0; stages * size],
        }
    }

    /// Current codewords, `[stages * size * dim]`.
    pub fn codewords(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.sums.len()];
        for stage in 0..self.stages {
            let counts = &self.counts[stage * self.size..(stage + 1) * self.size];
            let total: f32 = counts.iter().sum();
            for (k, &count) in counts.iter().enumerate() {
                let smoothed = (count + SMOOTHING) / (total + self.size as f32 * SMOOTHING) * total.max(SMOOTHING);
                let at = (stage * self.size + k) * self.dim;
                for d in 0..self.dim {
                    out[at + d] = self.sums[at + d] / smoothed.max(1e-12);
                }
            }
        }
        out
    }

    /// Whether `stage` has codewords yet.
    pub fn is_initialised(&self, stage: usize) -> bool {
        self.initialised[stage]
    }

    /// Sets every code of `stage` to a random row of `residuals` (`[rows * dim]`).
    pub fn initialise(&mut self, stage: usize, residuals: &[f32], rng: &mut StdRng) {
        let rows = residuals.len() / self.dim;
        for k in 0..self.size {
            let row = rng.random_range(0..rows);
            self.restart(stage, k, &residuals[row * self.dim..(row + 1) * self.dim], 0);
        }
        self.initialised[stage] = true;
    }

    fn restart(&mut self, stage: usize, code: usize, vector: &[f32], step: u64) {
        let at = stage * self.size + code;
        self.counts[at] = 1.0;
        self.sums[at * self.dim..(at + 1) * self.dim].copy_from_slice(vector);
        self.last_used[at] = step;
    }

    /// Folds one batch into `stage`: `codes[i]` was chosen for residual row `i`. Codes unused
    /// for [`DEAD_AFTER_STEPS`] are restarted from random rows of this batch.
    pub fn update(&mut self, stage: usize, codes: &[i64], residuals: &[f32], step: u64, seed: u64) {
        let (size, dim) = (self.size, self.dim);
        let mut counts = vec![0f32; size];
        let mut sums = vec![0f32; size * dim];
        for (row, &code) in codes.iter().enumerate() {
            let code = code as usize;
            counts[code] += 1.0;
            for d in 0..dim {
                sums[code * dim + d] += residuals[row * dim + d];
            }
        }
        for k in 0..size {
            let at = stage * size + k;
            self.counts[at] = DECAY * self.counts[at] + (1.0 - DECAY) * counts[k];
            for d in 0..dim {
                let s = at * dim + d;
                self.sums[s] = DECAY * self.sums[s] + (1.0 - DECAY) * sums[k * dim + d];
            }
            if counts[k] > 0.0 {
                self.last_used[at] = step;
                if self.last_chosen.len() != self.last_used.len() {
                    self.last_chosen = vec![0; self.last_used.len()];
                }
                self.last_chosen[at] = step;
            }
        }
        let mut rng = StdRng::seed_from_u64(seed ^ step.rotate_left(17) ^ stage as u64);
        let rows = codes.len();
        for k in 0..size {
            if step.saturating_sub(self.last_used[stage * size + k]) > DEAD_AFTER_STEPS {
                let row = rng.random_range(0..rows);
                let mean = self.counts[stage * size..(stage + 1) * size].iter().sum::<f32>() / size as f32;
                self.restart(stage, k, &residuals[row * dim..(row + 1) * dim], step);
                let at = stage * size + k;
                // Give the restarted code an average weight so one batch can move it.
                let scale = mean.max(1e-3);
                self.counts[at] = scale;
                self.sums[at * dim..(at + 1) * dim].iter_mut().for_each(|v| *v *= scale);
            }
        }
    }

    /// Utilisation and perplexity of every stage at `step`.
    pub fn stats(&self, step: u64) -> Vec<StageStats> {
        (0..self.stages)
            .map(|stage| {
                let range = stage * self.size..(stage + 1) * self.size;
                let last_chosen = self.last_chosen.get(range.clone()).unwrap_or_default();
                StageStats::of(&self.counts[range], last_chosen, step)
            })
            .collect()
    }
}
impl EmaCodebooks {
    /// Initialises the stages that have no codewords yet from the residuals of `audio`
    /// `[batch, len]`, each stage quantized with its new codewords before the next is drawn,
    /// and writes them into `model`.
    pub(crate) fn initialise_from<B: AutodiffBackend>(
        &mut self,
        model: &mut Model<B>,
        audio: &[f32],
        [batch, len]: [usize; 2],
        config: &ModelConfig,
        device: &B::Device,
        rng: &mut StdRng,
    ) {
        if (0..config.max_stages).all(|stage| self.is_initialised(stage)) {
            return;
        }
        let encoder = model.valid().encoder;
        let audio = Tensor::<B::InnerBackend, 3>::from_data(TensorData::new(audio.to_vec(), [batch, len, 1]), device);
        let latents = encoder.step(audio, &mut encoder.init_state(batch, device));
        let [_, frames, dim] = latents.dims();
        let mut residual = latents.reshape([batch * frames, dim]);
        for stage in 0..config.max_stages {
            if !self.is_initialised(stage) {
                self.initialise(stage, &residual.clone().into_data().into_vec::<f32>().expect("float residual"), rng);
                self.apply_to(model, device);
            }
            let codebook = model.rvq.codebook(stage).inner();
            let index = Rvq::nearest(&codebook, &residual);
            residual = residual - codebook.select(0, index);
        }
    }

    /// Writes the codewords into `model`.
    pub(crate) fn apply_to<B: Backend>(&self, model: &mut Model<B>, device: &B::Device) {
        let shape = [self.stages, self.size, self.dim];
        model.rvq.codebooks = Param::from_tensor(Tensor::from_data(TensorData::new(self.codewords(), shape), device));
    }
}
