//! `tokenwave tokens`: export, decode and batch as a pipeline uses them, the formats read
//! by numpy and the safetensors package, and the token file readers fuzzed. (Malformed
//! arrays refused by position: tests/bad_input.rs.)

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use proptest::prelude::*;
use tempfile::TempDir;
use tokenwave_core::tokens::{self, JsonlFrames, Layout, TokenFormat, TokenMeta, Tokens};
use tokenwave_core::{Codes, ModelConfig, ModelId};

use common::{BIN, SPEECH, assert_refused, ok, path, pcm, tokenwave};

fn tokenwave_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for var in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).output().expect("binary runs")
}

/// Sample-exact equality, reported as a count rather than two long arrays.
fn assert_same_pcm(actual: &[i16], expected: &[i16], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let differ = actual.iter().zip(expected).filter(|(a, b)| a != b).count();
    let first = actual.iter().zip(expected).position(|(a, b)| a != b);
    assert_eq!(differ, 0, "{what}: {differ} samples differ, first at {first:?}");
}

/// Reference audio: the same clip through `encode` and `decode` of a .tkw file of neural
/// codes only, as tokens are.
fn reference(dir: &TempDir, kbps: &str) -> Vec<i16> {
    let (tkw, wav) = (path(dir, &format!("ref{kbps}.tkw")), path(dir, &format!("ref{kbps}.wav")));
    ok(tokenwave(&["encode", SPEECH, &tkw, "--kbps", kbps, "--low-band", "0", "-q"]));
    ok(tokenwave(&["decode", &tkw, &wav, "-q"]));
    pcm(&wav)
}

#[test]
fn export_then_decode_matches_the_tkw_path_in_every_format_and_layout() {
    let dir = TempDir::new().unwrap();
    let expected = reference(&dir, "3");
    for (name, layout) in [("a.npy", "stages"), ("b.safetensors", "flat"), ("c.jsonl", "stages"), ("d.npy", "flat")] {
        let tokens = path(&dir, name);
        ok(tokenwave(&["tokens", "export", SPEECH, "--out", &tokens, "--layout", layout, "--kbps", "3", "-q"]));
        let wav = path(&dir, &format!("{name}.wav"));
        ok(tokenwave(&["tokens", "decode", &tokens, &wav, "-q"]));
        assert_same_pcm(&pcm(&wav), &expected, &format!("{name} ({layout})"));
    }
    let meta: serde_json::Value = serde_json::from_str(&fs::read_to_string(path(&dir, "a.npy.json")).unwrap()).unwrap();
    assert_eq!(meta["stages"], 6);
    assert_eq!(meta["layout"], "stages");
    assert_eq!(meta["samples"], 139_198);
}

#[test]
fn jsonl_on_stdin_is_rendered_as_it_arrives() {
    let dir = TempDir::new().unwrap();
    let expected = reference(&dir, "1.5");
    let tokens = path(&dir, "t.jsonl");
    ok(tokenwave(&["tokens", "export", SPEECH, "--out", &tokens, "--kbps", "1.5", "-q"]));
    let wav = path(&dir, "t.wav");
    let mut child = Command::new(BIN)
        .args(["tokens", "decode", "-", &wav, "-q"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = fs::read_to_string(&tokens).unwrap();
    for (i, line) in text.lines().enumerate() {
        writeln!(stdin, "{line}").unwrap();
        if i % 100 == 0 {
            stdin.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let decoded = pcm(&wav);
    assert_eq!(decoded.len(), expected.len());
    // Frames arrive in pieces of varying size, which changes float summation order: at most
    // one 16-bit step apart from the file path.
    let worst = decoded.iter().zip(&expected).map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs()).max().unwrap();
    assert!(worst <= 1, "differs by {worst}");
}

#[test]
fn an_array_written_by_numpy_decodes_and_numpy_reads_our_files() {
    let python = std::env::var("TOKENWAVE_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import numpy, safetensors"]).output();
    if !probe.is_ok_and(|p| p.status.success()) {
        assert!(
            std::env::var_os("TOKENWAVE_REQUIRE_INTEROP").is_none(),
            "TOKENWAVE_REQUIRE_INTEROP is set but {python} cannot import numpy and safetensors"
        );
        eprintln!("skipped: {python} lacks numpy/safetensors (CI installs them and sets TOKENWAVE_REQUIRE_INTEROP)");
        return;
    }
    let dir = TempDir::new().unwrap();
    let (npy, st, flat) = (path(&dir, "a.npy"), path(&dir, "a.safetensors"), path(&dir, "f.npy"));
    ok(tokenwave(&["tokens", "export", SPEECH, "--out", &npy, "--kbps", "3", "-q"]));
    ok(tokenwave(&["tokens", "export", SPEECH, "--out", &st, "--kbps", "3", "-q"]));
    ok(tokenwave(&["tokens", "export", SPEECH, "--out", &flat, "--kbps", "3", "--layout", "flat", "-q"]));
    let script = r#"
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
npy, st, flat, out = sys.argv[1:5]
a = np.load(npy)
meta = json.load(open(npy + ".json"))
assert a.dtype == np.int16 and a.shape == (6, 435), (a.dtype, a.shape)
assert meta["stages"] == 6 and a.min() >= 0 and a.max() < meta["codebook_size"]
t = load_file(st)["codes"]
assert t.dtype == np.int16 and (t == a).all()
with safe_open(st, "np") as f:
    assert json.loads(f.metadata()["tokenwave.tokens"])["layout"] == "stages"
f = np.load(flat)
offsets = np.arange(6) * meta["codebook_size"]
assert f.shape == (6 * 435,) and (f.reshape(435, 6) - offsets == a.T).all()
np.save(out, a.astype(np.int64))
"#;
    let from_numpy = path(&dir, "numpy.npy");
    let run = Command::new(&python).args(["-c", script, &npy, &st, &flat, &from_numpy]).output().unwrap();
    assert!(run.status.success(), "python: {}", String::from_utf8_lossy(&run.stderr));
    let (mine, theirs) = (path(&dir, "mine.wav"), path(&dir, "numpy.wav"));
    ok(tokenwave(&["tokens", "decode", &npy, &mine, "-q"]));
    ok(tokenwave(&["tokens", "decode", &from_numpy, &theirs, "-q"]));
    let (mine, theirs) = (pcm(&mine), pcm(&theirs));
    // Without metadata numpy's array renders whole frames: 2 samples of padding more.
    assert_eq!(theirs.len(), 435 * 320);
    assert_eq!(&theirs[..mine.len()], &mine[..]);
}

#[test]
fn batch_shards_resume_and_survive_a_bad_file() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("spk1")).unwrap();
    fs::copy(SPEECH, data.join("spk1/a.ogg")).unwrap();
    fs::copy("samples/speech_cs.wav", data.join("spk1/b.wav")).unwrap();
    fs::copy("samples/speech_nl2.mp3", data.join("c.mp3")).unwrap();
    fs::write(data.join("spk1/broken.wav"), b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
    let out = path(&dir, "tokens");
    let data = data.to_str().unwrap();

    let mut outputs = Vec::new();
    for shard in ["0/2", "1/2"] {
        let run =
            tokenwave_env(&["tokens", "batch", "--manifest", data, "--out", &out, "--shard", shard, "--json"], &[]);
        let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        outputs.push(summary["encoded"].as_u64().unwrap());
        if summary["failed"] == 1 {
            assert!(!run.status.success());
            assert!(String::from_utf8_lossy(&run.stderr).contains("broken.wav"));
        } else {
            assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        }
    }
    assert_eq!(outputs.iter().sum::<u64>(), 3, "every good file in exactly one shard: {outputs:?}");
    for name in ["spk1/a.ogg.npy", "spk1/b.wav.npy", "c.mp3.npy", "spk1/a.ogg.npy.json"] {
        assert!(Path::new(&out).join(name).exists(), "{name} missing");
    }
    assert!(!Path::new(&out).join("spk1/broken.wav.npy").exists());

    // A re-run (here as a one-task Slurm array) skips what is done and retries the failure.
    let run = tokenwave_env(
        &["tokens", "batch", "--manifest", data, "--out", &out, "--json"],
        &[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_COUNT", "1")],
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!((summary["skipped_existing"].as_u64(), summary["encoded"].as_u64()), (Some(3), Some(0)));
    assert_eq!(summary["failed"], 1);

    let manifest = dir.path().join("list.txt");
    fs::write(&manifest, "# two files\ndata/spk1/a.ogg\n\ndata/c.mp3  # mp3\n").unwrap();
    let out2 = path(&dir, "tokens2");
    let run = tokenwave_env(
        &[
            "tokens",
            "batch",
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            &out2,
            "--format",
            "safetensors",
            "--jobs",
            "2",
            "--json",
        ],
        &[],
    );
    let summary: serde_json::Value = serde_json::from_slice(&ok(run).stdout).unwrap();
    assert_eq!(summary["encoded"], 2);
    assert!(Path::new(&out2).join("data/spk1/a.ogg.safetensors").exists());

    let refused =
        tokenwave_env(&["tokens", "batch", "--manifest", data, "--out", &out2], &[("JOB_COMPLETION_INDEX", "1")]);
    assert_refused(&refused, "give --shards N", "/nonexistent");
    let refused = tokenwave_env(&["tokens", "batch", "--manifest", data, "--out", &out2, "--shard", "2/2"], &[]);
    assert_refused(&refused, "shard 2/2 does not exist", "/nonexistent");
}

// Property-based fuzzing of the token file readers (npy, safetensors, jsonl): mutated and
// truncated valid files must give `Ok` or a clean `Err`, never a panic or a runaway
// allocation. `PROPTEST_CASES=1000000` for a long run.

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn valid(format: TokenFormat, layout: Layout, frames: usize, stages: usize) -> (Vec<u8>, String) {
    let config = ModelConfig::default();
    let data = (0..frames * stages).map(|i| ((i * 2_654_435_761) % 1024) as u16).collect();
    let codes = Codes::from_frame_major(stages, data).unwrap();
    let tokens = Tokens { meta: TokenMeta::new(&config, ModelId([3; 16]), (stages, false), layout, None), codes };
    let mut bytes = Vec::new();
    tokens.write(format, &mut bytes).unwrap();
    (bytes, tokens.meta_json())
}

fn read_all(format: TokenFormat, bytes: &[u8], meta: &str) {
    let config = ModelConfig::default();
    if let Ok(raw) = tokens::read(format, bytes, Some(meta)) {
        let _ = raw.into_tokens(&config, ModelId([3; 16]));
    }
    if let Ok(raw) = tokens::read(format, bytes, None) {
        let _ = raw.into_tokens(&config, ModelId([3; 16]));
    }
    if format == TokenFormat::Jsonl
        && let Ok(mut frames) = JsonlFrames::new(bytes, &config, ModelId([3; 16]))
    {
        while let Ok(Some(_)) = frames.next_frame() {}
    }
}

const FORMATS: [TokenFormat; 3] = [TokenFormat::Npy, TokenFormat::Safetensors, TokenFormat::Jsonl];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_token_files_never_panic(
        format in 0usize..3,
        flat in any::<bool>(),
        frames in 1usize..60,
        stages in 1usize..=12,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        meta_edit in proptest::option::of((any::<prop::sample::Index>(), any::<char>())),
    ) {
        let format = FORMATS[format];
        let layout = if flat { Layout::Flat } else { Layout::Stages };
        let (mut bytes, mut meta) = valid(format, layout, frames, stages);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some((at, c)) = meta_edit {
            let mut chars: Vec<char> = meta.chars().collect();
            let i = at.index(chars.len());
            chars[i] = c;
            meta = chars.into_iter().collect();
        }
        let len = cut.index(bytes.len() + 1);
        read_all(format, &bytes[..len], &meta);
    }

    #[test]
    fn random_bytes_never_panic(format in 0usize..3, bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        read_all(FORMATS[format], &bytes, "{}");
    }
}
