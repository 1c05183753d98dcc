//! Streams a file through the codec 20 ms at a time, as a live pipeline would, and writes
//! what the decoder produced.
//!
//! `cargo run --release --example streaming -- samples/speech_nl.ogg streamed.wav`

use std::path::PathBuf;

use tokenwave_core::audio::{AudioSource, WavSink};
use tokenwave_core::{Codec, CpuBackend, Weights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: streaming INPUT OUTPUT.wav".into());
    };
    let codec = Codec::<CpuBackend>::new(&Weights::embedded()?, Default::default())?;
    let rate = codec.config().sample_rate;
    let mut source = AudioSource::open(input, rate)?;
    // 3 kbps, split as `tokenwave encode --kbps 3` splits it: neural stages and low band.
    let layout = codec.layout_for_kbps(3.0, None)?;
    let mut encoder = codec.stream_encoder(layout)?;
    let mut decoder = codec.stream_decoder(layout)?;
    let mut sink = WavSink::new(std::fs::File::create(output)?, rate)?;
    let mut frames = 0;
    while let Some(piece) = source.next_chunk()? {
        for block in piece.chunks(320) {
            let codes = encoder.push(block)?;
            frames += codes.frames();
            sink.write(&decoder.push(&codes)?)?;
        }
    }
    sink.write(&decoder.push(&encoder.flush())?)?;
    sink.finish()?;
    println!("{frames} frames of {} codes each ({layout})", encoder.codes_per_frame());
    Ok(())
}
