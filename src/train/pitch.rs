//! Targets for the decoder's harmonic source: the fundamental of each frame of a training
//! crop, from the McLeod pitch method, where the crop is clearly voiced; and the amplitude
//! of each harmonic of that fundamental in the crop.

use pitch_detection::detector::PitchDetector;
use pitch_detection::detector::mcleod::McLeodDetector;

use crate::model::harmonic::{MAX_F0, MIN_F0, NYQUIST_MARGIN};
use crate::model::spectral::periodic_hann;

/// Below this clarity (0 to 1) a frame counts as unvoiced and gets no target.
const CLARITY_THRESHOLD: f32 = 0.7;
/// Frames quieter than this RMS get no target.
const MIN_RMS: f32 = 0.003;
/// Added to amplitudes before their logarithm: −100 dBFS, so that silent harmonics do not
/// dominate the amplitude loss, yet the source learns to be silent where speech is (64
/// harmonics at −80 dBFS already hum audibly in a pause).
pub const AMPLITUDE_FLOOR: f32 = 1e-5;

/// Length of the analysis window at `sample_rate`: two periods of the lowest pitch.
fn window_len(sample_rate: u32) -> usize {
    (2.0 * f64::from(sample_rate) / MIN_F0).ceil() as usize
}

/// The `window` samples of `crop` centred on the end of frame `frame`'s hop, where the
/// harmonic source reaches that frame's values; `None` where they run past either edge.
fn analysis_window(crop: &[f32], frame: usize, hop: usize, window: usize) -> Option<&[f32]> {
    window_range(crop.len(), frame, hop, window).map(|range| &crop[range])
}

/// Where [`analysis_window`] lies in a crop of `len` samples.
fn window_range(len: usize, frame: usize, hop: usize, window: usize) -> Option<std::ops::Range<usize>> {
    let start = ((frame + 1) * hop).checked_sub(window / 2)?;
    (start + window <= len).then_some(start..start + window)
}

/// Whether frame `frame` of a crop of `len` samples has a whole analysis window, so that
/// [`log_f0_targets`] judges it voiced or not rather than leaving it out.
pub fn judged(len: usize, frame: usize, hop: usize, sample_rate: u32) -> bool {
    window_range(len, frame, hop, window_len(sample_rate)).is_some()
}

/// The natural-log fundamental of each of the `frames` frames of `crop`, or `None` where a
/// frame is unvoiced, too quiet, or its analysis window does not fit in the crop. Frame t's
/// window is centred on the end of its hop, where the harmonic source reaches frame t's
/// pitch. The window holds two periods of the lowest pitch.
pub fn log_f0_targets(crop: &[f32], frames: usize, hop: usize, sample_rate: u32) -> Vec<Option<f32>> {
    let window = window_len(sample_rate);
    let mut detector = McLeodDetector::<f32>::new(window, window / 2);
    let min_power = MIN_RMS * MIN_RMS * window as f32;
    (0..frames)
        .map(|frame| {
            let signal = analysis_window(crop, frame, hop, window)?;
            let pitch = detector.get_pitch(signal, sample_rate as usize, min_power, CLARITY_THRESHOLD)?;
            let f0 = f64::from(pitch.frequency);
            (MIN_F0..=MAX_F0).contains(&f0).then(|| f0.ln() as f32)
        })
        .collect()
}

/// For each frame of `crop` with a pitch in `log_f0` (from [`log_f0_targets`]), the
/// log amplitude (plus [`AMPLITUDE_FLOOR`]) of each of its first `harmonics` harmonics in a
/// Hann window at the same place; for each frame without one whose window fits in the crop
/// (unvoiced or silent), the floor itself, so the source learns to fall silent there. Also
/// 1 where a target holds and 0 elsewhere (harmonics above the Nyquist margin, frames at
/// the crop's edges): two `[frames * harmonics]` arrays.
pub fn log_amplitude_targets(
    crop: &[f32],
    log_f0: &[Option<f32>],
    hop: usize,
    sample_rate: u32,
    harmonics: usize,
) -> (Vec<f32>, Vec<f32>) {
    let window = window_len(sample_rate);
    let hann: Vec<f32> = (0..window).map(|n| periodic_hann(n, window) as f32).collect();
    // A sinusoid of amplitude A gives |Σ x·w·e^(−iωn)| = A·Σw/2 at its own frequency.
    let gain = 2.0 / hann.iter().sum::<f32>();
    // Harmonics the source mutes get no target.
    let limit = NYQUIST_MARGIN as f32 * sample_rate as f32 / 2.0;
    let (mut targets, mut mask) = (vec![0.0; log_f0.len() * harmonics], vec![0.0; log_f0.len() * harmonics]);
    for (frame, pitch) in log_f0.iter().enumerate() {
        let Some(signal) = analysis_window(crop, frame, hop, window) else { continue };
        let Some(f0) = pitch.map(f32::exp) else {
            targets[frame * harmonics..(frame + 1) * harmonics].fill(AMPLITUDE_FLOOR.ln());
            mask[frame * harmonics..(frame + 1) * harmonics].fill(1.0);
            continue;
        };
        let windowed: Vec<f32> = signal.iter().zip(&hann).map(|(x, w)| x * w).collect();
        for k in 1..=harmonics {
            let frequency = k as f32 * f0;
            if frequency >= limit {
                break;
            }
            // The phasor e^(−iωn) by rotation, one multiplication per sample.
            let (step_sin, step_cos) = (std::f32::consts::TAU * frequency / sample_rate as f32).sin_cos();
            let (mut re, mut im, mut cos, mut sin) = (0f32, 0f32, 1f32, 0f32);
            for x in &windowed {
                re += x * cos;
                im -= x * sin;
                (cos, sin) = (cos * step_cos - sin * step_sin, sin * step_cos + cos * step_sin);
            }
            let at = frame * harmonics + k - 1;
            targets[at] = (gain * re.hypot(im) + AMPLITUDE_FLOOR).ln();
            mask[at] = 1.0;
        }
    }
    (targets, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pitch_of_a_voice_like_tone_and_none_in_silence_or_noise() {
        let rate = 16_000;
        let tone: Vec<f32> = (0..16_000)
            .map(|n| {
                let t = n as f32 / rate as f32;
                (1..=8).map(|k| (std::f32::consts::TAU * 140.0 * k as f32 * t).sin() * 0.05 / k as f32).sum()
            })
            .collect();
        let targets = log_f0_targets(&tone, 50, 320, rate);
        // The last frame's window would run past the crop's end.
        assert_eq!(targets[49], None);
        assert!(judged(16_000, 48, 320, rate) && !judged(16_000, 49, 320, rate));
        for target in &targets[..49] {
            let f0 = target.expect("a steady tone is voiced").exp();
            assert!((f0 - 140.0).abs() < 2.0, "found {f0} Hz");
        }
        assert!(log_f0_targets(&vec![0.0; 16_000], 50, 320, rate).iter().all(Option::is_none));
        let mut state = 12_345u32;
        let noise: Vec<f32> = (0..16_000)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 0.2 - 0.1
            })
            .collect();
        let voiced = log_f0_targets(&noise, 50, 320, rate).iter().filter(|t| t.is_some()).count();
        assert!(voiced <= 2, "{voiced} of 49 noise frames called voiced");
    }

    #[test]
    fn measures_each_harmonics_amplitude() {
        let rate = 16_000;
        let amplitudes = [0.1f32, 0.0, 0.02, 0.05];
        let tone: Vec<f32> = (0..8_000)
            .map(|n| {
                let t = n as f32 / rate as f32;
                amplitudes.iter().zip(1..).map(|(a, k)| a * (std::f32::consts::TAU * 150.0 * k as f32 * t).sin()).sum()
            })
            .collect();
        let mut pitch = vec![Some(150f32.ln()); 24];
        pitch.push(None);
        pitch[3] = None;
        // 60 harmonics of 150 Hz: those from 51 on (7650 Hz and up) are above the margin.
        let (targets, mask) = log_amplitude_targets(&tone, &pitch, 320, rate, 60);
        assert!(mask[3 * 60..4 * 60].iter().all(|&m| m == 1.0), "an unvoiced frame's harmonics are all targets");
        assert!(targets[3 * 60..4 * 60].iter().all(|&t| t == AMPLITUDE_FLOOR.ln()), "of silence");
        assert!(mask[24 * 60..].iter().all(|&m| m == 0.0), "a frame whose window runs past the end has none");
        assert_eq!(mask[5 * 60..6 * 60].iter().sum::<f32>(), 50.0);
        for (k, expected) in amplitudes.iter().enumerate() {
            let found = targets[5 * 60 + k].exp() - AMPLITUDE_FLOOR;
            assert!((found - expected).abs() < 0.003, "harmonic {}: {found} vs {expected}", k + 1);
        }
    }
}
