//! The pitch tracker on a real recording: one line per 20 ms frame, `frame f0_hz voiced
//! periodicity` (f0 is 0 when unvoiced). scripts/pitch-vs-pyin.py compares it with
//! librosa's pYIN.
//!
//! Usage: cargo run --release -p tokenwave-core --example pitch_track -- FILE

use std::io::Write;

use tokenwave_core::audio::AudioSource;
use tokenwave_core::pitch::PitchTracker;

const RATE: u32 = 16_000;
const HOP: usize = 320;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: pitch_track FILE (any format tokenwave reads)")?;
    let mut source = AudioSource::open(path.as_ref(), RATE)?;
    let mut tracker = PitchTracker::new(RATE, HOP);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut frame = 0;
    while let Some(piece) = source.next_chunk()? {
        for p in tracker.push(&piece) {
            writeln!(out, "{frame} {:.3} {} {:.4}", p.f0_hz, u8::from(p.voiced), p.periodicity)?;
            frame += 1;
        }
    }
    Ok(())
}
