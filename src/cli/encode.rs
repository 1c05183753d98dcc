//! `tokenwave encode IN OUT`: audio file to `.tkw`.

use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;
use tokenwave_core::FrameLayout;
use tokenwave_core::audio::AudioSource;
use tokenwave_core::bitstream::{TkwWriter, container};
use tokenwave_core::{Codec, Codes};

use super::output::Output;
use super::{Global, LayoutArgs, check_interrupt, load_codec, progress, report};

/// Samples handed to the model at once when encoding files (2 s at 16 kHz): big enough to
/// keep the model efficient, small enough to keep memory flat.
const BATCH_SAMPLES: usize = 32_000;

#[derive(Args)]
pub struct EncodeArgs {
    /// Input audio file, or `-` for stdin.
    input: PathBuf,
    /// Output .tkw file, or `-` for stdout.
    output: PathBuf,
    #[command(flatten)]
    layout: LayoutArgs,
}

/// What one encode did.
pub struct EncodeStats {
    pub samples: u64,
    pub bytes: u64,
    pub source_rate: u32,
    pub seconds_of_work: f64,
}

impl EncodeStats {
    pub fn duration(&self, rate: u32) -> f64 {
        self.samples as f64 / f64::from(rate)
    }

    pub fn real_kbps(&self, rate: u32) -> f64 {
        self.bytes as f64 * 8.0 / self.duration(rate) / 1000.0
    }
}

pub fn run<B: Backend>(args: &EncodeArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let layout = args.layout.layout(&codec)?;
    let source = AudioSource::open(&args.input, codec.config().sample_rate)?;
    let mut output = Output::create(&args.output)?;
    let bar = progress(global, source.declared_seconds());
    let stats = encode_to(&codec, source, layout, output.file(), &bar)
        .with_context(|| format!("cannot encode {}", args.input.display()))?;
    bar.finish_and_clear();
    output.commit()?;
    let rate = codec.config().sample_rate;
    let seconds = stats.duration(rate);
    report(
        global,
        args.output == Path::new("-"),
        json!({
            "input": args.input, "output": args.output, "seconds": seconds, "stages": layout.stages,
            "low_band": layout.low_band_digits(),
            "nominal_kbps": codec.config().bitrate(layout.codes_per_frame()) / 1000.0, "bytes": stats.bytes,
            "real_kbps": stats.real_kbps(rate), "rtf": stats.seconds_of_work / seconds,
            "model_id": codec.model_id().to_string(),
        }),
        format!(
            "encoded {:.2} s at {}: {} bytes, {:.3} kbps with container, {:.1}x real time",
            seconds,
            layout,
            stats.bytes,
            stats.real_kbps(rate),
            seconds / stats.seconds_of_work
        ),
    );
    Ok(())
}

/// Encodes all of `source` into a `.tkw` stream on `out`; a seekable `out` also gets the
/// exact length in its header.
pub fn encode_to<B: Backend, W: Write + Seek>(
    codec: &Codec<B>,
    mut source: AudioSource,
    layout: FrameLayout,
    out: W,
    bar: &ProgressBar,
) -> Result<EncodeStats> {
    let started = Instant::now();
    let config = codec.config();
    let mut header = codec.tkw_header(layout, source.reader().sample_rate(), None);
    let mut writer = TkwWriter::new(BufWriter::new(out), header.clone())?;
    let samples = encode_source(codec, &mut source, layout, |codes, samples_in| {
        bar.set_position(samples_in / u64::from(config.sample_rate));
        Ok(writer.write(codes)?)
    })?;
    let mut out = writer.finish(samples)?;
    header.original_samples = Some(samples);
    container::rewrite_header(&mut out, &header)?;
    out.flush()?;
    let bytes = out.stream_position()?;
    Ok(EncodeStats {
        samples,
        bytes,
        source_rate: header.source_rate,
        seconds_of_work: started.elapsed().as_secs_f64(),
    })
}

/// Runs all of `source` through a streaming encoder of `layout` in [`BATCH_SAMPLES`]
/// pieces, handing each piece's codes (and the samples consumed so far) to `emit`; returns the number of
/// samples encoded. An input without samples is an error.
pub fn encode_source<B: Backend>(
    codec: &Codec<B>,
    source: &mut AudioSource,
    layout: FrameLayout,
    mut emit: impl FnMut(&Codes, u64) -> Result<()>,
) -> Result<u64> {
    let mut encoder = codec.stream_encoder(layout)?;
    let mut batch = Vec::with_capacity(BATCH_SAMPLES);
    while let Some(piece) = source.next_chunk()? {
        check_interrupt()?;
        batch.extend_from_slice(&piece);
        if batch.len() >= BATCH_SAMPLES {
            emit(&encoder.push(&batch)?, encoder.samples_in())?;
            batch.clear();
        }
    }
    emit(&encoder.push(&batch)?, encoder.samples_in())?;
    let samples = encoder.samples_in();
    if samples == 0 {
        bail!("the input contains no audio samples");
    }
    emit(&encoder.flush(), samples)?;
    Ok(samples)
}
