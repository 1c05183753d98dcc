//! `tokenwave eval`: objective quality of the codec on a set of clips, optionally side by
//! side with Opus (opus-tools) and Codec2 (c2enc/c2dec) on the same clips.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use serde_json::json;
use tokenwave_core::audio::find_audio_files;
use tokenwave_core::{Codec, FrameLayout};
use tokenwave_eval::harness::{Coded, Scores, System, code_clip, load_clip, mean_of_some};
use tokenwave_eval::{LogMel, harmonic_contrast};

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

/// The systems each clip goes through, with their names: `layouts`, then the other codecs.
fn systems<B: Backend>(codec: &Codec<B>, layouts: &[FrameLayout], compare: &[Other]) -> Vec<(String, System)> {
    let kbps_of = |codes: usize| codec.config().bitrate(codes) / 1000.0;
    let mut systems: Vec<(String, System)> = layouts
        .iter()
        .map(|layout| {
            let name = match layout.low_band_digits() {
                0 => format!("tokenwave {} kbps", kbps_of(layout.stages)),
                digits => format!(
                    "tokenwave {} kbps ({} + low band {})",
                    kbps_of(layout.codes_per_frame()),
                    kbps_of(layout.stages),
                    kbps_of(digits)
                ),
            };
            (name, System::Tokenwave(*layout))
        })
        .collect();
    if compare.contains(&Other::Opus) {
        systems.extend([6, 9, 12].map(|kbps| (format!("opus {kbps} kbps"), System::Opus { kbps })));
    }
    if compare.contains(&Other::Codec2) {
        systems.extend(
            [(1600, "1.6"), (3200, "3.2")].map(|(bps, k)| (format!("codec2 {k} kbps"), System::Codec2 { bps })),
        );
    }
    systems
}

/// The layouts that `--kbps` and `--low-band` ask for.
fn layouts<B: Backend>(codec: &Codec<B>, args: &EvalArgs) -> Result<Vec<FrameLayout>> {
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
    Ok(layouts)
}

/// The files under `--data`, filtered by `--split` and `--limit`.
fn clips(args: &EvalArgs) -> Result<Vec<PathBuf>> {
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
        files.retain(|f| tokenwave_train::data::is_validation(f));
    }
    files.truncate(args.limit.unwrap_or(usize::MAX));
    if files.is_empty() {
        bail!("no audio files to evaluate");
    }
    Ok(files)
}

/// Codebook use over every clip: which codes of each stage were chosen at least once.
struct Usage(Vec<Vec<bool>>);

impl Usage {
    fn record(&mut self, codes: &tokenwave_core::Codes) {
        for frame in 0..codes.frames() {
            for (stage, &code) in codes.frame(frame).iter().enumerate() {
                self.0[stage][usize::from(code)] = true;
            }
        }
    }

    fn shares(&self, stages: usize) -> Vec<f64> {
        self.0.iter().take(stages).map(|u| u.iter().filter(|&&x| x).count() as f64 / u.len() as f64).collect()
    }
}

pub fn run<B: Backend>(args: &EvalArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let rate = codec.config().sample_rate;
    if rate != tokenwave_eval::harness::RATE {
        bail!("eval measures 16 kHz models; this one runs at {rate} Hz");
    }
    let files = clips(args)?;
    let layouts = layouts(&codec, args)?;
    let systems = systems(&codec, &layouts, &args.compare);
    let mel = LogMel::new(rate);
    let scratch = tempfile::TempDir::new().context("cannot create a scratch directory")?;
    let mut per_system: Vec<Vec<Scores>> = vec![Vec::new(); systems.len()];
    let mut usage = Usage(vec![vec![false; codec.config().codebook_size]; codec.config().max_stages]);
    let (mut clips, mut skipped) = (Vec::new(), Vec::new());
    let mut originals = Vec::new();
    let mut plotted = args.plot.is_none();
    for file in &files {
        check_interrupt()?;
        let reference = load_clip(file, args.max_seconds)?;
        let seconds = reference.len() as f64 / f64::from(rate);
        let coded: Result<Vec<_>, _> =
            systems.iter().map(|(_, system)| code_clip(&codec, &reference, *system, scratch.path(), &mel)).collect();
        let coded = match coded {
            Ok(coded) => coded,
            Err(e) => {
                // A clip too short (or too quiet) to score is skipped, not the whole evaluation.
                if !global.quiet {
                    eprintln!("tokenwave: skipped {}: {e}", file.display());
                }
                skipped.push(file.clone());
                continue;
            }
        };
        coded.iter().filter_map(|c| c.codes.as_ref()).for_each(|codes| usage.record(codes));
        originals.push(harmonic_contrast(&reference, &reference, rate).map(|(db, _)| db));
        if !global.quiet && !global.json {
            eprintln!("{} ({seconds:.1} s):", file.display());
            for ((name, _), c) in systems.iter().zip(&coded) {
                eprintln!("  {name:<36} {}", row(&c.scores));
            }
        }
        clips.push(json!({
            "file": file, "seconds": seconds,
            "systems": systems.iter().zip(&coded).map(|((n, _), c)| json!({"system": n, "scores": c.scores})).collect::<Vec<_>>(),
        }));
        if !plotted && let Some(path) = &args.plot {
            plot(path, file, &reference, &systems, &coded, global)?;
            plotted = true;
        }
        for (all, c) in per_system.iter_mut().zip(coded) {
            all.push(c.scores);
        }
    }
    if clips.is_empty() {
        bail!("none of the {} clips could be scored (all too short or silent)", files.len());
    }
    let utilization = usage.shares(layouts.iter().map(|layout| layout.stages).max().unwrap_or(0));
    let means: Vec<Scores> = per_system.iter().map(|all| Scores::mean(all)).collect();
    let original = mean_of_some(originals.into_iter());
    let json = json!({
        "model_id": codec.model_id().to_string(), "clips": clips, "skipped": skipped,
        "mean": systems.iter().zip(&means).map(|((n, _), s)| json!({"system": n, "scores": s})).collect::<Vec<_>>(),
        "codebook_utilization": utilization, "reference_harmonic_contrast_db": original,
    });
    // The table is what eval is run for: it goes to stdout, where `> table.txt` finds it.
    if global.json || global.quiet {
        report(global, false, json, String::new());
    } else {
        outln!("{}", table(&systems, &means, original, &utilization, (clips.len(), skipped.len())));
    }
    Ok(())
}

/// Spectrograms of `reference` and of tokenwave's outputs of it, to the PNG `path`.
fn plot(
    path: &std::path::Path,
    file: &std::path::Path,
    reference: &[f32],
    systems: &[(String, System)],
    coded: &[Coded],
    global: &Global,
) -> Result<()> {
    let rows: Vec<(String, Vec<f32>)> = systems
        .iter()
        .zip(coded)
        .filter(|((_, system), _)| matches!(system, System::Tokenwave(_)))
        .map(|((name, _), c)| (name.clone(), c.decoded.clone()))
        .collect();
    tokenwave_eval::plot::spectrograms(path, tokenwave_eval::harness::RATE, reference, &rows)?;
    if !global.quiet {
        let panels: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
        eprintln!(
            "tokenwave: wrote {}: spectrograms of {}, top to bottom: original, {}",
            path.display(),
            file.display(),
            panels.join(", ")
        );
    }
    Ok(())
}

/// The table of means, one row a system, and the codebook use.
fn table(
    systems: &[(String, System)],
    means: &[Scores],
    original: Option<f64>,
    utilization: &[f64],
    clips: (usize, usize),
) -> String {
    let (clips, skipped) = clips;
    let original = original.map_or_else(|| "-".to_string(), |db| format!("{db:.2} dB"));
    let mut table = format!(
        "mean over {clips} clips ({skipped} skipped; the originals' harmonic contrast {original}):\n  {:<36} {:>7} {:>6} {:>6} {:>8} {:>8} {:>7} {:>7}\n",
        "system", "kbps", "STOI", "ESTOI", "SI-SDR", "log-mel", "harm dB", "RTF"
    );
    for ((name, _), s) in systems.iter().zip(means) {
        table.push_str(&format!("  {name:<36} {}\n", row(s)));
    }
    table.push_str(&format!(
        "codebook utilization over all clips (share of codes used), stage 1..{}: {}",
        utilization.len(),
        utilization.iter().map(|u| format!("{:.0}%", u * 100.0)).collect::<Vec<_>>().join(" ")
    ));
    table
}

fn row(s: &Scores) -> String {
    let harmonic = s.harmonic_db.map_or_else(|| "-".to_string(), |db| format!("{db:.2}"));
    format!(
        "{:>7.3} {:>6.3} {:>6.3} {:>8.2} {:>8.3} {harmonic:>7} {:>7.4}",
        s.kbps, s.stoi, s.estoi, s.si_sdr, s.log_mel, s.rtf
    )
}
