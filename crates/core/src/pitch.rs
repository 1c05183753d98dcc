//! Streaming F0 + voicing tracker (YIN style) and an 8-bit log-F0 quantizer: the encoder's
//! side of the pitch layer that the decoder's clock will read (not in the stream yet).
//!
//! # Tracker
//!
//! One estimate per hop (20 ms at 16 kHz). Frame `n` is reported as soon as sample `(n + 1) * hop - 1` has been
//! pushed: the analysis segment is the `window + max_lag + 1` samples that *end* there (512 + 320 + 1 = 833
//! samples at 16 kHz), so the tracker needs **no look-ahead** ([`PitchTracker::lookahead_samples`] is 0). The price
//! is that the estimate describes audio centred about 416 samples (26 ms) before the end of frame `n`, i.e. about
//! 16 ms before the frame's middle (see [`PitchTracker::analysis_delay_samples`]).
//!
//! Per frame:
//! 1. The YIN difference function `d(τ) = Σ_j (x[j] − x[j+τ])² = e(0) + e(τ) − 2 r(τ)` over a 32 ms window (512
//!    samples; longer than the 20 ms longest period because shorter windows gave noisy dip depths on speech),
//!    *level-balanced*: the term `(√e(τ) − √e(0))²` that a mere change of level between the two windows would
//!    cause is removed, leaving `2 √(e(0) e(τ)) − 2 r(τ)`. Without this, every onset and decay (level rising or
//!    falling within the 52 ms segment) looks aperiodic. A floor of `0.01 · (e(0) + e(τ))` is added so that the
//!    result stays meaningful (flat, i.e. unvoiced) when one of the two windows is silent, as at an onset after
//!    digital silence. The cross term `r` comes from one real FFT pair (1024 points; over 10× cheaper than the
//!    direct O(window · lags) loop, which is kept as a reference and compared in the tests).
//! 2. The cumulative-mean-normalised difference `d'(τ) = d(τ) · τ / Σ_{k≤τ} d(k)`: near 0 at the period of a
//!    periodic signal, near 1 for noise, and free of the plain difference's bias towards τ = 0.
//! 3. Candidates: the local minima of `d'` between 50 and 550 Hz, refined by parabolic interpolation. The YIN
//!    absolute-threshold rule picks the *shortest* lag whose dip is below a threshold (a periodic signal also
//!    dips at 2τ, 3τ, ..., so the deepest dip is often a sub-octave). When no dip is that deep, the threshold is
//!    raised to the deepest dip plus a margin instead of taking the deepest dip outright, for the same reason.
//! 4. Continuity: if a voiced frame was seen in the last few frames, a candidate within ±3 semitones of its F0
//!    wins over the rule's choice when its dip is nearly as deep (shorter lag) or clearly deeper (longer lag:
//!    every multiple of the true period dips as deep, so a longer lag needs real evidence). Octave jumps are the
//!    usual failure, and real pitch rarely jumps by an octave in 20 ms.
//! 5. Voicing: dip depth below a threshold, with hysteresis (a voiced run is not broken by one slightly
//!    shallower frame), and the RMS of the newest 32 ms above a floor of −65 dBFS (silence is unvoiced whatever its shape).
//!
//! Input sanitising: NaN and ±∞ samples are replaced by 0 (treated as silence) before anything else, so
//! one bad sample cannot poison the state. A first-order DC blocker (about 20 Hz corner) removes offsets
//! and rumble, which would otherwise fill the difference function with a slow trend. Each analysis segment
//! is scaled by its peak before the difference function, so results do not depend on the input level
//! (apart from the silence floor) and very loud input cannot overflow.
//!
//! # Quantizer
//!
//! One byte per frame (0.4 kbps at 50 frames/s): code 0 = unvoiced, codes 1..=255 are log-F0 levels evenly
//! spaced from 50 Hz (code 1) to 550 Hz (code 255), a step of `1200 · log2(11) / 254` ≈ 16.34 cents; the
//! round-trip error inside 50–550 Hz is at most half a step (≈ 8.17 cents).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Lowest F0 the tracker reports (Hz).
pub const F0_MIN_HZ: f32 = 50.0;
/// Highest F0 the tracker reports (Hz).
pub const F0_MAX_HZ: f32 = 550.0;

/// Integration window of the difference function (at least one period of [`F0_MIN_HZ`]).
const WINDOW_SECONDS: f32 = 0.032;
/// YIN absolute threshold: the shortest-lag dip below this wins (deeper dips at longer lags are multiples).
const ABS_THRESHOLD: f32 = 0.15;
/// Floor added to the level-balanced difference, relative to the two windows' energies (see the module doc).
const LEVEL_FLOOR: f64 = 0.01;
/// When no dip is below [`ABS_THRESHOLD`], the shortest lag whose dip is within this of the deepest wins
/// (rather than the deepest itself, which in weakly periodic frames is often a multiple of the period).
const RELATIVE_MARGIN: f32 = 0.1;
/// A frame becomes voiced when its chosen dip is below this ...
const VOICED_ON: f32 = 0.4;
/// ... and stays voiced while the dip is below this (hysteresis).
const VOICED_KEEP: f32 = 0.55;
/// Frames whose newest 32 ms (DC-blocked) have an RMS below this (−65 dBFS) are unvoiced: silence, faint residue.
const SILENCE_RMS: f32 = 5.6e-4;
/// A candidate near the previous F0 at a shorter lag replaces the rule's choice if its dip is at most this much
/// shallower (the rule prefers short lags, so it only took a longer one because no short one was deep enough).
const CONTINUITY_SLACK: f32 = 0.1;
/// A candidate near the previous F0 at a *longer* lag must be at least this much deeper than the rule's choice.
const LONGER_MARGIN: f32 = 0.05;
/// "Near the previous F0": within this many octaves (about ±3 semitones).
const CONTINUITY_OCTAVES: f32 = 0.25;
/// The previous voiced F0 is remembered over unvoiced gaps of up to this many frames.
const CONTINUITY_MEMORY: u32 = 3;

/// The tracker's verdict on one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FramePitch {
    /// Fundamental frequency in Hz, within [`F0_MIN_HZ`, `F0_MAX_HZ`] when `voiced`; 0.0 when unvoiced.
    pub f0_hz: f32,
    /// Whether the frame is judged voiced (periodic and not silent).
    pub voiced: bool,
    /// 1 − the depth of the best dip of the normalised difference function, clamped to 0..=1:
    /// about 1 for a clean periodic signal, well below 0.5 for noise; 0 for silence.
    pub periodicity: f32,
}

impl FramePitch {
    const UNVOICED: FramePitch = FramePitch { f0_hz: 0.0, voiced: false, periodicity: 0.0 };
}

/// A dip of the normalised difference function: interpolated lag (samples) and depth.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    lag: f32,
    depth: f32,
}

/// Streaming F0 + voicing tracker. Keeps the input tail it needs and the previous estimate.
pub struct PitchTracker {
    sample_rate: u32,
    hop: usize,
    /// Integration window of the difference function ([`WINDOW_SECONDS`], at least one period of [`F0_MIN_HZ`]).
    window: usize,
    min_lag: usize,
    max_lag: usize,
    /// Samples per analysis segment: `window + max_lag + 1` (the +1 is for interpolation at `max_lag`).
    segment: usize,
    /// Filtered input history; the last `segment` samples are the analysis segment.
    history: Vec<f32>,
    /// Samples pushed since the last completed frame.
    pending: usize,
    dc_x1: f64,
    dc_y1: f64,
    dc_pole: f64,
    voiced: bool,
    prev_f0: f32,
    frames_since_voiced: u32,
    use_direct: bool,
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    buf_a: Vec<f32>,
    buf_b: Vec<f32>,
    spec_a: Vec<Complex<f32>>,
    spec_b: Vec<Complex<f32>>,
    scratch_fwd: Vec<Complex<f32>>,
    scratch_inv: Vec<Complex<f32>>,
    seg: Vec<f32>,
    energy: Vec<f64>,
    diff: Vec<f32>,
    cmnd: Vec<f32>,
    candidates: Vec<Candidate>,
}

impl PitchTracker {
    /// A tracker for `sample_rate` Hz input reporting one estimate every `hop` samples.
    ///
    /// # Panics
    /// If `hop` is 0 or `sample_rate` is below 2.2 kHz (F0_MAX must stay under Nyquist with room to spare).
    pub fn new(sample_rate: u32, hop: usize) -> Self {
        assert!(hop > 0, "hop must be positive");
        assert!(sample_rate >= 2200, "sample rate too low for a 50–550 Hz tracker");
        let sr = sample_rate as f32;
        let min_lag = ((sr / F0_MAX_HZ).floor() as usize).max(2);
        let max_lag = (sr / F0_MIN_HZ).ceil() as usize;
        let window = ((sr * WINDOW_SECONDS).round() as usize).max(max_lag);
        let segment = window + max_lag + 1;
        let nfft = segment.next_power_of_two();
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(nfft);
        let ifft = planner.plan_fft_inverse(nfft);
        let spec_a = fft.make_output_vec();
        let spec_b = fft.make_output_vec();
        let scratch_fwd = fft.make_scratch_vec();
        let scratch_inv = ifft.make_scratch_vec();
        // One-pole DC blocker y[n] = x[n] − x[n−1] + p·y[n−1], corner ≈ (1 − p)·sr / 2π ≈ 20 Hz.
        let dc_pole = 1.0 - 2.0 * std::f64::consts::PI * 20.0 / sample_rate as f64;
        PitchTracker {
            sample_rate,
            hop,
            window,
            min_lag,
            max_lag,
            segment,
            history: vec![0.0; segment],
            pending: 0,
            dc_x1: 0.0,
            dc_y1: 0.0,
            dc_pole,
            voiced: false,
            prev_f0: 0.0,
            frames_since_voiced: u32::MAX,
            use_direct: false,
            fft,
            ifft,
            buf_a: vec![0.0; nfft],
            buf_b: vec![0.0; nfft],
            spec_a,
            spec_b,
            scratch_fwd,
            scratch_inv,
            seg: vec![0.0; segment],
            energy: vec![0.0; max_lag + 2],
            diff: vec![0.0; max_lag + 2],
            cmnd: vec![0.0; max_lag + 2],
            candidates: Vec::with_capacity(64),
        }
    }

    /// The sample rate given to [`PitchTracker::new`].
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The hop given to [`PitchTracker::new`].
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Samples of look-ahead beyond the end of frame `n` needed to report frame `n`: always 0.
    /// Frame `n` is returned by the `push` call that delivers its last sample.
    pub fn lookahead_samples(&self) -> usize {
        0
    }

    /// How far (in samples) the centre of the analysis segment lies before the end of the reported frame:
    /// half a segment, 416.5 at 16 kHz, i.e. the estimate for frame `n` is centred near sample
    /// `n * hop - 96` rather than the frame middle `n * hop + 160`.
    pub fn analysis_delay_samples(&self) -> f32 {
        self.segment as f32 / 2.0
    }

    /// Use the direct O(window · lags) difference function instead of the FFT one: the
    /// reference that the FFT path is tested and timed against (`examples/pitch_speed.rs`).
    pub fn set_direct(&mut self, direct: bool) {
        self.use_direct = direct;
    }

    /// The normalised difference function of the last analysed frame.
    #[cfg(test)]
    fn debug_cmnd(&self) -> &[f32] {
        &self.cmnd
    }

    /// Feed any number of samples; returns one [`FramePitch`] per frame completed by them (possibly none).
    /// The result does not depend on how the input is split into calls.
    pub fn push(&mut self, samples: &[f32]) -> Vec<FramePitch> {
        let mut out = Vec::with_capacity((self.pending + samples.len()) / self.hop);
        for &s in samples {
            let x = if s.is_finite() { s as f64 } else { 0.0 };
            // In f64 so that full-scale f32 input cannot overflow; tiny values flushed to 0 so that the
            // decaying state of a long silence cannot linger.
            let y = x - self.dc_x1 + self.dc_pole * self.dc_y1;
            self.dc_x1 = x;
            self.dc_y1 = if y.abs() < 1e-30 { 0.0 } else { y };
            self.history.push(self.dc_y1.clamp(-f32::MAX as f64, f32::MAX as f64) as f32);
            self.pending += 1;
            if self.pending == self.hop {
                self.pending = 0;
                let start = self.history.len() - self.segment;
                self.seg.copy_from_slice(&self.history[start..]);
                out.push(self.analyse());
                if self.history.len() > 4 * self.segment {
                    self.history.drain(..start);
                }
            }
        }
        out
    }

    /// Analyses `self.seg` (the latest segment) and updates the continuity state.
    fn analyse(&mut self) -> FramePitch {
        let peak = self.seg.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        let rms = {
            let e: f64 = self.seg[self.segment - self.window..].iter().map(|&v| (v as f64) * (v as f64)).sum();
            (e / self.window as f64).sqrt() as f32
        };
        if peak == 0.0 || rms < SILENCE_RMS {
            return self.unvoiced();
        }
        for v in &mut self.seg {
            *v /= peak;
        }
        if self.use_direct {
            difference_direct(&self.seg, self.window, &mut self.energy, &mut self.diff);
        } else {
            self.difference_fft();
        }
        cumulative_mean_normalise(&self.diff, &mut self.cmnd);
        find_candidates(&self.cmnd, self.min_lag, self.max_lag, &mut self.candidates);
        let Some(best) = self.choose() else {
            return self.unvoiced();
        };
        let periodicity = (1.0 - best.depth).clamp(0.0, 1.0);
        let limit = if self.voiced { VOICED_KEEP } else { VOICED_ON };
        if best.depth >= limit {
            let mut p = self.unvoiced();
            p.periodicity = periodicity;
            return p;
        }
        let f0 = (self.sample_rate as f32 / best.lag).clamp(F0_MIN_HZ, F0_MAX_HZ);
        self.voiced = true;
        self.prev_f0 = f0;
        self.frames_since_voiced = 0;
        FramePitch { f0_hz: f0, voiced: true, periodicity }
    }

    fn unvoiced(&mut self) -> FramePitch {
        self.voiced = false;
        self.frames_since_voiced = self.frames_since_voiced.saturating_add(1);
        FramePitch::UNVOICED
    }

    /// The absolute-threshold rule, then the continuity preference.
    fn choose(&self) -> Option<Candidate> {
        let cands = &self.candidates;
        let deepest = cands.iter().copied().min_by(|a, b| a.depth.total_cmp(&b.depth))?;
        let threshold = ABS_THRESHOLD.max(deepest.depth + RELATIVE_MARGIN);
        let rule = cands.iter().copied().find(|c| c.depth <= threshold).unwrap_or(deepest);
        if self.frames_since_voiced > CONTINUITY_MEMORY {
            return Some(rule);
        }
        let prev_lag = self.sample_rate as f32 / self.prev_f0;
        let dist = |c: &Candidate| (c.lag / prev_lag).log2().abs();
        if dist(&rule) <= CONTINUITY_OCTAVES {
            return Some(rule);
        }
        let near = cands
            .iter()
            .copied()
            .filter(|c| {
                // A periodic signal dips as deeply at every multiple of its period, so a longer lag near the
                // previous F0 is only evidence against the rule's choice when it is clearly deeper.
                let allowed = if c.lag < rule.lag { rule.depth + CONTINUITY_SLACK } else { rule.depth - LONGER_MARGIN };
                dist(c) <= CONTINUITY_OCTAVES && c.depth <= allowed
            })
            .min_by(|a, b| a.depth.total_cmp(&b.depth));
        Some(near.unwrap_or(rule))
    }

    /// `d(τ) = e(0) + e(τ) − 2 r(τ)` with the cross-correlation `r` from one forward FFT of each operand
    /// and one inverse FFT. The FFT size is the next power of two ≥ the segment, which is enough to keep
    /// the circular correlation free of wrap-around for lags ≤ `max_lag + 1`.
    fn difference_fft(&mut self) {
        let (w, seg) = (self.window, &self.seg);
        self.buf_a.fill(0.0);
        self.buf_a[..w].copy_from_slice(&seg[..w]);
        self.buf_b.fill(0.0);
        self.buf_b[..seg.len()].copy_from_slice(seg);
        // The planned sizes match the buffers, so these cannot fail.
        let _ = self.fft.process_with_scratch(&mut self.buf_a, &mut self.spec_a, &mut self.scratch_fwd);
        let _ = self.fft.process_with_scratch(&mut self.buf_b, &mut self.spec_b, &mut self.scratch_fwd);
        for (b, a) in self.spec_b.iter_mut().zip(&self.spec_a) {
            *b *= a.conj();
        }
        // The DC and Nyquist bins of a real spectrum must be real; force it against rounding.
        let last = self.spec_b.len() - 1;
        self.spec_b[0].im = 0.0;
        self.spec_b[last].im = 0.0;
        let _ = self.ifft.process_with_scratch(&mut self.spec_b, &mut self.buf_a, &mut self.scratch_inv);
        let norm = 1.0 / self.buf_a.len() as f64;
        window_energies(seg, w, &mut self.energy);
        let e0 = self.energy[0];
        for (tau, d) in self.diff.iter_mut().enumerate() {
            let r = self.buf_a[tau] as f64 * norm;
            let (e_tau, floor) = (self.energy[tau], LEVEL_FLOOR * (e0 + self.energy[tau]));
            *d = ((2.0 * (e0 * e_tau).sqrt() - 2.0 * r).max(0.0) + floor) as f32;
        }
    }
}

/// `e(τ) = Σ_{j<window} x[j+τ]²` for τ in `0..energy.len()`, as a running sum in f64 (accurate differences).
fn window_energies(seg: &[f32], window: usize, energy: &mut [f64]) {
    let mut e: f64 = seg[..window].iter().map(|&v| (v as f64) * (v as f64)).sum();
    for tau in 0..energy.len() {
        if tau > 0 {
            let (old, new) = (seg[tau - 1] as f64, seg[tau - 1 + window] as f64);
            e += new * new - old * old;
        }
        energy[tau] = e;
    }
}

/// Direct (reference) form of the level-balanced difference function of [`PitchTracker`]:
/// `Σ_{j<window} (x[j] − x[j+τ])² − (√e(τ) − √e(0))² + LEVEL_FLOOR · (e(0) + e(τ))` for τ in `0..diff.len()`.
fn difference_direct(seg: &[f32], window: usize, energy: &mut [f64], diff: &mut [f32]) {
    window_energies(seg, window, energy);
    for (tau, d) in diff.iter_mut().enumerate() {
        let raw: f64 =
            seg[..window].iter().zip(&seg[tau..tau + window]).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
        let level = energy[tau].sqrt() - energy[0].sqrt();
        *d = ((raw - level * level).max(0.0) + LEVEL_FLOOR * (energy[0] + energy[tau])) as f32;
    }
}

/// `d'(0) = 1`, `d'(τ) = d(τ) · τ / Σ_{k=1..=τ} d(k)`; 1 where the running sum is 0.
fn cumulative_mean_normalise(diff: &[f32], cmnd: &mut [f32]) {
    cmnd[0] = 1.0;
    let mut sum = 0.0f64;
    for tau in 1..diff.len() {
        sum += diff[tau] as f64;
        cmnd[tau] = if sum > 0.0 { (diff[tau] as f64 * tau as f64 / sum) as f32 } else { 1.0 };
    }
}

/// Local minima of `cmnd` with lag in `min_lag..=max_lag`, refined by a parabola through the three
/// points around each (lag offset clamped to ±0.5 sample, depth to the parabola's vertex).
fn find_candidates(cmnd: &[f32], min_lag: usize, max_lag: usize, out: &mut Vec<Candidate>) {
    out.clear();
    for tau in min_lag..=max_lag.min(cmnd.len() - 2) {
        let (y0, y1, y2) = (cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]);
        if !(y1 < y0 && y1 <= y2) {
            continue;
        }
        let curv = y0 - 2.0 * y1 + y2;
        let (offset, depth) = if curv > 0.0 {
            let o = (0.5 * (y0 - y2) / curv).clamp(-0.5, 0.5);
            (o, y1 - 0.25 * (y0 - y2) * o)
        } else {
            (0.0, y1)
        };
        out.push(Candidate { lag: tau as f32 + offset, depth: depth.max(0.0) });
    }
}

/// Whole-signal tracking: exactly what one [`PitchTracker`] returns when fed `samples` in any chunking.
/// A trailing partial frame (fewer than `hop` samples) produces no estimate.
pub fn track(samples: &[f32], sample_rate: u32, hop: usize) -> Vec<FramePitch> {
    PitchTracker::new(sample_rate, hop).push(samples)
}

/// Number of voiced quantizer levels (codes 1..=255).
pub const PITCH_LEVELS: u8 = 255;

/// Quantizer step in octaves: log2(550 / 50) / 254.
fn step_octaves() -> f64 {
    (F0_MAX_HZ as f64 / F0_MIN_HZ as f64).log2() / (PITCH_LEVELS as f64 - 1.0)
}

/// Quantizer step in cents: `1200 · log2(11) / 254` ≈ 16.34.
pub fn quantizer_step_cents() -> f64 {
    1200.0 * step_octaves()
}

/// One byte per frame: 0 when unvoiced (or when `f0_hz` is not a positive finite number), else the nearest
/// of the 255 log-spaced levels (code 1 = 50 Hz, code 255 = 550 Hz; F0 outside the range is clamped).
pub fn quantize(p: &FramePitch) -> u8 {
    if !p.voiced || !p.f0_hz.is_finite() || p.f0_hz <= 0.0 {
        return 0;
    }
    let level = ((p.f0_hz as f64 / F0_MIN_HZ as f64).log2() / step_octaves()).round();
    1 + level.clamp(0.0, PITCH_LEVELS as f64 - 1.0) as u8
}

/// The F0 (Hz) of a code, or `None` for code 0 (unvoiced).
pub fn dequantize(code: u8) -> Option<f32> {
    if code == 0 {
        return None;
    }
    Some((F0_MIN_HZ as f64 * ((code - 1) as f64 * step_octaves()).exp2()) as f32)
}

/// The F0 (Hz) a decoder works with for a code: the level's frequency, 0 when unvoiced.
pub fn decoded_f0(code: u8) -> f32 {
    dequantize(code).unwrap_or(0.0)
}

/// One pitch code per whole frame of `samples` ([`track`], then [`quantize`]).
pub fn codes(samples: &[f32], sample_rate: u32, hop: usize) -> Vec<u8> {
    track(samples, sample_rate, hop).iter().map(quantize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 16000;
    const HOP: usize = 320;

    /// Small deterministic PRNG (xorshift64*), so the tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn uniform(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// Band-limited sawtooth-like tone with continuous phase following `f0(t)` (harmonics up to 7 kHz).
    fn harmonic(f0: impl Fn(f32) -> f32, seconds: f32, amp: f32) -> Vec<f32> {
        let n = (seconds * SR as f32) as usize;
        let mut phase = 0.0f64;
        (0..n)
            .map(|i| {
                let f = f0(i as f32 / SR as f32);
                phase = (phase + f as f64 / SR as f64).fract();
                let mut s = 0.0;
                let mut h = 1;
                while (h as f32) * f < 7000.0 && h <= 40 {
                    s += (2.0 * std::f64::consts::PI * h as f64 * phase).sin() / h as f64;
                    h += 1;
                }
                amp * s as f32
            })
            .collect()
    }

    /// The true F0 for frame `n`, taken at the centre of its analysis segment.
    fn truth_time(n: usize) -> f32 {
        let t = PitchTracker::new(SR, HOP);
        ((n + 1) * HOP) as f32 / SR as f32 - t.analysis_delay_samples() / SR as f32
    }

    #[test]
    fn glide_80_to_400_hz_within_2_percent() {
        let f0 = |t: f32| 80.0 * 5f32.powf(t / 2.0);
        let x = harmonic(f0, 2.0, 0.3);
        let frames = track(&x, SR, HOP);
        assert_eq!(frames.len(), x.len() / HOP);
        // Skip the first two frames, whose segments still contain the zeros before the signal.
        let judged: Vec<_> = frames.iter().enumerate().skip(2).collect();
        let good = judged.iter().filter(|(n, p)| p.voiced && (p.f0_hz / f0(truth_time(*n)) - 1.0).abs() < 0.02).count();
        assert!(good as f32 >= 0.95 * judged.len() as f32, "{good}/{}", judged.len());
    }

    #[test]
    fn silence_and_noise_are_unvoiced() {
        let silence = vec![0.0f32; SR as usize];
        assert!(track(&silence, SR, HOP).iter().all(|p| !p.voiced));
        let mut rng = Rng(7);
        for amp in [0.01f32, 0.3] {
            let noise: Vec<f32> = (0..2 * SR as usize).map(|_| amp * (2.0 * rng.uniform() - 1.0)).collect();
            let frames = track(&noise, SR, HOP);
            let voiced = frames.iter().filter(|p| p.voiced).count();
            assert!(voiced as f32 <= 0.05 * frames.len() as f32, "amp {amp}: {voiced}/{} voiced", frames.len());
        }
    }

    #[test]
    fn step_between_two_steady_tones() {
        let x = harmonic(|t| if t < 1.0 { 120.0 } else { 240.0 }, 2.0, 0.2);
        let frames = track(&x, SR, HOP);
        let half = frames.len() / 2;
        // Allow the frames whose segments straddle the start or the step.
        for (n, p) in frames.iter().enumerate() {
            let want = if n < half { 120.0 } else { 240.0 };
            if (2..half).contains(&n) || n >= half + 2 {
                assert!(p.voiced && (p.f0_hz / want - 1.0).abs() < 0.01, "frame {n}: {p:?}");
            }
        }
    }

    #[test]
    fn streaming_equals_whole_over_random_chunkings() {
        let mut rng = Rng(42);
        let mut x = harmonic(|t| 150.0 + 60.0 * (3.0 * t).sin(), 1.5, 0.25);
        for v in x.iter_mut().skip(8000).take(3000) {
            *v = 0.05 * (2.0 * rng.uniform() - 1.0);
        }
        let whole = track(&x, SR, HOP);
        for _ in 0..4 {
            let mut t = PitchTracker::new(SR, HOP);
            let mut got = Vec::new();
            let mut i = 0;
            while i < x.len() {
                let len = match rng.next_u64() % 4 {
                    0 => 0,
                    1 => 1 + (rng.next_u64() % 7) as usize,
                    2 => 1 + (rng.next_u64() % 400) as usize,
                    _ => 1 + (rng.next_u64() % 3000) as usize,
                };
                let end = (i + len).min(x.len());
                got.extend(t.push(&x[i..end]));
                i = end;
            }
            assert_eq!(got.len(), whole.len());
            for (a, b) in got.iter().zip(&whole) {
                assert_eq!(a.f0_hz.to_bits(), b.f0_hz.to_bits());
                assert_eq!(a.voiced, b.voiced);
                assert_eq!(a.periodicity.to_bits(), b.periodicity.to_bits());
            }
        }
    }

    #[test]
    fn fft_and_direct_difference_agree() {
        let mut rng = Rng(3);
        let x: Vec<f32> = harmonic(|t| 100.0 + 200.0 * t, 1.0, 0.3)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (i as f32 / 4000.0).min(1.0) + 0.02 * (2.0 * rng.uniform() - 1.0))
            .collect();
        let mut fast = PitchTracker::new(SR, HOP);
        let mut slow = PitchTracker::new(SR, HOP);
        slow.set_direct(true);
        let mut worst = 0.0f32;
        for chunk in x.chunks(HOP) {
            fast.push(chunk);
            slow.push(chunk);
            for (a, b) in fast.debug_cmnd().iter().zip(slow.debug_cmnd()) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(worst < 2e-3, "largest difference of d' {worst}");
    }

    #[test]
    fn no_panic_on_odd_input() {
        assert!(track(&[], SR, HOP).is_empty());
        assert!(track(&[0.5; 100], SR, HOP).is_empty());
        let mut t = PitchTracker::new(SR, HOP);
        assert!(t.push(&[]).is_empty());
        assert_eq!(t.lookahead_samples(), 0);
        // NaN and infinities count as silence.
        let mut x = harmonic(|_| 200.0, 0.5, 0.3);
        let clean = track(&x, SR, HOP);
        x.iter_mut().take(1000).for_each(|v| *v = f32::NAN);
        x[3000] = f32::INFINITY;
        x[3001] = f32::NEG_INFINITY;
        let frames = track(&x, SR, HOP);
        assert!(frames.iter().all(|p| p.f0_hz.is_finite() && p.periodicity.is_finite()));
        assert!(frames[..3].iter().all(|p| !p.voiced));
        assert!(clean[20..].iter().zip(&frames[20..]).all(|(a, b)| a.voiced && b.voiced));
        // Extreme levels: very quiet is silence, very loud (and clipped-to-huge) still tracks.
        let tone = harmonic(|_| 200.0, 0.5, 1.0);
        let quiet: Vec<f32> = tone.iter().map(|v| v * 1e-6).collect();
        assert!(track(&quiet, SR, HOP).iter().all(|p| !p.voiced));
        for gain in [1e4f32, 1e30, f32::MAX] {
            let loud: Vec<f32> = tone.iter().map(|v| (v * gain).clamp(-f32::MAX, f32::MAX)).collect();
            let frames = track(&loud, SR, HOP);
            assert!(frames[3..].iter().all(|p| p.voiced && (p.f0_hz / 200.0 - 1.0).abs() < 0.01), "gain {gain}");
        }
        // Full-scale square wave and DC.
        let square: Vec<f32> = (0..8000).map(|i| if (i / 40) % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert!(track(&square, SR, HOP)[3..].iter().all(|p| p.voiced && (p.f0_hz - 200.0).abs() < 2.0));
        assert!(track(&[1.0; 8000], SR, HOP)[5..].iter().all(|p| !p.voiced));
        // Other rates and hops.
        let _ = track(&harmonic(|_| 300.0, 0.3, 0.3), 8000, 80);
        let _ = track(&[0.1; 1000], 48000, 1);
    }

    #[test]
    fn quantizer_codes_round_trip() {
        assert_eq!(dequantize(0), None);
        assert_eq!(quantize(&FramePitch::UNVOICED), 0);
        for code in 1..=255u8 {
            let f = dequantize(code).unwrap();
            assert_eq!(quantize(&FramePitch { f0_hz: f, voiced: true, periodicity: 1.0 }), code);
        }
        assert!((dequantize(1).unwrap() - 50.0).abs() < 1e-3);
        assert!((dequantize(255).unwrap() - 550.0).abs() < 1e-2);
        assert!((quantizer_step_cents() - 16.34).abs() < 0.01);
    }

    #[test]
    fn quantizer_error_at_most_half_a_step() {
        let half = quantizer_step_cents() / 2.0 + 1e-3;
        let n = 100_000;
        for i in 0..=n {
            let f = 50.0 * 11f64.powf(i as f64 / n as f64);
            let code = quantize(&FramePitch { f0_hz: f as f32, voiced: true, periodicity: 0.9 });
            assert!(code >= 1);
            let err = 1200.0 * (dequantize(code).unwrap() as f64 / f).log2();
            assert!(err.abs() <= half, "{f} Hz -> code {code}: {err} cents");
        }
        let v = |f0_hz| FramePitch { f0_hz, voiced: true, periodicity: 1.0 };
        assert_eq!(quantize(&v(10.0)), 1);
        assert_eq!(quantize(&v(5000.0)), 255);
        assert_eq!(quantize(&v(f32::NAN)), 0);
        assert_eq!(quantize(&v(-3.0)), 0);
        assert_eq!(quantize(&FramePitch { f0_hz: 200.0, voiced: false, periodicity: 1.0 }), 0);
    }
}
