//! `tokenwave roundtrip IN OUT`: encode and decode in one go, to hear and measure the codec.

use std::io::Cursor;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;
use tokenwave_core::audio::AudioSource;

use super::decode::decode_to;
use super::encode::encode_to;
use super::output::Output;
use super::{Global, LayoutArgs, load_codec, progress, report};

#[derive(Args)]
pub struct RoundtripArgs {
    /// Input audio file, or `-` for stdin.
    input: PathBuf,
    /// Output WAV file, or `-` for stdout.
    output: PathBuf,
    #[command(flatten)]
    layout: LayoutArgs,
    /// Sample rate of the output WAV (default: the model's rate).
    #[arg(long = "rate", value_name = "HZ")]
    out_rate: Option<u32>,
}

pub fn run<B: Backend>(args: &RoundtripArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let layout = args.layout.layout(&codec)?;
    let source = AudioSource::open(&args.input, codec.config().sample_rate)?;
    let mut output = Output::create(&args.output)?;
    let bar = progress(global, source.declared_seconds());
    let mut stream = Cursor::new(Vec::new());
    let encoded = encode_to(&codec, source, layout, &mut stream, &bar)
        .with_context(|| format!("cannot encode {}", args.input.display()))?;
    stream.set_position(0);
    let out_rate = args.out_rate.unwrap_or(codec.config().sample_rate);
    let decoded = decode_to(&codec, stream, output.file(), out_rate, false, &bar)?;
    bar.finish_and_clear();
    output.commit()?;
    let rate = codec.config().sample_rate;
    let seconds = encoded.duration(rate);
    let (enc_rtf, dec_rtf) = (encoded.seconds_of_work / seconds, decoded.seconds_of_work / seconds);
    report(
        global,
        args.output.as_os_str() == "-",
        json!({
            "input": args.input, "output": args.output, "seconds": seconds, "stages": layout.stages,
            "low_band": layout.low_band_digits(), "source_rate": encoded.source_rate,
            "nominal_kbps": codec.config().bitrate(layout.codes_per_frame()) / 1000.0,
            "bytes": encoded.bytes, "real_kbps": encoded.real_kbps(rate),
            "encode_rtf": enc_rtf, "decode_rtf": dec_rtf, "rtf": enc_rtf + dec_rtf,
        }),
        format!(
            "{seconds:.2} s at {layout}: {:.3} kbps with container; real-time factor {:.4} (encode {enc_rtf:.4} + decode {dec_rtf:.4})",
            encoded.real_kbps(rate),
            enc_rtf + dec_rtf
        ),
    );
    Ok(())
}
