//! `tokenwave tokens export IN... --out PATH`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;
use tokenwave_core::tokens::TokenFormat;

use super::super::{Global, RateArgs, load_codec, report};
use super::{FormatArg, LayoutArg, tokenize, write_tokens};

#[derive(Args)]
pub struct ExportArgs {
    /// Audio files to encode (`-` for stdin).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file for one input (`-` for stdout); a directory for several (created if needed).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// File format (default: from the --out extension, else npy).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Array layout.
    #[arg(long, value_enum, default_value_t)]
    layout: LayoutArg,
    #[command(flatten)]
    rate: RateArgs,
}

pub fn run<B: Backend>(args: &ExportArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let stages = args.rate.stages(&codec)?;
    let format =
        args.format.map(TokenFormat::from).or_else(|| TokenFormat::from_path(&args.out)).unwrap_or(TokenFormat::Npy);
    let targets = targets(&args.inputs, &args.out, format)?;
    let started = Instant::now();
    let mut seconds = 0.0;
    for (input, target) in args.inputs.iter().zip(&targets) {
        let tokens = tokenize(&codec, input, stages, args.layout.into())
            .with_context(|| format!("cannot tokenize {}", input.display()))?;
        write_tokens(&tokens, format, target)?;
        seconds += tokens.meta.samples.unwrap_or(0) as f64 / f64::from(codec.config().sample_rate);
    }
    let work = started.elapsed().as_secs_f64();
    report(
        global,
        args.out == Path::new("-"),
        json!({
            "files": args.inputs.len(), "outputs": targets, "seconds": seconds, "stages": stages,
            "format": format.extension(), "x_real_time": seconds / work, "model_id": codec.model_id().to_string(),
        }),
        format!(
            "exported {} file(s), {seconds:.1} s of audio at {stages} stages as {}, {:.1}x real time",
            args.inputs.len(),
            format.extension(),
            seconds / work
        ),
    );
    Ok(())
}

/// The output path of each input: `--out` itself for one input, else `DIR/STEM.EXT`.
fn targets(inputs: &[PathBuf], out: &Path, format: TokenFormat) -> Result<Vec<PathBuf>> {
    if inputs.len() == 1 && !out.is_dir() {
        return Ok(vec![out.to_path_buf()]);
    }
    if out == Path::new("-") {
        bail!("several inputs need a directory for --out, not stdout");
    }
    if out.exists() && !out.is_dir() {
        bail!("{} exists and is not a directory; several inputs need a directory for --out", out.display());
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for input in inputs {
        let Some(stem) = input.file_stem().filter(|_| input != Path::new("-")) else {
            bail!("stdin (`-`) can only be exported on its own");
        };
        let mut name = stem.to_os_string();
        name.push(format!(".{}", format.extension()));
        let target = out.join(name);
        if !seen.insert(target.clone()) {
            bail!("two inputs would both be written to {}; export them separately", target.display());
        }
        targets.push(target);
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(targets)
}
