//! Real, real-time audio devices: on CI a private PipeWire with null sinks as microphone and
//! speaker (`.ci/headless-audio start` exports TOKENWAVE_AUDIO_DEVICES=1). Without that stack
//! these tests say so and pass; CI makes them mandatory by starting it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwave");

/// The fake devices are shared: one test at a time uses them.
static DEVICES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn devices_available() -> bool {
    if std::env::var_os("TOKENWAVE_AUDIO_DEVICES").is_none() {
        eprintln!("skipped: no audio devices (run `eval \"$(.ci/headless-audio start)\"` first, as CI does)");
        return false;
    }
    // Without them the sound server falls back to its defaults and the recordings would
    // compare a device with itself.
    let sinks = Command::new("pactl").args(["list", "short", "sinks"]).output().expect("pactl runs");
    let sinks = String::from_utf8_lossy(&sinks.stdout);
    assert!(sinks.contains("fake_mic") && sinks.contains("fake_spk"), "the fake devices are missing: {sinks}");
    true
}

fn pcm(path: &Path) -> Vec<f64> {
    hound::WavReader::open(path).unwrap().into_samples::<i16>().map(|s| f64::from(s.unwrap())).collect()
}

/// Records a sink's monitor (`fake_spk` the speaker, `fake_mic` the microphone) at 16 kHz
/// mono until stopped.
fn record(sink: &str, path: &Path) -> Child {
    Command::new("parecord")
        .arg(format!("--device={sink}.monitor"))
        .args(["--rate=16000", "--channels=1", "--format=s16le", "--file-format=wav"])
        .arg(path)
        .spawn()
        .expect("parecord runs")
}

fn stop(mut child: Child) {
    std::thread::sleep(Duration::from_millis(700));
    // SIGINT lets parecord finish its WAV header.
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
}

/// Best lag of `heard` against `reference` (searching the first `max_lag` samples) and the
/// normalised correlation of the overlap there.
fn align(heard: &[f64], reference: &[f64], max_lag: usize) -> (usize, f64, usize) {
    let probe = &reference[..reference.len().min(16_000)];
    let score = |lag: usize| probe.iter().zip(&heard[lag..]).map(|(a, b)| a * b).sum::<f64>();
    let lag = (0..max_lag.min(heard.len().saturating_sub(probe.len())))
        .max_by(|&a, &b| score(a).total_cmp(&score(b)))
        .unwrap();
    let n = reference.len().min(heard.len() - lag);
    let (x, y) = (&heard[lag..lag + n], &reference[..n]);
    let dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let norm = (x.iter().map(|a| a * a).sum::<f64>() * y.iter().map(|b| b * b).sum::<f64>()).sqrt();
    (lag, dot / norm, n)
}

#[test]
fn tokens_play_reaches_the_speaker_intact() {
    if !devices_available() {
        return;
    }
    let _devices = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let tokens = dir.path().join("t.npy");
    let rendered = dir.path().join("rendered.wav");
    let heard = dir.path().join("heard.wav");
    let run = |args: &[&str]| Command::new(BIN).args(args).stdin(Stdio::null()).output().unwrap();
    let t = tokens.to_str().unwrap();
    assert!(run(&["tokens", "export", "samples/speech_nl.ogg", "--out", t, "-q"]).status.success());
    let recorder = record("fake_spk", &heard);
    std::thread::sleep(Duration::from_millis(300));
    let played = run(&["tokens", "decode", t, rendered.to_str().unwrap(), "--play", "--json"]);
    stop(recorder);
    assert!(played.status.success(), "{}", String::from_utf8_lossy(&played.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&played.stdout).unwrap();
    let (reference, heard) = (pcm(&rendered), pcm(&heard));
    let (lag, correlation, overlap) = align(&heard, &reference, 48_000);
    eprintln!("speaker: lag {lag} samples, correlation {correlation:.4} over {overlap} samples, {summary}");
    // The speaker gets the rendered WAV through two resamplers (16 -> 48 -> 16 kHz) and the
    // server's stereo downmix: measured 0.998. Dropouts or garbled buffers fall far below 0.9.
    assert!(correlation > 0.9, "correlation {correlation}");
    assert!(overlap as f64 > 0.9 * reference.len() as f64, "only {overlap} of {} samples heard", reference.len());
}

#[test]
fn missing_devices_are_one_clear_error() {
    let dir = TempDir::new().unwrap();
    let tokens = dir.path().join("t.jsonl");
    std::fs::write(&tokens, "[1, 2, 3]\n[4, 5, 6]\n").unwrap();
    let t = tokens.to_str().unwrap();
    let out = Command::new(BIN)
        .args(["tokens", "decode", t, "--play", "--output-device", "no-such-speaker"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.trim_end().lines().count() == 1 && !stderr.contains("panicked"), "{stderr}");
    // Either there is no sound system at all, or it has no such device: both say so.
    assert!(stderr.contains("no-such-speaker") || stderr.contains("audio device"), "{stderr}");
    let empty = TempDir::new().unwrap();
    let out = Command::new(BIN)
        .args(["tokens", "decode", t, "--play"])
        .env("XDG_RUNTIME_DIR", empty.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "played without a sound server?");
    assert!(stderr.trim_end().lines().count() == 1 && stderr.contains("sound server"), "{stderr}");
}

/// Log energy per millisecond, the syllable envelope both recordings share.
fn envelope(x: &[f64]) -> Vec<f64> {
    x.chunks_exact(16).map(|c| (c.iter().map(|v| v * v).sum::<f64>() / 16.0 + 1e-3).ln()).collect()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().take(n as usize).map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().take(n as usize).map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Runs `tokenwave ARGS` while speech is played into the fake microphone 1.5 s in, recording
/// the microphone and the speaker from the start; returns its output, and the lag (ms) and
/// correlation of the speaker's log-energy envelope against the microphone's.
fn through_the_devices(args: &[&str]) -> (std::process::Output, usize, f64) {
    let dir = TempDir::new().unwrap();
    let (mic, heard) = (dir.path().join("mic.wav"), dir.path().join("heard.wav"));
    let mic_recorder = record("fake_mic", &mic);
    let speaker_recorder = record("fake_spk", &heard);
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let player = Command::new("paplay").args(["--device=fake_mic", "samples/speech_cs.wav"]).status().unwrap();
    assert!(player.success());
    let output = child.wait_with_output().unwrap();
    stop(speaker_recorder);
    stop(mic_recorder);
    let (mic, heard) = (envelope(&pcm(&mic)), envelope(&pcm(&heard)));
    // Both recorders start together (to within tens of ms), so the lag is about the
    // mic-to-speaker latency; scripts/measure-latency.sh measures it on one clock.
    let (lag, correlation) = (0..400)
        .map(|lag| (lag, pearson(&mic[..mic.len() - lag], &heard[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    (output, lag, correlation)
}

#[test]
fn live_carries_the_microphone_to_the_speaker() {
    if !devices_available() {
        return;
    }
    let _devices = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let (live, lag, correlation) = through_the_devices(&["live", "--seconds", "8", "--kbps", "3", "--json"]);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    eprintln!("live: mic-to-speaker latency {lag} ms, envelope correlation {correlation:.3}, {summary}");
    // Speech through the codec keeps its syllable envelope: measured 0.94. Silence, noise,
    // a stuck or dropping pipeline give well under 0.5. The lag is reported, not asserted
    // (the recorders' start offsets wander); that the two recordings are of two different
    // devices is checked by `devices_available`.
    assert!(correlation > 0.8, "envelope correlation {correlation}");
    // 8 s is 400 frames; device start-up takes a few.
    assert!(summary["frames"].as_u64().unwrap() > 350, "{summary}");
    // Live keeps to the neural stages unless asked: the low band's 20 ms cost latency.
    assert_eq!((summary["stages"].as_u64(), summary["low_band"].as_u64()), (Some(6), Some(0)), "{summary}");
}

#[test]
fn live_with_the_low_band_carries_the_microphone_to_the_speaker() {
    if !devices_available() {
        return;
    }
    let _devices = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let args = ["live", "--seconds", "8", "--kbps", "6", "--low-band", "7", "--json"];
    let (live, lag, correlation) = through_the_devices(&args);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    eprintln!("live, low band: mic-to-speaker latency {lag} ms, envelope correlation {correlation:.3}, {summary}");
    assert!(correlation > 0.8, "envelope correlation {correlation}");
    assert!(summary["frames"].as_u64().unwrap() > 350, "{summary}");
    assert_eq!((summary["low_band"].as_u64(), summary["kbps"].as_f64()), (Some(7), Some(6.0)), "{summary}");
}

#[test]
fn send_and_receive_carry_the_microphone_to_the_speaker_over_loopback() {
    if !devices_available() {
        return;
    }
    let _devices = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let key = dir.path().join("k.key");
    assert!(Command::new(BIN).arg("keygen").arg(&key).status().unwrap().success());
    let mut receiver = Command::new(BIN)
        .args(["receive", "--listen", "127.0.0.1:0", "--json", "--key-file"])
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut receiver_err = std::io::BufReader::new(receiver.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut receiver_err, &mut first).unwrap();
    let at = first.trim().rsplit(' ').next().unwrap().to_string();
    let key = key.to_str().unwrap();
    let (sent, lag, correlation) =
        through_the_devices(&["send", "--to", &at, "--seconds", "8", "--kbps", "3", "--json", "--key-file", key]);
    Command::new("kill").args(["-INT", &receiver.id().to_string()]).status().unwrap();
    let received = receiver.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut receiver_err, &mut rest).unwrap();
    assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stderr));
    assert!(received.status.success(), "receive: {rest}");
    let summary: serde_json::Value = serde_json::from_slice(&received.stdout).unwrap();
    eprintln!(
        "send/receive: mic-to-speaker latency {lag} ms, envelope correlation {correlation:.3}, receiver {summary}, sender {}",
        String::from_utf8_lossy(&sent.stdout).trim()
    );
    // The same bar as `live`: speech keeps its syllable envelope through the network path.
    assert!(correlation > 0.8, "envelope correlation {correlation}");
    assert!(summary["frames_played"].as_u64().unwrap() > 350, "{summary}");
    assert_eq!(summary["unauthenticated"], 0);
}
