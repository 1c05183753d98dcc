//! Helpers shared by the integration tests: running the binary, temporary paths, WAV files
//! in and out, key files, and the one-line refusals every bad input must give.

// Cargo compiles this module into every test binary (`mod common;`), and no binary uses all
// of it: what one leaves unused is not dead.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The `tokenwave` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tokenwave");

/// The speech clip most tests code: 8.70 s of Dutch, Ogg Vorbis at 48 kHz.
pub const SPEECH: &str = "samples/speech_nl.ogg";

/// Runs `tokenwave ARGS` to completion, with nothing on stdin.
pub fn tokenwave(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("binary runs")
}

/// `out`, after asserting that its command succeeded.
pub fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `name` inside `dir`, as a string to pass on a command line.
pub fn path(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_string()
}

/// A new key made by `tokenwave keygen` at `name` in `dir`; returns its path.
pub fn key_file(dir: &TempDir, name: &str) -> String {
    let path = path(dir, name);
    let out = tokenwave(&["keygen", &path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

/// A valid .tkw of `stages` stages (samples/speech_cs.wav) and the directory it is in, as
/// `good.tkw`.
pub fn encoded(stages: &str) -> (TempDir, String) {
    let dir = TempDir::new().unwrap();
    let tkw = path(&dir, "good.tkw");
    assert!(tokenwave(&["encode", "samples/speech_cs.wav", &tkw, "--codebooks", stages, "-q"]).status.success());
    (dir, tkw)
}

/// Writes `seconds` of 16-bit tones (220 Hz, 40 Hz higher on each further channel) at
/// `rate` Hz in `channels` channels.
pub fn write_wav(path: &str, rate: u32, channels: u16, seconds: f32) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (rate as f32 * seconds) as usize;
    for i in 0..n {
        for c in 0..channels {
            let t = i as f32 / rate as f32;
            let s = 0.3 * (2.0 * std::f32::consts::PI * (220.0 + 40.0 * c as f32) * t).sin();
            w.write_sample((s * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A WAV file's sample rate and its number of samples (all channels).
pub fn wav_len(path: &str) -> (u32, u32) {
    let r = hound::WavReader::open(path).unwrap();
    (r.spec().sample_rate, r.len())
}

/// A 16-bit WAV file's samples.
pub fn pcm(path: impl AsRef<Path>) -> Vec<i16> {
    hound::WavReader::open(path).unwrap().into_samples::<i16>().map(Result::unwrap).collect()
}

/// A 16-bit WAV file's samples, scaled to -1..1.
pub fn pcm_f32(path: impl AsRef<Path>) -> Vec<f32> {
    pcm(path).into_iter().map(|s| f32::from(s) / 32768.0).collect()
}

/// Asserts that a command failed with one line of error that mentions `needle`; returns
/// that line.
pub fn assert_one_line_error(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected, got: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    stderr
}

/// The command failed with one clear line naming `needle`, did not panic, and left no files
/// in `dir` other than `allowed`.
pub fn assert_clean_failure(out: &Output, needle: &str, dir: &TempDir, allowed: &[&str]) {
    let stderr = assert_one_line_error(out, needle);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let mut left: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.retain(|name| !allowed.contains(&name.as_str()));
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// One stderr line naming `needle`, a non-zero exit, and no file `target`.
pub fn assert_refused(out: &Output, needle: &str, target: &str) {
    assert_one_line_error(out, needle);
    assert!(!Path::new(target).exists(), "{target} was written");
}

/// A small untrained model whose decoder has a harmonic source, so its layouts carry pitch,
/// saved in `dir` (returns its path): the shipped model has none yet.
pub fn pitch_model(dir: &TempDir) -> std::path::PathBuf {
    use tokenwave_core::model::{ConvNextConfig, HarmonicSourceConfig, Model, ModelConfig, weights};
    let stack = ConvNextConfig { dim: 32, hidden: 64, blocks: 1, kernel: 3 };
    let config = ModelConfig {
        latent_dim: 16,
        codebook_size: 64,
        max_stages: 4,
        encoder: stack.clone(),
        decoder: stack,
        harmonic_source: Some(HarmonicSourceConfig { bands: 17 }),
        ..Default::default()
    };
    let model = Model::<tokenwave_core::CpuBackend>::new(&config, &Default::default());
    let path = dir.path().join("pitch-model.safetensors");
    weights::save(&model, &config, &path).unwrap();
    path
}
