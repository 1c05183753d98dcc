//! `tokenwave train` on a tiny model: it checkpoints, survives `kill -9`, resumes from the
//! last checkpoint, exports usable weights, and refuses to overwrite a run.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwave");

const TINY: &str = r#"{"sample_rate":16000,"encoder_channels":4,"strides":[2,4,5,8],"residual_dilations":[1],
"latent_dim":16,"codebook_size":64,"max_stages":2,"decoder":{"dim":32,"hidden":64,"blocks":1,"kernel":3}}"#;

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

/// A directory with training data and untrained weights of the tiny model to start from.
fn warm_start_fixture() -> (TempDir, String, std::path::PathBuf) {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let weights = dir.path().join("start.safetensors");
    let out =
        Command::new(BIN).arg("init-model").arg(&weights).arg("--config").arg(tiny_config(&dir)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (dir, data, weights)
}

/// `tokenwave train` on `data` into `out_dir`, batch 2, quiet, plus `extra`.
fn train_quietly(data: &str, out_dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "--data", data, "--out"]).arg(out_dir).args(["--batch", "2", "-q"]).args(extra);
    cmd.stdin(Stdio::null()).output().unwrap()
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

/// Trains `run` for 3 steps from `extra` (which switch on a design), asserts that the run's
/// config has `field` set to `value` and that every logged `loss` is finite and above
/// `floor`, and that the exported weights code a file; returns their path.
fn assert_trains_a_new_design(
    (data, dir, run): (&str, &TempDir, &Path),
    extra: &[&str],
    (field, value): (&str, serde_json::Value),
    (loss, floor): (&str, f64),
) -> std::path::PathBuf {
    let out = train_quietly(data, run, &[extra, &["--steps", "3"][..]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_config(run)[field], value);
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let values = logged(&metrics, loss);
    assert!(!values.is_empty(), "{loss} not logged: {metrics}");
    assert!(values.iter().all(|v| v.is_finite() && *v > floor), "{loss}: {values:?}");
    let weights = run.join("model.safetensors");
    assert_round_trips(&weights, dir);
    weights
}

/// Asserts that a command failed with one line of error that mentions `words`.
fn refused_with(out: std::process::Output, words: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(words), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
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

/// Every value a run logged for `field` in its metrics (`metrics`, the JSONL text).
fn logged(metrics: &str, field: &str) -> Vec<f64> {
    metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|s| s[field].as_f64())
        .collect()
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
    refused_with(train(&dir, &data, &["--steps", "2", "--focus-stages", &beyond]).output().unwrap(), "--focus-stages");
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
fn the_comparison_designs_train_checkpoint_resume_and_are_refused_for_coding() {
    for (field, part) in [(r#""codebook_dim":4"#, "factorized"), (r#""transposed_decoder":true"#, "transposed")] {
        comparison_design_round_trip(field, part);
    }
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

/// Trains a tiny model with `field` added to its config: the design's own module is
/// checkpointed as `part`, resumes, and no inference weights can be made from it.
fn comparison_design_round_trip(field: &str, part: &str) {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let config = dir.path().join("design.json");
    fs::write(&config, TINY.replace(r#""max_stages":2"#, &format!(r#""max_stages":2,{field}"#))).unwrap();
    let run = dir.path().join("run");
    train_to(&data, &run, &config, 3, false);
    assert!(run.join(format!("checkpoint/{part}.mpk")).exists(), "{part}");
    // Asked for two workers, the design trains on one and says so.
    let stderr = train_to_with(&data, &run, &config, 5, true, &["--workers", "2"]);
    assert!(stderr.contains("train on one worker; --workers ignored"), "{stderr}");
    // No inference weights for this design yet, and no way to make some by hand.
    assert!(!run.join("model.safetensors").exists());
    let out = Command::new(BIN)
        .arg("init-model")
        .arg(dir.path().join("w.safetensors"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("training experiments"), "{stderr}");
}

#[test]
fn the_spectral_encoder_trains_resumes_and_codes_files() {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let config = dir.path().join("spectral.json");
    let spectral = r#""max_stages":2,"spectral_encoder":{"dim":32,"hidden":64,"blocks":1,"kernel":3}"#;
    fs::write(&config, TINY.replace(r#""max_stages":2"#, spectral)).unwrap();
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
fn an_adversarial_phase_starts_mid_run_and_resumes_with_its_critic() {
    let dir = TempDir::new().unwrap();
    let data = data(&dir);
    let config = tiny_config(&dir);
    let run = dir.path().join("run");
    train_to(&data, &run, &config, 3, false);
    assert!(!run.join("checkpoint/critic.mpk").exists(), "no critic without --adversarial");

    // The critic joins a running run, on two workers, and is checkpointed with it.
    train_to_with(&data, &run, &config, 5, true, &["--adversarial", "0.5", "--workers", "2"]);
    let critic = run.join("checkpoint/critic.mpk");
    assert!(critic.exists());
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    for field in ["adversarial", "feature_matching", "critic", "loss"] {
        assert!(last[field].as_f64().is_some_and(f64::is_finite), "{field}: {last}");
    }
    assert!(run.join("model.safetensors").exists());

    // Resuming reads the critic back: a damaged one is a clear error, not a silent restart.
    train_to_with(&data, &run, &config, 6, true, &["--adversarial", "0.5", "--workers", "1"]);
    let saved = fs::read(&critic).unwrap();
    fs::write(&critic, &saved[..saved.len() / 2]).unwrap();
    let out = Command::new(BIN)
        .args(["train", "--data", &data, "--out"])
        .arg(&run)
        .args(["--batch", "2", "--steps", "8", "--resume", "--adversarial", "0.5", "-q"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("checkpoint"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_eq!(checkpoint_step(&run), Some(6), "a failed resume leaves the checkpoint as it was");

    // The comparison designs have no adversarial phase.
    let transposed = dir.path().join("transposed.json");
    fs::write(&transposed, TINY.replace(r#""max_stages":2"#, r#""max_stages":2,"transposed_decoder":true"#)).unwrap();
    let out = Command::new(BIN)
        .args(["train", "--data", &data, "--out"])
        .arg(dir.path().join("other"))
        .arg("--config")
        .arg(&transposed)
        .args(["--batch", "2", "--steps", "2", "--adversarial", "0.5", "-q"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("shipped design only"), "{stderr}");
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
    let waveform = init_model(&tiny_config(&dir), "waveform.safetensors");
    let spectral_config = dir.path().join("spectral.json");
    let spectral_stack = r#","spectral_encoder":{"dim":32,"hidden":64,"blocks":1,"kernel":3}}"#;
    fs::write(&spectral_config, TINY.strip_suffix('}').unwrap().to_owned() + spectral_stack).unwrap();
    let spectral = init_model(&spectral_config, "spectral.safetensors");

    let run = dir.path().join("run");
    let grow = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["train", "--data", &data, "--out"]).arg(&run).args(["--batch", "2", "-q"]).args(extra);
        cmd.stdin(Stdio::null()).output().unwrap()
    };
    // Our own refusals are one line; clap's usage errors (the first case) are clap's.
    let out = grow(&["--grow-decoder", "2", "--steps", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--init-from"), "{}", String::from_utf8_lossy(&out.stderr));
    let waveform = waveform.to_str().unwrap();
    refused_with(grow(&["--init-from", waveform, "--grow-encoder", "1", "--steps", "2"]), "spectral encoder");
    assert_eq!(checkpoint_step(&run), None, "a refused run leaves no checkpoint");

    let spectral = spectral.to_str().unwrap();
    let out = grow(&["--init-from", spectral, "--grow-decoder", "2", "--grow-encoder", "1", "--steps", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = checkpoint_config(&run);
    assert_eq!(config["decoder"]["blocks"], 3, "one block from the weights, two added");
    assert_eq!(config["spectral_encoder"]["blocks"], 2, "one block from the weights, one added");
    assert_round_trips(&run.join("model.safetensors"), &dir);

    // A run keeps the size it started with.
    refused_with(grow(&["--resume", "--init-from", spectral, "--grow-decoder", "1", "--steps", "3"]), "--grow-decoder");
    assert_eq!(checkpoint_step(&run), Some(2), "the refused resume left the run as it was");
}

#[test]
fn trained_weights_can_switch_to_accumulated_phase_and_train_frame_consistency() {
    let (dir, data, weights) = warm_start_fixture();
    let run = dir.path().join("run");
    let train = |out_dir: &Path, extra: &[&str]| train_quietly(&data, out_dir, extra);
    let start = weights.to_str().unwrap();
    refused_with(
        train(&run, &["--init-from", start, "--consistency-loss", "-1", "--steps", "2"]),
        "--consistency-loss",
    );
    let out = train(&run, &["--accumulate-phase", "--steps", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--init-from"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_step(&run), None, "a refused run leaves no checkpoint");

    let out = train(&run, &["--init-from", start, "--accumulate-phase", "--consistency-loss", "1", "--steps", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_config(&run)["accumulated_phase"], true);
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let disagreement = logged(&metrics, "consistency");
    assert!(!disagreement.is_empty(), "no frame disagreement logged: {metrics}");
    assert!(disagreement.iter().all(|d| d.is_finite() && *d >= 0.0), "{disagreement:?}");
    assert_round_trips(&run.join("model.safetensors"), &dir);

    // Weights that already accumulate phase cannot switch again, and a run keeps its design.
    let switched = run.join("model.safetensors");
    let other = dir.path().join("other");
    refused_with(train(&other, &["--init-from", switched.to_str().unwrap(), "--accumulate-phase"]), "already");
    refused_with(
        train(&run, &["--resume", "--init-from", start, "--accumulate-phase", "--steps", "4"]),
        "--accumulate",
    );
    assert_eq!(checkpoint_step(&run), Some(3), "the refused resume left the run as it was");

    // The comparison designs have no consistency loss.
    let transposed = dir.path().join("transposed.json");
    fs::write(&transposed, TINY.replace(r#""max_stages":2"#, r#""max_stages":2,"transposed_decoder":true"#)).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "--data", &data, "--out"]).arg(dir.path().join("third")).arg("--config").arg(&transposed);
    refused_with(
        cmd.args(["--batch", "2", "--steps", "2", "--consistency-loss", "1", "-q"]).output().unwrap(),
        "shipped",
    );
}

#[test]
fn trained_weights_can_gain_a_harmonic_source_that_learns_pitch() {
    let (dir, data, weights) = warm_start_fixture();
    let run = dir.path().join("run");
    let train = |out_dir: &Path, extra: &[&str]| train_quietly(&data, out_dir, extra);
    let start = weights.to_str().unwrap();
    let out = train(&run, &["--add-harmonics", "8", "--steps", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--init-from"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_step(&run), None, "a refused run leaves no checkpoint");

    let out = train(&run, &["--init-from", start, "--add-harmonics", "8", "--steps", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint_config(&run)["harmonics"], 8);
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let pitch = logged(&metrics, "pitch");
    let amplitude = logged(&metrics, "amplitude");
    // The sample clips are speech: some frames are voiced, so both losses are measured (> 0).
    assert!(!pitch.is_empty() && pitch.len() == amplitude.len(), "harmonic losses not logged: {metrics}");
    assert!(pitch.iter().chain(&amplitude).all(|p| p.is_finite() && *p > 0.0), "{pitch:?} {amplitude:?}");
    let with_source = run.join("model.safetensors");
    assert_round_trips(&with_source, &dir);

    // Weights with a source cannot gain another, and a run keeps its design.
    let other = dir.path().join("other");
    refused_with(train(&other, &["--init-from", with_source.to_str().unwrap(), "--add-harmonics", "8"]), "already");
    refused_with(
        train(&run, &["--resume", "--init-from", start, "--add-harmonics", "8", "--steps", "4"]),
        "--add-harmonics",
    );
    assert_eq!(checkpoint_step(&run), Some(3), "the refused resume left the run as it was");
}

#[test]
fn a_harmonic_source_can_gain_a_voicing_gate_that_learns_voicing() {
    let (dir, data, weights) = warm_start_fixture();
    let run = dir.path().join("run");
    let train = |out_dir: &Path, extra: &[&str]| train_quietly(&data, out_dir, extra);
    let start = weights.to_str().unwrap();
    refused_with(train(&run, &["--init-from", start, "--add-voicing-gate", "--steps", "2"]), "--add-harmonics");
    assert_eq!(checkpoint_step(&run), None, "a refused run leaves no checkpoint");

    // Cross-entropy of a head that starts undecided: about ln 2, and never 0 on speech.
    let gated = assert_trains_a_new_design(
        (&data, &dir, &run),
        &["--init-from", start, "--add-harmonics", "8", "--add-voicing-gate"],
        ("voicing_gate", true.into()),
        ("voicing", 0.1),
    );
    refused_with(
        train(&dir.path().join("other"), &["--init-from", gated.to_str().unwrap(), "--add-voicing-gate"]),
        "already",
    );
}

#[test]
fn trained_weights_can_switch_to_rebuilt_phase_and_fit_their_frames() {
    let (dir, data, weights) = warm_start_fixture();
    let run = dir.path().join("run");
    let train = |out_dir: &Path, extra: &[&str]| train_quietly(&data, out_dir, extra);
    let start = weights.to_str().unwrap();
    // Argument errors from the parser: usage lines follow the error.
    for (args, words) in [
        (&["--rebuild-phase", "--steps", "2"][..], "--init-from"),
        (&["--init-from", start, "--rebuild-phase", "--accumulate-phase"][..], "--accumulate-phase"),
    ] {
        let out = train(&run, args);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(words), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(checkpoint_step(&run), None, "a refused run leaves no checkpoint");

    // Untrained magnitudes are far from speech's: a mean log error well above zero.
    let rebuilt = assert_trains_a_new_design(
        (&data, &dir, &run),
        &["--init-from", start, "--rebuild-phase"],
        ("rebuilt_phase", true.into()),
        ("magnitude", 0.1),
    );

    // Weights that already rebuild their phase cannot switch again; nor can a harmonic source.
    let other = dir.path().join("other");
    refused_with(train(&other, &["--init-from", rebuilt.to_str().unwrap(), "--rebuild-phase"]), "already");
    refused_with(
        train(&other, &["--init-from", rebuilt.to_str().unwrap(), "--add-harmonics", "8", "--steps", "2"]),
        "rebuilt_phase",
    );
}
