//! `tokenwave train` on a tiny model: it checkpoints, survives `kill -9`, resumes from the
//! last checkpoint, exports usable weights, grows trained weights, and refuses to overwrite
//! a run.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use common::{BIN, assert_one_line_error};

const TINY: &str = r#"{"sample_rate":16000,"hop":320,"latent_dim":16,"codebook_size":64,"max_stages":2,
"encoder":{"dim":32,"hidden":64,"blocks":1,"kernel":3},"decoder":{"dim":32,"hidden":64,"blocks":1,"kernel":3}}"#;

/// A data directory: real speech clips, one of them under a name that is always held out.
fn data(dir: &TempDir) -> String {
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::copy("samples/speech_nl.ogg", data.join("sch-v-setkani.ogg")).unwrap();
    fs::copy("samples/speech_cs.wav", data.join("a.wav")).unwrap();
    fs::copy("samples/speech_nl2.mp3", data.join("b.mp3")).unwrap();
    data.to_str().unwrap().to_string()
}

/// The tiny model's config, written into `dir`.
fn tiny_config(dir: &TempDir) -> std::path::PathBuf {
    let config = dir.path().join("tiny.json");
    fs::write(&config, TINY).unwrap();
    config
}

fn train(dir: &TempDir, data: &str, extra: &[&str]) -> Command {
    let config = tiny_config(dir);
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "--data", data, "--out"])
        .arg(dir.path().join("run"))
        .arg("--config")
        .arg(&config)
        .args(["--batch", "2", "--crop-ms", "800"])
        .args(extra)
        .stdin(Stdio::null());
    cmd
}

/// `tokenwave roundtrip` of a speech sample at two stages succeeds with `model`.
fn assert_round_trips(model: &Path, dir: &TempDir) {
    let out = Command::new(BIN)
        .args(["roundtrip", "samples/speech_cs.wav"])
        .arg(dir.path().join("x.wav"))
        .arg("--model")
        .arg(model)
        .args(["--codebooks", "2", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Step of the newest complete checkpoint (a kill during the swap leaves `checkpoint.old`).
fn checkpoint_step(run: &Path) -> Option<u64> {
    let text = fs::read_to_string(run.join("checkpoint/state.json"))
        .or_else(|_| fs::read_to_string(run.join("checkpoint.old/state.json")))
        .ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    state["step"].as_u64()
}

/// The model config in a run's last checkpoint.
fn checkpoint_config(run: &Path) -> serde_json::Value {
    let text = fs::read_to_string(run.join("checkpoint/state.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["config"].clone()
}

/// Trains (or with `resume` continues) the run at `run` up to `steps`, and checks that the
/// checkpoint got there.
fn train_to(data: &str, run: &Path, config: &Path, steps: u64, resume: bool) {
    train_to_with(data, run, config, steps, resume, &["--workers", "1"]);
}

/// Trains to `steps` with `extra` arguments; returns what the run wrote to stderr.
fn train_to_with(data: &str, run: &Path, config: &Path, steps: u64, resume: bool, extra: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "--data", data, "--out"]).arg(run).arg("--config").arg(config);
    cmd.args(["--batch", "2", "--crop-ms", "800", "--steps", &steps.to_string(), "-q"]).stdin(Stdio::null());
    if resume {
        cmd.arg("--resume");
    }
    let out = cmd.args(extra).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_step(run), Some(steps));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn resumes_after_kill_9_from_the_last_checkpoint() {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let run = dir.path().join("run");
    let mut child = train(&dir, &data, &["--steps", "100000", "--checkpoint-minutes", "0", "-q"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while checkpoint_step(&run).unwrap_or(0) < 3 {
        assert!(started.elapsed() < Duration::from_secs(240), "no checkpoint after 4 minutes");
        assert!(child.try_wait().unwrap().is_none(), "training stopped early");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let saved = checkpoint_step(&run).expect("a complete checkpoint survives kill -9");
    assert!(saved >= 3);

    let target = saved + 2;
    let out = train(&dir, &data, &["--resume", "--steps", &target.to_string()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("stopped at step {target}")), "{stderr}");
    assert_eq!(checkpoint_step(&run), Some(target));

    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], target);
    assert!(last["loss"].as_f64().unwrap().is_finite());
    let codebooks = last["codebooks"].as_array().unwrap();
    assert_eq!(codebooks.len(), 2);

    // The exported weights decode with the CLI.
    let model = run.join("model.safetensors");
    assert_round_trips(&model, &dir);

    // A new run can start from exported weights (when checkpoints are gone).
    let warm = dir.path().join("warm");
    let out = Command::new(BIN)
        .args(["train", "--data", &data, "--out"])
        .arg(&warm)
        .arg("--init-from")
        .arg(&model)
        .args(["--batch", "2", "--steps", "2", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_config(&warm)["latent_dim"], 16, "the config comes from the weights");

    // Without --resume an existing run is never overwritten.
    let out = train(&dir, &data, &["--steps", "5"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --resume"));
}

#[test]
fn a_focus_stage_count_trains_and_one_beyond_the_model_is_refused() {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let max_stages = serde_json::from_str::<serde_json::Value>(TINY).unwrap()["max_stages"].as_u64().unwrap();
    let beyond = (max_stages + 1).to_string();
    let out = train(&dir, &data, &["--steps", "2", "--focus-stages", &beyond]).output().unwrap();
    assert_one_line_error(&out, "--focus-stages");
    assert_eq!(checkpoint_step(&dir.path().join("run")), None, "a refused run leaves no checkpoint");
    let out = train(&dir, &data, &["--steps", "2", "--focus-stages", "1", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_step(&dir.path().join("run")), Some(2));
}

#[test]
fn no_audio_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = train(&dir, empty.to_str().unwrap(), &["--steps", "5"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no audio files"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn a_run_trains_resumes_and_codes_files() {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let config = tiny_config(&dir);
    let run = dir.path().join("run");
    train_to(&data, &run, &config, 3, false);
    // The batch split over two workers, resumed from a one-worker checkpoint.
    train_to_with(&data, &run, &config, 5, true, &["--workers", "2"]);
    let model = run.join("model.safetensors");
    let tkw = dir.path().join("x.tkw");
    let wav = dir.path().join("x.wav");
    let encode = Command::new(BIN)
        .arg("encode")
        .arg("samples/speech_cs.wav")
        .arg(&tkw)
        .arg("--model")
        .arg(&model)
        .arg("-q")
        .output()
        .unwrap();
    assert!(encode.status.success(), "{}", String::from_utf8_lossy(&encode.stderr));
    let decode =
        Command::new(BIN).arg("decode").arg(&tkw).arg(&wav).arg("--model").arg(&model).arg("-q").output().unwrap();
    assert!(decode.status.success(), "{}", String::from_utf8_lossy(&decode.stderr));
    let original = hound::WavReader::open("samples/speech_cs.wav").unwrap();
    let decoded = hound::WavReader::open(&wav).unwrap();
    let seconds = |r: &hound::WavReader<_>| r.duration() as f64 / f64::from(r.spec().sample_rate);
    assert!((seconds(&original) - seconds(&decoded)).abs() < 0.03, "{} vs {}", seconds(&original), seconds(&decoded));
}

#[test]
fn a_new_run_can_grow_the_encoder_and_decoder_of_trained_weights() {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let init_model = |config: &Path, name: &str| {
        let weights = dir.path().join(name);
        let out = Command::new(BIN).arg("init-model").arg(&weights).arg("--config").arg(config).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        weights
    };
    let trained = init_model(&tiny_config(&dir), "start.safetensors");

    let run = dir.path().join("run");
    let grow = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["train", "--data", &data, "--out"]).arg(&run).args(["--batch", "2", "-q"]).args(extra);
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    // Our own refusals are one line; clap's usage errors (this one) are clap's.
    let out = grow(&["--grow-decoder", "2", "--steps", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--init-from"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_step(&run), None, "a refused run leaves no checkpoint");

    let trained = trained.to_str().unwrap();
    let out = grow(&["--init-from", trained, "--grow-decoder", "2", "--grow-encoder", "1", "--steps", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = checkpoint_config(&run);
    assert_eq!(config["decoder"]["blocks"], 3, "one block from the weights, two added");
    assert_eq!(config["encoder"]["blocks"], 2, "one block from the weights, one added");
    assert_round_trips(&run.join("model.safetensors"), &dir);

    // A run keeps the size it started with.
    let out = grow(&["--resume", "--init-from", trained, "--grow-decoder", "1", "--steps", "3"]);
    assert_one_line_error(&out, "--grow-decoder");
    assert_eq!(checkpoint_step(&run), Some(2), "the refused resume left the run as it was");
}

#[test]
fn an_adversarial_run_with_a_harmonic_source_trains_its_discriminators_and_resumes_against_them() {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let config = tiny_config(&dir);
    let start = dir.path().join("start.safetensors");
    let out = Command::new(BIN).arg("init-model").arg(&start).arg("--config").arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = dir.path().join("run");
    let critic =
        |run: &Path| fs::read(run.join("checkpoint/discriminators.mpk")).expect("discriminators in checkpoint");
    let start = start.to_str().unwrap();
    let first_run = ["--workers", "1", "--adversarial", "--init-from", start, "--add-harmonic-source", "9"];
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "--data", &data, "--out"]).arg(&run).args(["--batch", "2", "--steps", "2", "-q"]);
    let out = cmd.args(first_run).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = critic(&run);
    // Resumed against the same discriminators, the batch split over two workers.
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "--data", &data, "--out"]).arg(&run).args(["--batch", "2", "--steps", "4", "-q"]);
    let out = cmd.args(["--resume", "--workers", "2"]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_step(&run), Some(4));
    assert_ne!(critic(&run), first, "the discriminators were trained");
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["step"] == 4)
        .unwrap();
    let game = &last["adversarial"];
    for term in ["generator", "feature_matching", "discriminator"] {
        let value = game[term].as_f64().unwrap_or_else(|| panic!("no {term} in {last}"));
        assert!(value.is_finite() && value > 0.0, "{term} = {value}");
    }
    let fit = last["harmonic_fit"].as_f64().unwrap_or_else(|| panic!("no harmonic_fit in {last}"));
    assert!(fit.is_finite() && fit > 0.0, "harmonic fit {fit}");
    assert_round_trips(&run.join("model.safetensors"), &dir);

    // A run that trained without discriminators is not silently turned into one.
    let plain = dir.path().join("plain");
    train_to(&data, &plain, &config, 2, false);
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "--data", &data, "--out"]).arg(&plain).arg("--config").arg(&config);
    let out = cmd.args(["--batch", "2", "--steps", "3", "--resume", "--adversarial", "-q"]).output().unwrap();
    assert_one_line_error(&out, "--adversarial starts a new run");
    assert_eq!(checkpoint_step(&plain), Some(2));
}
