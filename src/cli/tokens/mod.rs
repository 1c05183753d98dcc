//! `tokenwave tokens …`: codes as arrays for TTS and speech-LM pipelines.

mod batch;
mod decode;
mod export;
mod info;

use std::io::Write;
use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use clap::{Args, Subcommand, ValueEnum};
use tokenwave_core::audio::AudioSource;
use tokenwave_core::tokens::{Layout, TokenFormat, TokenMeta, Tokens, npy_metadata_path};
use tokenwave_core::{Codec, Codes};

use super::Global;
use super::encode::encode_source;
use super::output::Output;

#[derive(Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Encode audio files to token arrays (npy, safetensors or jsonl) with their metadata.
    Export(export::ExportArgs),
    /// Render token arrays (from tokenwave or a generator) to WAV, or play them.
    Decode(decode::DecodeArgs),
    /// Tokenize a dataset: resumable, shardable across a Slurm or Kubernetes array job.
    Batch(batch::BatchArgs),
    /// The codes' conventions for an LM: rate, rows, offsets, special tokens (--json: codec-bpe's codec_info.json).
    Info(info::InfoArgs),
}

pub fn run<B: Backend>(args: &TokensArgs, global: &Global, device: B::Device) -> Result<()> {
    match &args.command {
        TokensCommand::Export(args) => export::run::<B>(args, global, device),
        TokensCommand::Decode(args) => decode::run::<B>(args, global, device),
        TokensCommand::Batch(args) => batch::run::<B>(args, global, device),
        TokensCommand::Info(args) => info::run::<B>(args, global, device),
    }
}

/// `--format` values.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// numpy .npy (int16), metadata in NAME.npy.json beside it.
    Npy,
    /// .safetensors: tensor "codes" (int16), metadata inside.
    Safetensors,
    /// JSON Lines: a metadata line, then one array of codes per frame.
    Jsonl,
}

impl From<FormatArg> for TokenFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Npy => TokenFormat::Npy,
            FormatArg::Safetensors => TokenFormat::Safetensors,
            FormatArg::Jsonl => TokenFormat::Jsonl,
        }
    }
}

/// `--layout` values.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum, Default)]
pub enum LayoutArg {
    /// [stages, frames]: one row per quantizer stage.
    #[default]
    Stages,
    /// [frames * stages], frame-major, stage s offset by s * codebook size (one LM vocabulary).
    Flat,
}

impl From<LayoutArg> for Layout {
    fn from(layout: LayoutArg) -> Self {
        match layout {
            LayoutArg::Stages => Layout::Stages,
            LayoutArg::Flat => Layout::Flat,
        }
    }
}

/// Encodes the audio file at `path` into tokens with `stages` codes per frame.
pub fn tokenize<B: Backend>(codec: &Codec<B>, path: &Path, stages: usize, layout: Layout) -> Result<Tokens> {
    let mut source = AudioSource::open(path, codec.config().sample_rate)?;
    let frame = codec.layout(stages, 0)?;
    let mut codes = Codes::empty(frame.codes_per_frame());
    let samples = encode_source(codec, &mut source, frame, |piece, _| Ok(codes.extend(piece)?))?;
    let meta = TokenMeta::new(codec.config(), codec.model_id(), (stages, frame.pitch), layout, Some(samples));
    Ok(Tokens { meta, codes })
}

/// Writes `tokens` to `path` (`-`: stdout) so that it appears whole or not at all; for
/// `.npy` the metadata file is written first, so an existing `.npy` means a complete pair.
pub fn write_tokens(tokens: &Tokens, format: TokenFormat, path: &Path) -> Result<()> {
    if format == TokenFormat::Npy {
        if path == Path::new("-") {
            bail!("npy keeps its metadata in a file beside the array; use --format safetensors or jsonl for stdout");
        }
        let mut meta = Output::create(&npy_metadata_path(path))?;
        meta.file().write_all(tokens.meta_json().as_bytes())?;
        meta.commit()?;
    }
    let mut output = Output::create(path)?;
    let mut writer = std::io::BufWriter::new(output.file());
    tokens.write(format, &mut writer)?;
    writer.flush()?;
    drop(writer);
    output.commit()
}
