//! Bad input of every kind gives `Ok` or one clear error, never a panic: the .tkw reader
//! fuzzed, and on the command line every damaged or unreadable file and every bad argument
//! giving one clear line, a non-zero exit, and no output file.

mod common;

use std::fs;
use std::io::Cursor;
use std::path::Path;

use npyz::WriterBuilder;
use proptest::prelude::*;
use tempfile::TempDir;
use tokenwave_core::Codes;
use tokenwave_core::bitstream::{Header, TkwReader, TkwWriter, container};

use common::{
    SPEECH, assert_clean_failure, assert_refused, encoded, key_file, ok, path, tokenwave, wav_len, write_wav,
};

// Property-based fuzzing of the .tkw reader: mutated and random streams must give `Ok` or a
// clean `Err`, never a panic or a runaway allocation. `PROPTEST_CASES=1000000` for a long run.

fn valid_stream(frames: usize, stages: u8, bits: u8) -> Vec<u8> {
    let header = Header {
        version: container::VERSION,
        model_id: [1; 16],
        sample_rate: 16_000,
        hop: 320,
        stages,
        low_band: 0,
        pitch: false,
        bits_per_code: bits,
        source_rate: 16_000,
        original_samples: Some(frames as u64 * 320),
    };
    let mask = (1u32 << bits) - 1;
    let data = (0..frames * stages as usize).map(|i| ((i as u32).wrapping_mul(2_654_435_761) & mask) as u16).collect();
    let mut writer = TkwWriter::new(Vec::new(), header).unwrap();
    writer.write(&Codes::from_frame_major(stages as usize, data).unwrap()).unwrap();
    writer.finish(frames as u64 * 320).unwrap()
}

/// Cases per property: 2000 in the test suite, `PROPTEST_CASES` for a long fuzzing run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn drain(bytes: &[u8], skip: bool) {
    if let Ok(reader) = TkwReader::open(Cursor::new(bytes)) {
        let mut reader = reader.skip_damaged(skip);
        while let Ok(Some(_)) = reader.next_chunk() {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams_never_panic(
        frames in 1usize..700,
        stages in 1u8..=12,
        bits in 1u8..=16,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        skip in any::<bool>(),
    ) {
        let mut bytes = valid_stream(frames, stages, bits);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let len = cut.index(bytes.len() + 1);
        drain(&bytes[..len], skip);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(&bytes, true);
        let mut with_magic = b"TKW1\x01".to_vec();
        with_magic.extend_from_slice(&bytes);
        drain(&with_magic, false);
    }
}

// Audio and .tkw files that are not what they claim.

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

// Token files: every malformed array refused by position.

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &str, shape: &[u64], values: &[T]) {
    let mut file = fs::File::create(path).unwrap();
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(shape).writer(&mut file).begin_nd().unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
}

#[test]
fn malformed_token_arrays_are_refused_naming_the_position() {
    let dir = TempDir::new().unwrap();
    let out = path(&dir, "out.wav");
    let decode = |input: &str| tokenwave(&["tokens", "decode", input, &out]);

    let mut values = vec![0i16; 3 * 10];
    values[2 * 10 + 5] = 1024;
    let bad = path(&dir, "code.npy");
    write_npy(&bad, &[3, 10], &values);
    assert_refused(&decode(&bad), "frame 5, stage 2: value 1024", &out);

    let bad = path(&dir, "stages.npy");
    write_npy(&bad, &[13, 4], &[0i16; 52]);
    assert_refused(&decode(&bad), "13 stages", &out);

    let bad = path(&dir, "float.npy");
    write_npy(&bad, &[2, 4], &[0f32; 8]);
    assert_refused(&decode(&bad), "must be integers", &out);

    let bad = path(&dir, "cube.npy");
    write_npy(&bad, &[2, 2, 2], &[0i16; 8]);
    assert_refused(&decode(&bad), "not 3", &out);

    let bad = path(&dir, "flat.npy");
    write_npy(&bad, &[4], &[5i64, 1030, 7, 900]);
    assert_refused(&decode(&bad), "frame 1, stage 1: value 900", &out);

    let bad = path(&dir, "short.npy");
    write_npy(&bad, &[2, 400], &vec![1i16; 800]);
    let bytes = fs::read(&bad).unwrap();
    fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    assert_refused(&decode(&bad), "holds only", &out);

    let good = path(&dir, "good.npy");
    ok(tokenwave(&["tokens", "export", SPEECH, "--out", &good, "-q"]));
    let meta = path(&dir, "good.npy.json");
    let text = fs::read_to_string(&meta).unwrap();
    let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["model_id"].as_str().unwrap().to_string();
    fs::write(&meta, text.replace(&id, "00112233445566778899aabbccddeeff")).unwrap();
    assert_refused(&decode(&good), "encoded with model 00112233445566778899aabbccddeeff", &out);
    fs::write(&meta, "{ not json").unwrap();
    assert_refused(&decode(&good), "metadata file is not valid", &out);

    let bad = path(&dir, "ragged.jsonl");
    fs::write(&bad, "[1, 2, 3]\n[4, 5, 6]\n[7, 8]\n").unwrap();
    assert_refused(&decode(&bad), "line 3: a frame of 2 codes", &out);
    fs::write(&bad, "[1, 2, 3]\n[4, 5, 6000]\n").unwrap();
    assert_refused(&decode(&bad), "frame 1, stage 2: value 6000", &out);
    fs::write(&bad, "[1, 2, 3]\n[4, \"x\", 6]\n").unwrap();
    assert_refused(&decode(&bad), "line 2", &out);

    let bad = path(&dir, "junk.safetensors");
    fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}").unwrap();
    assert_refused(&decode(&bad), "not a valid safetensors file", &out);

    let bad = path(&dir, "codes.bin");
    fs::write(&bad, b"1234").unwrap();
    assert_refused(&decode(&bad), "give --format", &out);
    assert_refused(&decode(&path(&dir, "missing.npy")), "missing.npy", &out);
}

// Bad arguments, each job's.

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
        ("--workers", "0", "--workers must be between 1 and --batch (8)"),
        ("--workers", "9", "--workers must be between 1 and --batch (8)"),
    ] {
        let out = tokenwave(&["train", "--data", "samples", "--out", &run, flag, value]);
        assert_clean_failure(&out, message, &dir, &["bogus.safetensors"]);
    }
}

#[test]
fn bad_network_arguments_are_one_clear_line() {
    let dir = TempDir::new().unwrap();
    let key = key_file(&dir, "k.key");
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "not hex").unwrap();
    for (args, needle) in [
        (vec!["send", "--to", "127.0.0.1", "--key-file", key.as_str(), "--input", SPEECH], "HOST:PORT"),
        (vec!["send", "--to", "127.0.0.1:9", "--key-file", bad_key.to_str().unwrap(), "--input", SPEECH], "64 hex"),
        (vec!["receive", "--listen", "nowhere", "--key-file", key.as_str(), "--output", "x.wav"], "ADDR:PORT"),
        (vec!["receive", "--listen", "127.0.0.1:0", "--key-file", "/no/such.key", "--output", "x.wav"], "key file"),
        (vec!["keygen", key.as_str()], "already exists"),
    ] {
        let out = tokenwave(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(!Path::new("x.wav").exists());
}

#[test]
fn eval_refuses_bad_arguments_in_one_line() {
    for (args, needle) in [
        (vec!["eval", "--data", "no/such/dir"], "does not exist"),
        (vec!["eval", "--data", "samples/speech_cs.wav", "--kbps", "100"], "more than this model codes"),
        (vec!["eval", "--data", "samples/README.md"], "README.md"),
    ] {
        let out = tokenwave(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
