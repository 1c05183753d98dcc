//! The evaluation harness: each clip through tokenwave at each layout and through Opus and
//! Codec2 (their command-line tools), every output scored against the clip with the real
//! bitrate, container included.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::Serialize;
use tokenwave_core::audio::{AudioSource, Resampler, WavSink};
use tokenwave_core::{Codec, Codes, FrameLayout, TkwWriter};

use crate::{Error, LogMel, Result, harmonic_contrast, si_sdr, stoi};

/// The rate every system is scored at.
pub const RATE: u32 = 16_000;

/// Scores of one system on one clip (or their means).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Scores {
    /// Real bitrate, container included.
    #[serde(rename = "real_kbps")]
    pub kbps: f64,
    /// STOI.
    pub stoi: f64,
    /// Extended STOI.
    pub estoi: f64,
    /// SI-SDR in dB.
    pub si_sdr: f64,
    /// Log-mel L1 ([`LogMel::l1`]).
    #[serde(rename = "log_mel_l1")]
    pub log_mel: f64,
    /// Harmonic contrast in dB ([`harmonic_contrast`]) on the reference's voiced frames;
    /// `None` when the clip has none.
    #[serde(rename = "harmonic_contrast_db")]
    pub harmonic_db: Option<f64>,
    /// Encode plus decode time over the clip's duration.
    pub rtf: f64,
}

impl Scores {
    /// Scores `decoded`, which must already be time-aligned with `reference`.
    pub fn measure(reference: &[f32], decoded: &[f32], mel: &LogMel, kbps: f64, rtf: f64) -> Result<Self> {
        Ok(Self {
            kbps,
            stoi: stoi(reference, decoded, RATE, false)?,
            estoi: stoi(reference, decoded, RATE, true)?,
            si_sdr: si_sdr(reference, decoded),
            log_mel: mel.l1(reference, decoded),
            harmonic_db: harmonic_contrast(reference, decoded, RATE).map(|(db, _)| db),
            rtf,
        })
    }

    /// The mean of each figure over `all`.
    pub fn mean(all: &[Scores]) -> Scores {
        let n = all.len().max(1) as f64;
        let avg = |f: fn(&Scores) -> f64| all.iter().map(f).sum::<f64>() / n;
        Scores {
            kbps: avg(|s| s.kbps),
            stoi: avg(|s| s.stoi),
            estoi: avg(|s| s.estoi),
            si_sdr: avg(|s| s.si_sdr),
            log_mel: avg(|s| s.log_mel),
            harmonic_db: mean_of_some(all.iter().map(|s| s.harmonic_db)),
            rtf: avg(|s| s.rtf),
        }
    }
}

/// The mean of the values that are there, if any are.
pub fn mean_of_some(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

/// A system that a clip goes through.
#[derive(Clone, Copy, Debug)]
pub enum System {
    /// tokenwave with this layout.
    Tokenwave(FrameLayout),
    /// `opusenc --bitrate K`, `opusdec --rate 16000`.
    Opus {
        /// Target bitrate, kbps.
        kbps: u32,
    },
    /// `c2enc`/`c2dec` at this mode, through 8 kHz.
    Codec2 {
        /// Mode, bits per second.
        bps: u32,
    },
}

/// What one system made of one clip.
pub struct Coded {
    /// Its scores.
    pub scores: Scores,
    /// The decoded clip, aligned with the reference.
    pub decoded: Vec<f32>,
    /// tokenwave's neural codes (for codebook use), `None` for the other codecs.
    pub codes: Option<Codes>,
}

/// The first `max_seconds` of `path`, mono at [`RATE`].
pub fn load_clip(path: &Path, max_seconds: f64) -> Result<Vec<f32>> {
    let mut source = AudioSource::open(path, RATE)?;
    let limit = (max_seconds * f64::from(RATE)) as usize;
    let mut samples = Vec::new();
    while let Some(piece) = source.next_chunk()? {
        samples.extend(piece);
        if samples.len() >= limit {
            break;
        }
    }
    samples.truncate(limit);
    Ok(samples)
}

/// Runs `reference` through `system` and scores the result; `scratch` holds the other
/// codecs' files.
pub fn code_clip<B: Backend>(
    codec: &Codec<B>,
    reference: &[f32],
    system: System,
    scratch: &Path,
    mel: &LogMel,
) -> Result<Coded> {
    match system {
        System::Tokenwave(layout) => tokenwave(codec, reference, layout, mel),
        System::Opus { kbps } => opus(reference, kbps, scratch, mel),
        System::Codec2 { bps } => codec2(reference, bps, scratch, mel),
    }
}

fn tokenwave<B: Backend>(codec: &Codec<B>, reference: &[f32], layout: FrameLayout, mel: &LogMel) -> Result<Coded> {
    let seconds = reference.len() as f64 / f64::from(RATE);
    let started = Instant::now();
    let codes = codec.encode(reference, layout)?;
    let mut decoded = codec.decode(&codes, layout)?;
    let rtf = started.elapsed().as_secs_f64() / seconds;
    let bytes = container_bytes(codec, &codes, layout, reference.len() as u64)?;
    decoded.truncate(reference.len());
    // No alignment: see `align`.
    let scores = Scores::measure(reference, &decoded, mel, bytes as f64 * 8.0 / seconds / 1000.0, rtf)?;
    Ok(Coded { scores, decoded, codes: Some(codes.truncate_stages(layout.stages)) })
}

/// Size of the codes as a `.tkw` file: the real bitrate includes the container.
fn container_bytes<B: Backend>(codec: &Codec<B>, codes: &Codes, layout: FrameLayout, samples: u64) -> Result<usize> {
    let header = codec.tkw_header(layout, codec.config().sample_rate, Some(samples));
    let mut writer = TkwWriter::new(std::io::Cursor::new(Vec::new()), header)?;
    writer.write(codes)?;
    Ok(writer.finish(samples)?.into_inner().len())
}

/// Shifts `decoded` by the lag (within ±40 ms) that best matches `reference`, so the other
/// codecs' delays (and our resamplers' around Codec2) are not held against them.
///
/// tokenwave's output needs none: it is on its input's timeline by construction (trained
/// against the input at lag 0; the file path adds no delay). Matching waveforms would
/// mislead for it: its decoder makes its own phase, so the waveform correlation peak is
/// noise — on one clip it picked a 280-sample lag, and STOI fell from 0.761 at lag 0 to
/// 0.735.
fn align(reference: &[f32], decoded: &[f32]) -> Vec<f32> {
    const MAX_LAG: usize = 640;
    let n = reference.len().min(decoded.len());
    let score = |lag: isize| -> f64 {
        (0..n)
            .step_by(2)
            .filter_map(|i| {
                let j = i as isize + lag;
                (j >= 0 && (j as usize) < decoded.len())
                    .then(|| f64::from(reference[i]) * f64::from(decoded[j as usize]))
            })
            .sum()
    };
    let lag = (-(MAX_LAG as isize)..=MAX_LAG as isize).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap_or(0);
    (0..reference.len())
        .map(|i| {
            let j = i as isize + lag;
            if j >= 0 && (j as usize) < decoded.len() { decoded[j as usize] } else { 0.0 }
        })
        .collect()
}

fn write_wav(path: &Path, samples: &[f32]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    let mut sink = WavSink::new(std::io::BufWriter::new(file), RATE)?;
    sink.write(samples)?;
    sink.finish()?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

fn size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?.len())
}

fn pcm16(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect()
}

fn run_tool(program: &str, args: &[&OsStr]) -> Result<()> {
    let package = if program.starts_with("opus") { "opus-tools" } else { "codec2" };
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Tool(format!("cannot run {program} ({e}); install Debian's {package} to compare")))?;
    if !out.status.success() {
        return Err(Error::Tool(format!("{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

fn opus(reference: &[f32], kbps: u32, dir: &Path, mel: &LogMel) -> Result<Coded> {
    let (wav, coded, back) = (dir.join("ref.wav"), dir.join("c.opus"), dir.join("back.wav"));
    write_wav(&wav, reference)?;
    let started = Instant::now();
    let rate = kbps.to_string();
    run_tool(
        "opusenc",
        &["--quiet".as_ref(), "--bitrate".as_ref(), rate.as_ref(), wav.as_os_str(), coded.as_os_str()],
    )?;
    run_tool(
        "opusdec",
        &["--quiet".as_ref(), "--rate".as_ref(), "16000".as_ref(), coded.as_os_str(), back.as_os_str()],
    )?;
    let work = started.elapsed().as_secs_f64();
    let unreadable = |e: hound::Error| Error::Tool(format!("opusdec wrote an unreadable {}: {e}", back.display()));
    let samples: Vec<f32> = hound::WavReader::open(&back)
        .map_err(unreadable)?
        .into_samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    let decoded = align(reference, &samples);
    let seconds = reference.len() as f64 / f64::from(RATE);
    let kbps = size(&coded)? as f64 * 8.0 / seconds / 1000.0;
    Ok(Coded { scores: Scores::measure(reference, &decoded, mel, kbps, work / seconds)?, decoded, codes: None })
}

fn codec2(reference: &[f32], bps: u32, dir: &Path, mel: &LogMel) -> Result<Coded> {
    let (raw, coded, back) = (dir.join("ref8k.raw"), dir.join("c.c2"), dir.join("back8k.raw"));
    let mut down = Resampler::new(RATE, 8_000)?;
    let mut narrow = down.process(reference);
    narrow.extend(down.finish());
    let pcm: Vec<u8> = narrow.iter().flat_map(|&s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes()).collect();
    std::fs::write(&raw, pcm).map_err(|e| Error::io(format!("cannot write {}", raw.display()), e))?;
    let started = Instant::now();
    let mode = bps.to_string();
    run_tool("c2enc", &[mode.as_ref(), raw.as_os_str(), coded.as_os_str()])?;
    run_tool("c2dec", &[mode.as_ref(), coded.as_os_str(), back.as_os_str()])?;
    let work = started.elapsed().as_secs_f64();
    let mut up = Resampler::new(8_000, RATE)?;
    let mut wide = up.process(&pcm16(&read(&back)?));
    wide.extend(up.finish());
    let decoded = align(reference, &wide);
    let seconds = reference.len() as f64 / f64::from(RATE);
    let kbps = size(&coded)? as f64 * 8.0 / seconds / 1000.0;
    Ok(Coded { scores: Scores::measure(reference, &decoded, mel, kbps, work / seconds)?, decoded, codes: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_undoes_a_delay() {
        let reference: Vec<f32> = (0..4000).map(|i| ((i * 7919 % 997) as f32 / 997.0 - 0.5) * 0.5).collect();
        let mut delayed = vec![0.0; 123];
        delayed.extend_from_slice(&reference);
        let aligned = align(&reference, &delayed);
        assert_eq!(aligned[..3800], reference[..3800]);
    }
}
