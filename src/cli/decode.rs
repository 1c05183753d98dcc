//! `tokenwave decode IN OUT`: `.tkw` to WAV.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;
use tokenwave_core::audio::{Resampler, WavSink};
use tokenwave_core::bitstream::{Chunk, TkwReader};
use tokenwave_core::{Codec, Error, ModelId};

use super::output::Output;
use super::{Global, check_interrupt, load_codec, progress, report};

#[derive(Args)]
pub struct DecodeArgs {
    /// Input .tkw file, or `-` for stdin.
    input: PathBuf,
    /// Output WAV file, or `-` for stdout.
    output: PathBuf,
    /// Sample rate of the WAV (default: the model's rate).
    #[arg(long, value_name = "HZ")]
    rate: Option<u32>,
    /// Replace chunks that fail their CRC with silence (and warn) instead of failing.
    #[arg(long)]
    skip_damaged: bool,
}

/// What one decode did.
pub struct DecodeStats {
    pub samples: u64,
    pub damaged_chunks: u64,
    pub seconds_of_work: f64,
}

pub fn run<B: Backend>(args: &DecodeArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let input = open_input(&args.input)?;
    let mut output = Output::create(&args.output)?;
    let rate = args.rate.unwrap_or(codec.config().sample_rate);
    let bar = progress(global, None);
    let stats = decode_to(&codec, input, output.file(), rate, args.skip_damaged, &bar)
        .with_context(|| format!("cannot decode {}", args.input.display()))?;
    bar.finish_and_clear();
    output.commit()?;
    let seconds = stats.samples as f64 / f64::from(codec.config().sample_rate);
    report(
        global,
        args.output == Path::new("-"),
        json!({
            "input": args.input, "output": args.output, "seconds": seconds, "rate": rate,
            "damaged_chunks": stats.damaged_chunks, "rtf": stats.seconds_of_work / seconds,
        }),
        format!("decoded {seconds:.2} s to {rate} Hz, {:.1}x real time", seconds / stats.seconds_of_work),
    );
    Ok(())
}

/// A file or stdin, buffered.
pub fn open_input(path: &Path) -> Result<Box<dyn Read>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    if path.is_dir() {
        bail!("{} is a directory, not a .tkw file", path.display());
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

/// Checks that a stream's header fits `codec`.
pub fn check_stream<B: Backend, R: Read>(codec: &Codec<B>, reader: &TkwReader<R>) -> Result<()> {
    let header = reader.header();
    let config = codec.config();
    if header.model_id != codec.model_id().0 {
        return Err(Error::ModelMismatch {
            stream: ModelId(header.model_id).to_string(),
            loaded: codec.model_id().to_string(),
        }
        .into());
    }
    if header.stages == 0 || usize::from(header.stages) > config.max_stages {
        bail!("the stream has {} stages but the model only {}", header.stages, config.max_stages);
    }
    if header.hop as usize != config.hop()
        || header.sample_rate != config.sample_rate
        || u32::from(header.bits_per_code) != config.bits_per_code()
    {
        bail!("the stream's frame layout does not match the model's");
    }
    Ok(())
}

/// Decodes a `.tkw` stream into a WAV at `rate` Hz on `out`.
pub fn decode_to<B: Backend, R: Read, W: Write + Seek>(
    codec: &Codec<B>,
    input: R,
    out: W,
    rate: u32,
    skip_damaged: bool,
    bar: &ProgressBar,
) -> Result<DecodeStats> {
    let started = Instant::now();
    let mut reader = TkwReader::open(input)?.skip_damaged(skip_damaged);
    check_stream(codec, &reader)?;
    let model_rate = codec.config().sample_rate;
    let hop = codec.config().hop();
    let mut decoder = codec.stream_decoder(codec.layout_of(reader.header())?)?;
    let mut resampler = Resampler::new(model_rate, rate)?;
    let mut sink = WavSink::new(BufWriter::new(out), rate)?;
    // The last frame may be padding past the end of the audio, so one hop is held back
    // until the end chunk says how many samples are real.
    let mut held: Vec<f32> = Vec::new();
    let mut written = 0u64;
    let mut damaged = 0u64;
    while let Some(chunk) = reader.next_chunk()? {
        check_interrupt()?;
        let samples = match chunk {
            Chunk::Codes(codes) => decoder.push(&codes)?,
            Chunk::Damaged { frames, error } => {
                eprintln!("tokenwave: warning: {error}; {frames} frames replaced by silence");
                damaged += 1;
                vec![0.0; frames as usize * hop]
            }
        };
        held.extend_from_slice(&samples);
        let ready = held.len().saturating_sub(hop);
        sink.write(&resampler.process(&held[..ready]))?;
        written += ready as u64;
        held.drain(..ready);
        bar.set_position(written / u64::from(model_rate));
    }
    let total = reader.total_samples().expect("the reader ends only at the end chunk");
    let last = (total - written) as usize;
    sink.write(&resampler.process(&held[..last]))?;
    sink.write(&resampler.finish())?;
    sink.finish()?;
    Ok(DecodeStats { samples: total, damaged_chunks: damaged, seconds_of_work: started.elapsed().as_secs_f64() })
}
