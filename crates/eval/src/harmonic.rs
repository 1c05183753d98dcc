//! Harmonic contrast: how much of voiced speech's harmonic fine structure survives a codec
//! (the measure of `../shared/tools/harmonic_contrast.py`, with the encoder's own pitch
//! tracker in place of pYIN). On each voiced frame of the reference, the decoded signal's
//! power on the harmonics k·f0 (±1 bin) against its power midway between them, 1–4 kHz, in
//! dB. Originals read about 4 dB; a spectrum without harmonic structure about 0 dB.

use tokenwave_core::dsp::{Stft, periodic_hann_window};
use tokenwave_core::pitch::PitchTracker;

/// Analysis window, samples at 16 kHz (128 ms: harmonics of a low voice stay resolved).
const N_FFT: usize = 2048;
/// The band the harmonics are counted in, Hz.
const LOW_HZ: f64 = 1000.0;
const HIGH_HZ: f64 = 4000.0;
/// A frame counts when at least this many harmonics fall in the band.
const MIN_HARMONICS: usize = 3;

/// Mean harmonic contrast (dB) of `decoded` over the voiced frames of `reference` (both at
/// `rate` Hz, time-aligned), and the number of frames it averages; `None` without a voiced
/// frame that has enough harmonics in the band.
pub fn harmonic_contrast(reference: &[f32], decoded: &[f32], rate: u32) -> Option<(f64, usize)> {
    let hop = (rate / 50) as usize;
    let mut tracker = PitchTracker::new(rate, hop);
    let frames = tracker.push(reference);
    let delay = f64::from(tracker.analysis_delay_samples());
    let stft = Stft::new(N_FFT, N_FFT, periodic_hann_window(N_FFT));
    let per_bin = f64::from(rate) / N_FFT as f64;
    let contrasts: Vec<f64> = frames
        .iter()
        .enumerate()
        .filter(|(_, p)| p.voiced)
        .filter_map(|(n, p)| {
            // The tracker's estimate describes the audio centred `delay` before the end of its frame.
            let centre = ((n + 1) * hop) as f64 - delay;
            let power = frame_power(decoded, centre.round() as isize, &stft);
            frame_contrast(&power, f64::from(p.f0_hz), per_bin)
        })
        .collect();
    (!contrasts.is_empty()).then(|| (contrasts.iter().sum::<f64>() / contrasts.len() as f64, contrasts.len()))
}

/// Power spectrum of the `N_FFT` samples of `signal` centred on `centre` (zeros outside it).
fn frame_power(signal: &[f32], centre: isize, stft: &Stft) -> Vec<f64> {
    let start = centre - N_FFT as isize / 2;
    let frame: Vec<f64> = (0..N_FFT as isize)
        .map(|i| usize::try_from(start + i).ok().and_then(|j| signal.get(j)).map_or(0.0, |&s| f64::from(s)))
        .collect();
    stft.magnitudes(&frame, false).first().map_or_else(Vec::new, |m| m.iter().map(|v| v * v).collect())
}

/// The contrast of one frame's power spectrum at pitch `f0`, or `None` if too few harmonics
/// fall in the band or either side has no power.
fn frame_contrast(power: &[f64], f0: f64, per_bin: f64) -> Option<f64> {
    let harmonics: Vec<f64> =
        (1..).map(|k| k as f64 * f0).take_while(|&h| h <= HIGH_HZ).filter(|&h| h >= LOW_HZ).collect();
    if harmonics.len() < MIN_HARMONICS {
        return None;
    }
    let around = |hz: f64| -> Option<f64> {
        let bin = (hz / per_bin).round() as usize;
        let bins = power.get(bin.checked_sub(1)?..=bin + 1)?;
        Some(bins.iter().sum::<f64>() / 3.0)
    };
    let mean = |points: &mut dyn Iterator<Item = f64>| -> Option<f64> {
        let values: Option<Vec<f64>> = points.map(around).collect();
        let values = values?;
        Some(values.iter().sum::<f64>() / values.len() as f64)
    };
    let on = mean(&mut harmonics.iter().copied())?;
    let between = mean(&mut harmonics.iter().map(|h| h + f0 / 2.0))?;
    (on > 0.0 && between > 0.0).then(|| 10.0 * (on / between).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16_000;

    /// 2 s of a 40-harmonic tone at 140 Hz under a slow loudness swell.
    fn voiced() -> Vec<f32> {
        (0..2 * RATE as usize)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                let swell = 0.6 + 0.4 * (std::f32::consts::TAU * 0.5 * t).sin();
                let tone: f32 = (1..=40).map(|h| (std::f32::consts::TAU * 140.0 * h as f32 * t).sin() / h as f32).sum();
                0.1 * swell * tone
            })
            .collect()
    }

    #[test]
    fn harmonics_read_high_and_noise_reads_near_zero() {
        let reference = voiced();
        let (own, frames) = harmonic_contrast(&reference, &reference, RATE).expect("voiced frames");
        assert!(frames > 50, "{frames} voiced frames");
        assert!(own > 10.0, "a harmonic tone against itself: {own} dB");
        let mut seed = 7u32;
        let noise: Vec<f32> = (0..reference.len())
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2
            })
            .collect();
        let (hiss, _) = harmonic_contrast(&reference, &noise, RATE).unwrap();
        assert!(hiss.abs() < 1.5, "white noise on the tone's frames: {hiss} dB");
    }

    #[test]
    fn silence_has_no_voiced_frames() {
        assert_eq!(harmonic_contrast(&vec![0.0; 16_000], &vec![0.0; 16_000], RATE), None);
    }
}
