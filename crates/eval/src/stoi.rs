//! Short-time objective intelligibility: STOI (Taal et al., 2011) and extended STOI (Jensen
//! and Taal, 2016), following the reference implementation's constants and steps: 10 kHz,
//! silent frames (40 dB under the loudest) removed, 256-sample Hann frames with 50 %
//! overlap and a 512-point FFT, 15 one-third-octave bands from 150 Hz, 30-frame segments
//! (384 ms), and for STOI clipping at β = −15 dB.

use tokenwave_core::audio::Resampler;
use tokenwave_core::dsp::{Stft, symmetric_hann_window};
use tokenwave_core::{Error, Result};

/// Rate the measure works at.
pub const STOI_RATE: u32 = 10_000;
const FRAME: usize = 256;
const HOP: usize = FRAME / 2;
const NFFT: usize = 512;
const BANDS: usize = 15;
const LOWEST_CENTRE: f64 = 150.0;
const SEGMENT: usize = 30;
const BETA_DB: f64 = -15.0;
const DYNAMIC_RANGE_DB: f64 = 40.0;
const EPS: f64 = f64::EPSILON;

/// STOI (or extended STOI with `extended`) of `degraded` against `clean`, both at `rate`
/// Hz, over their common length. Fails when fewer than 30 voiced frames remain.
pub fn stoi(clean: &[f32], degraded: &[f32], rate: u32, extended: bool) -> Result<f64> {
    let n = clean.len().min(degraded.len());
    let (x, y) = (resample(&clean[..n], rate)?, resample(&degraded[..n], rate)?);
    let (x, y) = remove_silent_frames(&x, &y);
    let window = symmetric_hann_window(FRAME);
    let stft = Stft::new(NFFT, HOP, window);
    let (x_bands, y_bands) = (third_octaves(&stft.magnitudes(&x, true)), third_octaves(&stft.magnitudes(&y, true)));
    let frames = x_bands.len();
    if frames < SEGMENT {
        return Err(Error::InvalidArgument(format!(
            "too little speech for STOI: {frames} voiced frames, at least {SEGMENT} (about 0.4 s) are needed"
        )));
    }
    let mut total = 0.0;
    let segments = frames - SEGMENT + 1;
    for end in SEGMENT..=frames {
        // [band][frame] of this segment.
        let seg = |spec: &[Vec<f64>]| -> Vec<Vec<f64>> {
            (0..BANDS).map(|b| (end - SEGMENT..end).map(|t| spec[t][b]).collect()).collect()
        };
        let (xs, ys) = (seg(&x_bands), seg(&y_bands));
        total += if extended { extended_segment(xs, ys) } else { classic_segment(&xs, &ys) };
    }
    Ok(total / segments as f64)
}

fn classic_segment(xs: &[Vec<f64>], ys: &[Vec<f64>]) -> f64 {
    let clip = 10f64.powf(-BETA_DB / 20.0);
    let mut sum = 0.0;
    for (xb, yb) in xs.iter().zip(ys) {
        let scale = norm(xb) / (norm(yb) + EPS);
        let y_clipped: Vec<f64> = yb.iter().zip(xb).map(|(&y, &x)| (y * scale).min(x * (1.0 + clip))).collect();
        sum += correlation(xb, &y_clipped);
    }
    sum / BANDS as f64
}

fn extended_segment(mut xs: Vec<Vec<f64>>, mut ys: Vec<Vec<f64>>) -> f64 {
    for band in xs.iter_mut().chain(ys.iter_mut()) {
        center_and_normalise(band);
    }
    let mut sum = 0.0;
    for t in 0..SEGMENT {
        let mut xc: Vec<f64> = xs.iter().map(|b| b[t]).collect();
        let mut yc: Vec<f64> = ys.iter().map(|b| b[t]).collect();
        center_and_normalise(&mut xc);
        center_and_normalise(&mut yc);
        sum += xc.iter().zip(&yc).map(|(a, b)| a * b).sum::<f64>();
    }
    sum / SEGMENT as f64
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn center_and_normalise(v: &mut [f64]) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter_mut().for_each(|a| *a -= mean);
    let n = norm(v) + EPS;
    v.iter_mut().for_each(|a| *a /= n);
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    center_and_normalise(&mut a);
    center_and_normalise(&mut b);
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}

fn resample(signal: &[f32], rate: u32) -> Result<Vec<f64>> {
    let mut resampler = Resampler::new(rate, STOI_RATE)?;
    let mut out = resampler.process(signal);
    out.extend(resampler.finish());
    Ok(out.into_iter().map(f64::from).collect())
}

/// Drops the frames of both signals where `x` is more than 40 dB under its loudest frame,
/// and overlap-adds what is left.
fn remove_silent_frames(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let window = symmetric_hann_window(FRAME);
    let starts: Vec<usize> = (0..(x.len() + 1).saturating_sub(FRAME)).step_by(HOP).collect();
    let frame = |s: &[f64], start: usize| -> Vec<f64> {
        s[start..start + FRAME].iter().zip(&window).map(|(a, w)| a * w).collect()
    };
    let energies: Vec<f64> = starts.iter().map(|&s| 20.0 * (norm(&frame(x, s)) + EPS).log10()).collect();
    let loudest = energies.iter().copied().fold(f64::MIN, f64::max);
    let kept: Vec<usize> =
        starts.iter().zip(&energies).filter(|(_, e)| **e > loudest - DYNAMIC_RANGE_DB).map(|(s, _)| *s).collect();
    let rebuild = |s: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; kept.len().saturating_sub(1) * HOP + if kept.is_empty() { 0 } else { FRAME }];
        for (i, &start) in kept.iter().enumerate() {
            for (o, v) in out[i * HOP..i * HOP + FRAME].iter_mut().zip(frame(s, start)) {
                *o += v;
            }
        }
        out
    };
    (rebuild(x), rebuild(y))
}

/// STOI's 15 one-third-octave bands from 150 Hz as bin ranges `lo..hi` of an `n_fft`-point
/// spectrum at `rate`: band `i` spans the bins nearest to 150 Hz · 2^((2i ± 1) / 6).
fn third_octave_edges(n_fft: usize, rate: u32) -> Vec<(usize, usize)> {
    let bins = n_fft / 2 + 1;
    let freq = |k: usize| k as f64 * f64::from(rate) / n_fft as f64;
    let nearest = |hz: f64| (0..bins).min_by(|&a, &b| (freq(a) - hz).abs().total_cmp(&(freq(b) - hz).abs())).unwrap();
    (0..BANDS)
        .map(|i| {
            let k = i as f64;
            let low = LOWEST_CENTRE * 2f64.powf((2.0 * k - 1.0) / 6.0);
            let high = LOWEST_CENTRE * 2f64.powf((2.0 * k + 1.0) / 6.0);
            (nearest(low), nearest(high))
        })
        .collect()
}

/// One-third-octave band magnitudes `[frame][band]` from `[frame][bin]` magnitudes.
fn third_octaves(spectrum: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let edges = third_octave_edges(NFFT, STOI_RATE);
    spectrum
        .iter()
        .map(|frame| edges.iter().map(|&(lo, hi)| frame[lo..hi].iter().map(|m| m * m).sum::<f64>().sqrt()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speechlike(n: usize, rate: u32) -> Vec<f32> {
        // Amplitude-modulated harmonics with pauses: enough structure across bands and time.
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let envelope = (2.0 * std::f32::consts::PI * 3.0 * t).sin().max(0.0);
                let pitch = 120.0 + 30.0 * (2.0 * std::f32::consts::PI * 0.5 * t).sin();
                (1..12).map(|h| (2.0 * std::f32::consts::PI * pitch * h as f32 * t).sin() / h as f32).sum::<f32>()
                    * envelope
                    * 0.1
            })
            .collect()
    }

    #[test]
    fn identical_signals_score_one_and_noise_scores_less() {
        let clean = speechlike(48_000, 16_000);
        for extended in [false, true] {
            let same = stoi(&clean, &clean, 16_000, extended).unwrap();
            assert!((same - 1.0).abs() < 1e-6, "{same}");
            let noisy: Vec<f32> =
                clean.iter().enumerate().map(|(i, v)| v + 0.05 * (((i * 7919) % 1000) as f32 / 500.0 - 1.0)).collect();
            let score = stoi(&clean, &noisy, 16_000, extended).unwrap();
            assert!(score < 0.95 && score > 0.2, "extended={extended}: {score}");
        }
    }

    #[test]
    fn too_short_is_an_error() {
        assert!(stoi(&[0.1; 2000], &[0.1; 2000], 16_000, false).is_err());
    }
}
