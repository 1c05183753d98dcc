//! Harmonic source of the decoder: a bank of sinusoids at the multiples of a fundamental
//! frequency predicted per frame, their amplitudes predicted per frame too.
//!
//! Why: the inverse-STFT head alone has no clock. On a steady sound its input repeats every
//! frame, so it emits the same frame every hop and all its energy lands on multiples of the
//! frame rate (50 Hz) instead of the voice's harmonics (models/MODEL_CARD.md, "The decoder
//! loses the pitch"). An oscillator whose phase runs on from sample to sample keeps every
//! partial where the pitch puts it, whatever the frame rate. The head learns the pitch from
//! a tracker's targets (`tokenwave train --add-harmonics`) and the amplitudes from the
//! reconstruction losses; what is not harmonic stays with the inverse-STFT head.

use std::f64::consts::TAU;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::conv::previous_frames;
use super::matmul::linear;

/// Lowest fundamental the head can predict, in Hz.
pub const MIN_F0: f64 = 50.0;
/// Highest fundamental the head can predict, in Hz.
pub const MAX_F0: f64 = 500.0;
/// Log-amplitudes are clamped here before `exp` (as the inverse-STFT head's are).
const MAX_LOG_AMPLITUDE: f64 = 2.0;
/// A new source starts this quiet (log-amplitude of each harmonic: about −104 dBFS), so
/// adding it to a trained decoder leaves the decoder's sound unchanged until training
/// raises it. At −8 its 64 harmonics made a −54 dBFS hum in silences, and the log-mel L1 of
/// the trained decoder went from 0.43 to 1.2.
const INITIAL_LOG_AMPLITUDE: f32 = -12.0;
/// The head's outputs are this many times its linear layer's, the layer's initial weights
/// as much smaller: the same start, but each optimizer step moves the pitch and the log
/// amplitudes this much further. Without it the source, added to a trained decoder and
/// trained at that decoder's fine-tuning rate, needed thousands of steps to leave silence.
/// The trunk below gets the gradient an unscaled head of ordinary initial weights would
/// pass it: scaling that down by the gain as well slowed the pitch, which has to be learned
/// into the latents (models/MODEL_CARD.md, session 11).
const OUTPUT_GAIN: f64 = 10.0;
/// Harmonics above this share of the Nyquist frequency are muted (no aliasing).
pub const NYQUIST_MARGIN: f64 = 0.95;

/// Per frame, the log fundamental and the log amplitude of each harmonic, from the
/// decoder's trunk; synthesised with linear interpolation of both across each hop.
#[derive(Module, Debug)]
pub struct HarmonicSource<B: Backend> {
    /// Trunk features to `1 + harmonics` outputs: the pitch, then the log amplitudes.
    head: Linear<B>,
    /// Trunk features to the logit of the frame being voiced, for models with the voicing
    /// gate ([`super::ModelConfig::voicing_gate`]).
    voicing: Option<Linear<B>>,
    harmonics: usize,
    hop: usize,
    sample_rate: usize,
}

/// A pitch track that drives the oscillators in training instead of the predicted pitch
/// (teacher forcing), so the amplitudes learn on the right partials while the pitch is still
/// being learned.
#[derive(Debug, Clone)]
pub(crate) struct PitchTrack<B: Backend> {
    /// Natural-log pitch `[batch, frames]`, used where `voiced`.
    pub log_f0: Tensor<B, 2>,
    /// 1 on frames the track holds a pitch for, 0 where the prediction drives.
    pub voiced: Tensor<B, 2>,
}

/// What a [`HarmonicSource`] predicted for each frame.
#[derive(Debug, Clone)]
pub struct HarmonicPrediction<B: Backend> {
    /// Natural-log fundamental `[batch, frames]`.
    pub log_f0: Tensor<B, 2>,
    /// Natural-log amplitude of each harmonic `[batch, frames, harmonics]`, before muting
    /// those above the Nyquist margin.
    pub log_amplitudes: Tensor<B, 3>,
    /// Logit of each frame being voiced `[batch, frames]`, when the model has the voicing gate.
    pub voicing: Option<Tensor<B, 2>>,
}

/// Streaming state of a [`HarmonicSource`]: the last frame's fundamental and amplitudes
/// (each hop glides from them to the new frame's), and the fundamental's phase.
#[derive(Debug, Clone)]
pub struct HarmonicState<B: Backend> {
    f0: Tensor<B, 3>,
    amplitudes: Tensor<B, 3>,
    /// Phase of the fundamental at the start of the next hop, per batch item, in
    /// `[0, 2π)`. Kept in f64 on the host: it runs on for as long as the stream lasts.
    phase: Vec<f64>,
}

impl<B: Backend> HarmonicSource<B> {
    /// A new source on trunk features of width `dim`, every harmonic starting quiet.
    pub fn new(dim: usize, harmonics: usize, hop: usize, sample_rate: u32, device: &B::Device) -> Self {
        let mut head = LinearConfig::new(dim, 1 + harmonics).init(device);
        // A new parameter from the values: `Param::map` would leave a computed tensor that
        // the optimizer never updates (the weights stayed at their initial values).
        head.weight =
            Param::from_tensor(Tensor::from_data(head.weight.val().div_scalar(OUTPUT_GAIN).into_data(), device));
        let mut bias = vec![INITIAL_LOG_AMPLITUDE / OUTPUT_GAIN as f32; 1 + harmonics];
        bias[0] = 0.0;
        head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(bias, [1 + harmonics]), device)));
        Self { head, voicing: None, harmonics, hop, sample_rate: sample_rate as usize }
    }

    /// This source with a new voicing head, undecided (probability ½) on every frame.
    pub fn with_voicing_head(mut self, dim: usize, device: &B::Device) -> Self {
        // New parameters, not `Param::map` to zeros: the optimizer would never update those.
        let mut voicing = LinearConfig::new(dim, 1).init(device);
        voicing.weight = Param::from_tensor(Tensor::zeros([dim, 1], device));
        voicing.bias = Some(Param::from_tensor(Tensor::zeros([1], device)));
        self.voicing = Some(voicing);
        self
    }

    /// Logit of each frame being voiced `[batch, frames]`, when the source has a voicing head.
    pub fn voicing_logits(&self, features: Tensor<B, 3>) -> Option<Tensor<B, 2>> {
        let [batch, frames, _] = features.dims();
        self.voicing.as_ref().map(|head| linear(head, features).reshape([batch, frames]))
    }

    /// A silent start: no previous frame, phase zero.
    pub fn init_state(&self, batch: usize, device: &B::Device) -> HarmonicState<B> {
        HarmonicState {
            f0: Tensor::full([batch, 1, 1], MIN_F0, device),
            amplitudes: Tensor::zeros([batch, 1, self.harmonics], device),
            phase: vec![0.0; batch],
        }
    }

    /// Samples `[batch, frames * hop, 1]` for trunk features `[batch, frames, dim]`, and
    /// what was predicted for each frame (what the training losses see). The fundamental and
    /// the amplitudes reach each frame's values at the end of its hop.
    pub fn step(&self, features: Tensor<B, 3>, state: &mut HarmonicState<B>) -> (Tensor<B, 3>, HarmonicPrediction<B>) {
        let voicing = self.voicing_logits(features.clone());
        let gate = voicing.clone().map(sigmoid);
        self.step_guided(features, state, None, (voicing, gate))
    }

    /// [`Self::step`] with the oscillators following `track` where it holds a pitch, the
    /// `voicing` logits (from [`Self::voicing_logits`]) passed on to the prediction, and
    /// every amplitude scaled by `gate` (`[batch, frames]`, 0 to 1: how voiced each frame
    /// is judged) where given, so that the source is silent where the voicing gate leaves the
    /// inverse-STFT head alone.
    pub(crate) fn step_guided(
        &self,
        features: Tensor<B, 3>,
        state: &mut HarmonicState<B>,
        track: Option<&PitchTrack<B>>,
        (voicing, gate): (Option<Tensor<B, 2>>, Option<Tensor<B, 2>>),
    ) -> (Tensor<B, 3>, HarmonicPrediction<B>) {
        let [batch, frames, _] = features.dims();
        let (hop, harmonics, device) = (self.hop, self.harmonics, features.device());
        let outputs = linear(&self.head, features).mul_scalar(OUTPUT_GAIN);
        let (low, high) = (MIN_F0.ln(), MAX_F0.ln());
        let log_f0 = sigmoid(outputs.clone().narrow(2, 0, 1)).mul_scalar(high - low).add_scalar(low);
        let log_amplitudes = outputs.narrow(2, 1, harmonics).clamp_max(MAX_LOG_AMPLITUDE);
        let mut amplitudes = log_amplitudes.clone().exp();
        if let Some(gate) = gate {
            amplitudes = amplitudes * gate.reshape([batch, frames, 1]);
        }
        // The oscillator follows the pitch but is not trained through: the pitch loss does
        // that, and gradients through a sine's phase point nowhere useful.
        let mut f0 = log_f0.clone().detach().exp();
        if let Some(track) = track {
            let voiced = track.voiced.clone().reshape([batch, frames, 1]);
            let tracked = track.log_f0.clone().reshape([batch, frames, 1]).exp();
            f0 = f0 * voiced.clone().neg().add_scalar(1.0) + tracked * voiced;
        }
        let f0_before = previous_frames(f0.clone(), &mut state.f0);
        let amplitudes_before = previous_frames(amplitudes.clone(), &mut state.amplitudes);

        let hop_starts = self.hop_start_phases(&f0_before, &f0, &mut state.phase);
        // Within a hop f0 glides linearly from f0_before to f0, so the phase after sample i
        // is start + 2π/rate · (f0_before·(i + 1) + (f0 − f0_before)·(i + 1)(i + 2)/(2·hop)).
        let ramp = |value: &dyn Fn(f64) -> f64| -> Tensor<B, 3> {
            let values: Vec<f32> = (0..hop).map(|i| value(i as f64) as f32).collect();
            Tensor::from_data(TensorData::new(values, [1, 1, hop]), &device)
        };
        let linear_part = ramp(&|i| i + 1.0);
        let glide_part = ramp(&|i| (i + 1.0) * (i + 2.0) / (2.0 * hop as f64));
        let radians_per_hz = TAU / self.sample_rate as f64;
        let phase = hop_starts
            + (f0_before.clone() * linear_part + (f0.clone() - f0_before.clone()) * glide_part)
                .mul_scalar(radians_per_hz);
        let numbers: Vec<f32> = (1..=harmonics).map(|k| k as f32).collect();
        let numbers = Tensor::<B, 1>::from_data(TensorData::new(numbers, [harmonics]), &device);
        let sines = (phase.unsqueeze_dim::<4>(3) * numbers.clone().reshape([1, 1, 1, harmonics])).sin().reshape([
            batch * frames,
            hop,
            harmonics,
        ]);

        let highest = f0_before.max_pair(f0).reshape([batch, frames, 1]);
        let limit = NYQUIST_MARGIN * self.sample_rate as f64 / 2.0;
        let audible = (highest * numbers.reshape([1, 1, harmonics])).lower_elem(limit).float();
        let ends = Tensor::cat(
            vec![
                (amplitudes_before * audible.clone()).reshape([batch * frames, harmonics, 1]),
                (amplitudes * audible).reshape([batch * frames, harmonics, 1]),
            ],
            2,
        );
        let from_each_end = sines.matmul(ends); // [batch * frames, hop, 2]
        let weights: Vec<f32> = (0..hop).map(|i| (i + 1) as f32 / hop as f32).collect();
        let to_end = Tensor::<B, 3>::from_data(TensorData::new(weights, [1, hop, 1]), &device);
        let from_start = to_end.clone().neg().add_scalar(1.0);
        let samples = from_each_end.clone().narrow(2, 0, 1) * from_start + from_each_end.narrow(2, 1, 1) * to_end;
        let prediction = HarmonicPrediction { log_f0: log_f0.reshape([batch, frames]), log_amplitudes, voicing };
        (samples.reshape([batch, frames * hop, 1]), prediction)
    }

    /// The fundamental's phase at the start of each hop `[batch, frames, 1]`, carried on
    /// from `phase`, which is left at the start of the hop after the last.
    fn hop_start_phases(&self, f0_before: &Tensor<B, 3>, f0: &Tensor<B, 3>, phase: &mut [f64]) -> Tensor<B, 3> {
        let [batch, frames, _] = f0.dims();
        let read = |t: &Tensor<B, 3>| t.clone().into_data().convert::<f32>().into_vec::<f32>().expect("float pitch");
        let (before, after) = (read(f0_before), read(f0));
        let hop = self.hop as f64;
        let radians_per_hz = TAU / self.sample_rate as f64;
        let mut starts = Vec::with_capacity(batch * frames);
        for (item, running) in phase.iter_mut().enumerate() {
            for frame in item * frames..(item + 1) * frames {
                starts.push(*running as f32);
                let (from, to) = (f64::from(before[frame]), f64::from(after[frame]));
                let advance = radians_per_hz * (hop * from + (hop + 1.0) / 2.0 * (to - from));
                *running = (*running + advance).rem_euclid(TAU);
            }
        }
        Tensor::from_data(TensorData::new(starts, [batch, frames, 1]), &f0.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    fn source(harmonics: usize) -> HarmonicSource<Flex> {
        HarmonicSource::new(8, harmonics, 40, 16_000, &Default::default())
    }

    #[test]
    fn a_new_voicing_head_is_trained() {
        type Trained = burn::backend::Autodiff<Flex>;
        let device = Default::default();
        let source = HarmonicSource::<Trained>::new(8, 2, 40, 16_000, &device).with_voicing_head(8, &device);
        let features = Tensor::<Trained, 3>::random([1, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let logits = source.voicing_logits(features).expect("a voicing head");
        let grads = (logits - 1.0).powi_scalar(2).sum().backward();
        let head = source.voicing.as_ref().unwrap();
        let weight = head.weight.grad(&grads).expect("the weights get gradients");
        assert!(weight.abs().max().into_scalar() > 0.0);
        assert!(head.bias.as_ref().unwrap().grad(&grads).is_some(), "the bias gets gradients");
    }

    #[test]
    fn streams_like_the_whole_signal() {
        let device = Default::default();
        let mut source = source(6);
        // Harmonics at unit scale rather than the quiet start, so the test sees them.
        source.head.bias = source.head.bias.map(|b| b.map(|b| b.zeros_like()));
        let features = Tensor::<Flex, 3>::random([2, 9, 8], Distribution::Normal(0.0, 2.0), &device);
        let (whole, _) = source.step(features.clone(), &mut source.init_state(2, &device));
        let mut state = source.init_state(2, &device);
        let mut pieces = Vec::new();
        let mut start = 0;
        for frames in [1, 3, 2, 3] {
            pieces.push(source.step(features.clone().narrow(1, start, frames), &mut state).0);
            start += frames;
        }
        let streamed = Tensor::cat(pieces, 1);
        whole.into_data().assert_approx_eq::<f32>(&streamed.into_data(), Default::default());
    }

    /// A source whose output depends on its bias alone: pitch `f0` Hz, first harmonic at
    /// amplitude 1, the others silent.
    fn unit_tone_source(f0: f64) -> HarmonicSource<Flex> {
        let mut source = source(3);
        let (low, high) = (MIN_F0.ln(), MAX_F0.ln());
        let share = (f0.ln() - low) / (high - low);
        let logit = (share / (1.0 - share)).ln() as f32;
        source.head.weight = source.head.weight.map(|w| w.zeros_like());
        let bias: Vec<f32> = [logit, 0.0, -30.0, -30.0].iter().map(|b| b / OUTPUT_GAIN as f32).collect();
        let bias = Tensor::from_data(TensorData::new(bias, [4]), &Default::default());
        source.head.bias = Some(Param::from_tensor(bias));
        source
    }

    /// Asserts that `samples`, after the first hop (the fade-in from silence), are a unit
    /// sine at `f0` Hz in some phase that runs on across hop boundaries.
    fn assert_unit_sine(samples: Tensor<Flex, 3>, f0: f64) {
        let samples: Vec<f32> = samples.into_data().into_vec().unwrap();
        let angle = |n: usize| TAU * f0 * (n + 1) as f64 / 16_000.0;
        // Least squares of x ≈ a·sin + b·cos over the samples after the first hop.
        let (mut ss, mut sc, mut cc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (n, &x) in samples.iter().enumerate().skip(40) {
            let (sin, cos) = angle(n).sin_cos();
            (ss, sc, cc) = (ss + sin * sin, sc + sin * cos, cc + cos * cos);
            (xs, xc) = (xs + f64::from(x) * sin, xc + f64::from(x) * cos);
        }
        let det = ss * cc - sc * sc;
        let (a, b) = ((xs * cc - xc * sc) / det, (xc * ss - xs * sc) / det);
        assert!((a.hypot(b) - 1.0).abs() < 1e-3, "amplitude {}", a.hypot(b));
        for (n, &x) in samples.iter().enumerate().skip(40) {
            let expected = a * angle(n).sin() + b * angle(n).cos();
            assert!((f64::from(x) - expected).abs() < 1e-3, "sample {n}: {x} vs {expected}");
        }
    }

    #[test]
    fn a_steady_frame_gives_a_tone_at_its_pitch() {
        let device = Default::default();
        let source = unit_tone_source(200.0);
        let features = Tensor::<Flex, 3>::zeros([1, 20, 8], &device);
        let (samples, prediction) = source.step(features, &mut source.init_state(1, &device));
        let f0: Vec<f32> = prediction.log_f0.exp().into_data().into_vec().unwrap();
        assert!(f0.iter().all(|f| (f - 200.0).abs() < 0.01), "{f0:?}");
        assert_unit_sine(samples, 200.0);
    }

    #[test]
    fn the_gate_silences_the_source_on_frames_judged_unvoiced() {
        let device = Default::default();
        let source = unit_tone_source(200.0);
        let features = Tensor::<Flex, 3>::zeros([1, 20, 8], &device);
        let play = |gate: Vec<f32>| -> Vec<f32> {
            let gate = Tensor::from_data(TensorData::new(gate, [1, 20]), &device);
            let state = &mut source.init_state(1, &device);
            source.step_guided(features.clone(), state, None, (None, Some(gate))).0.into_data().into_vec().unwrap()
        };
        let (open, _) = source.step(features.clone(), &mut source.init_state(1, &device));
        assert_eq!(play(vec![1.0; 20]), open.into_data().into_vec::<f32>().unwrap());
        // Voiced for the first ten frames only: the tone fades out across hop 10 and stays silent.
        let half = play([vec![1.0; 10], vec![0.0; 10]].concat());
        assert!(half[..400].iter().any(|x| x.abs() > 0.5), "the voiced half plays");
        assert!(half[440..].iter().all(|&x| x == 0.0), "the unvoiced half is silent");
    }

    #[test]
    fn a_pitch_track_drives_the_oscillators_where_voiced() {
        let device = Default::default();
        let source = unit_tone_source(200.0);
        let features = Tensor::<Flex, 3>::zeros([1, 20, 8], &device);
        let track =
            PitchTrack { log_f0: Tensor::full([1, 20], 300f32.ln(), &device), voiced: Tensor::ones([1, 20], &device) };
        let (samples, prediction) =
            source.step_guided(features.clone(), &mut source.init_state(1, &device), Some(&track), (None, None));
        // The prediction is still reported (the pitch loss trains it); the sound follows the track.
        let f0: Vec<f32> = prediction.log_f0.exp().into_data().into_vec().unwrap();
        assert!(f0.iter().all(|f| (f - 200.0).abs() < 0.01), "{f0:?}");
        assert_unit_sine(samples, 300.0);
        let unvoiced = PitchTrack { voiced: Tensor::zeros([1, 20], &device), ..track };
        let (samples, _) =
            source.step_guided(features, &mut source.init_state(1, &device), Some(&unvoiced), (None, None));
        assert_unit_sine(samples, 200.0);
    }

    #[test]
    fn harmonics_above_nyquist_are_muted() {
        let device = Default::default();
        let mut source = source(40);
        let logit = 10.0; // the highest pitch: 500 Hz, so harmonics 16 and up are above 7.6 kHz
        source.head.weight = source.head.weight.map(|w| w.zeros_like());
        let mut bias = vec![-30.0 / OUTPUT_GAIN as f32; 41];
        bias[0] = logit / OUTPUT_GAIN as f32;
        bias[20] = 0.0; // harmonic 20: 10 kHz, above the Nyquist frequency of 8 kHz
        source.head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(bias, [41]), &device)));
        let (samples, _) =
            source.step(Tensor::<Flex, 3>::zeros([1, 5, 8], &device), &mut source.init_state(1, &device));
        let peak = samples.abs().max().into_scalar();
        assert!(peak < 1e-6, "an aliased harmonic came through at {peak}");
    }
}
