//! `tokenwave tokens batch`: tokenizes a dataset, one shard of it per process.
//!
//! Every audio file listed in the manifest (or found under a directory) belongs to shard
//! `crc32(entry) mod N`, so shards never overlap and a file keeps its shard when the
//! manifest grows. Outputs are written atomically and skipped when present, so a killed
//! or re-queued job resumes where it stopped. docs/TOKENS.md has Slurm and Kubernetes examples.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokenwave_core::audio::find_audio_files;
use tokenwave_core::tokens::{Layout, TokenFormat};
use tokenwave_core::{Codec, batch};

use super::super::{Global, RateArgs, interrupted, load_codec, report};
use super::{FormatArg, LayoutArg, tokenize, write_tokens};

#[derive(Args)]
pub struct BatchArgs {
    /// A text file listing audio files (one per line, relative to the file's directory;
    /// `#` starts a comment), or a directory searched recursively.
    #[arg(long, value_name = "FILE|DIR")]
    manifest: PathBuf,
    /// Output directory; each input becomes OUT/ENTRY.EXT (e.g. OUT/spk1/a.wav.npy).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// This process's shard, I/N with 0 <= I < N. Default: from SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shards; else the whole manifest.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Number of shards when the index comes from Kubernetes' JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Files encoded in parallel, each on its own thread.
    #[arg(long, value_name = "J", default_value_t = 1)]
    jobs: usize,
    /// File format.
    #[arg(long, value_enum, default_value_t = FormatArg::Npy)]
    format: FormatArg,
    /// Array layout.
    #[arg(long, value_enum, default_value_t)]
    layout: LayoutArg,
    #[command(flatten)]
    rate: RateArgs,
}

/// Which part of the manifest this process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    fn parse(text: &str) -> Result<Self> {
        let parsed = text.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) => Self::new(index, count),
            None => bail!("--shard takes I/N (e.g. 3/16), not {text:?}"),
        }
    }

    fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            bail!("shard {index}/{count} does not exist: the index runs from 0 to N-1");
        }
        Ok(Self { index, count })
    }

    /// From the command line, else from the scheduler's environment.
    fn resolve(args: &BatchArgs) -> Result<Self> {
        let var = |name: &str| -> Result<Option<usize>> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().map(Some).with_context(|| format!("{name}={v:?} is not a number")),
                Err(_) => Ok(None),
            }
        };
        if let Some(text) = &args.shard {
            return Self::parse(text);
        }
        if let Some(id) = var("SLURM_ARRAY_TASK_ID")? {
            let count = var("SLURM_ARRAY_TASK_COUNT")?
                .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
            let first = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            return Self::new(
                id.checked_sub(first).context("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?,
                count,
            );
        }
        if let Some(index) = var("JOB_COMPLETION_INDEX")? {
            let count = args.shards.context("JOB_COMPLETION_INDEX is set: give --shards N (the Job's completions)")?;
            return Self::new(index, count);
        }
        Ok(Self { index: 0, count: args.shards.unwrap_or(1) }).and_then(|s| Self::new(s.index, s.count))
    }

    fn owns(&self, entry: &Path) -> bool {
        crc32fast::hash(entry.to_string_lossy().as_bytes()) as usize % self.count == self.index
    }
}

/// One manifest entry: where to read it and the relative name its output gets.
struct Entry {
    source: PathBuf,
    name: PathBuf,
}

fn read_manifest(manifest: &Path) -> Result<Vec<Entry>> {
    if manifest.is_dir() {
        let files = find_audio_files(manifest)?;
        return Ok(files
            .into_iter()
            .map(|source| Entry { name: source.strip_prefix(manifest).unwrap_or(&source).to_path_buf(), source })
            .collect());
    }
    let text =
        std::fs::read_to_string(manifest).with_context(|| format!("cannot read manifest {}", manifest.display()))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let path = Path::new(line);
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            bail!("manifest line {}: {line:?} climbs out with `..`; list paths inside the dataset", number + 1);
        }
        let name: PathBuf = path.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
        entries.push(Entry { source: base.join(path), name });
    }
    Ok(entries)
}

/// `OUT/NAME.EXT`, keeping the source's own extension so a.wav and a.flac do not collide.
fn output_path(out: &Path, name: &Path, format: TokenFormat) -> PathBuf {
    let mut file = name.as_os_str().to_owned();
    file.push(format!(".{}", format.extension()));
    out.join(file)
}

/// What the workers of a batch did: seconds of audio tokenized, files done, and the files
/// that failed with their errors.
#[derive(Default)]
struct Done {
    seconds: f64,
    encoded: usize,
    failures: Vec<(PathBuf, String)>,
}

pub fn run<B: Backend>(args: &BatchArgs, global: &Global, device: B::Device) -> Result<()> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let shard = Shard::resolve(args)?;
    let codec = load_codec::<B>(global, device)?;
    let stages = args.rate.stages(&codec)?;
    let format = TokenFormat::from(args.format);
    let entries = read_manifest(&args.manifest)?;
    if entries.is_empty() {
        bail!("the manifest {} lists no audio files", args.manifest.display());
    }
    let mine: Vec<&Entry> = entries.iter().filter(|e| shard.owns(&e.name)).collect();
    let todo: Vec<(&Entry, PathBuf)> = mine
        .iter()
        .map(|e| (*e, output_path(&args.out, &e.name, format)))
        .filter(|(_, target)| !target.exists())
        .collect();
    let skipped = mine.len() - todo.len();
    let bar = files_bar(global, todo.len());
    let started = Instant::now();
    let done = tokenize_all(&codec, &todo, (stages, args.layout.into(), format), args.jobs, &bar);
    bar.finish_and_clear();
    super::super::check_interrupt()?;
    let Done { seconds, encoded, failures } = done;
    let work = started.elapsed().as_secs_f64();
    report(
        global,
        false,
        json!({
            "shard": format!("{}/{}", shard.index, shard.count), "files_in_shard": mine.len(),
            "encoded": encoded, "skipped_existing": skipped, "failed": failures.len(),
            "hours": seconds / 3600.0, "x_real_time": seconds / work, "jobs": args.jobs,
            "failures": failures.iter().map(|(p, e)| json!({"file": p, "error": e})).collect::<Vec<_>>(),
        }),
        format!(
            "shard {}/{}: {encoded} encoded, {skipped} already done, {} failed; {:.2} h of audio at {:.1}x real time",
            shard.index,
            shard.count,
            failures.len(),
            seconds / 3600.0,
            seconds / work
        ),
    );
    if !failures.is_empty() {
        bail!(
            "{} of {} files failed (listed above); fix or remove them and run again to finish the shard",
            failures.len(),
            mine.len()
        );
    }
    Ok(())
}

/// A progress bar over `files` files on a terminal, nothing otherwise.
fn files_bar(global: &Global, files: usize) -> ProgressBar {
    if global.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files  {msg}  {elapsed} < {eta}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Tokenizes `todo` (source, target) on `jobs` threads ([`tokenwave_core::batch`]); a file
/// that fails is listed, not fatal. Stops early on Ctrl-C.
fn tokenize_all<B: Backend>(
    codec: &Codec<B>,
    todo: &[(&Entry, PathBuf)],
    (stages, layout, format): (usize, Layout, TokenFormat),
    jobs: usize,
    bar: &ProgressBar,
) -> Done {
    let mut done = Done::default();
    let rate = f64::from(codec.config().sample_rate);
    let work = |(entry, target): &(&Entry, PathBuf)| {
        tokenize(codec, &entry.source, stages, layout).and_then(|tokens| {
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_tokens(&tokens, format, target)?;
            Ok(tokens.meta.samples.unwrap_or(0) as f64 / rate)
        })
    };
    batch::for_each(todo, jobs, interrupted, work, |index, result| {
        match result {
            Ok(seconds) => {
                done.seconds += seconds;
                done.encoded += 1;
            }
            Err(_) if interrupted() => return,
            Err(e) => {
                let source = &todo[index].0.source;
                bar.suspend(|| eprintln!("tokenwave: skipped {}: {e:#}", source.display()));
                done.failures.push((source.clone(), format!("{e:#}")));
            }
        }
        bar.set_message(format!("{:.1} h of audio", done.seconds / 3600.0));
        bar.inc(1);
    });
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_manifest_without_overlap() {
        let names: Vec<PathBuf> = (0..1000).map(|i| PathBuf::from(format!("spk{}/utt{i}.wav", i % 7))).collect();
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
        for name in &names {
            assert_eq!(shards.iter().filter(|s| s.owns(name)).count(), 1);
        }
        let sizes: Vec<usize> = shards.iter().map(|s| names.iter().filter(|n| s.owns(n)).count()).collect();
        assert!(sizes.iter().all(|&n| (200..300).contains(&n)), "{sizes:?}");
        assert!(Shard::parse("4/4").is_err() && Shard::parse("x").is_err() && Shard::parse("1/0").is_err());
        assert_eq!(Shard::parse("3/16").unwrap(), Shard { index: 3, count: 16 });
    }
}
