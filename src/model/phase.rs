//! Phase rebuilt from magnitudes alone, frame by frame: real-time phase-gradient heap
//! integration (PGHI, after Průša and Holighaus).
//!
//! Why: a decoder that predicts each frame's phase outright cannot carry a pitch that is not
//! a multiple of its frame rate (models/MODEL_CARD.md, "The decoder loses the pitch"). For a
//! Gaussian-like window the phase's derivatives follow from the log magnitude's: along time
//! from its slope across bins (where a partial really lies), along frequency from its slope
//! across frames (where an onset lies). Integrating them from the loudest bins outwards,
//! from the last frame's phases, rebuilds a phase that runs on at each partial's own
//! frequency. Measured on held-out speech (640-sample Hann, hop 160, causal): the
//! reference's own magnitudes come back at STOI 0.97, PESQ-WB 4.0.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::f32::consts::PI;

/// Bins quieter than this share of the loudest (in this frame or the last) get no
/// integrated phase, only a steady advance: their phase is noise and inaudible.
const RELATIVE_FLOOR: f32 = 1e-5;
/// Time-frequency spread of a Gaussian that matches a Hann window of `n` samples is this
/// times `n²` (samples²).
const HANN_GAUSSIAN_SPREAD: f32 = 0.25645;
/// Magnitudes are floored here before the logarithm.
const TINY: f32 = 1e-12;
/// Share of the frame-to-frame log-magnitude slope that sets the phase step across bins.
/// The slope is taken backwards (no look-ahead), which overshoots at onsets; at half,
/// the reference's own magnitudes came back at STOI 0.969 and PESQ-WB 4.04 (full: 0.955 and
/// 3.97; none: 0.965 and 3.80), 14 held-out clips, hop 160.
const TIME_SLOPE_WEIGHT: f32 = 0.5;

/// Rebuilds phases for a stream of magnitude frames; each frame's phases follow from its
/// own magnitudes and the last frame's magnitudes and phases (no look-ahead).
#[derive(Debug, Clone)]
pub struct PhaseRebuilder {
    n_fft: usize,
    hop: usize,
    previous_magnitude: Vec<f32>,
    previous_phase: Vec<f32>,
    previous_advance: Vec<f32>,
    previous_peak: f32,
}

/// A bin waiting in the heap: the loudest is integrated from first.
struct Pending {
    magnitude: f32,
    bin: usize,
    in_current_frame: bool,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.magnitude.total_cmp(&other.magnitude).then(other.bin.cmp(&self.bin))
    }
}

impl PhaseRebuilder {
    /// For frames of `n_fft / 2 + 1` magnitudes of a periodic-Hann STFT, `hop` samples apart.
    pub fn new(n_fft: usize, hop: usize) -> Self {
        let bins = n_fft / 2 + 1;
        Self {
            n_fft,
            hop,
            previous_magnitude: vec![0.0; bins],
            previous_phase: vec![0.0; bins],
            previous_advance: vec![0.0; bins],
            previous_peak: 0.0,
        }
    }

    /// The phases (radians, wrapped to ±π) of the next frame, given its `magnitudes`.
    ///
    /// # Panics
    /// If `magnitudes` does not hold `n_fft / 2 + 1` values.
    pub fn next_frame(&mut self, magnitudes: &[f32]) -> Vec<f32> {
        let bins = self.previous_phase.len();
        assert_eq!(magnitudes.len(), bins, "one magnitude per bin");
        let n = self.n_fft as f32;
        let hop = self.hop as f32;
        let spread = HANN_GAUSSIAN_SPREAD * n * n;
        let log: Vec<f32> = magnitudes.iter().map(|m| m.max(TINY).ln()).collect();
        // Phase advance per hop of each bin: 2π·hop·(its partial's frequency, in cycles
        // per sample), the frequency found from the log magnitude's slope across bins.
        let advance: Vec<f32> = (0..bins)
            .map(|k| {
                let slope = if k == 0 || k + 1 == bins { 0.0 } else { (log[k + 1] - log[k - 1]) / 2.0 };
                let frequency = k as f32 / n + n / (2.0 * PI * spread) * slope;
                2.0 * PI * hop * frequency
            })
            .collect();
        let peak = magnitudes.iter().copied().fold(0.0, f32::max);
        let floor = RELATIVE_FLOOR * peak.max(self.previous_peak);
        // Phase step from bin k to k + 1, from the log magnitude's slope across frames;
        // both frames floored alike, so a sound starting from silence gives a bounded slope.
        // The first frame has no slope to go by.
        let floor_log = floor.max(TINY).ln();
        let step: Vec<f32> = (0..bins)
            .map(|k| {
                let slope = if self.previous_peak > 0.0 {
                    (log[k].max(floor_log) - self.previous_magnitude[k].max(TINY).ln().max(floor_log)) / hop
                } else {
                    0.0
                };
                -PI - TIME_SLOPE_WEIGHT * spread / n * slope
            })
            .collect();
        let mut phase: Vec<f32> = (0..bins).map(|k| self.previous_phase[k] + 2.0 * PI * hop * k as f32 / n).collect();
        let mut done: Vec<bool> = magnitudes.iter().map(|&m| m < floor || m <= 0.0).collect();
        let mut heap: BinaryHeap<Pending> = (0..bins)
            .filter(|&k| self.previous_magnitude[k] >= floor && self.previous_magnitude[k] > 0.0)
            .map(|k| Pending { magnitude: self.previous_magnitude[k], bin: k, in_current_frame: false })
            .collect();
        while done.iter().any(|d| !d) {
            let Some(top) = heap.pop() else {
                // Nothing left to integrate from: start afresh at the loudest bin left.
                let k = (0..bins).filter(|&k| !done[k]).max_by(|&a, &b| magnitudes[a].total_cmp(&magnitudes[b]));
                let k = k.expect("a bin is left");
                done[k] = true;
                heap.push(Pending { magnitude: magnitudes[k], bin: k, in_current_frame: true });
                continue;
            };
            let k = top.bin;
            if !top.in_current_frame {
                if !done[k] {
                    phase[k] = self.previous_phase[k] + (self.previous_advance[k] + advance[k]) / 2.0;
                    done[k] = true;
                    heap.push(Pending { magnitude: magnitudes[k], bin: k, in_current_frame: true });
                }
                continue;
            }
            for (next, direction) in [(k.wrapping_sub(1), -1.0), (k + 1, 1.0)] {
                if next < bins && !done[next] {
                    phase[next] = phase[k] + direction * (step[k] + step[next]) / 2.0;
                    done[next] = true;
                    heap.push(Pending { magnitude: magnitudes[next], bin: next, in_current_frame: true });
                }
            }
        }
        for p in &mut phase {
            *p -= (*p / (2.0 * PI)).round() * 2.0 * PI;
        }
        self.previous_magnitude = magnitudes.to_vec();
        self.previous_phase.clone_from(&phase);
        self.previous_advance = advance;
        self.previous_peak = peak;
        phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 640;
    const HOP: usize = 160;

    fn hann(t: usize) -> f32 {
        0.5 - 0.5 * (2.0 * PI * t as f32 / N as f32).cos()
    }

    /// Magnitudes and phases of the periodic-Hann frame of `signal` starting at `start`.
    fn frame(signal: &[f32], start: usize) -> (Vec<f32>, Vec<f32>) {
        (0..=N / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for t in 0..N {
                    let angle = 2.0 * std::f64::consts::PI * (k * t) as f64 / N as f64;
                    let x = f64::from(signal[start + t] * hann(t));
                    re += x * angle.cos();
                    im -= x * angle.sin();
                }
                ((re.hypot(im)) as f32, im.atan2(re) as f32)
            })
            .unzip()
    }

    fn wrapped(x: f32) -> f32 {
        x - (x / (2.0 * PI)).round() * 2.0 * PI
    }

    #[test]
    fn a_steady_tone_between_bins_advances_at_its_own_frequency() {
        // 130 Hz at 16 kHz sits between bins 5 and 6 of a 640-point DFT (25 Hz apart).
        let f = 130.0 / 16_000.0;
        let signal: Vec<f32> = (0..N + 12 * HOP).map(|t| (2.0 * PI * f * t as f32).sin()).collect();
        let mut rebuilder = PhaseRebuilder::new(N, HOP);
        let mut last = None;
        for i in 0..12 {
            let (magnitudes, _) = frame(&signal, i * HOP);
            let phase = rebuilder.next_frame(&magnitudes);
            if let Some(previous) = last.replace(phase.clone()) {
                let previous: Vec<f32> = previous;
                // The true advance per hop at the tone's frequency, on the bins it fills
                // (at the nearest bin's own frequency it would be 0.31 rad off).
                for k in 4..=7 {
                    let error = wrapped(phase[k] - previous[k] - 2.0 * PI * f * HOP as f32);
                    assert!(error.abs() < 0.05, "frame {i} bin {k}: advance off by {error} rad");
                }
            }
        }
    }

    #[test]
    fn neighbouring_bins_of_a_partial_keep_the_reference_phase_difference() {
        let f = 0.031;
        let signal: Vec<f32> = (0..N + 8 * HOP).map(|t| (2.0 * PI * f * t as f32 + 0.3).cos()).collect();
        let mut rebuilder = PhaseRebuilder::new(N, HOP);
        for i in 0..8 {
            let (magnitudes, reference) = frame(&signal, i * HOP);
            let phase = rebuilder.next_frame(&magnitudes);
            let peak = (f * N as f32).round() as usize;
            for k in [peak - 1, peak + 1] {
                let rebuilt = wrapped(phase[k] - phase[peak]);
                let truth = wrapped(reference[k] - reference[peak]);
                assert!(wrapped(rebuilt - truth).abs() < 0.1, "frame {i} bin {k}: {rebuilt} vs {truth}");
            }
        }
    }

    #[test]
    fn silence_and_odd_inputs_give_finite_phases() {
        let mut rebuilder = PhaseRebuilder::new(N, HOP);
        for magnitudes in [vec![0.0; N / 2 + 1], vec![1e30; N / 2 + 1], vec![f32::MIN_POSITIVE; N / 2 + 1]] {
            let phase = rebuilder.next_frame(&magnitudes);
            assert!(phase.iter().all(|p| p.is_finite() && p.abs() <= PI + 1e-5));
        }
    }
}
