//! The TTS / speech-LM loop with the library API: audio → tokens (saved as .npy with its
//! metadata, as `tokenwave tokens export` does) → a "model" edits the tokens → audio.
//!
//! The pretend model keeps the first second as a prompt and continues it by repeating the
//! prompt's frames backwards — a stand-in for a generator that emits new codes.
//!
//! `cargo run --release --example tts_tokens -- samples/speech_nl.ogg continued.wav`

use std::fs::File;
use std::io::BufWriter;

use tokenwave_core::audio::{AudioSource, WavSink};
use tokenwave_core::tokens::{Layout, TokenFormat, TokenMeta, Tokens, npy_metadata_path};
use tokenwave_core::{Codec, Codes, CpuBackend, FrameLayout, Weights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (input, output) = match (args.next(), args.next()) {
        (Some(i), Some(o)) => (i, o),
        _ => return Err("usage: tts_tokens INPUT OUTPUT.wav".into()),
    };
    let codec = Codec::<CpuBackend>::new(&Weights::embedded()?, Default::default())?;
    let config = codec.config().clone();
    let mut source = AudioSource::open(input.as_ref(), config.sample_rate)?;
    let mut samples = Vec::new();
    while let Some(piece) = source.next_chunk()? {
        samples.extend(piece);
    }

    // Audio to tokens, and the file a training pipeline would read with numpy.
    let stages = 6;
    let codes = codec.encode(&samples, FrameLayout::neural(stages))?;
    let meta = TokenMeta::new(&config, codec.model_id(), (stages, false), Layout::Stages, Some(samples.len() as u64));
    let tokens = Tokens { meta, codes };
    let npy = std::path::Path::new(&output).with_extension("npy");
    tokens.write(TokenFormat::Npy, &mut BufWriter::new(File::create(&npy)?))?;
    std::fs::write(npy_metadata_path(&npy), tokens.meta_json())?;
    println!("{} frames x {stages} stages -> {} (+ metadata)", tokens.codes.frames(), npy.display());

    // The "model": a one-second prompt, continued for one more second.
    let prompt_frames = (config.frame_rate() as usize).min(tokens.codes.frames());
    let mut generated = tokens.codes.slice_frames(0, prompt_frames);
    for frame in (0..prompt_frames).rev() {
        generated.extend(&Codes::from_frame_major(stages, tokens.codes.frame(frame).to_vec())?)?;
    }

    // Tokens back to audio.
    let audio = codec.decode(&generated, FrameLayout::neural(stages))?;
    let mut wav = WavSink::new(BufWriter::new(File::create(&output)?), config.sample_rate)?;
    wav.write(&audio)?;
    wav.finish()?;
    println!(
        "{} generated frames -> {:.2} s of audio in {output}",
        generated.frames(),
        audio.len() as f64 / f64::from(config.sample_rate)
    );
    Ok(())
}
