//! The command line as a user runs it: every job end to end, and every bad input giving one
//! clear line, a non-zero exit, and no output file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwave");

fn tokenwave(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("binary runs")
}

fn path(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_string()
}

/// The command failed with one clear line naming `needle`, and left no files in `dir`
/// other than `allowed`.
fn assert_clean_failure(out: &Output, needle: &str, dir: &TempDir, allowed: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected, got: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let mut left: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.retain(|name| !allowed.contains(&name.as_str()));
    assert!(left.is_empty(), "files left behind: {left:?}");
}

fn write_wav(path: &str, rate: u32, channels: u16, seconds: f32) {
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

fn wav_len(path: &str) -> (u32, u32) {
    let r = hound::WavReader::open(path).unwrap();
    (r.spec().sample_rate, r.len())
}

#[test]
fn encode_decode_every_sample_format() {
    let dir = TempDir::new().unwrap();
    for (sample, seconds) in
        [("speech_nl.ogg", 8.706), ("speech_nl2.mp3", 8.68), ("speech_cs.wav", 4.505), ("music.flac", 8.0)]
    {
        let tkw = path(&dir, "a.tkw");
        let wav = path(&dir, "a.wav");
        let input = format!("samples/{sample}");
        let out = tokenwave(&["encode", &input, &tkw, "--kbps", "3", "--quiet"]);
        assert!(out.status.success(), "{sample}: {}", String::from_utf8_lossy(&out.stderr));
        let out = tokenwave(&["decode", &tkw, &wav, "--quiet"]);
        assert!(out.status.success(), "{sample}: {}", String::from_utf8_lossy(&out.stderr));
        let (rate, len) = wav_len(&wav);
        assert_eq!(rate, 16_000);
        let expected = seconds * 16_000.0;
        assert!((len as f32 - expected).abs() < 0.06 * 16_000.0, "{sample}: {len} samples, expected ~{expected}");
    }
}

#[test]
fn pipes_through_stdin_and_stdout() {
    let dir = TempDir::new().unwrap();
    let wav = path(&dir, "piped.wav");
    let script = format!("cat samples/music.flac | {BIN} encode - - | {BIN} decode - {wav}");
    let status = Command::new("sh").arg("-c").arg(&script).status().unwrap();
    assert!(status.success());
    assert_eq!(wav_len(&wav), (16_000, 128_000));
}

#[test]
fn decode_rate_and_json_stats() {
    let dir = TempDir::new().unwrap();
    let tkw = path(&dir, "a.tkw");
    let wav = path(&dir, "a.wav");
    assert!(tokenwave(&["encode", "samples/speech_cs.wav", &tkw, "--codebooks", "12", "-q"]).status.success());
    let out = tokenwave(&["decode", &tkw, &wav, "--rate", "48000", "--json"]);
    assert!(out.status.success());
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["rate"], 48_000);
    let (rate, len) = wav_len(&wav);
    assert_eq!(rate, 48_000);
    assert!((len as i64 - (99_328 * 48_000 / 22_050)).abs() <= 3, "{len}");

    let out = tokenwave(&["info", &tkw, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["stages"], 12);
    assert_eq!(info["source_rate"], 22_050);
    assert_eq!(info["matches_loaded_model"], true);
    let real = info["real_kbps"].as_f64().unwrap();
    assert!(real > 6.0 && real < 6.2, "12 stages = 6 kbps of codes plus container, got {real}");
    let human = tokenwave(&["info", &tkw]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("real rate:"));
}

#[test]
fn roundtrip_reports_bitrate_and_speed() {
    let dir = TempDir::new().unwrap();
    let wav = path(&dir, "rt.wav");
    let out = tokenwave(&["roundtrip", "samples/speech_nl.ogg", &wav, "--kbps", "1.5", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["stages"], 3);
    let kbps = stats["real_kbps"].as_f64().unwrap();
    assert!(kbps > 1.5 && kbps < 1.6, "{kbps}");
    assert!(stats["rtf"].as_f64().unwrap() > 0.0);
    assert!(Path::new(&wav).exists());
}

#[test]
fn unusual_rates_and_channel_counts_work() {
    let dir = TempDir::new().unwrap();
    for (rate, channels) in [(8_000, 1), (192_000, 2), (48_000, 8)] {
        let input = path(&dir, "in.wav");
        write_wav(&input, rate, channels, 1.5);
        let wav = path(&dir, "out.wav");
        let out = tokenwave(&["roundtrip", &input, &wav, "-q"]);
        assert!(out.status.success(), "{rate} Hz x{channels}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(wav_len(&wav), (16_000, 24_000), "{rate} Hz x{channels}");
    }
}

#[test]
fn bad_audio_inputs_fail_cleanly() {
    let dir = TempDir::new().unwrap();
    let out_path = path(&dir, "out.tkw");
    let missing = tokenwave(&["encode", &path(&dir, "nope.wav"), &out_path]);
    assert_clean_failure(&missing, "No such file", &dir, &[]);

    let sub = path(&dir, "sub");
    fs::create_dir(&sub).unwrap();
    assert_clean_failure(&tokenwave(&["encode", &sub, &out_path]), "is a directory", &dir, &["sub"]);

    let empty = path(&dir, "empty.wav");
    fs::write(&empty, b"").unwrap();
    assert_clean_failure(&tokenwave(&["encode", &empty, &out_path]), "empty", &dir, &["sub", "empty.wav"]);

    let random = path(&dir, "random.wav");
    fs::write(&random, (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>()).unwrap();
    let keep = ["sub", "empty.wav", "random.wav"];
    assert_clean_failure(&tokenwave(&["encode", &random, &out_path]), "not a recognised audio format", &dir, &keep);

    let good = path(&dir, "good.wav");
    write_wav(&good, 16_000, 1, 1.0);
    let bytes = fs::read(&good).unwrap();
    let truncated = path(&dir, "truncated.wav");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let keep = ["sub", "empty.wav", "random.wav", "good.wav", "truncated.wav"];
    assert_clean_failure(&tokenwave(&["encode", &truncated, &out_path]), "truncated", &dir, &keep);

    let silent = path(&dir, "zero.wav");
    write_wav(&silent, 16_000, 1, 0.0);
    let keep = ["sub", "empty.wav", "random.wav", "good.wav", "truncated.wav", "zero.wav"];
    assert_clean_failure(&tokenwave(&["encode", &silent, &out_path]), "no audio samples", &dir, &keep);

    let nan = path(&dir, "nan.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&nan, spec).unwrap();
    for i in 0..16_000 {
        w.write_sample(if i == 5_000 { f32::NAN } else { 0.1 }).unwrap();
    }
    w.finalize().unwrap();
    let keep = ["sub", "empty.wav", "random.wav", "good.wav", "truncated.wav", "zero.wav", "nan.wav"];
    assert_clean_failure(&tokenwave(&["encode", &nan, &out_path]), "sample 5000 is not a finite number", &dir, &keep);

    let gsm = path(&dir, "gsm.wav");
    let mut header = bytes[..44].to_vec();
    header[20..22].copy_from_slice(&0x0031u16.to_le_bytes());
    header.extend_from_slice(&[0u8; 3000]);
    fs::write(&gsm, header).unwrap();
    let keep = ["sub", "empty.wav", "random.wav", "good.wav", "truncated.wav", "zero.wav", "nan.wav", "gsm.wav"];
    let out = tokenwave(&["encode", &gsm, &out_path]);
    assert_clean_failure(&out, "not supported", &dir, &keep);

    let nowhere = path(&dir, "no/such/dir/out.tkw");
    assert_clean_failure(&tokenwave(&["encode", &good, &nowhere]), "does not exist", &dir, &keep);
}

/// A valid .tkw and the directory it is in.
fn encoded(stages: &str) -> (TempDir, String) {
    let dir = TempDir::new().unwrap();
    let tkw = path(&dir, "good.tkw");
    assert!(tokenwave(&["encode", "samples/speech_cs.wav", &tkw, "--codebooks", stages, "-q"]).status.success());
    (dir, tkw)
}

fn fix_header_crc(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[..48]);
    bytes[48..52].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn bad_tkw_inputs_fail_cleanly() {
    let (dir, tkw) = encoded("4");
    let good = fs::read(&tkw).unwrap();
    let wav = path(&dir, "out.wav");
    let bad = path(&dir, "bad.tkw");
    let keep = ["good.tkw", "bad.tkw"];
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage)> = vec![
        ("wrong magic", Box::new(|b: &mut Vec<u8>| b[..4].copy_from_slice(b"RIFF"))),
        ("unknown container version 7", Box::new(|b: &mut Vec<u8>| b[4] = 7)),
        ("chunk 0 (byte offset 52) is damaged: CRC mismatch", Box::new(|b: &mut Vec<u8>| b[100] ^= 0x20)),
        ("truncated", Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 30))),
        (
            "length fields are corrupt",
            Box::new(|b: &mut Vec<u8>| b[52..56].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes())),
        ),
        (
            "13 stages but the model only 12",
            Box::new(|b: &mut Vec<u8>| {
                b[6] = 13;
                fix_header_crc(b)
            }),
        ),
        (
            "was encoded with model",
            Box::new(|b: &mut Vec<u8>| {
                b[8] ^= 1;
                fix_header_crc(b)
            }),
        ),
        ("too short", Box::new(|b: &mut Vec<u8>| b.truncate(10))),
        (
            "9 low-band codes per frame",
            Box::new(|b: &mut Vec<u8>| {
                b[5] = 9;
                fix_header_crc(b)
            }),
        ),
        (
            "length fields are corrupt",
            Box::new(|b: &mut Vec<u8>| {
                b[5] = 3;
                fix_header_crc(b)
            }),
        ),
    ];
    for (needle, damage) in cases {
        let mut bytes = good.clone();
        damage(&mut bytes);
        fs::write(&bad, &bytes).unwrap();
        assert_clean_failure(&tokenwave(&["decode", &bad, &wav]), needle, &dir, &keep);
    }
    assert_clean_failure(&tokenwave(&["decode", dir.path().to_str().unwrap(), &wav]), "is a directory", &dir, &keep);
    assert_clean_failure(&tokenwave(&["decode", "samples/speech_cs.wav", &wav]), "wrong magic", &dir, &keep);

    let mut flipped = good.clone();
    flipped[100] ^= 0x20;
    fs::write(&bad, &flipped).unwrap();
    let out = tokenwave(&["decode", &bad, &wav, "--skip-damaged", "-q"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replaced by silence"));
    assert_eq!(wav_len(&wav).1, 99_328 * 16_000 / 22_050 + 1);
}

#[test]
fn the_low_band_travels_in_the_file_and_decodes_to_the_input_length() {
    let dir = TempDir::new().unwrap();
    let (plain, hybrid) = (path(&dir, "plain.tkw"), path(&dir, "hybrid.tkw"));
    let input = "samples/speech_cs.wav";
    assert!(tokenwave(&["encode", input, &plain, "--codebooks", "3", "-q"]).status.success());
    assert!(tokenwave(&["encode", input, &hybrid, "--codebooks", "3", "--low-band", "4", "-q"]).status.success());
    let info = tokenwave(&["info", &hybrid, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!((info["stages"].as_u64(), info["low_band"].as_u64()), (Some(3), Some(4)));
    assert!((info["nominal_kbps"].as_f64().unwrap() - 3.5).abs() < 1e-9, "{info}");
    let plain_info: serde_json::Value = serde_json::from_slice(&tokenwave(&["info", &plain, "--json"]).stdout).unwrap();
    assert_eq!(info["frames"].as_u64().unwrap(), plain_info["frames"].as_u64().unwrap() + 1, "one frame more");
    let (plain_wav, hybrid_wav) = (path(&dir, "plain.wav"), path(&dir, "hybrid.wav"));
    assert!(tokenwave(&["decode", &plain, &plain_wav, "-q"]).status.success());
    assert!(tokenwave(&["decode", &hybrid, &hybrid_wav, "-q"]).status.success());
    assert_eq!(wav_len(&hybrid_wav), wav_len(&plain_wav));
    let out = tokenwave(&["roundtrip", input, &path(&dir, "rt.wav"), "--codebooks", "3", "--low-band", "4", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["low_band"].as_u64(), Some(4));
    assert!((report["nominal_kbps"].as_f64().unwrap() - 3.5).abs() < 1e-9, "{report}");
    assert_eq!(info["version"].as_u64(), Some(3));
}

#[test]
fn kbps_is_the_whole_bitrate_split_as_the_ladder_says_unless_told() {
    let dir = TempDir::new().unwrap();
    let input = "samples/speech_cs.wav";
    let layout = |args: &[&str]| {
        let out = tokenwave(&[&["encode", input, &path(&dir, "x.tkw"), "--json"], args].concat());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let nominal = report["nominal_kbps"].as_f64().unwrap();
        (report["stages"].as_u64().unwrap(), report["low_band"].as_u64().unwrap(), nominal)
    };
    assert_eq!(layout(&["--kbps", "1.5"]), (3, 0, 1.5));
    assert_eq!(layout(&["--kbps", "6"]), (5, 7, 6.0));
    assert_eq!(layout(&["--kbps", "6", "--low-band", "0"]), (12, 0, 6.0));
    assert_eq!(layout(&["--kbps", "6", "--low-band", "4"]), (8, 4, 6.0));
    assert_eq!(layout(&["--codebooks", "2", "--low-band", "3"]), (2, 3, 2.5));
    assert_eq!(layout(&[]), (3, 3, 3.0), "the default: 3 kbps");
}

#[test]
fn a_stream_from_another_model_is_refused() {
    let (dir, _) = encoded("2");
    let other = path(&dir, "other.safetensors");
    assert!(tokenwave(&["init-model", &other, "--seed", "99"]).status.success());
    let tkw = path(&dir, "other.tkw");
    assert!(tokenwave(&["encode", "samples/speech_cs.wav", &tkw, "--model", &other, "-q"]).status.success());
    let out = tokenwave(&["decode", &tkw, &path(&dir, "x.wav")]);
    assert_clean_failure(&out, "decode with the same model", &dir, &["good.tkw", "other.safetensors", "other.tkw"]);
    let out = tokenwave(&["decode", &tkw, &path(&dir, "x.wav"), "--model", &other, "-q"]);
    assert!(out.status.success());
}

#[test]
fn bad_arguments_fail_cleanly() {
    let dir = TempDir::new().unwrap();
    let out_path = path(&dir, "o.tkw");
    let out = tokenwave(&["encode", "samples/speech_cs.wav", &out_path, "--kbps", "40"]);
    assert_clean_failure(&out, "more than this model codes", &dir, &[]);
    let out = tokenwave(&["encode", "samples/speech_cs.wav", &out_path, "--kbps", "2", "--low-band", "4"]);
    assert_clean_failure(&out, "leaves nothing for the neural stages", &dir, &[]);
    let out = tokenwave(&["encode", "samples/speech_cs.wav", &out_path, "--codebooks", "0"]);
    assert_clean_failure(&out, "quantizer stages", &dir, &[]);
    for digits in ["1", "9"] {
        let out = tokenwave(&["encode", "samples/speech_cs.wav", &out_path, "--low-band", digits]);
        assert_clean_failure(&out, "the low band takes 2 to 8 codes per frame", &dir, &[]);
    }
    let bogus = path(&dir, "bogus.safetensors");
    fs::write(&bogus, b"not weights").unwrap();
    let out = tokenwave(&["encode", "samples/speech_cs.wav", &out_path, "--model", &bogus]);
    assert_clean_failure(&out, "not a safetensors file", &dir, &["bogus.safetensors"]);
    let run = path(&dir, "run");
    for (flag, value, message) in [
        ("--loss-floor", "2", "--loss-floor must be"),
        ("--phase-loss", "-1", "--phase-loss must be"),
        ("--stoi-loss", "-1", "--stoi-loss must be"),
        ("--adversarial", "-1", "--adversarial must be"),
        ("--adversarial", "NaN", "--adversarial must be"),
        ("--workers", "0", "--workers must be between 1 and --batch (8)"),
        ("--workers", "9", "--workers must be between 1 and --batch (8)"),
    ] {
        let out = tokenwave(&["train", "--data", "samples", "--out", &run, flag, value]);
        assert_clean_failure(&out, message, &dir, &["bogus.safetensors"]);
    }
}

#[test]
fn ctrl_c_during_encode_leaves_nothing() {
    let dir = TempDir::new().unwrap();
    let input = path(&dir, "long.wav");
    write_wav(&input, 16_000, 1, 600.0);
    let output: PathBuf = dir.path().join("long.tkw");
    let mut child =
        Command::new(BIN).args(["encode", &input, output.to_str().unwrap()]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "a 10-minute file should still be encoding");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("long.wav")]);
}

#[test]
fn a_reader_that_stops_reading_ends_the_program_quietly() {
    let (dir, tkw) = encoded("2");
    // The pipe's far end is closed before tokenwave writes (it loads the model first), as
    // when `tokenwave info x.tkw | head -c 0` exits at once.
    let mut child =
        Command::new(BIN).args(["info", &tkw]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{:?}: {stderr}", out.status);
    drop(dir);
}
