//! `tokenwave tokens info [--kbps K] [--json]`: the codes' conventions for an LM trainer.

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use tokenwave_core::FrameLayout;
use tokenwave_core::lm::CodecInfo;

use super::super::{Global, RateArgs, load_codec};

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    rate: RateArgs,
}

/// Prints the [`CodecInfo`] of the tokens `tokens export` makes with the same rate options:
/// as one JSON object with `--json` (a `codec_info.json` for codec-bpe), else as a few lines.
pub fn run<B: Backend>(args: &InfoArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let layout = FrameLayout::neural(args.rate.stages(&codec)?);
    let info = CodecInfo::new(codec.config(), codec.model_id(), layout);
    if global.json {
        outln!("{}", info.to_json());
        return Ok(());
    }
    let offsets: Vec<String> = info.offsets.iter().map(ToString::to_string).collect();
    let specials: Vec<String> = info.special_tokens.iter().map(|(name, id)| format!("{name} {id}")).collect();
    outln!("model        {}", info.codec_model);
    outln!("audio        {} Hz, {} frames/s ({} samples per frame)", info.sampling_rate, info.framerate, info.hop);
    outln!("grid         {} rows ({}) of codes 0..{}", info.num_codebooks, info.rows.join(", "), info.codebook_size);
    outln!("flat offsets {}", offsets.join(", "));
    outln!("specials     {}; vocabulary {}", specials.join(", "), info.vocab_size);
    outln!("delay pad    {}", info.delay_pad);
    Ok(())
}
