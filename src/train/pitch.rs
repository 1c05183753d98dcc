//! Pitch targets for the decoder's harmonic source: the fundamental of each frame of a
//! training crop, from the McLeod pitch method, where the crop is clearly voiced.

use pitch_detection::detector::PitchDetector;
use pitch_detection::detector::mcleod::McLeodDetector;

use crate::model::harmonic::{MAX_F0, MIN_F0};

/// Below this clarity (0 to 1) a frame counts as unvoiced and gets no target.
const CLARITY_THRESHOLD: f32 = 0.7;
/// Frames quieter than this RMS get no target.
const MIN_RMS: f32 = 0.003;

/// The natural-log fundamental of each of the `frames` frames of `crop`, or `None` where a
/// frame is unvoiced, too quiet, or its analysis window does not fit in the crop. Frame t's
/// window is centred on the end of its hop, where the harmonic source reaches frame t's
/// pitch. The window holds two periods of the lowest pitch.
pub fn log_f0_targets(crop: &[f32], frames: usize, hop: usize, sample_rate: u32) -> Vec<Option<f32>> {
    let window = (2.0 * f64::from(sample_rate) / MIN_F0).ceil() as usize;
    let mut detector = McLeodDetector::<f32>::new(window, window / 2);
    let min_power = MIN_RMS * MIN_RMS * window as f32;
    (0..frames)
        .map(|frame| {
            let centre = (frame + 1) * hop;
            let start = centre.checked_sub(window / 2)?;
            let signal = crop.get(start..start + window)?;
            let pitch = detector.get_pitch(signal, sample_rate as usize, min_power, CLARITY_THRESHOLD)?;
            let f0 = f64::from(pitch.frequency);
            (MIN_F0..=MAX_F0).contains(&f0).then(|| f0.ln() as f32)
        })
        .collect()
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
}
