//! The low-band layer: the band from 75 Hz to a few hundred hertz coded as a waveform,
//! beside the neural codes that carry everything else.
//!
//! Why: below ~500 Hz a voice has only its fundamental and first harmonics, one or two per
//! third-octave band, and the neural decoder, which has no clock, puts them on a comb at
//! multiples of the 50 Hz frame rate at the wrong phase. Those bands score worst on STOI
//! (0.66–0.78 against 0.86–0.89 above 900 Hz), and putting the original's own band below
//! 600 Hz under the decoded signal raised STOI from 0.817 to 0.919 on held-out clips
//! (docs/journal/2026-11-28-session-16-low-band.md). A few coefficients per frame code that band well.
//!
//! How: per 20 ms frame, the band's coefficients of an MDCT (sine window of two hops, hop =
//! the model's), their norm as a gain on a log scale and their direction by pyramid
//! vector quantization (PVQ: an integer vector with a fixed number of unit pulses, needing
//! no trained codebook), both packed into a fixed number of code-sized digits that travel as
//! extra columns of [`crate::Codes`]. The decoder takes everything below the cut out of the
//! neural output with the same transform and puts the coded band in its place; both are exact
//! complements, so nothing is lost or doubled at the crossover. The price is one hop of
//! latency: a frame's MDCT overlaps the next one.
//!
//! ```
//! use tokenwave_core::{Codec, CpuBackend, FrameLayout, Weights};
//! let codec = Codec::<CpuBackend>::new(&Weights::embedded()?, Default::default())?;
//! let samples: Vec<f32> = (0..8000).map(|n| 0.3 * (n as f32 * 0.05).sin()).collect(); // 127 Hz
//! let low_band = codec.low_band(7)?; // 3.5 kbps: the band from 75 to 700 Hz
//! let layout = FrameLayout { stages: 5, low_band: Some(low_band), pitch: false }; // + 2.5 kbps of neural codes
//! let codes = codec.encode(&samples, layout)?;
//! assert_eq!(codes.stages(), 5 + 7);
//! let decoded = codec.decode(&codes, layout)?;
//! assert!(decoded.len() >= samples.len());
//! # Ok::<(), tokenwave_core::Error>(())
//! ```

use crate::error::{Error, Result};

/// Gain step of the first two editions, in octaves of amplitude (about 1.8 dB).
const FIXED_GAIN_STEP_LOG2: f64 = 0.3;
/// Gain indices of the first two editions: 6 bits, index 0 a silent frame.
const FIXED_GAIN_LEVELS: u128 = 64;
/// log2 of the gain that index 1 stands for in the first two editions.
const FIXED_GAIN_FLOOR_LOG2: f64 = -8.0;
/// log2 of the lowest and highest gains of the third edition. A full-scale tone in the band
/// has a norm of about 2^7.7, the loudest held-out speech frame 2^7.8; the floor is about
/// −88 dBFS. The first two editions reached 2^10.9: ten levels that speech never used.
const GAIN_FLOOR_LOG2: f64 = -7.0;
const GAIN_CEILING_LOG2: f64 = 8.0;
/// Fewest gain levels the third edition keeps when it trades levels for pulses: steps of at
/// most 0.42 octaves (2.5 dB) between its floor and ceiling.
const MIN_GAIN_LEVELS: u128 = 38;
/// Most gain levels of the third edition (steps of 0.004 octaves: finer serves nothing).
const MAX_GAIN_LEVELS: u128 = 1 << 12;

/// Whether a layer's gain scale is fixed or gives values to the pulses.
#[derive(Clone, Copy)]
enum Gains {
    Fixed,
    Traded,
}

/// How a layer numbers a frame's gain: index 0 is a silent frame, the others rise
/// evenly in log2 from a floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GainScale {
    /// The first two editions: [`FIXED_GAIN_LEVELS`] from [`FIXED_GAIN_FLOOR_LOG2`] up in
    /// steps of [`FIXED_GAIN_STEP_LOG2`].
    Fixed,
    /// The third edition: `levels` spanning [`GAIN_FLOOR_LOG2`] to [`GAIN_CEILING_LOG2`],
    /// as few as leave the pulses the rest of the digits' values.
    Spanning { levels: u128 },
}

impl GainScale {
    fn levels(self) -> u128 {
        match self {
            Self::Fixed => FIXED_GAIN_LEVELS,
            Self::Spanning { levels } => levels,
        }
    }

    /// log2 of the gain index 1 stands for, and the step between indices.
    fn floor_and_step_log2(self) -> (f64, f64) {
        match self {
            Self::Fixed => (FIXED_GAIN_FLOOR_LOG2, FIXED_GAIN_STEP_LOG2),
            Self::Spanning { levels } => (GAIN_FLOOR_LOG2, (GAIN_CEILING_LOG2 - GAIN_FLOOR_LOG2) / (levels - 2) as f64),
        }
    }

    /// The index of a frame whose band has norm `norm`.
    fn index(self, norm: f64) -> u128 {
        if norm <= 0.0 {
            return 0;
        }
        let (floor, step) = self.floor_and_step_log2();
        let index = ((norm.log2() - floor) / step).round() as i64 + 1;
        index.clamp(0, self.levels() as i64 - 1) as u128
    }

    /// The norm index `index` (not 0) stands for.
    fn norm(self, index: u128) -> f64 {
        let (floor, step) = self.floor_and_step_log2();
        (floor + (index - 1) as f64 * step).exp2()
    }
}

/// Shape of the layer for one stream: how many digits per frame, which MDCT bins they
/// code, with how many pulses, and how the gain is numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowBand {
    digits: usize,
    /// First coded bin: below it the neural output stays.
    start: usize,
    bins: usize,
    pulses: usize,
    gain: GainScale,
    bits_per_digit: u32,
}

impl LowBand {
    /// The layer that fills `digits` codes of `bits_per_digit` bits per frame: the band from
    /// 75 Hz (100 Hz for 2 codes) to a cut that rises with `digits` (300 Hz for 2, 700 Hz for
    /// 7 and 8). Below the band the output is silent: pulses spent on rumble there served
    /// STOI and PESQ less than more pulses above it; the table was chosen on held-out speech
    /// (docs/journal/2026-11-29-session-17-rate-ladder.md). The gain takes only as many levels as speech
    /// needs (at least 38, steps of at most 2.5 dB), which leaves every layer one pulse
    /// more than the second edition's (docs/journal/2026-11-29-session-18-low-band-third-edition.md).
    pub fn new(digits: usize, bits_per_digit: u32, hop: usize, sample_rate: u32) -> Result<Self> {
        let (start_hz, cut_hz) = Self::second_table(digits)?;
        Self::with_band(digits, bits_per_digit, hop, sample_rate, start_hz, cut_hz, Gains::Traded)
    }

    /// The second edition (container version 2): [`LowBand::new`]'s bands, with a 6-bit
    /// gain. Kept so that those streams still decode.
    pub fn second_edition(digits: usize, bits_per_digit: u32, hop: usize, sample_rate: u32) -> Result<Self> {
        let (start_hz, cut_hz) = Self::second_table(digits)?;
        Self::with_band(digits, bits_per_digit, hop, sample_rate, start_hz, cut_hz, Gains::Fixed)
    }

    /// The bands from the second edition on: `(start_hz, cut_hz)` for `digits` codes.
    fn second_table(digits: usize) -> Result<(f64, f64)> {
        Ok(match digits {
            2 => (100.0, 300.0),
            3 => (75.0, 400.0),
            4 => (75.0, 500.0),
            5 | 6 => (75.0, 600.0),
            7 | 8 => (75.0, 700.0),
            _ => return Err(Self::wrong_digits(digits)),
        })
    }

    /// The first table of layers, from 0 Hz (container version 1): kept so that those
    /// streams still decode.
    pub fn first_edition(digits: usize, bits_per_digit: u32, hop: usize, sample_rate: u32) -> Result<Self> {
        let cut_hz = match digits {
            2 => 400.0,
            3 => 450.0,
            4 => 500.0,
            5 | 6 => 600.0,
            7 => 700.0,
            8 => 800.0,
            _ => return Err(Self::wrong_digits(digits)),
        };
        Self::with_band(digits, bits_per_digit, hop, sample_rate, 0.0, cut_hz, Gains::Fixed)
    }

    fn wrong_digits(digits: usize) -> Error {
        Error::InvalidArgument(format!("the low band takes 2 to 8 codes per frame, not {digits}"))
    }

    /// The layer coding `[start_hz, cut_hz)` with as many pulses as the digits hold beside
    /// the gain.
    fn with_band(
        digits: usize,
        bits_per_digit: u32,
        hop: usize,
        sample_rate: u32,
        start_hz: f64,
        cut_hz: f64,
        gains: Gains,
    ) -> Result<Self> {
        let bins_per_hz = (2 * hop) as f64 / f64::from(sample_rate);
        let end = ((cut_hz * bins_per_hz).round() as usize).clamp(1, hop);
        let start = ((start_hz * bins_per_hz).round() as usize).min(end - 1);
        let bins = end - start;
        let budget = 1u128 << (bits_per_digit as usize * digits).min(120);
        let least_levels = match gains {
            Gains::Fixed => FIXED_GAIN_LEVELS,
            Gains::Traded => MIN_GAIN_LEVELS,
        };
        let pulses = (1..=64).take_while(|&p| least_levels * pyramid_size(bins, p) <= budget).last().unwrap_or(0);
        if pulses == 0 {
            return Err(Error::InvalidArgument(format!(
                "{digits} codes of {bits_per_digit} bits are too few for the low band"
            )));
        }
        let gain = match gains {
            Gains::Fixed => GainScale::Fixed,
            // Capped: with wide codes and a narrow band, the pulses alone cannot use them all.
            Gains::Traded => GainScale::Spanning { levels: (budget / pyramid_size(bins, pulses)).min(MAX_GAIN_LEVELS) },
        };
        Ok(Self { digits, start, bins, pulses, gain, bits_per_digit })
    }

    /// Codes per frame.
    pub fn digits(&self) -> usize {
        self.digits
    }

    /// The MDCT bins coded, `start..end`: the band from `start * sample_rate / (2 * hop)`
    /// Hz to `end * sample_rate / (2 * hop)` Hz.
    pub fn bins(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.bins
    }

    /// Unit pulses of the shape vector.
    pub fn pulses(&self) -> usize {
        self.pulses
    }

    /// The counts that number this layer's PVQ vectors.
    fn pyramid(&self) -> Pyramid {
        Pyramid::new(self.bins, self.pulses)
    }

    /// Quantizes one frame's low MDCT coefficients to `digits` codes.
    fn quantize(&self, coefficients: &[f32], pyramid: &Pyramid) -> Vec<u16> {
        let norm = coefficients.iter().map(|&c| f64::from(c) * f64::from(c)).sum::<f64>().sqrt();
        let gain_index = self.gain.index(norm);
        let shape = if gain_index == 0 { vec![0; self.bins] } else { pvq_search(coefficients, self.pulses) };
        let shape = if shape.iter().all(|&v| v == 0) { first_pulses(self.bins, self.pulses) } else { shape };
        let value = gain_index * pyramid.size(self.bins, self.pulses) + pvq_index(&shape, pyramid);
        let mask = (1u128 << self.bits_per_digit) - 1;
        (0..self.digits).map(|i| ((value >> (i as u32 * self.bits_per_digit)) & mask) as u16).collect()
    }

    /// The coefficients `digits` stand for; an error if they are not a value `quantize` makes.
    fn dequantize(&self, digits: &[u16], pyramid: &Pyramid) -> Result<Vec<f32>> {
        let damaged = || Error::Format(format!("low-band codes {digits:?} are out of range: the stream is damaged"));
        if digits.len() != self.digits || digits.iter().any(|&d| u32::from(d) >> self.bits_per_digit != 0) {
            return Err(damaged());
        }
        let value = digits
            .iter()
            .enumerate()
            .fold(0u128, |acc, (i, &d)| acc | (u128::from(d) << (i as u32 * self.bits_per_digit)));
        let size = pyramid.size(self.bins, self.pulses);
        let gain_index = value / size;
        if gain_index >= self.gain.levels() {
            return Err(damaged());
        }
        if gain_index == 0 {
            return Ok(vec![0.0; self.bins]);
        }
        let shape = pvq_vector(value % size, self.bins, self.pulses, pyramid);
        let norm = shape.iter().map(|&v| f64::from(v * v)).sum::<f64>().sqrt();
        let gain = self.gain.norm(gain_index);
        Ok(shape.iter().map(|&v| (gain * f64::from(v) / norm) as f32).collect())
    }
}

/// The MDCT of two-hop frames under a sine window, a range of bins only.
struct Mdct {
    hop: usize,
    window: Vec<f32>,
    /// `cos(π/hop · (n + ½ + hop/2) · (k + ½))`, a row per bin k, `2 * hop` columns.
    basis: Vec<f32>,
}

impl Mdct {
    fn new(hop: usize, bins: std::ops::Range<usize>) -> Self {
        let length = 2 * hop;
        let window =
            (0..length).map(|n| (std::f64::consts::PI * (n as f64 + 0.5) / length as f64).sin() as f32).collect();
        let offset = 0.5 + hop as f64 / 2.0;
        let basis = bins
            .flat_map(|k| {
                (0..length).map(move |n| {
                    (std::f64::consts::PI / hop as f64 * (n as f64 + offset) * (k as f64 + 0.5)).cos() as f32
                })
            })
            .collect();
        Self { hop, window, basis }
    }

    /// Coefficients of one frame of `2 * hop` samples.
    fn analyse(&self, frame: &[f32]) -> Vec<f32> {
        let windowed: Vec<f32> = frame.iter().zip(&self.window).map(|(x, w)| x * w).collect();
        self.basis.chunks_exact(2 * self.hop).map(|row| row.iter().zip(&windowed).map(|(b, x)| b * x).sum()).collect()
    }

    /// The windowed frame of `2 * hop` samples the coefficients stand for; frames a hop
    /// apart add up to the band they code.
    fn synthesise(&self, coefficients: &[f32]) -> Vec<f32> {
        let scale = 2.0 / self.hop as f32;
        let mut frame = vec![0.0f32; 2 * self.hop];
        for (row, &c) in self.basis.chunks_exact(2 * self.hop).zip(coefficients) {
            for (out, b) in frame.iter_mut().zip(row) {
                *out += c * b;
            }
        }
        frame.iter_mut().zip(&self.window).for_each(|(s, w)| *s *= w * scale);
        frame
    }
}

/// Streaming low-band encoder: one frame of digits per hop of input.
pub struct LowBandEncoder {
    layer: LowBand,
    pyramid: Pyramid,
    mdct: Mdct,
    /// The last hop of input (the first half of the next MDCT frame).
    previous: Vec<f32>,
}

impl LowBandEncoder {
    /// A new encoder; the signal is taken to start after silence.
    pub fn new(layer: LowBand, hop: usize) -> Self {
        Self { layer, pyramid: layer.pyramid(), mdct: Mdct::new(hop, layer.bins()), previous: vec![0.0; hop] }
    }

    /// Codes per frame.
    pub fn digits(&self) -> usize {
        self.layer.digits
    }

    /// Digits for the frame that ends with `hop` (exactly one hop of samples).
    pub fn push_hop(&mut self, hop: &[f32]) -> Vec<u16> {
        let mut frame = std::mem::replace(&mut self.previous, hop.to_vec());
        frame.extend_from_slice(hop);
        self.layer.quantize(&self.mdct.analyse(&frame), &self.pyramid)
    }
}

/// Streaming low-band decoder: puts the coded band under the neural decoder's output,
/// one hop behind it.
pub struct LowBandDecoder {
    layer: LowBand,
    pyramid: Pyramid,
    mdct: Mdct,
    /// The bins taken out of the neural output: everything below the cut. Below the coded
    /// band that leaves silence, not the neural decoder's rumble at the wrong pitch (which
    /// cost PESQ-WB 0.14 at 6 kbps against silence there; docs/journal/2026-11-29-session-17-rate-ladder.md).
    removal: Mdct,
    /// Second half of the last coded frame, waiting for the next frame's first half.
    coded_tail: Vec<f32>,
    /// The neural output's last two hops (the MDCT frame that ends with the newest).
    neural: Vec<f32>,
    /// The neural output's own band in its last frame, windowed: its second half
    /// completes the next hop's.
    own_band: Vec<f32>,
}

impl LowBandDecoder {
    /// A new decoder, in step with a new [`LowBandEncoder`].
    pub fn new(layer: LowBand, hop: usize) -> Self {
        Self {
            layer,
            pyramid: layer.pyramid(),
            mdct: Mdct::new(hop, layer.bins()),
            removal: Mdct::new(hop, 0..layer.bins().end),
            coded_tail: vec![0.0; hop],
            neural: vec![0.0; 2 * hop],
            own_band: vec![0.0; 2 * hop],
        }
    }

    /// Codes per frame.
    pub fn digits(&self) -> usize {
        self.layer.digits
    }

    /// Takes one frame's digits and the neural decoder's hop for that frame; returns the
    /// hop before it, with the coded band in place of the neural one.
    pub fn push_hop(&mut self, digits: &[u16], neural_hop: &[f32]) -> Result<Vec<f32>> {
        let hop = self.mdct.hop;
        let coded = self.mdct.synthesise(&self.layer.dequantize(digits, &self.pyramid)?);
        let band: Vec<f32> = self.coded_tail.iter().zip(&coded[..hop]).map(|(a, b)| a + b).collect();
        self.coded_tail = coded[hop..].to_vec();
        let previous = std::mem::take(&mut self.neural);
        self.neural = [&previous[hop..], neural_hop].concat();
        let own_band = self.removal.synthesise(&self.removal.analyse(&self.neural));
        let own: Vec<f32> = self.own_band[hop..].iter().zip(&own_band[..hop]).map(|(a, b)| a + b).collect();
        self.own_band = own_band;
        Ok(previous[hop..].iter().zip(own.iter().zip(&band)).map(|(y, (o, b))| y - o + b).collect())
    }
}

/// [`pyramid_size`] for every dimension and pulse count up to a layer's, counted once: the
/// index arithmetic asks for them thousands of times a frame.
struct Pyramid {
    pulses: usize,
    /// `sizes[n * (pulses + 1) + k]` = `pyramid_size(n, k)`.
    sizes: Vec<u128>,
}

impl Pyramid {
    fn new(dimensions: usize, pulses: usize) -> Self {
        let sizes = (0..=dimensions).flat_map(|n| (0..=pulses).map(move |k| pyramid_size(n, k))).collect();
        Self { pulses, sizes }
    }

    fn size(&self, n: usize, k: usize) -> u128 {
        self.sizes[n * (self.pulses + 1) + k]
    }
}

/// Integer vectors of dimension `n` whose absolute values sum to `k` (the PVQ codebook's size).
fn pyramid_size(n: usize, k: usize) -> u128 {
    let mut row = vec![1u128; n + 1]; // k = 0: one vector in every dimension
    for _ in 1..=k {
        let mut next = vec![0u128; n + 1];
        for m in 1..=n {
            next[m] = next[m - 1].saturating_add(row[m]).saturating_add(row[m - 1]);
        }
        row = next;
    }
    row[n]
}

/// `k` pulses on the first bin: the shape a silent or gainless frame carries.
fn first_pulses(n: usize, k: usize) -> Vec<i32> {
    let mut shape = vec![0; n];
    shape[0] = k as i32;
    shape
}

/// The integer vector of `k` pulses closest in direction to `x`: a projection, then pulses
/// added one at a time where they raise the normalised correlation most.
fn pvq_search(x: &[f32], k: usize) -> Vec<i32> {
    let magnitude: Vec<f64> = x.iter().map(|&v| f64::from(v).abs()).collect();
    let sum: f64 = magnitude.iter().sum();
    let mut pulses: Vec<i32> = magnitude.iter().map(|&a| (a * k as f64 / sum).floor() as i32).collect();
    let mut correlation: f64 = magnitude.iter().zip(&pulses).map(|(a, &p)| a * f64::from(p)).sum();
    let mut energy: f64 = pulses.iter().map(|&p| f64::from(p * p)).sum();
    for _ in pulses.iter().sum::<i32>() as usize..k {
        let best = (0..x.len())
            .max_by(|&i, &j| {
                let score = |i: usize| {
                    let c = correlation + magnitude[i];
                    c * c / (energy + f64::from(2 * pulses[i] + 1))
                };
                score(i).total_cmp(&score(j))
            })
            .expect("at least one bin");
        correlation += magnitude[best];
        energy += f64::from(2 * pulses[best] + 1);
        pulses[best] += 1;
    }
    pulses.iter().zip(x).map(|(&p, &v)| if v < 0.0 { -p } else { p }).collect()
}

/// Index of `shape` among the vectors of its pyramid: values at each position ordered
/// 0, +1, −1, +2, −2, … and every completion of the rest counted.
fn pvq_index(shape: &[i32], pyramid: &Pyramid) -> u128 {
    let mut left = shape.iter().map(|v| v.unsigned_abs() as usize).sum::<usize>();
    let mut index = 0u128;
    for (i, &value) in shape.iter().enumerate() {
        let rest = shape.len() - i - 1;
        let a = value.unsigned_abs() as usize;
        for smaller in 0..a {
            index += pyramid.size(rest, left - smaller) * if smaller == 0 { 1 } else { 2 };
        }
        if value < 0 {
            index += pyramid.size(rest, left - a);
        }
        left -= a;
    }
    index
}

/// The vector of `n` dimensions and `k` pulses at `index` (the inverse of [`pvq_index`]).
fn pvq_vector(mut index: u128, n: usize, k: usize, pyramid: &Pyramid) -> Vec<i32> {
    let mut left = k;
    let mut shape = Vec::with_capacity(n);
    for i in 0..n {
        let rest = n - i - 1;
        let mut a = 0;
        loop {
            let signs = if a == 0 { 1 } else { 2 };
            let count = pyramid.size(rest, left - a);
            if index < count * signs {
                let negative = a > 0 && index >= count;
                if negative {
                    index -= count;
                }
                shape.push(if negative { -(a as i32) } else { a as i32 });
                break;
            }
            index -= count * signs;
            a += 1;
        }
        left -= a;
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOP: usize = 320;

    /// A constructor of one edition of the layer.
    type Edition = fn(usize, u32, usize, u32) -> Result<LowBand>;

    #[test]
    fn the_tables_of_layers() {
        let table = |make: Edition| -> Vec<(std::ops::Range<usize>, usize)> {
            (2..=8).map(|d| make(d, 10, HOP, 16_000).unwrap()).map(|l| (l.bins(), l.pulses())).collect()
        };
        assert_eq!(
            table(LowBand::new),
            [(4..12, 6), (3..16, 9), (3..20, 13), (3..24, 17), (3..24, 25), (3..28, 29), (3..28, 40)]
        );
        // Older editions must never change: version 2 and version 1 streams decode with them.
        assert_eq!(
            table(LowBand::second_edition),
            [(4..12, 5), (3..16, 8), (3..20, 12), (3..24, 16), (3..24, 24), (3..28, 28), (3..28, 39)]
        );
        assert_eq!(
            table(LowBand::first_edition),
            [(0..16, 3), (0..18, 7), (0..20, 11), (0..24, 14), (0..24, 21), (0..28, 25), (0..32, 29)]
        );
    }

    #[test]
    fn the_third_editions_gain_spans_speech_in_the_values_the_pulses_leave() {
        for digits in 2..=8 {
            let layer = LowBand::new(digits, 10, HOP, 16_000).unwrap();
            let levels = layer.gain.levels();
            let values = levels * pyramid_size(layer.bins().len(), layer.pulses());
            assert!(levels >= MIN_GAIN_LEVELS && values <= 1 << (10 * digits), "{digits} digits: {levels} levels");
            assert!(
                (levels + 1) * pyramid_size(layer.bins().len(), layer.pulses()) > 1 << (10 * digits),
                "{digits} digits: values left unused"
            );
            let (floor, step) = layer.gain.floor_and_step_log2();
            assert!(step <= 0.42, "{digits} digits: {step} octaves a step");
            assert_eq!(layer.gain.index(0.0), 0);
            assert_eq!(layer.gain.index(GAIN_FLOOR_LOG2.exp2()), 1);
            assert_eq!(layer.gain.index(1e6), levels - 1, "louder than the ceiling: the top level");
            assert!((layer.gain.norm(levels - 1).log2() - GAIN_CEILING_LOG2).abs() < 1e-9);
            assert!((floor - GAIN_FLOOR_LOG2).abs() < 1e-9);
        }
    }

    #[test]
    fn wide_codes_on_a_narrow_band_keep_a_bounded_gain_scale() {
        // 16-bit codes and a 20-sample hop (two 400 Hz bins): far more values than 64
        // pulses can use.
        let layer = LowBand::new(8, 16, 20, 16_000).unwrap();
        assert_eq!((layer.pulses(), layer.gain.levels()), (64, MAX_GAIN_LEVELS));
        let x: Vec<f32> = (0..layer.bins().len()).map(|i| (i as f32 - 3.0) * 0.5).collect();
        let pyramid = layer.pyramid();
        let back = layer.dequantize(&layer.quantize(&x, &pyramid), &pyramid).unwrap();
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm(&back) / norm(&x) - 1.0).abs() < 0.01);
    }

    #[test]
    fn pyramid_sizes_match_counting() {
        assert_eq!(pyramid_size(1, 3), 2);
        assert_eq!(pyramid_size(2, 1), 4);
        assert_eq!(pyramid_size(2, 2), 8);
        assert_eq!(pyramid_size(3, 2), 18);
    }

    #[test]
    fn every_index_of_a_small_pyramid_round_trips() {
        let (n, k) = (4, 3);
        let pyramid = Pyramid::new(n, k);
        let size = pyramid_size(n, k);
        for index in 0..size {
            let shape = pvq_vector(index, n, k, &pyramid);
            assert_eq!(shape.iter().map(|v| v.unsigned_abs() as usize).sum::<usize>(), k, "index {index}");
            assert_eq!(pvq_index(&shape, &pyramid), index);
        }
    }

    #[test]
    fn the_search_spends_every_pulse_and_follows_the_signs() {
        let x = [0.9f32, -0.3, 0.0, 0.05, -0.6];
        let shape = pvq_search(&x, 7);
        assert_eq!(shape.iter().map(|v| v.unsigned_abs()).sum::<u32>(), 7);
        assert!(shape[0] > 0 && shape[1] <= 0 && shape[4] < 0, "{shape:?}");
        let pyramid = Pyramid::new(5, 7);
        let index = pvq_index(&shape, &pyramid);
        assert_eq!(pvq_index(&pvq_vector(index, 5, 7, &pyramid), &pyramid), index);
    }

    #[test]
    fn digits_fit_their_bits_and_damaged_ones_are_refused() {
        let editions: [Edition; 3] = [LowBand::new, LowBand::second_edition, LowBand::first_edition];
        for (edition, digits) in editions.iter().flat_map(|e| (2..=8).map(move |d| (e, d))) {
            let layer = edition(digits, 10, HOP, 16_000).unwrap();
            // A voiced frame's low band: a few strong partials over small coefficients.
            let x: Vec<f32> = (0..layer.bins().len())
                .map(|i| match i {
                    4 => 9.0,
                    5 => -6.0,
                    9 => 4.0,
                    _ => ((i * 7 % 5) as f32 - 2.0) * 0.2,
                })
                .collect();
            let pyramid = layer.pyramid();
            let codes = layer.quantize(&x, &pyramid);
            assert_eq!(codes.len(), digits);
            assert!(codes.iter().all(|&c| c < 1024));
            let back = layer.dequantize(&codes, &pyramid).unwrap();
            let cosine = x.iter().zip(&back).map(|(a, b)| a * b).sum::<f32>()
                / (x.iter().map(|a| a * a).sum::<f32>().sqrt() * back.iter().map(|b| b * b).sum::<f32>().sqrt());
            assert!(cosine > 0.8, "{layer:?}: cosine {cosine}");
        }
        let layer = LowBand::new(3, 10, HOP, 16_000).unwrap();
        assert!(layer.dequantize(&[1023, 1023, 1023], &layer.pyramid()).is_err());
        assert!(LowBand::new(1, 10, HOP, 16_000).is_err() && LowBand::new(9, 10, HOP, 16_000).is_err());
    }

    /// A hop of silence, then `signal`, through the encoder and decoder with `neural` as
    /// the neural decoder's output; returns the output realigned to the input.
    fn code(layer: LowBand, signal: &[f32], neural: &[f32]) -> Vec<f32> {
        let mut encoder = LowBandEncoder::new(layer, HOP);
        let mut decoder = LowBandDecoder::new(layer, HOP);
        let mut out = Vec::new();
        let padded: Vec<f32> = signal.iter().copied().chain(std::iter::repeat_n(0.0, HOP)).collect();
        let neural: Vec<f32> = neural.iter().copied().chain(std::iter::repeat_n(0.0, HOP)).collect();
        for (hop, neural_hop) in padded.chunks(HOP).zip(neural.chunks(HOP)) {
            let digits = encoder.push_hop(hop);
            out.extend(decoder.push_hop(&digits, neural_hop).unwrap());
        }
        out.drain(..HOP);
        out
    }

    fn tone(hz: f32, amplitude: f32, samples: usize) -> Vec<f32> {
        (0..samples).map(|n| amplitude * (std::f32::consts::TAU * hz * n as f32 / 16_000.0).sin()).collect()
    }

    fn snr_db(reference: &[f32], test: &[f32]) -> f32 {
        let noise: f32 = reference.iter().zip(test).map(|(a, b)| (a - b) * (a - b)).sum();
        let power: f32 = reference.iter().map(|a| a * a).sum();
        10.0 * (power / noise).log10()
    }

    #[test]
    fn a_low_tone_is_coded_as_a_waveform_and_a_high_one_left_to_the_neural_output() {
        let layer = LowBand::new(4, 10, HOP, 16_000).unwrap();
        let low = tone(130.0, 0.3, 16 * HOP);
        let high = tone(2000.0, 0.2, 16 * HOP);
        let mix: Vec<f32> = low.iter().zip(&high).map(|(a, b)| a + b).collect();
        // The neural output gets the high tone right and the low one wrong (another frequency).
        let wrong_low = tone(150.0, 0.3, 16 * HOP);
        let neural: Vec<f32> = wrong_low.iter().zip(&high).map(|(a, b)| a + b).collect();
        let out = code(layer, &mix, &neural);
        let inner = 2 * HOP..14 * HOP;
        let snr = snr_db(&mix[inner.clone()], &out[inner.clone()]);
        let neural_snr = snr_db(&mix[inner.clone()], &neural[inner]);
        assert!(snr > 15.0 && neural_snr < 3.0, "coded {snr:.1} dB, neural alone {neural_snr:.1} dB");
    }

    #[test]
    fn a_neural_output_with_nothing_below_the_cut_passes_unchanged() {
        let layer = LowBand::new(3, 10, HOP, 16_000).unwrap();
        let high = tone(3000.0, 0.25, 12 * HOP);
        let out = code(layer, &vec![0.0; 12 * HOP], &high);
        let inner = 2 * HOP..10 * HOP;
        assert!(snr_db(&high[inner.clone()], &out[inner]) > 30.0);
    }

    #[test]
    fn below_the_band_the_neural_output_is_taken_out() {
        let layer = LowBand::new(4, 10, HOP, 16_000).unwrap();
        let high = tone(3000.0, 0.25, 12 * HOP);
        // A 50 Hz hum under the neural output, below the coded band (75-500 Hz).
        let neural: Vec<f32> = high.iter().zip(tone(50.0, 0.2, 12 * HOP)).map(|(a, b)| a + b).collect();
        let out = code(layer, &high, &neural);
        let inner = 2 * HOP..10 * HOP;
        let snr = snr_db(&high[inner.clone()], &out[inner.clone()]);
        assert!(snr > 25.0 && snr_db(&high[inner.clone()], &neural[inner]) < 5.0, "{snr:.1} dB");
    }

    #[test]
    fn silence_stays_silent() {
        let layer = LowBand::new(5, 10, HOP, 16_000).unwrap();
        let out = code(layer, &vec![0.0; 6 * HOP], &vec![0.0; 6 * HOP]);
        assert!(out.iter().all(|&s| s.abs() < 1e-6));
    }
}
