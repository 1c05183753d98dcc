//! Frame-rate decoder: causal ConvNeXt blocks, then a head that predicts one short
//! spectrum per frame (or, with rebuilt phase, the magnitudes of two), turned into samples
//! by a fixed inverse DFT and overlap-add. Nothing runs at the sample rate except that last
//! matrix product.

use std::f64::consts::{PI, TAU};

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::config::{ConvNextConfig, ModelConfig};
use super::conv::{CausalConv1d, ConvState, DepthwiseConv1d, Streaming, previous_frames};
use super::harmonic::{HarmonicPrediction, HarmonicSource, HarmonicState, PitchTrack};
use super::matmul::{linear, matmul};
use super::phase::PhaseRebuilder;
use super::spectral::{analysis_basis, periodic_hann, power};

/// Log-magnitudes are clamped here before `exp`, so an untrained head cannot overflow.
const MAX_LOG_MAGNITUDE: f64 = 6.0;
/// The voicing gate silences the inverse-STFT head fully below this frequency (Hz) on
/// voiced frames: the band where a voice's harmonics are resolved and its pitch is heard.
const GATE_FULL_HZ: f64 = 3000.0;
/// … and not at all from this frequency up, where voiced speech is mostly noise-like.
const GATE_END_HZ: f64 = 4000.0;
/// With rebuilt phase, synthesis frames per hop: phase-gradient integration needs windows
/// that overlap by three quarters (at half, rebuilt from the reference's own magnitudes,
/// STOI fell from 0.98 to 0.93).
const REBUILT_SUBFRAMES: usize = 2;
/// Sum of the squared periodic Hann windows of frames a quarter window apart: what
/// analysis-then-synthesis windowing scales a signal by.
const QUARTER_OVERLAP_GAIN: f64 = 1.5;

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
/// `[batch, frames * hop, 1]`: the inverse-STFT head's, plus the harmonic source's when the
/// model has one.
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
    /// Whether the head predicts magnitudes only, phase rebuilt (see [`ModelConfig`]).
    rebuilt_phase: bool,
    harmonic: Option<HarmonicSource<B>>,
    /// Per bin `[1, 1, bins]`, how much the voicing gate silences the inverse-STFT head on a
    /// voiced frame; derived, never stored. `None` without the gate.
    gate_taper: Option<Tensor<B, 3>>,
}

/// State of the whole [`Decoder`]: conv contexts, what the last frames left to overlap-add,
/// for accumulated phase the last frame's phases and whether the next frame is odd, and for
/// rebuilt phase one phase rebuilder per stream of the batch.
#[derive(Debug, Clone)]
pub struct DecoderState<B: Backend> {
    input: ConvState<B>,
    blocks: Vec<ConvState<B>>,
    overlap: Tensor<B, 3>,
    phase: Tensor<B, 3>,
    odd_frame: bool,
    harmonic: Option<HarmonicState<B>>,
    rebuilders: Vec<PhaseRebuilder>,
}

/// A training decode: the samples, and what the optional training losses need.
pub(crate) struct TrainingDecode<B: Backend> {
    /// `[batch, frames * hop, 1]`.
    pub audio: Tensor<B, 3>,
    /// How much neighbouring frames disagree, when asked for ([`frame_disagreement`]).
    pub disagreement: Option<Tensor<B, 1>>,
    /// What the harmonic source predicted, when the model has one.
    pub harmonic: Option<HarmonicPrediction<B>>,
    /// With rebuilt phase and a reference signal: the mean L1 distance of the predicted log
    /// magnitudes from the reference's on the synthesis frames, each floored at `floor`.
    pub magnitude_error: Option<Tensor<B, 1>>,
}

/// What a training decode's magnitudes are measured against, with rebuilt phase: the signal
/// being coded `[batch, frames * hop]` and the floor of the log-magnitude loss.
pub(crate) struct Reference<B: Backend> {
    pub signal: Tensor<B, 2>,
    pub floor: f64,
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
            synthesis: synthesis_basis(n_fft, config.rebuilt_phase, device),
            hop: config.hop(),
            accumulated_phase: config.accumulated_phase,
            rebuilt_phase: config.rebuilt_phase,
            harmonic: (config.harmonics > 0).then(|| {
                let source = HarmonicSource::new(c.dim, config.harmonics, config.hop(), config.sample_rate, device);
                if config.voicing_gate { source.with_voicing_head(c.dim, device) } else { source }
            }),
            gate_taper: config.voicing_gate.then(|| gate_taper(n_fft, config.sample_rate, device)),
        }
    }

    /// This decoder with a new, quiet harmonic source of `harmonics` harmonics beside its
    /// inverse-STFT head: it sounds as before until training turns the source up.
    pub fn with_harmonics_added(mut self, harmonics: usize, config: &ModelConfig, device: &B::Device) -> Self {
        let dim = config.decoder.dim;
        self.harmonic = Some(HarmonicSource::new(dim, harmonics, config.hop(), config.sample_rate, device));
        self
    }

    /// This decoder with the voicing gate ([`ModelConfig::voicing_gate`]) added to its
    /// harmonic source, the new voicing head undecided on every frame.
    ///
    /// # Panics
    /// If the decoder has no harmonic source (the config's validation refuses that).
    pub fn with_voicing_gate_added(mut self, config: &ModelConfig, device: &B::Device) -> Self {
        let source = self.harmonic.take().expect("the voicing gate needs a harmonic source");
        self.harmonic = Some(source.with_voicing_head(config.decoder.dim, device));
        self.gate_taper = Some(gate_taper(config.n_fft(), config.sample_rate, device));
        self
    }

    /// This decoder predicting each frame's phase as a change from the last frame's, its
    /// phase outputs reset to no change (every bin advancing like a steady tone at its
    /// centre frequency), its magnitudes as they were: a trained decoder whose phase is
    /// learned anew.
    pub fn with_phase_accumulated(mut self) -> Self {
        let bins = self.synthesis.dims()[0] / 2;
        let device = self.synthesis.device();
        let magnitudes_only: Vec<f32> = (0..2 * bins).map(|i| if i < bins { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::<B, 1>::from_data(TensorData::new(magnitudes_only, [2 * bins]), &device);
        let weight_mask = mask.clone().reshape([1, 2 * bins]);
        // New parameters from the values: `Param::map` would leave computed tensors that the
        // optimizer never updates.
        let weight = (self.head.weight.val() * weight_mask).into_data();
        self.head.weight = Param::from_tensor(Tensor::from_data(weight, &device));
        self.head.bias =
            self.head.bias.map(|b| Param::from_tensor(Tensor::from_data((b.val() * mask).into_data(), &device)));
        self.accumulated_phase = true;
        self
    }

    /// This decoder predicting magnitudes only, on two synthesis frames per hop, its phase
    /// rebuilt ([`ModelConfig::rebuilt_phase`]): both frames start from the magnitudes the
    /// head predicted for the hop, the phase outputs become the second frame's magnitudes.
    pub fn with_phase_rebuilt(mut self) -> Self {
        let bins = self.synthesis.dims()[0] / 2;
        let device = self.synthesis.device();
        let weight = self.head.weight.val().narrow(1, 0, bins);
        let weight = Tensor::cat(vec![weight.clone(), weight], 1).into_data();
        self.head.weight = Param::from_tensor(Tensor::from_data(weight, &device));
        self.head.bias = self.head.bias.map(|b| {
            let bias = b.val().narrow(0, 0, bins);
            Param::from_tensor(Tensor::from_data(Tensor::cat(vec![bias.clone(), bias], 0).into_data(), &device))
        });
        self.synthesis = synthesis_basis(2 * self.hop, true, &device);
        self.rebuilt_phase = true;
        self
    }

    /// Samples between synthesis frames.
    fn synthesis_hop(&self) -> usize {
        if self.rebuilt_phase { self.hop / REBUILT_SUBFRAMES } else { self.hop }
    }

    /// Complex spectra `[batch, frames * subframes, 2 * bins]` (real parts, then imaginary)
    /// of `signal` `[batch, frames * hop]` on the synthesis frames: frame `j` analyses the
    /// samples from `j * synthesis_hop` on through a periodic Hann window (zeros past the end).
    fn spectra_on_synthesis_frames(&self, signal: Tensor<B, 2>) -> Tensor<B, 3> {
        let [batch, len] = signal.dims();
        let (step, n_fft) = (self.synthesis_hop(), 2 * self.hop);
        let parts = n_fft / step;
        let frames = len / step;
        let device = signal.device();
        let padded = Tensor::cat(vec![signal, Tensor::zeros([batch, (parts - 1) * step], &device)], 1);
        let blocks = padded.reshape([batch, frames + parts - 1, step]);
        let windows = Tensor::cat((0..parts).map(|q| blocks.clone().narrow(1, q, frames)).collect(), 2);
        let spectra = matmul(windows.reshape([batch * frames, n_fft]), analysis_basis(n_fft, &device));
        let columns = spectra.dims()[1];
        spectra.reshape([batch, frames, columns])
    }

    /// This decoder with `extra` more blocks (sized by `stack`) after its own, each starting
    /// as the identity, so a trained decoder gains capacity without losing what it learned.
    pub fn with_blocks_added(mut self, extra: usize, stack: &ConvNextConfig, device: &B::Device) -> Self {
        self.blocks.extend((0..extra).map(|_| ConvNextBlock::identity(stack.dim, stack.hidden, stack.kernel, device)));
        self
    }
}

/// [`Decoder::decode_for_training`]'s measure on windowed frames `[batch, frames,
/// 2 * hop]`. With the periodic Hann window the gain of frame t over its overlap with frame
/// t − 1 is w and that of frame t − 1 is 1 − w, so (1 − w)·(w·x_t) − w·((1 − w)·x_(t−1)) is
/// the frames' difference weighted by both gains.
fn frame_disagreement<B: Backend>(windows: Tensor<B, 3>, hop: usize) -> Tensor<B, 1> {
    let frames = windows.dims()[1];
    let gains: Vec<f32> = (0..hop).map(|t| periodic_hann(t, 2 * hop) as f32).collect();
    let fade_in = Tensor::<B, 3>::from_data(TensorData::new(gains, [1, 1, hop]), &windows.device());
    let fade_out = fade_in.clone().neg().add_scalar(1.0);
    let later = windows.clone().narrow(1, 1, frames - 1).narrow(2, 0, hop) * fade_out;
    let earlier = windows.narrow(1, 0, frames - 1).narrow(2, hop, hop) * fade_in;
    let difference = (later.clone() - earlier.clone()).powi_scalar(2).sum_dim(2).sum_dim(1);
    let energy = (later.powi_scalar(2) + earlier.powi_scalar(2)).sum_dim(2).sum_dim(1);
    (difference / energy.add_scalar(1e-12)).mean()
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

/// The voicing gate's share of each bin `[1, 1, bins]`: 1 below [`GATE_FULL_HZ`], falling
/// linearly to 0 at [`GATE_END_HZ`].
fn gate_taper<B: Backend>(n_fft: usize, sample_rate: u32, device: &B::Device) -> Tensor<B, 3> {
    let bins = n_fft / 2 + 1;
    let shares: Vec<f32> = (0..bins)
        .map(|k| {
            let hz = k as f64 * f64::from(sample_rate) / n_fft as f64;
            ((GATE_END_HZ - hz) / (GATE_END_HZ - GATE_FULL_HZ)).clamp(0.0, 1.0) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(shares, [1, 1, bins]), device)
}

/// Rows `0..bins` turn real parts into windowed samples, rows `bins..` imaginary parts.
/// For frames a quarter window apart (`quarter_overlap`) the gain of the overlapping
/// windows is divided out.
fn synthesis_basis<B: Backend>(n_fft: usize, quarter_overlap: bool, device: &B::Device) -> Tensor<B, 2> {
    let bins = n_fft / 2 + 1;
    let n = n_fft as f64;
    let gain = if quarter_overlap { QUARTER_OVERLAP_GAIN } else { 1.0 };
    let mut basis = vec![0f32; 2 * bins * n_fft];
    for k in 0..bins {
        let weight = if k == 0 || k == bins - 1 { 1.0 } else { 2.0 } / gain;
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
            overlap: Tensor::zeros([batch, 2 * self.hop / self.synthesis_hop() - 1, self.synthesis_hop()], device),
            phase: Tensor::zeros([batch, 1, self.hop + 1], device),
            odd_frame: false,
            harmonic: self.harmonic.as_ref().map(|h| h.init_state(batch, device)),
            rebuilders: if self.rebuilt_phase {
                vec![PhaseRebuilder::new(2 * self.hop, self.synthesis_hop()); batch]
            } else {
                Vec::new()
            },
        }
    }

    fn step(&self, latents: Tensor<B, 3>, state: &mut Self::State) -> Tensor<B, 3> {
        self.decode(latents, state, false, None, None).audio
    }
}

impl<B: Backend> Decoder<B> {
    /// Decodes a whole sequence from a fresh state, the harmonic source's oscillators
    /// following `track` where it holds a pitch; returns what the source predicted and,
    /// when `measure_disagreement`, how much neighbouring frames disagree on the samples
    /// they share: the squared difference of the two frames over each overlap, each weighted
    /// by both cross-fade gains, relative to their energy; mean over the batch. 0 when the
    /// frames form a consistent spectrogram (each overlap holds one signal), about 1 when
    /// they are unrelated: the partial cancellation of incoherent phase, which magnitude
    /// losses see only after the overlap-add. With rebuilt phase and a `reference`, the
    /// predicted magnitudes are also measured against the reference's.
    pub(crate) fn decode_for_training(
        &self,
        latents: Tensor<B, 3>,
        measure_disagreement: bool,
        track: Option<&PitchTrack<B>>,
        reference: Option<&Reference<B>>,
    ) -> TrainingDecode<B> {
        let batch = latents.dims()[0];
        let mut state = self.init_state(batch, &latents.device());
        self.decode(latents, &mut state, measure_disagreement, track, reference)
    }

    /// Decodes `latents` on from `state`.
    fn decode(
        &self,
        latents: Tensor<B, 3>,
        state: &mut DecoderState<B>,
        measure_disagreement: bool,
        track: Option<&PitchTrack<B>>,
        reference: Option<&Reference<B>>,
    ) -> TrainingDecode<B> {
        let features = self.trunk(latents, state);
        if self.rebuilt_phase {
            let (windows, magnitude_error) = self.rebuilt_windows(features, state, reference);
            let audio = self.overlap_add(windows, state);
            return TrainingDecode { audio, disagreement: None, harmonic: None, magnitude_error };
        }
        let voicing = self.harmonic.as_ref().and_then(|source| source.voicing_logits(features.clone()));
        // In training the tracker's voicing gates (as its pitch drives the oscillators);
        // in coding, the predicted probability.
        let gate = voicing.as_ref().map(|logits| match track {
            Some(track) => track.voiced.clone(),
            None => sigmoid(logits.clone()),
        });
        let windows = self.windows(features.clone(), state, gate.clone());
        let disagreement = measure_disagreement.then(|| frame_disagreement(windows.clone(), self.hop));
        let mut audio = self.overlap_add(windows, state);
        let mut harmonic = None;
        if let (Some(source), Some(source_state)) = (&self.harmonic, state.harmonic.as_mut()) {
            let (voiced, prediction) = source.step_guided(features, source_state, track, (voicing, gate));
            audio = audio + voiced;
            harmonic = Some(prediction);
        }
        TrainingDecode { audio, disagreement, harmonic, magnitude_error: None }
    }

    /// The normalised output of the ConvNeXt stack `[batch, frames, dim]`, which both heads read.
    fn trunk(&self, latents: Tensor<B, 3>, state: &mut DecoderState<B>) -> Tensor<B, 3> {
        let mut x = self.input.step(latents, &mut state.input);
        for (block, block_state) in self.blocks.iter().zip(&mut state.blocks) {
            x = block.step(x, block_state);
        }
        self.norm.forward(x)
    }

    /// The windowed synthesis frames `[batch, frames, 2 * hop]` for trunk `features`, the
    /// low band of each frame scaled down by `1 − gate` (`[batch, frames]`, 0 to 1) when the
    /// decoder has the voicing gate.
    fn windows(&self, features: Tensor<B, 3>, state: &mut DecoderState<B>, gate: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let [batch, frames, _] = features.dims();
        let spectrum = linear(&self.head, features);
        let bins = spectrum.dims()[2] / 2;
        let mut magnitude = spectrum.clone().narrow(2, 0, bins).clamp_max(MAX_LOG_MAGNITUDE).exp();
        if let (Some(gate), Some(taper)) = (gate, &self.gate_taper) {
            magnitude = magnitude * (gate.reshape([batch, frames, 1]) * taper.clone()).neg().add_scalar(1.0);
        }
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
        matmul(rows, self.synthesis.clone()).reshape([batch, frames, 2 * self.hop])
    }

    /// With rebuilt phase: the windowed synthesis frames `[batch, frames * subframes,
    /// n_fft]` of the predicted magnitudes under the phase rebuilt from them, and with a
    /// reference their log-magnitude error.
    fn rebuilt_windows(
        &self,
        features: Tensor<B, 3>,
        state: &mut DecoderState<B>,
        reference: Option<&Reference<B>>,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 1>>) {
        let [batch, frames, _] = features.dims();
        let subframes = frames * REBUILT_SUBFRAMES;
        let bins = self.hop + 1;
        let log_magnitude = linear(&self.head, features).clamp_max(MAX_LOG_MAGNITUDE).reshape([batch, subframes, bins]);
        let magnitude = log_magnitude.exp();
        let magnitude_error = reference.map(|reference| {
            let spectra = self.spectra_on_synthesis_frames(reference.signal.clone()).detach();
            let amplitude = power(spectra.reshape([batch * subframes, 2 * bins])).sqrt();
            (magnitude.clone().add_scalar(reference.floor).log()
                - amplitude.add_scalar(reference.floor).log().reshape([batch, subframes, bins]))
            .abs()
            .mean()
        });
        // Rebuilding is not differentiable: the magnitudes learn under the phase they will
        // get in coding. (Under the original's phase, which carries the pitch by itself, they
        // learned smooth envelopes without harmonics, from which no pitch can be rebuilt.)
        let phasor = self.rebuilt_phasor(magnitude.clone().detach(), state);
        let doubled = Tensor::cat(vec![magnitude.clone(), magnitude], 2);
        let rows = (doubled * phasor).reshape([batch * subframes, 2 * bins]);
        (matmul(rows, self.synthesis.clone()).reshape([batch, subframes, 2 * self.hop]), magnitude_error)
    }

    /// Unit phasors `[batch, subframes, 2 * bins]` (cosines, then sines) of the phase each
    /// stream's rebuilder finds for `magnitude` `[batch, subframes, bins]`.
    fn rebuilt_phasor(&self, magnitude: Tensor<B, 3>, state: &mut DecoderState<B>) -> Tensor<B, 3> {
        let [batch, subframes, bins] = magnitude.dims();
        let device = magnitude.device();
        let values: Vec<f32> = magnitude.into_data().convert::<f32>().into_vec().expect("float magnitudes");
        let mut phasor = Vec::with_capacity(2 * values.len());
        for (stream, rebuilder) in values.chunks(subframes * bins).zip(&mut state.rebuilders) {
            for frame in stream.chunks(bins) {
                let phase = rebuilder.next_frame(frame);
                phasor.extend(phase.iter().map(|p| p.cos()));
                phasor.extend(phase.iter().map(|p| p.sin()));
            }
        }
        Tensor::from_data(TensorData::new(phasor, [batch, subframes, 2 * bins]), &device)
    }

    /// Overlap-adds windowed frames `[batch, frames, n_fft]`, `synthesis_hop` apart, onto
    /// what earlier frames left; keeps what these leave for later ones.
    fn overlap_add(&self, windows: Tensor<B, 3>, state: &mut DecoderState<B>) -> Tensor<B, 3> {
        let [batch, frames, n_fft] = windows.dims();
        let step = self.synthesis_hop();
        let parts = n_fft / step;
        // Half-overlapping frames (the shipped decoder, run once per frame when streaming):
        // one carried half, added without the general case's zero padding.
        if parts == 2 {
            let heads = windows.clone().narrow(2, 0, step);
            let tails = windows.narrow(2, step, step);
            let previous = previous_frames(tails, &mut state.overlap);
            return (heads + previous).reshape([batch, frames * step, 1]);
        }
        let device = windows.device();
        let pending = parts - 1;
        let mut sum = Tensor::cat(vec![state.overlap.clone(), Tensor::zeros([batch, frames, step], &device)], 1);
        for q in 0..parts {
            let part = windows.clone().narrow(2, q * step, step);
            let mut pieces = vec![part];
            if q > 0 {
                pieces.insert(0, Tensor::zeros([batch, q, step], &device));
            }
            if q < pending {
                pieces.push(Tensor::zeros([batch, pending - q, step], &device));
            }
            sum = sum + Tensor::cat(pieces, 1);
        }
        state.overlap = sum.clone().narrow(1, frames, pending);
        sum.narrow(1, 0, frames).reshape([batch, frames * step, 1])
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

    /// Decodes random latents for `batch` streams whole and in uneven pieces; the samples
    /// must agree.
    fn assert_streams_like_the_whole_signal(decoder: &Decoder<Flex>, batch: usize) {
        let device = Default::default();
        let latents = Tensor::<Flex, 3>::random([batch, 9, 8], Distribution::Normal(0.0, 1.0), &device);
        let whole: Vec<f32> =
            decoder.step(latents.clone(), &mut decoder.init_state(batch, &device)).into_data().into_vec().unwrap();
        let mut state = decoder.init_state(batch, &device);
        let (mut pieces, mut start) = (Vec::new(), 0);
        for frames in [1, 3, 2, 3] {
            let piece = latents.clone().narrow(1, start, frames);
            pieces.push(decoder.step(piece, &mut state));
            start += frames;
        }
        let pieces: Vec<f32> = Tensor::cat(pieces, 1).into_data().into_vec().unwrap();
        assert_eq!(whole.len(), pieces.len());
        let worst = whole.iter().zip(&pieces).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = whole.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-4 * scale.max(1.0), "streamed samples differ by {worst} (peak {scale})");
    }

    #[test]
    fn accumulated_phase_streams_like_the_whole_signal() {
        assert_streams_like_the_whole_signal(&Decoder::<Flex>::new(&tiny_config(true), &Default::default()), 1);
    }

    #[test]
    fn rebuilt_phase_streams_like_the_whole_signal() {
        let config = ModelConfig { rebuilt_phase: true, ..tiny_config(false) };
        assert_streams_like_the_whole_signal(&Decoder::<Flex>::new(&config, &Default::default()), 2);
    }

    #[test]
    fn a_signals_own_spectra_on_the_synthesis_frames_give_it_back() {
        let device = Default::default();
        let config = ModelConfig { rebuilt_phase: true, ..tiny_config(false) };
        let decoder = Decoder::<Flex>::new(&config, &device);
        let (hop, frames) = (config.hop(), 12);
        let signal = Tensor::<Flex, 2>::random([2, frames * hop], Distribution::Normal(0.0, 0.3), &device);
        let spectra = decoder.spectra_on_synthesis_frames(signal.clone());
        let [_, subframes, columns] = spectra.dims();
        assert_eq!(subframes, 2 * frames);
        let windows = matmul(spectra.reshape([2 * subframes, columns]), decoder.synthesis.clone());
        let mut state = decoder.init_state(2, &device);
        let rebuilt = decoder.overlap_add(windows.reshape([2, subframes, 2 * hop]), &mut state);
        // Before three quarters of a window, frames that start before the signal are missing.
        let settled = 3 * hop / 2;
        let original: Vec<f32> = signal.narrow(1, settled, frames * hop - settled).into_data().into_vec().unwrap();
        let rebuilt: Vec<f32> = rebuilt
            .reshape([2, frames * hop])
            .narrow(1, settled, frames * hop - settled)
            .into_data()
            .into_vec()
            .unwrap();
        let worst = original.iter().zip(&rebuilt).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "analysis then synthesis is off by {worst}");
    }

    #[test]
    fn switching_to_rebuilt_phase_gives_both_frames_of_a_hop_its_magnitudes() {
        let device = Default::default();
        let decoder = Decoder::<Flex>::new(&tiny_config(false), &device);
        let bins = decoder.hop + 1;
        let before: Vec<f32> = decoder.head.weight.val().narrow(1, 0, bins).into_data().into_vec().unwrap();
        let rebuilt = decoder.with_phase_rebuilt();
        let weight = rebuilt.head.weight.val();
        let first: Vec<f32> = weight.clone().narrow(1, 0, bins).into_data().into_vec().unwrap();
        let second: Vec<f32> = weight.narrow(1, bins, bins).into_data().into_vec().unwrap();
        assert_eq!(first, before);
        assert_eq!(second, before);
        assert!(rebuilt.rebuilt_phase && rebuilt.synthesis_hop() == rebuilt.hop / 2);
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

    /// Frames `[1, frames, 2 * hop]` cut from `signal` every `hop` samples and windowed.
    fn windowed_frames(signal: &[f32], hop: usize) -> Tensor<Flex, 3> {
        let frames = signal.len() / hop - 1;
        let window = |t: usize| periodic_hann(t, 2 * hop) as f32;
        let data: Vec<f32> =
            (0..frames).flat_map(|f| (0..2 * hop).map(move |t| signal[f * hop + t] * window(t))).collect();
        Tensor::from_data(TensorData::new(data, [1, frames, 2 * hop]), &Default::default())
    }

    #[test]
    fn frames_of_one_signal_agree_and_unrelated_frames_do_not() {
        let hop = 40;
        let tone: Vec<f32> = (0..hop * 30).map(|t| (t as f32 * 0.37).sin() + 0.5 * (t as f32 * 1.91).cos()).collect();
        let agreeing = frame_disagreement(windowed_frames(&tone, hop), hop).into_scalar();
        assert!(agreeing < 1e-6, "one signal's frames disagree by {agreeing}");
        // Each frame from the same tone restarted at its own phase: steady magnitudes, the
        // incoherent phase the measure is for.
        let data: Vec<f32> = (0..29)
            .flat_map(|f| {
                let offset = (f * f) as f32 * 1.7;
                (0..2 * hop).map(move |t| periodic_hann(t, 2 * hop) as f32 * (t as f32 * 0.37 + offset).sin())
            })
            .collect();
        let restarted = Tensor::<Flex, 3>::from_data(TensorData::new(data, [1, 29, 2 * hop]), &Default::default());
        let disagreeing = frame_disagreement(restarted, hop).into_scalar();
        assert!(disagreeing > 0.5, "restarted frames disagree by only {disagreeing}");
    }

    #[test]
    fn measuring_disagreement_decodes_the_same_samples() {
        let config = tiny_config(false);
        let device = Default::default();
        let decoder = Decoder::<Flex>::new(&config, &device);
        let latents = Tensor::<Flex, 3>::random([2, 6, config.latent_dim], Distribution::Normal(0.0, 1.0), &device);
        let streamed = decoder.step(latents.clone(), &mut decoder.init_state(2, &device));
        let decoded = decoder.decode_for_training(latents, true, None, None);
        let (measured, disagreement) = (decoded.audio, decoded.disagreement.expect("asked for"));
        streamed.into_data().assert_approx_eq::<f32>(&measured.into_data(), Default::default());
        let disagreement = disagreement.into_scalar();
        assert!(disagreement.is_finite() && disagreement > 0.0, "untrained frames disagree by {disagreement}");
    }

    #[test]
    fn switching_to_accumulated_phase_keeps_magnitudes_and_starts_coherent() {
        let config = tiny_config(false);
        let device = Default::default();
        let decoder = Decoder::<Flex>::new(&config, &device);
        // Steady inputs: after the first few frames every frame gets the same spectrum. Four of
        // them, so that the mean disagreement does not hang on one draw of a tiny head.
        let latents = Tensor::<Flex, 3>::random([4, 1, config.latent_dim], Distribution::Normal(0.0, 1.0), &device)
            .repeat_dim(1, 40);
        let steady_disagreement = |decoder: &Decoder<Flex>| {
            let mut state = decoder.init_state(4, &device);
            let windows = decoder.windows(decoder.trunk(latents.clone(), &mut state), &mut state, None);
            frame_disagreement(windows.narrow(1, 20, 20), decoder.hop).into_scalar()
        };
        let bins = decoder.synthesis.dims()[0] / 2;
        let magnitudes = |decoder: &Decoder<Flex>| decoder.head.weight.val().narrow(1, 0, bins).into_data();
        let before = (steady_disagreement(&decoder), magnitudes(&decoder));
        let switched = decoder.with_phase_accumulated();
        assert!(switched.accumulated_phase);
        magnitudes(&switched).assert_eq(&before.1, true);
        let after = steady_disagreement(&switched);
        assert!(before.0 > 0.3, "a random head's repeated frame disagrees with itself by only {}", before.0);
        assert!(after < 1e-4, "frames with no phase change disagree by {after}");
    }

    /// A small decoder at the real frame size (hop 320, 640-point frames at 16 kHz) with a
    /// harmonic source and the voicing gate (its new voicing head undecided: gate ½).
    fn gated_decoder() -> Decoder<Flex> {
        let config = ModelConfig {
            decoder: ConvNextConfig { dim: 16, hidden: 32, blocks: 1, kernel: 3 },
            harmonics: 4,
            voicing_gate: true,
            ..Default::default()
        };
        Decoder::new(&config, &Default::default())
    }

    #[test]
    fn the_voicing_gate_silences_the_head_below_3_khz_on_voiced_frames() {
        let device = Default::default();
        let decoder = gated_decoder();
        let features = Tensor::<Flex, 3>::random([1, 4, 16], Distribution::Normal(0.0, 1.0), &device);
        let mut state = decoder.init_state(1, &device);
        let frames = |gate: f32, state: &mut DecoderState<Flex>| -> Vec<f32> {
            let gate = Some(Tensor::full([1, 4], gate, &device));
            decoder.windows(features.clone(), state, gate).into_data().into_vec().unwrap()
        };
        // Band energy of each windowed frame's DFT. The Hann window spreads a bin over its
        // neighbours only, so a spectrum silent below bin 120 (3 kHz) leaves bins 0..119 silent.
        let band_energy = |samples: &[f32], bins: std::ops::Range<usize>| -> f64 {
            samples
                .chunks(640)
                .map(|frame| {
                    bins.clone()
                        .map(|k| {
                            let (mut re, mut im) = (0f64, 0f64);
                            for (t, &x) in frame.iter().enumerate() {
                                let angle = TAU * (k * t) as f64 / 640.0;
                                re += f64::from(x) * angle.cos();
                                im -= f64::from(x) * angle.sin();
                            }
                            re * re + im * im
                        })
                        .sum::<f64>()
                })
                .sum()
        };
        let open = frames(0.0, &mut state);
        let gated = frames(1.0, &mut state);
        let (open_low, gated_low) = (band_energy(&open, 0..119), band_energy(&gated, 0..119));
        assert!(open_low > 0.0 && gated_low < 1e-9 * open_low, "low band: {gated_low} of {open_low}");
        let (open_high, gated_high) = (band_energy(&open, 162..321), band_energy(&gated, 162..321));
        assert!((gated_high - open_high).abs() < 1e-4 * open_high, "high band: {gated_high} vs {open_high}");
        // In between, the gate fades (and frames scale linearly with it).
        let half = frames(0.5, &mut state);
        for ((h, o), g) in half.iter().zip(&open).zip(&gated) {
            assert!((h - (o + g) / 2.0).abs() < 1e-5, "{h} vs {o} and {g}");
        }
    }

    #[test]
    fn a_gated_decoder_streams_like_the_whole_signal() {
        let device = Default::default();
        let decoder = gated_decoder();
        let latents = Tensor::<Flex, 3>::random([1, 9, 128], Distribution::Normal(0.0, 1.0), &device);
        let whole = decoder.step(latents.clone(), &mut decoder.init_state(1, &device));
        let mut state = decoder.init_state(1, &device);
        let (mut pieces, mut start) = (Vec::new(), 0);
        for frames in [2, 1, 4, 2] {
            pieces.push(decoder.step(latents.clone().narrow(1, start, frames), &mut state));
            start += frames;
        }
        whole.into_data().assert_approx_eq::<f32>(&Tensor::cat(pieces, 1).into_data(), Default::default());
    }

    #[test]
    fn odd_bins_flip_on_odd_frames() {
        let signs: Vec<f32> = steady_advance::<Flex>(3, 3, true, &Default::default()).into_data().into_vec().unwrap();
        assert_eq!(signs, [1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0]);
    }
}
