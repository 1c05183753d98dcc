//! `tokenwave info FILE`: what a `.tkw` file holds, checked chunk by chunk.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use tokenwave_core::ModelId;
use tokenwave_core::bitstream::{Chunk, TkwReader};

use super::decode::open_input;
use super::{Global, load_weights};

#[derive(Args)]
pub struct InfoArgs {
    /// A .tkw file, or `-` for stdin.
    input: PathBuf,
}

pub fn run(args: &InfoArgs, global: &Global) -> Result<()> {
    let mut reader = TkwReader::open(open_input(&args.input)?)
        .with_context(|| format!("cannot read {}", args.input.display()))?
        .skip_damaged(true);
    let mut chunks = 0u64;
    let mut damaged = 0u64;
    while let Some(chunk) = reader.next_chunk().with_context(|| format!("cannot read {}", args.input.display()))? {
        chunks += 1;
        if matches!(chunk, Chunk::Damaged { .. }) {
            damaged += 1;
        }
    }
    let header = reader.header().clone();
    let samples = reader.total_samples().expect("reader ends at the end chunk");
    let seconds = samples as f64 / f64::from(header.sample_rate);
    let bytes = reader.bytes();
    let frame_rate = f64::from(header.sample_rate) / f64::from(header.hop);
    let nominal_kbps = frame_rate * header.codes_per_frame() as f64 * f64::from(header.bits_per_code) / 1000.0;
    let real_kbps = if seconds > 0.0 { bytes as f64 * 8.0 / seconds / 1000.0 } else { 0.0 };
    let model_id = ModelId(header.model_id);
    let loaded = load_weights(global).map(|w| w.id() == model_id).unwrap_or(false);
    if global.json {
        outln!(
            "{}",
            json!({
                "file": args.input, "version": header.version, "model_id": model_id.to_string(), "matches_loaded_model": loaded,
                "sample_rate": header.sample_rate, "hop": header.hop, "frame_rate": frame_rate,
                "stages": header.stages, "low_band": header.low_band, "bits_per_code": header.bits_per_code,
                "source_rate": header.source_rate, "samples": samples, "seconds": seconds,
                "frames": reader.frames(), "chunks": chunks, "damaged_chunks": damaged, "bytes": bytes,
                "nominal_kbps": nominal_kbps, "real_kbps": real_kbps,
            })
        );
    } else {
        outln!("file:        {} (.tkw version {})", args.input.display(), header.version);
        outln!("model id:    {model_id}{}", if loaded { " (the loaded model)" } else { " (NOT the loaded model)" });
        outln!(
            "audio:       {} Hz mono (source was {} Hz), {:.3} s, {samples} samples",
            header.sample_rate,
            header.source_rate,
            seconds
        );
        outln!("frames:      {} of {} samples ({frame_rate} frames/s)", reader.frames(), header.hop);
        let low_band = match header.low_band {
            0 => String::new(),
            n => format!(" + {n} low-band"),
        };
        outln!(
            "codes:       {} stages{low_band} x {} bits = {nominal_kbps:.3} kbps",
            header.stages,
            header.bits_per_code
        );
        outln!("size:        {bytes} bytes in {chunks} chunks ({damaged} damaged)");
        outln!("real rate:   {real_kbps:.3} kbps including the container");
    }
    Ok(())
}
