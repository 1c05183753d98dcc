//! `tokenwave eval`: objective quality of the codec on a set of clips, optionally side by
//! side with Opus (opus-tools) and Codec2 (c2enc/c2dec) on the same clips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use serde_json::json;
use tokenwave::audio::{AudioSource, Resampler, find_audio_files};
use tokenwave::bitstream::TkwWriter;
use tokenwave::codec::FrameLayout;
use tokenwave::eval::{LogMel, si_sdr, stoi};
use tokenwave::{Codec, Codes};

use super::encode::tkw_header;
use super::{Global, check_interrupt, load_codec, report};

#[derive(Args)]
pub struct EvalArgs {
    /// Audio files or directories (searched recursively).
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    data: Vec<PathBuf>,
    /// Bitrates to measure, comma-separated (rounded to whole codes per frame), each with
    /// the split `encode --kbps` uses.
    #[arg(long, value_delimiter = ',', default_values_t = [1.5, 3.0, 6.0])]
    kbps: Vec<f64>,
    /// Instead of each bitrate's own split, these low-band codes per frame at each
    /// bitrate, comma-separated (0: none; see `encode --low-band`): `--kbps 3 --low-band
    /// 0,3` measures 3 kbps of neural codes against 1.5 kbps of them plus 1.5 kbps of low
    /// band. Splits that leave no neural stage are skipped.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    low_band: Option<Vec<usize>>,
    /// Also run these codecs on the same clips: Opus at 6, 9 and 12 kbps, Codec2 at 1600 and 3200 bps.
    #[arg(long, value_delimiter = ',', value_enum)]
    compare: Vec<Other>,
    /// Only the files the trainer holds out (`validation`), or all of them.
    #[arg(long, value_enum, default_value_t = Split::All)]
    split: Split,
    /// At most this many clips (in path order).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Clips are cut to this many seconds (long files would dominate the means).
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    max_seconds: f64,
    /// Write spectrograms of the first clip (original, then each of our bitrates) to this PNG.
    #[arg(long, value_name = "PNG")]
    plot: Option<PathBuf>,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Other {
    Opus,
    Codec2,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Split {
    All,
    Validation,
}

/// Scores of one system on one clip.
#[derive(Clone, Default)]
struct Scores {
    kbps: f64,
    stoi: f64,
    estoi: f64,
    si_sdr: f64,
    log_mel: f64,
    rtf: f64,
}

impl Scores {
    /// Scores `decoded`, which must already be time-aligned with `reference`.
    fn measure(reference: &[f32], decoded: &[f32], mel: &LogMel, kbps: f64, rtf: f64) -> Result<Self> {
        Ok(Self {
            kbps,
            stoi: stoi(reference, decoded, 16_000, false)?,
            estoi: stoi(reference, decoded, 16_000, true)?,
            si_sdr: si_sdr(reference, decoded),
            log_mel: mel.l1(reference, decoded),
            rtf,
        })
    }

    fn mean(all: &[Scores]) -> Scores {
        let n = all.len().max(1) as f64;
        let avg = |f: fn(&Scores) -> f64| all.iter().map(f).sum::<f64>() / n;
        Scores {
            kbps: avg(|s| s.kbps),
            stoi: avg(|s| s.stoi),
            estoi: avg(|s| s.estoi),
            si_sdr: avg(|s| s.si_sdr),
            log_mel: avg(|s| s.log_mel),
            rtf: avg(|s| s.rtf),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({ "real_kbps": self.kbps, "stoi": self.stoi, "estoi": self.estoi, "si_sdr": self.si_sdr,
                "log_mel_l1": self.log_mel, "rtf": self.rtf })
    }
}

/// Shifts `decoded` by the lag (within ±40 ms) that best matches `reference`, so the other
/// codecs' delays (and our resamplers' around Codec2) are not held against them.
///
/// tokenwave's output needs none: it is on its input's timeline by construction (trained
/// against the input at lag 0; the file path adds no delay). Matching waveforms would
/// mislead for it: its decoder makes its own phase, so the waveform correlation peak is
/// noise — on one clip it picked a 280-sample lag, and STOI fell from 0.761 at lag 0 to
/// 0.735 (stoi over lags −640..640 peaked at 0.794 near +120, which we do not search for).
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

pub fn run<B: Backend>(args: &EvalArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let rate = codec.config().sample_rate;
    if rate != 16_000 {
        bail!("eval measures 16 kHz models; this one runs at {rate} Hz");
    }
    let mut files = Vec::new();
    for path in &args.data {
        if path.is_dir() {
            files.extend(find_audio_files(path)?);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            bail!("{} does not exist", path.display());
        }
    }
    if args.split == Split::Validation {
        files.retain(|f| tokenwave::train::is_validation(f));
    }
    files.truncate(args.limit.unwrap_or(usize::MAX));
    if files.is_empty() {
        bail!("no audio files to evaluate");
    }
    let mut layouts = Vec::new();
    for &kbps in &args.kbps {
        match &args.low_band {
            None => layouts.push(codec.layout_for_kbps(kbps, None)?),
            Some(splits) => {
                for &digits in splits {
                    match codec.layout_for_kbps(kbps, Some(digits)) {
                        Ok(layout) => layouts.push(layout),
                        Err(e) if digits > 0 => {
                            eprintln!("tokenwave: skipped {kbps} kbps with {digits} low-band codes: {e}")
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    if layouts.is_empty() {
        bail!("no bitrate and low band given leave room for the neural stages; ask for more kbps");
    }
    let kbps_of = |codes: usize| codec.config().bitrate(codes) / 1000.0;
    let mut systems: Vec<String> = layouts
        .iter()
        .map(|layout| match layout.low_band_digits() {
            0 => format!("tokenwave {} kbps", kbps_of(layout.stages)),
            digits => format!(
                "tokenwave {} kbps ({} + low band {})",
                kbps_of(layout.codes_per_frame()),
                kbps_of(layout.stages),
                kbps_of(digits)
            ),
        })
        .collect();
    if args.compare.contains(&Other::Opus) {
        systems.extend([6, 9, 12].map(|k| format!("opus {k} kbps")));
    }
    if args.compare.contains(&Other::Codec2) {
        systems.extend(["codec2 1.6 kbps".to_string(), "codec2 3.2 kbps".to_string()]);
    }
    let mel = LogMel::new(rate);
    let scratch = tempfile::TempDir::new().context("cannot create a scratch directory")?;
    let mut per_system: Vec<Vec<Scores>> = vec![Vec::new(); systems.len()];
    let mut used: Vec<Vec<bool>> = vec![vec![false; codec.config().codebook_size]; codec.config().max_stages];
    let mut clips = Vec::new();
    let mut plot_rows: Vec<(String, Vec<f32>)> = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        check_interrupt()?;
        let reference = load(file, rate, args.max_seconds)?;
        let seconds = reference.len() as f64 / f64::from(rate);
        let mut results = Vec::new();
        let mut clip_codes = Vec::new();
        let mut rows = Vec::new();
        let scored: Result<()> = (|| {
            for (layout, name) in layouts.iter().zip(&systems) {
                let started = Instant::now();
                let codes = codec.encode_layers(&reference, layout.stages, layout.low_band)?;
                let decoded = codec.decode_layers(&codes, layout.low_band)?;
                let rtf = started.elapsed().as_secs_f64() / seconds;
                let bytes = container_bytes(&codec, &codes, *layout, reference.len() as u64)?;
                let kbps = bytes as f64 * 8.0 / seconds / 1000.0;
                // No alignment: see `align`.
                results.push(Scores::measure(&reference, &decoded[..reference.len()], &mel, kbps, rtf)?);
                if plot_rows.is_empty() && args.plot.is_some() {
                    rows.push((name.clone(), decoded[..reference.len()].to_vec()));
                }
                clip_codes.push(codes.truncate_stages(layout.stages));
            }
            if args.compare.contains(&Other::Opus) {
                for kbps in [6, 9, 12] {
                    results.push(opus(&reference, kbps, scratch.path(), &mel)?);
                }
            }
            if args.compare.contains(&Other::Codec2) {
                for bps in [1600, 3200] {
                    results.push(codec2(&reference, bps, scratch.path(), &mel)?);
                }
            }
            Ok(())
        })();
        if let Err(e) = scored {
            // A clip too short (or too quiet) to score is skipped, not the whole evaluation.
            if !global.quiet {
                eprintln!("tokenwave: skipped {}: {e:#}", file.display());
            }
            skipped.push(file.clone());
            continue;
        }
        for codes in &clip_codes {
            for frame in 0..codes.frames() {
                for (stage, &code) in codes.frame(frame).iter().enumerate() {
                    used[stage][usize::from(code)] = true;
                }
            }
        }
        if !global.quiet && !global.json {
            eprintln!("{} ({seconds:.1} s):", file.display());
            for (name, s) in systems.iter().zip(&results) {
                eprintln!("  {name:<36} {}", row(s));
            }
        }
        clips.push(json!({
            "file": file, "seconds": seconds,
            "systems": systems.iter().zip(&results).map(|(n, s)| json!({"system": n, "scores": s.json()})).collect::<Vec<_>>(),
        }));
        for (all, s) in per_system.iter_mut().zip(results) {
            all.push(s);
        }
        if plot_rows.is_empty()
            && let Some(path) = &args.plot
        {
            super::plot::spectrograms(path, rate, &reference, &rows)?;
            if !global.quiet {
                let panels: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
                eprintln!(
                    "tokenwave: wrote {}: spectrograms of {}, top to bottom: original, {}",
                    path.display(),
                    file.display(),
                    panels.join(", ")
                );
            }
            plot_rows = rows;
        }
    }
    if clips.is_empty() {
        bail!("none of the {} clips could be scored (all too short or silent)", files.len());
    }
    let utilization: Vec<f64> = used
        .iter()
        .take(layouts.iter().map(|layout| layout.stages).max().unwrap_or(0))
        .map(|u| u.iter().filter(|&&x| x).count() as f64 / u.len() as f64)
        .collect();
    let means: Vec<Scores> = per_system.iter().map(|all| Scores::mean(all)).collect();
    let mut table = format!(
        "mean over {} clips ({} skipped):\n  {:<36} {:>7} {:>6} {:>6} {:>8} {:>8} {:>7}\n",
        clips.len(),
        skipped.len(),
        "system",
        "kbps",
        "STOI",
        "ESTOI",
        "SI-SDR",
        "log-mel",
        "RTF"
    );
    for (name, s) in systems.iter().zip(&means) {
        table.push_str(&format!("  {name:<36} {}\n", row(s)));
    }
    table.push_str(&format!(
        "codebook utilization over all clips (share of codes used), stage 1..{}: {}",
        utilization.len(),
        utilization.iter().map(|u| format!("{:.0}%", u * 100.0)).collect::<Vec<_>>().join(" ")
    ));
    let json = json!({
        "model_id": codec.model_id().to_string(), "clips": clips, "skipped": skipped,
        "mean": systems.iter().zip(&means).map(|(n, s)| json!({"system": n, "scores": s.json()})).collect::<Vec<_>>(),
        "codebook_utilization": utilization,
    });
    // The table is what eval is run for: it goes to stdout, where `> table.txt` finds it.
    if global.json || global.quiet {
        report(global, false, json, String::new());
    } else {
        outln!("{table}");
    }
    Ok(())
}

fn row(s: &Scores) -> String {
    format!("{:>7.3} {:>6.3} {:>6.3} {:>8.2} {:>8.3} {:>7.4}", s.kbps, s.stoi, s.estoi, s.si_sdr, s.log_mel, s.rtf)
}

fn load(path: &Path, rate: u32, max_seconds: f64) -> Result<Vec<f32>> {
    let mut source = AudioSource::open(path, rate)?;
    let limit = (max_seconds * f64::from(rate)) as usize;
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

/// Size of the codes as a `.tkw` file: the real bitrate includes the container.
fn container_bytes<B: Backend>(codec: &Codec<B>, codes: &Codes, layout: FrameLayout, samples: u64) -> Result<usize> {
    let header = tkw_header(codec, layout, codec.config().sample_rate, Some(samples));
    let mut writer = TkwWriter::new(std::io::Cursor::new(Vec::new()), header)?;
    writer.write(codes)?;
    Ok(writer.finish(samples)?.into_inner().len())
}

fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<()> {
    let mut sink = tokenwave::audio::WavSink::new(std::io::BufWriter::new(std::fs::File::create(path)?), rate)?;
    sink.write(samples)?;
    sink.finish()?;
    Ok(())
}

fn read_pcm16(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect()
}

fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!(
            "cannot run {program}; install Debian's {} to compare",
            if program.starts_with("opus") { "opus-tools" } else { "codec2" }
        )
    })?;
    if !out.status.success() {
        bail!("{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn opus(reference: &[f32], kbps: u32, dir: &Path, mel: &LogMel) -> Result<Scores> {
    let (wav, coded, back) = (dir.join("ref.wav"), dir.join("c.opus"), dir.join("back.wav"));
    write_wav(&wav, reference, 16_000)?;
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
    let decoded: Vec<f32> = hound::WavReader::open(&back)?
        .into_samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0))
        .collect::<Result<_, _>>()?;
    let seconds = reference.len() as f64 / 16_000.0;
    let bytes = std::fs::metadata(&coded)?.len();
    Scores::measure(reference, &align(reference, &decoded), mel, bytes as f64 * 8.0 / seconds / 1000.0, work / seconds)
}

fn codec2(reference: &[f32], bps: u32, dir: &Path, mel: &LogMel) -> Result<Scores> {
    let (raw, coded, back) = (dir.join("ref8k.raw"), dir.join("c.c2"), dir.join("back8k.raw"));
    let mut down = Resampler::new(16_000, 8_000)?;
    let mut narrow = down.process(reference);
    narrow.extend(down.finish());
    let pcm: Vec<u8> = narrow.iter().flat_map(|&s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes()).collect();
    std::fs::write(&raw, pcm)?;
    let started = Instant::now();
    let mode = bps.to_string();
    run_tool("c2enc", &[mode.as_ref(), raw.as_os_str(), coded.as_os_str()])?;
    run_tool("c2dec", &[mode.as_ref(), coded.as_os_str(), back.as_os_str()])?;
    let work = started.elapsed().as_secs_f64();
    let mut up = Resampler::new(8_000, 16_000)?;
    let mut decoded = up.process(&read_pcm16(&std::fs::read(&back)?));
    decoded.extend(up.finish());
    let seconds = reference.len() as f64 / 16_000.0;
    let bytes = std::fs::metadata(&coded)?.len();
    Scores::measure(reference, &align(reference, &decoded), mel, bytes as f64 * 8.0 / seconds / 1000.0, work / seconds)
}
