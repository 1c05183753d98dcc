//! Files: the .tkw container (round trips and every kind of damage its reader must catch),
//! the file commands end to end (encode, decode, roundtrip, info, pipes, Ctrl-C), and the
//! bytes and samples of release 0.1 reproduced.

mod common;

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokenwave_core::bitstream::{Chunk, Header, TkwReader, TkwWriter, container};
use tokenwave_core::{Codes, Error};

use common::{BIN, SPEECH, assert_clean_failure, encoded, ok, path, tokenwave, wav_len, write_wav};

// The container, through the library.

fn header(stages: u8) -> Header {
    Header {
        version: container::VERSION,
        model_id: [7; 16],
        sample_rate: 16_000,
        hop: 320,
        stages,
        low_band: 0,
        pitch: false,
        bits_per_code: 10,
        source_rate: 44_100,
        original_samples: None,
    }
}

/// A stream of `frames` frames with codes that use every bit.
fn stream(frames: usize, stages: u8) -> (Vec<u8>, Codes) {
    let data: Vec<u16> = (0..frames * stages as usize).map(|i| (i * 37 % 1024) as u16).collect();
    let codes = Codes::from_frame_major(stages as usize, data).unwrap();
    let mut writer = TkwWriter::new(Vec::new(), header(stages)).unwrap();
    writer.write(&codes).unwrap();
    let samples = frames as u64 * 320 - 100;
    (writer.finish(samples).unwrap(), codes)
}

fn read_all(bytes: &[u8]) -> Result<(Codes, u64), Error> {
    let mut reader = TkwReader::open(Cursor::new(bytes))?;
    let mut codes = Codes::empty(reader.header().codes_per_frame());
    while let Some(chunk) = reader.next_chunk()? {
        match chunk {
            Chunk::Codes(c) => codes.extend(&c)?,
            Chunk::Damaged { .. } => unreachable!("not skipping"),
        }
    }
    Ok((codes, reader.total_samples().unwrap()))
}

#[test]
fn the_pitch_layer_round_trips_in_version_4_and_older_versions_refuse_its_flag() {
    let frames = 600;
    let data: Vec<u16> =
        (0..frames * 4).map(|i| if i % 4 == 3 { (i / 4 % 256) as u16 } else { (i * 37 % 1024) as u16 }).collect();
    let codes = Codes::from_frame_major(4, data).unwrap();
    let header = Header { stages: 3, pitch: true, ..header(3) };
    assert_eq!(header.codes_per_frame(), 4);
    let mut writer = TkwWriter::new(Vec::new(), header.clone()).unwrap();
    writer.write(&codes).unwrap();
    let bytes = writer.finish(frames as u64 * 320).unwrap();
    // 3 codes of 10 bits and one byte per frame, in 3 chunks of at most 250 frames.
    let payload = |n: usize| (n * 30).div_ceil(8) + n;
    assert_eq!(bytes.len(), 52 + 3 * 12 + payload(250) * 2 + payload(100) + 12 + 8);
    let (back, samples) = read_all(&bytes).unwrap();
    assert_eq!((back, samples), (codes, frames as u64 * 320));

    let mut old = bytes[..52].to_vec();
    old[4] = 3;
    let crc = crc32fast::hash(&old[..48]);
    old[48..52].copy_from_slice(&crc.to_le_bytes());
    let err = TkwReader::open(Cursor::new(old)).err().expect("refused").to_string();
    assert!(err.contains("flags this version does not know"), "{err}");
}

#[test]
fn roundtrip_many_chunks() {
    let (bytes, codes) = stream(1234, 6);
    let (back, samples) = read_all(&bytes).unwrap();
    assert_eq!(back, codes);
    assert_eq!(samples, 1234 * 320 - 100);
    let chunks = 1234usize.div_ceil(container::CHUNK_FRAMES);
    let payload = 1234 * 6 * 10 / 8;
    assert_eq!(bytes.len(), container::HEADER_LEN + chunks * container::CHUNK_OVERHEAD + payload + 20);
}

#[test]
fn wrong_magic() {
    let (mut bytes, _) = stream(10, 2);
    bytes[0] = b'X';
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("not a tokenwave .tkw file"), "{err}");
}

#[test]
fn unknown_version() {
    let (mut bytes, _) = stream(10, 2);
    bytes[4] = 9;
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("unknown container version 9"), "{err}");
}

#[test]
fn damaged_header() {
    let (mut bytes, _) = stream(10, 2);
    bytes[30] ^= 0x10;
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("header is damaged"), "{err}");
}

#[test]
fn flipped_bit_names_the_chunk() {
    let (mut bytes, _) = stream(600, 4);
    // Second chunk's payload starts after the header and the first chunk.
    let first = container::CHUNK_OVERHEAD + 250 * 4 * 10 / 8;
    bytes[container::HEADER_LEN + first + 8 + 5] ^= 0x04;
    match read_all(&bytes).unwrap_err() {
        Error::DamagedChunk { index, offset, .. } => {
            assert_eq!(index, 1);
            assert_eq!(offset as usize, container::HEADER_LEN + first);
        }
        other => panic!("expected a damaged chunk, got {other}"),
    }
}

#[test]
fn skip_damaged_goes_on() {
    let (mut bytes, codes) = stream(600, 4);
    bytes[container::HEADER_LEN + 20] ^= 0xff;
    let mut reader = TkwReader::open(Cursor::new(&bytes)).unwrap().skip_damaged(true);
    let mut good = 0;
    let mut lost = 0;
    while let Some(chunk) = reader.next_chunk().unwrap() {
        match chunk {
            Chunk::Codes(c) => good += c.frames(),
            Chunk::Damaged { frames, .. } => lost += frames as usize,
        }
    }
    assert_eq!((good, lost), (codes.frames() - 250, 250));
}

#[test]
fn truncated_chunk() {
    let (bytes, _) = stream(300, 3);
    for cut in [container::HEADER_LEN + 3, container::HEADER_LEN + 100, bytes.len() - 1, bytes.len() - 20] {
        let err = read_all(&bytes[..cut]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
    let err = read_all(&bytes[..20]).unwrap_err().to_string();
    assert!(err.contains("too short"), "{err}");
}

#[test]
fn absurd_lengths_are_refused_before_allocating() {
    let (mut bytes, _) = stream(10, 2);
    let at = container::HEADER_LEN;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("length fields are corrupt"), "{err}");
}

#[test]
fn end_chunk_must_match_the_frames() {
    let codes = Codes::from_frame_major(1, vec![1, 2, 3]).unwrap();
    let mut writer = TkwWriter::new(Vec::new(), header(1)).unwrap();
    writer.write(&codes).unwrap();
    let bytes = writer.finish(5_000).unwrap();
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("end chunk says 5000 samples"), "{err}");
}

// The file commands, as a user runs them.

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

/// tests/data/release-0.1 holds what tokenwave 0.1 wrote for the speech sample at three
/// rates, and the SHA-256 of the WAV it decoded each to (its README.md): this release must
/// write the same bytes and decode them to the same file.
#[test]
fn the_release_0_1_outputs_are_reproduced() {
    let release = Path::new("tests/data/release-0.1");
    let sums = fs::read_to_string(release.join("decoded.sha256")).unwrap();
    let sum_of = |name: &str| {
        sums.lines()
            .find_map(|line| line.split_once("  ").filter(|(_, file)| *file == name).map(|(sum, _)| sum.to_string()))
            .unwrap_or_else(|| panic!("no line for {name} in decoded.sha256"))
    };
    let dir = TempDir::new().unwrap();
    let mut differences = Vec::new();
    for kbps in ["1.5", "3", "6"] {
        let name = format!("speech_nl-{kbps}kbps");
        let stored = release.join(format!("{name}.tkw"));
        let tkw = path(&dir, &format!("{name}.tkw"));
        ok(tokenwave(&["encode", SPEECH, &tkw, "--kbps", kbps]));
        let (ours, theirs) = (fs::read(&tkw).unwrap(), fs::read(&stored).unwrap());
        if ours != theirs {
            let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
            differences.push(format!(
                "{name}.tkw: {} bytes, 0.1 wrote {}; first difference at byte {first:?}",
                ours.len(),
                theirs.len()
            ));
        }
        let wav = path(&dir, &format!("{name}.wav"));
        ok(tokenwave(&["decode", stored.to_str().unwrap(), &wav]));
        let digest: String = Sha256::digest(fs::read(&wav).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
        let expected = sum_of(&format!("{name}.wav"));
        if digest != expected {
            differences.push(format!("{name}.wav decoded from 0.1's file: SHA-256 {digest}, 0.1's {expected}"));
        }
    }
    assert!(differences.is_empty(), "release 0.1 not reproduced:\n{}", differences.join("\n"));
}
