//! Codec speed, printed as figures (run with `cargo bench --bench codec`):
//! - offline encode + decode real-time factor on one thread and on all threads;
//! - streaming time per 20 ms frame (encode, decode), mean and p99, one thread;
//! - opusenc/opusdec on the same clip in the same run, and our RTF as a ratio to theirs.
//!
//! Input: the repository's real speech samples, resampled to 16 kHz and concatenated.
//! Model: the embedded default, or the weights file named by `TOKENWAVE_BENCH_MODEL` (to
//! compare two models' speed in one sitting).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tokenwave_core::audio::{AudioSource, WavSink};
use tokenwave_core::{Codec, CpuBackend, FrameLayout, Weights};

const STAGES: usize = 12;
const RUNS: usize = 3;

fn speech() -> Vec<f32> {
    let mut all = Vec::new();
    for name in ["speech_nl.ogg", "speech_cs.wav", "speech_nl2.mp3"] {
        let mut source = AudioSource::open(&Path::new("samples").join(name), 16_000).unwrap();
        while let Some(piece) = source.next_chunk().unwrap() {
            all.extend(piece);
        }
    }
    all
}

fn offline_rtf(codec: &Codec<CpuBackend>, samples: &[f32]) -> (f64, f64) {
    let seconds = samples.len() as f64 / 16_000.0;
    let (mut enc, mut dec) = (f64::MAX, f64::MAX);
    for _ in 0..RUNS {
        let t = Instant::now();
        let codes = codec.encode(samples, FrameLayout::neural(STAGES)).unwrap();
        enc = enc.min(t.elapsed().as_secs_f64() / seconds);
        let t = Instant::now();
        codec.decode(&codes, FrameLayout::neural(STAGES)).unwrap();
        dec = dec.min(t.elapsed().as_secs_f64() / seconds);
    }
    (enc, dec)
}

fn percentile(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(f64::total_cmp);
    times[((times.len() - 1) as f64 * p).round() as usize]
}

fn streaming(codec: &Codec<CpuBackend>, samples: &[f32]) {
    let mut encoder = codec.stream_encoder(FrameLayout::neural(STAGES)).unwrap();
    let mut decoder = codec.stream_decoder(FrameLayout::neural(STAGES)).unwrap();
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    for frame in samples.chunks_exact(320) {
        let t = Instant::now();
        let codes = encoder.push(frame).unwrap();
        enc.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        decoder.push(&codes).unwrap();
        dec.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for (name, times) in [("encode", &mut enc), ("decode", &mut dec)] {
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "streaming {name}, one 20 ms frame per call, 1 thread: mean {mean:.3} ms, p99 {:.3} ms over {} frames",
            percentile(times, 0.99),
            times.len()
        );
    }
}

/// Seconds opusenc + opusdec take on `wav`, best of [`RUNS`], at 6 kbps.
fn opus_seconds(wav: &Path) -> Option<(f64, f64)> {
    let dir = wav.parent().unwrap();
    let (opus, back) = (dir.join("bench.opus"), dir.join("bench_opus.wav"));
    let (mut enc, mut dec) = (f64::MAX, f64::MAX);
    for _ in 0..RUNS {
        let t = Instant::now();
        let ok = Command::new("opusenc").args(["--quiet", "--bitrate", "6"]).arg(wav).arg(&opus).status().ok()?;
        enc = enc.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let ok2 = Command::new("opusdec").args(["--quiet", "--rate", "16000"]).arg(&opus).arg(&back).status().ok()?;
        dec = dec.min(t.elapsed().as_secs_f64());
        if !ok.success() || !ok2.success() {
            return None;
        }
    }
    Some((enc, dec))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let weights = match std::env::var_os("TOKENWAVE_BENCH_MODEL") {
        Some(path) => Weights::from_file(Path::new(&path)).unwrap(),
        None => Weights::embedded().unwrap(),
    };
    println!("model: {} decoder blocks", weights.config().decoder.blocks);
    let codec = Codec::<CpuBackend>::new(&weights, Default::default()).unwrap();
    let clip = speech();
    let samples: Vec<f32> = clip.iter().cycle().take(30 * 16_000).copied().collect();
    let seconds = samples.len() as f64 / 16_000.0;
    println!(
        "input: {seconds:.1} s of real speech at 16 kHz, {STAGES} stages ({} kbps)",
        codec.config().bitrate(STAGES) / 1000.0
    );

    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (enc1, dec1) = one.install(|| offline_rtf(&codec, &samples));
    println!("offline, 1 thread:    encode RTF {enc1:.4}, decode RTF {dec1:.4}, total {:.4}", enc1 + dec1);
    let (enc_all, dec_all) = offline_rtf(&codec, &samples);
    println!(
        "offline, {} threads:   encode RTF {enc_all:.4}, decode RTF {dec_all:.4}, total {:.4}",
        rayon::current_num_threads(),
        enc_all + dec_all
    );
    one.install(|| streaming(&codec, &samples[..10 * 16_000]));

    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("bench.wav");
    let mut sink = WavSink::new(std::fs::File::create(&wav).unwrap(), 16_000).unwrap();
    sink.write(&samples).unwrap();
    sink.finish().unwrap();
    match opus_seconds(&wav) {
        Some((enc, dec)) => {
            let (oe, od) = (enc / seconds, dec / seconds);
            println!(
                "opusenc 6 kbps + opusdec (whole processes, 1 thread): encode RTF {oe:.4}, decode RTF {od:.4}, total {:.4}",
                oe + od
            );
            println!(
                "ratio tokenwave(1 thread) / opus: encode {:.2}x, decode {:.2}x, total {:.2}x",
                enc1 / oe,
                dec1 / od,
                (enc1 + dec1) / (oe + od)
            );
        }
        None => println!("opusenc/opusdec not found: install Debian's opus-tools for the comparison"),
    }
}
