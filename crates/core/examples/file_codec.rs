//! Encodes a file to an in-memory `.tkw` stream with the library API, reads it back and
//! decodes it: what `tokenwave encode` and `decode` do, without the CLI.
//!
//! `cargo run --release --example file_codec -- samples/speech_cs.wav`

use std::io::Cursor;

use tokenwave_core::audio::AudioSource;
use tokenwave_core::{Chunk, Codec, Codes, CpuBackend, FrameLayout, TkwReader, TkwWriter, Weights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = std::env::args().nth(1).ok_or("usage: file_codec INPUT")?;
    let codec = Codec::<CpuBackend>::new(&Weights::embedded()?, Default::default())?;
    let config = codec.config();
    let mut source = AudioSource::open(input.as_ref(), config.sample_rate)?;
    let mut samples = Vec::new();
    while let Some(piece) = source.next_chunk()? {
        samples.extend(piece);
    }
    let layout = FrameLayout::neural(6);
    let codes = codec.encode(&samples, layout)?;
    let header = codec.tkw_header(layout, source.reader().sample_rate(), Some(samples.len() as u64));
    let mut writer = TkwWriter::new(Vec::new(), header)?;
    writer.write(&codes)?;
    let bytes = writer.finish(samples.len() as u64)?;
    println!("{} samples -> {} frames -> {} bytes", samples.len(), codes.frames(), bytes.len());

    let mut reader = TkwReader::open(Cursor::new(bytes))?;
    let mut read = Codes::empty(6);
    while let Some(chunk) = reader.next_chunk()? {
        if let Chunk::Codes(c) = chunk {
            read.extend(&c)?;
        }
    }
    let mut decoded = codec.decode(&read, layout)?;
    decoded.truncate(reader.total_samples().unwrap_or(0) as usize);
    println!("decoded {} samples", decoded.len());
    Ok(())
}
