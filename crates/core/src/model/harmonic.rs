//! The decoder's clock: a bank of harmonics of the transmitted F0, phase-continuous from
//! sample to sample across frames, whose amplitudes the network predicts as a spectral
//! envelope per frame.
//!
//! Why: the inverse-STFT head predicts a phase per frame and bin, and at a 20 ms hop it
//! never learned to advance the phases of harmonics coherently from frame to frame, so
//! voiced speech came out as a smeared band with no harmonic stripes above ~700 Hz
//! (docs/journal). Here the phase is integrated from the pitch the encoder measured and
//! sent ([`crate::pitch`]); the network only shapes the amplitudes. Unvoiced sound,
//! transients and what the harmonics miss stay with the inverse-STFT head, whose output
//! this is added to.
//!
//! Per frame `n` the synthesis F0 glides linearly from frame `n - 1`'s to frame `n`'s
//! value (an unvoiced frame holds the last one), and each harmonic's amplitude glides from
//! its frame `n - 1` value to its frame `n` value, so frame `n`'s samples need nothing from
//! later frames. Everything that depends on the pitch alone (the cosines, the envelope
//! sampling) is computed outside autodiff: pitch is data, not a parameter.

use std::f64::consts::TAU;

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::conv::previous_frames;
use super::matmul::linear;

/// Harmonics in the bank: enough for a 50 Hz voice up to the top of the band.
pub const HARMONICS: usize = 160;
/// Harmonics fade out between these frequencies (Hz, at 16 kHz; scaled by the rate), so
/// that a gliding F0 never pushes one past the Nyquist frequency.
const FADE_START: f64 = 7000.0 / 16_000.0;
const FADE_END: f64 = 7800.0 / 16_000.0;
/// F0 used before the first voiced frame, so the bank never sits at 0 Hz (a DC offset).
const RESTING_F0_HZ: f64 = 100.0;
/// Log-amplitudes are clamped here before `exp`: no harmonic louder than 0.37.
const MAX_LOG_AMPLITUDE: f64 = -1.0;
/// The envelope head's output is multiplied by this. Why: Adam moves each weight by about
/// the learning rate per step whatever the gradient's size, so an unscaled head needs tens
/// of thousands of steps to move a log-amplitude by a few units; the first clocked run's
/// envelope stayed where it started (journal, 2026-12-03).
const ENVELOPE_SCALE: f64 = 20.0;
/// Starting log-amplitude at 0 Hz and at the Nyquist frequency, linear in between: a
/// voice about 35 dB below full scale with a falling spectral tilt, some 15 dB under
/// training speech. Loud enough that the spectral losses feel it (their gradient scales
/// with the amplitude), quiet enough that the decoder it joins still sounds as before.
const INITIAL_LOG_AMPLITUDE: (f64, f64) = (-5.0, -8.0);
/// The harmonic source: pitch features into the decoder's trunk, and the envelope head.
#[derive(Module, Debug)]
pub struct HarmonicSource<B: Backend> {
    /// Voicing and log-F0 of each frame into the trunk's width (starts at zero).
    pitch_input: Linear<B>,
    /// Trunk features to the log-amplitude envelope at `bands` frequencies from 0 Hz to
    /// the Nyquist frequency.
    envelope: Linear<B>,
    hop: usize,
    sample_rate: u32,
}

/// What the source carries between pieces, per batch row: the fundamental's phase, the
/// synthesis F0 at the end of the last frame (0: none yet) and that frame's amplitudes.
#[derive(Debug, Clone)]
pub struct HarmonicState<B: Backend> {
    phase: Vec<f64>,
    f0: Vec<f64>,
    amplitudes: Tensor<B, 3>,
}

impl<B: Backend> HarmonicSource<B> {
    /// A source for a trunk of `dim` channels and an envelope of `bands` points.
    pub fn new(dim: usize, bands: usize, hop: usize, sample_rate: u32, device: &B::Device) -> Self {
        let mut envelope = LinearConfig::new(dim, bands).with_initializer(Initializer::Zeros).init(device);
        let (low, high) = INITIAL_LOG_AMPLITUDE;
        let bias: Vec<f32> = (0..bands)
            .map(|band| ((low + (high - low) * band as f64 / (bands - 1) as f64) / ENVELOPE_SCALE) as f32)
            .collect();
        envelope.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(bias, [bands]), device)));
        Self {
            pitch_input: LinearConfig::new(PITCH_FEATURES, dim).with_initializer(Initializer::Zeros).init(device),
            envelope,
            hop,
            sample_rate,
        }
    }

    /// The state before any input.
    pub fn init_state(&self, batch: usize, device: &B::Device) -> HarmonicState<B> {
        HarmonicState {
            phase: vec![0.0; batch],
            f0: vec![0.0; batch],
            amplitudes: Tensor::zeros([batch, 1, HARMONICS], device),
        }
    }

    /// The trunk's extra input for frames whose F0 (Hz, 0 when unvoiced) is `f0`
    /// `[batch, frames, 1]`: `[batch, frames, dim]`.
    pub fn pitch_features(&self, f0: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, frames, _] = f0.dims();
        let values: Vec<f32> = f0.into_data().convert::<f32>().into_vec().expect("float pitch");
        let features: Vec<f32> =
            values.iter().flat_map(|&hz| if hz > 0.0 { [1.0, (hz / 140.0).log2()] } else { [0.0, 0.0] }).collect();
        let device = self.envelope.weight.device();
        let features = Tensor::from_data(TensorData::new(features, [batch, frames, PITCH_FEATURES]), &device);
        linear(&self.pitch_input, features).mul_scalar(PITCH_INPUT_SCALE)
    }

    /// The harmonic part of the output `[batch, frames * hop, 1]` for trunk `features`
    /// `[batch, frames, dim]` and the frames' F0 (Hz, 0 when unvoiced) `f0` `[batch,
    /// frames]`, row-major.
    pub fn synthesize(&self, features: Tensor<B, 3>, f0: &[f32], state: &mut HarmonicState<B>) -> Tensor<B, 3> {
        let [batch, frames, _] = features.dims();
        let device = features.device();
        let bands = self.envelope.weight.dims()[1];
        let bank = Bank::build(f0, batch, frames, bands, self.hop, f64::from(self.sample_rate), state);
        let rows = batch * frames;
        let cosines = Tensor::<B, 3>::from_data(TensorData::new(bank.cosines, [rows, self.hop, HARMONICS]), &device);
        let sampling = Tensor::<B, 3>::from_data(TensorData::new(bank.sampling, [rows, bands, HARMONICS]), &device);
        let voiced = Tensor::<B, 3>::from_data(TensorData::new(bank.voiced, [batch, frames, 1]), &device);
        let envelope = linear(&self.envelope, features).mul_scalar(ENVELOPE_SCALE).reshape([rows, 1, bands]);
        let amplitudes =
            envelope.matmul(sampling).clamp_max(MAX_LOG_AMPLITUDE).exp().reshape([batch, frames, HARMONICS]) * voiced;
        let previous = previous_frames(amplitudes.clone(), &mut state.amplitudes);
        let transpose = |a: Tensor<B, 3>| a.reshape([rows, 1, HARMONICS]).swap_dims(1, 2);
        let ramp: Vec<f32> = (1..=self.hop).map(|t| t as f32 / self.hop as f32).collect();
        let rising = Tensor::<B, 3>::from_data(TensorData::new(ramp, [1, self.hop, 1]), &device);
        let falling = rising.clone().neg().add_scalar(1.0);
        let now = cosines.clone().matmul(transpose(amplitudes)) * rising;
        let before = cosines.matmul(transpose(previous)) * falling;
        (now + before).reshape([batch, frames * self.hop, 1])
    }
}

/// Inputs per frame to [`HarmonicSource::pitch_input`]: voiced flag and log2(F0 / 140 Hz).
const PITCH_FEATURES: usize = 2;
/// Scale of the pitch input: with two inputs per channel, its weights would otherwise move
/// far more slowly under the optimizer than the trunk's, whose channels sum hundreds.
const PITCH_INPUT_SCALE: f64 = 10.0;

/// The pitch-only part of the synthesis, computed in f64 outside autodiff.
struct Bank {
    /// `[rows, hop, HARMONICS]`: `gain_k · cos(k φ(t))` for each frame's samples.
    cosines: Vec<f32>,
    /// `[rows, bands, HARMONICS]`: linear interpolation of the envelope at `k · F0`.
    sampling: Vec<f32>,
    /// `[rows]`: 1 for a voiced frame, 0 for an unvoiced one, whose harmonics fade out over
    /// the frame by the amplitude glide.
    voiced: Vec<f32>,
}

impl Bank {
    fn build<B: Backend>(
        f0: &[f32],
        batch: usize,
        frames: usize,
        bands: usize,
        hop: usize,
        rate: f64,
        state: &mut HarmonicState<B>,
    ) -> Self {
        assert_eq!(f0.len(), batch * frames, "one F0 per frame");
        let mut cosines = vec![0f32; batch * frames * hop * HARMONICS];
        let mut sampling = vec![0f32; batch * frames * bands * HARMONICS];
        let voiced = f0.iter().map(|&hz| if hz > 0.0 { 1.0 } else { 0.0 }).collect();
        let band_hz = rate / 2.0 / (bands - 1) as f64;
        let mut gains = [0f64; HARMONICS];
        for row in 0..batch {
            for frame in 0..frames {
                let index = row * frames + frame;
                let held = state.f0[row];
                let end = match f64::from(f0[index]) {
                    hz if hz > 0.0 => hz,
                    _ if held > 0.0 => held,
                    _ => RESTING_F0_HZ,
                };
                let start = if held > 0.0 { held } else { end };
                let top = start.max(end);
                for (k, gain) in gains.iter_mut().enumerate() {
                    *gain = fade((k + 1) as f64 * top / rate);
                }
                let out = &mut cosines[index * hop * HARMONICS..(index + 1) * hop * HARMONICS];
                let mut phase = state.phase[row];
                for (t, samples) in out.chunks_exact_mut(HARMONICS).enumerate() {
                    let hz = start + (end - start) * (t + 1) as f64 / hop as f64;
                    phase = (phase + TAU * hz / rate) % TAU;
                    // cos(kφ) by the Chebyshev recurrence: one multiply-add per harmonic.
                    let c1 = phase.cos();
                    let (mut previous, mut current) = (1.0f64, c1);
                    for (sample, gain) in samples.iter_mut().zip(&gains) {
                        *sample = (current * gain) as f32;
                        (previous, current) = (current, 2.0 * c1 * current - previous);
                    }
                }
                state.phase[row] = phase;
                state.f0[row] = end;
                let weights = &mut sampling[index * bands * HARMONICS..(index + 1) * bands * HARMONICS];
                for k in 0..HARMONICS {
                    let position = ((k + 1) as f64 * end / band_hz).min((bands - 1) as f64);
                    let low = (position.floor() as usize).min(bands - 2);
                    let above = position - low as f64;
                    weights[low * HARMONICS + k] = (1.0 - above) as f32;
                    weights[(low + 1) * HARMONICS + k] = above as f32;
                }
            }
        }
        Self { cosines, sampling, voiced }
    }
}

/// Gain of a harmonic at `relative` frequency (Hz over the sample rate): 1 below
/// [`FADE_START`], a raised-cosine fade to 0 at [`FADE_END`].
fn fade(relative: f64) -> f64 {
    if relative <= FADE_START {
        1.0
    } else if relative >= FADE_END {
        0.0
    } else {
        0.5 + 0.5 * (std::f64::consts::PI * (relative - FADE_START) / (FADE_END - FADE_START)).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    fn source(device: &burn::tensor::Device<Flex>) -> HarmonicSource<Flex> {
        let mut source = HarmonicSource::<Flex>::new(8, 17, 40, 16_000, device);
        // A nonzero envelope head, so the test sees real amplitudes.
        source.envelope = LinearConfig::new(8, 17).init(device);
        source
    }

    #[test]
    fn pieces_synthesize_like_the_whole_signal() {
        let device = Default::default();
        let source = source(&device);
        let features = Tensor::<Flex, 3>::random([2, 9, 8], Distribution::Normal(0.0, 1.0), &device);
        let f0: Vec<f32> = (0..18).map(|i| if i % 5 == 3 { 0.0 } else { 90.0 + 13.0 * i as f32 }).collect();
        let whole: Vec<f32> = source
            .synthesize(features.clone(), &f0, &mut source.init_state(2, &device))
            .into_data()
            .into_vec()
            .unwrap();
        let mut state = source.init_state(2, &device);
        let (mut pieces, mut start) = (Vec::new(), 0);
        for frames in [1, 3, 2, 3] {
            let piece_f0: Vec<f32> =
                (0..2).flat_map(|row| f0[row * 9 + start..row * 9 + start + frames].to_vec()).collect();
            pieces.push(source.synthesize(features.clone().narrow(1, start, frames), &piece_f0, &mut state));
            start += frames;
        }
        let pieces: Vec<f32> = Tensor::cat(pieces, 1).into_data().into_vec().unwrap();
        assert_eq!(whole, pieces);
    }

    #[test]
    fn a_steady_pitch_gives_its_harmonics_and_nothing_between() {
        let device = Default::default();
        let source = HarmonicSource::<Flex>::new(8, 33, 320, 16_000, &device);
        let frames = 25;
        let features = Tensor::<Flex, 3>::zeros([1, frames, 8], &device);
        let f0 = vec![200.0f32; frames];
        let out: Vec<f32> =
            source.synthesize(features, &f0, &mut source.init_state(1, &device)).into_data().into_vec().unwrap();
        // Past the first frame's fade-in, correlate 0.2 s with sines at harmonics and midpoints.
        let tail = &out[320..320 + 3200];
        let power_at = |hz: f64| {
            let (mut c, mut s) = (0.0, 0.0);
            for (t, &x) in tail.iter().enumerate() {
                let angle = TAU * hz * t as f64 / 16_000.0;
                c += f64::from(x) * angle.cos();
                s += f64::from(x) * angle.sin();
            }
            c * c + s * s
        };
        for k in [1.0, 5.0, 20.0, 34.0] {
            let (on, off) = (power_at(200.0 * k), power_at(200.0 * k + 100.0));
            assert!(on > 100.0 * off.max(1e-12), "harmonic {k}: {on} vs {off} between harmonics");
        }
        // Nothing at or above the fade's end.
        assert!(power_at(7800.0) < 1e-3 * power_at(200.0));
    }

    #[test]
    fn unvoiced_frames_fade_the_harmonics_out_and_stay_silent() {
        let device = Default::default();
        // The starting envelope in every frame, so only voicing changes the level; frames
        // of 20 ms hold several periods.
        let source = HarmonicSource::<Flex>::new(8, 17, 320, 16_000, &device);
        let features = Tensor::<Flex, 3>::zeros([1, 5, 8], &device);
        let f0 = [150.0f32, 150.0, 0.0, 0.0, 160.0];
        let out: Vec<f32> =
            source.synthesize(features, &f0, &mut source.init_state(1, &device)).into_data().into_vec().unwrap();
        let energy = |frame: usize| out[frame * 320..(frame + 1) * 320].iter().map(|x| x * x).sum::<f32>();
        assert!(energy(1) > 0.0, "a voiced frame sounds");
        assert!(energy(2) > 0.0 && energy(2) < energy(1), "the first unvoiced frame fades out");
        assert_eq!(energy(3), 0.0, "a second unvoiced frame is silent");
        assert!(energy(4) > 0.0, "voicing comes back");
    }

    #[test]
    fn the_phase_continues_across_a_pitch_change() {
        // The fundamental's phase never jumps: the largest sample-to-sample step of a
        // single harmonic stays that of its highest frequency.
        let mut state = HarmonicState::<Flex> {
            phase: vec![0.0],
            f0: vec![0.0],
            amplitudes: Tensor::zeros([1, 1, HARMONICS], &Default::default()),
        };
        let f0 = [120.0f32, 0.0, 180.0, 240.0];
        let bank = Bank::build(&f0, 1, 4, 9, 320, 16_000.0, &mut state);
        let first: Vec<f32> = bank.cosines.iter().step_by(HARMONICS).copied().collect();
        let steepest = TAU * 240.0 / 16_000.0;
        for pair in first.windows(2) {
            assert!(f64::from((pair[1] - pair[0]).abs()) <= steepest * 1.01, "jump {pair:?}");
        }
        assert_eq!(state.f0, vec![240.0]);
    }
}
