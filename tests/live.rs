//! Live: real, real-time audio devices, and `send` → UDP → `receive` over loopback.
//!
//! The devices are on CI a private PipeWire with null sinks as microphone and speaker
//! (`.ci/headless-audio start` exports TOKENWAVE_AUDIO_DEVICES=1). Without that stack the
//! device tests say so and pass; CI makes them mandatory by starting it.
//!
//! The network tests need no devices: files on both ends, through a relay in this test that
//! loses, reorders, duplicates, tampers with and replays packets.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tempfile::TempDir;

use common::{BIN, SPEECH, key_file, pcm, pcm_f32, tokenwave};

/// Runs in real time: the device tests each hold it alone (the fake devices are shared, and
/// a busy machine would garble what they record), the network tests share it (as when they
/// were a binary of their own, apart from the device tests).
static REAL_TIME: RwLock<()> = RwLock::new(());

// Devices.

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

/// A 16-bit WAV file's samples, unscaled.
fn pcm_f64(path: &Path) -> Vec<f64> {
    pcm(path).into_iter().map(f64::from).collect()
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
    let _alone = REAL_TIME.write().unwrap_or_else(|e| e.into_inner());
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
    let (reference, heard) = (pcm_f64(&rendered), pcm_f64(&heard));
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
    let (mic, heard) = (envelope(&pcm_f64(&mic)), envelope(&pcm_f64(&heard)));
    // Both recorders start together (to within tens of ms), so the lag is about the
    // mic-to-speaker latency; scripts/measure-latency.sh measures it on one clock.
    let (lag, correlation) = (0..400)
        .map(|lag| (lag, pearson(&mic[..mic.len() - lag], &heard[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    (output, lag, correlation)
}

/// Runs `tokenwave live ARGS --seconds 8 --json` through the devices, alone; asserts that
/// the speech kept its syllable envelope and that most of the 400 frames ran; returns the
/// summary.
fn live_through_the_devices(args: &[&str], what: &str) -> serde_json::Value {
    let _alone = REAL_TIME.write().unwrap_or_else(|e| e.into_inner());
    let mut all = vec!["live", "--seconds", "8", "--json"];
    all.extend_from_slice(args);
    let (live, lag, correlation) = through_the_devices(&all);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    eprintln!("{what}: mic-to-speaker latency {lag} ms, envelope correlation {correlation:.3}, {summary}");
    // Speech through the codec keeps its syllable envelope: measured 0.94. Silence, noise,
    // a stuck or dropping pipeline give well under 0.5. The lag is reported, not asserted
    // (the recorders' start offsets wander); that the two recordings are of two different
    // devices is checked by `devices_available`.
    assert!(correlation > 0.8, "envelope correlation {correlation}");
    // 8 s is 400 frames; device start-up takes a few.
    assert!(summary["frames"].as_u64().unwrap() > 350, "{summary}");
    summary
}

#[test]
fn live_carries_the_microphone_to_the_speaker() {
    if !devices_available() {
        return;
    }
    let summary = live_through_the_devices(&["--kbps", "3"], "live");
    // Live keeps to the neural stages unless asked: the low band's 20 ms cost latency.
    assert_eq!((summary["stages"].as_u64(), summary["low_band"].as_u64()), (Some(6), Some(0)), "{summary}");
}

#[test]
fn live_with_the_low_band_carries_the_microphone_to_the_speaker() {
    if !devices_available() {
        return;
    }
    let summary = live_through_the_devices(&["--kbps", "6", "--low-band", "7"], "live, low band");
    assert_eq!((summary["low_band"].as_u64(), summary["kbps"].as_f64()), (Some(7), Some(6.0)), "{summary}");
}

#[test]
fn send_and_receive_carry_the_microphone_to_the_speaker_over_loopback() {
    if !devices_available() {
        return;
    }
    let _alone = REAL_TIME.write().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let key = key_file(&dir, "k.key");
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
    let key = key.as_str();
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

// The network, through an unreliable relay.

/// Starts `receive` and returns it with the address it listens on (its first stderr line).
fn receiver(args: &[&str]) -> (Child, SocketAddr, std::thread::JoinHandle<String>) {
    let mut child = Command::new(BIN)
        .args(["receive", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr = first.trim().rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("no address in {first:?}"));
    // Keep draining stderr so the receiver never blocks on a full pipe.
    let rest = std::thread::spawn(move || {
        let mut text = String::new();
        for line in stderr.lines() {
            text.push_str(&line.unwrap());
            text.push('\n');
        }
        text
    });
    (child, addr, rest)
}

/// What the relay did, to compare with what the receiver counted.
#[derive(Default)]
struct RelayCounts {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    replayed: AtomicU64,
    tampered: AtomicU64,
    back: AtomicU64,
}

/// Impairments applied to packets going to the receiver, each a probability.
#[derive(Clone, Copy)]
struct Impairment {
    loss: f64,
    duplicate: f64,
    reorder: f64,
    replay: f64,
    tamper: f64,
}

/// A UDP relay between one sender and the receiver at `to`; returns its address.
fn relay(to: SocketAddr, impairment: Impairment, seed: u64) -> (SocketAddr, Arc<RelayCounts>, Arc<AtomicBool>) {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(to).unwrap();
    front.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    back.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let addr = front.local_addr().unwrap();
    let counts = Arc::new(RelayCounts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sender: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    {
        let (front, back, counts, stop, sender) =
            (front.try_clone().unwrap(), back.try_clone().unwrap(), counts.clone(), stop.clone(), sender.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = back.recv(&mut buf)
                    && let Some(peer) = *sender.lock().unwrap()
                {
                    counts.back.fetch_add(1, Ordering::Relaxed);
                    front.send_to(&buf[..n], peer).unwrap();
                }
            }
        });
    }
    {
        let (counts, stop) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut chance = move |p: f64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 <= p
            };
            let mut delivered: Vec<Vec<u8>> = Vec::new();
            let mut held: Option<Vec<u8>> = None;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else {
                    if let Some(packet) = held.take() {
                        back.send(&packet).unwrap();
                    }
                    continue;
                };
                *sender.lock().unwrap() = Some(from);
                let packet = buf[..n].to_vec();
                if chance(impairment.loss) {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if chance(impairment.tamper) {
                    let mut forged = packet.clone();
                    let last = forged.len() - 1;
                    forged[14 + (last - 14) / 2] ^= 0x20;
                    counts.tampered.fetch_add(1, Ordering::Relaxed);
                    back.send(&forged).unwrap();
                }
                if held.is_none() && chance(impairment.reorder) {
                    held = Some(packet);
                    continue;
                }
                back.send(&packet).unwrap();
                counts.forwarded.fetch_add(1, Ordering::Relaxed);
                if let Some(late) = held.take() {
                    back.send(&late).unwrap();
                    counts.forwarded.fetch_add(1, Ordering::Relaxed);
                    delivered.push(late);
                }
                if chance(impairment.duplicate) {
                    back.send(&packet).unwrap();
                    counts.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                if delivered.len() > 10 && chance(impairment.replay) {
                    back.send(&delivered[delivered.len() - 10]).unwrap();
                    counts.replayed.fetch_add(1, Ordering::Relaxed);
                }
                delivered.push(packet);
            }
        });
    }
    (addr, counts, stop)
}

/// STOI of `heard` against `reference` in 0.75 s windows, averaged. Each window is aligned
/// on its own, near the previous window's offset: the receiver's delay grows by a frame
/// whenever the jitter buffer deepens, shifting the rest of the recording. Near-silent
/// windows (nothing to align on or to score) are skipped. Returns the range of offsets too.
fn aligned_stoi(reference: &[f32], heard: &[f32]) -> (f64, i64, i64) {
    const WINDOW: usize = 12_000;
    const SEARCH: i64 = 640;
    let energy = |x: &[f32]| x.iter().map(|v| f64::from(v * v)).sum::<f64>() / x.len() as f64;
    let loud = energy(reference) * 0.1;
    let correlation = |start: usize, lag: i64| -> f64 {
        let from = start as i64 + lag;
        if from < 0 || from as usize + WINDOW > heard.len() {
            return f64::NEG_INFINITY;
        }
        let h = &heard[from as usize..from as usize + WINDOW];
        reference[start..start + WINDOW].iter().zip(h).step_by(2).map(|(x, y)| f64::from(x * y)).sum()
    };
    let (mut scores, mut lags, mut previous) = (Vec::new(), Vec::new(), 0i64);
    for start in (0..reference.len().saturating_sub(WINDOW)).step_by(WINDOW) {
        if energy(&reference[start..start + WINDOW]) < loud {
            continue;
        }
        let lag = (previous - SEARCH..=previous + SEARCH)
            .max_by(|&a, &b| correlation(start, a).total_cmp(&correlation(start, b)))
            .unwrap();
        let from = (start as i64 + lag) as usize;
        if from + WINDOW <= heard.len() {
            let score =
                tokenwave_eval::stoi(&reference[start..start + WINDOW], &heard[from..from + WINDOW], 16_000, false);
            scores.push(score.unwrap());
            lags.push(lag);
            previous = lag;
        }
    }
    assert!(scores.len() >= 5, "only {} windows could be aligned", scores.len());
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    (mean, *lags.iter().min().unwrap(), *lags.iter().max().unwrap())
}

#[test]
fn speech_crosses_a_lossy_relay_and_degrades_gracefully() {
    // Alone: it scores what arrives in time, and the other network tests' encoders beside it
    // on 2 cores once made packets late with no loss at all (STOI 0.871 against 0.97).
    let _alone = REAL_TIME.write().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let key = key_file(&dir, "shared.key");
    // The same codes decoded from a file: without the low band, and with 3 of the 6 codes
    // per frame given to it (the lossless run streams that).
    let reference = |low_band: &str| {
        let (tkw, wav) =
            (dir.path().join(format!("reference{low_band}.tkw")), dir.path().join(format!("reference{low_band}.wav")));
        for args in [
            vec!["encode", SPEECH, tkw.to_str().unwrap(), "--kbps", "3", "--low-band", low_band, "-q"],
            vec!["decode", tkw.to_str().unwrap(), wav.to_str().unwrap(), "-q"],
        ] {
            assert!(tokenwave(&args).status.success());
        }
        pcm_f32(&wav)
    };
    let references = [reference("0"), reference("3")];
    let runs: Vec<_> = [(0.0, "3"), (0.1, "0"), (0.2, "0")]
        .into_iter()
        .enumerate()
        .map(|(i, (loss, low_band))| {
            let (dir, key) = (dir.path().to_path_buf(), key.clone());
            std::thread::spawn(move || {
                let heard = dir.join(format!("heard{i}.wav"));
                let (receiver, at, stderr) =
                    receiver(&["--key-file", &key, "--output", heard.to_str().unwrap(), "--json", "--timeout", "30"]);
                let impairment = Impairment { loss, duplicate: 0.03, reorder: 0.05, replay: 0.02, tamper: 0.02 };
                let (relay_at, counts, stop) = relay(at, impairment, 7 + i as u64);
                let sent = tokenwave(&[
                    "send",
                    "--to",
                    &relay_at.to_string(),
                    "--key-file",
                    &key,
                    "--input",
                    SPEECH,
                    "--kbps",
                    "3",
                    "--low-band",
                    low_band,
                    "--json",
                ]);
                let received = receiver.wait_with_output().unwrap();
                stop.store(true, Ordering::Relaxed);
                let stderr = stderr.join().unwrap();
                assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stderr));
                assert!(received.status.success(), "receive: {stderr}");
                let summary: serde_json::Value = serde_json::from_slice(&received.stdout).unwrap();
                (loss, low_band, heard, summary, counts)
            })
        })
        .collect();
    let mut table = Vec::new();
    for run in runs {
        let (loss, low_band, heard, summary, counts) = run.join().unwrap();
        let heard = pcm_f32(&heard);
        let (score, first_lag, last_lag) = aligned_stoi(&references[usize::from(low_band != "0")], &heard);
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        table.push(format!(
            "loss {:>2.0}%, {low_band} low-band codes: STOI {score:.3} (offset {first_lag}..{last_lag} samples), concealed {:.1}%, buffer delay {:.1} ms, heard {:.2} s, relay dropped {} of {}",
            loss * 100.0,
            summary["concealed_share"].as_f64().unwrap() * 100.0,
            summary["mean_buffer_delay_ms"].as_f64().unwrap(),
            summary["heard_seconds"].as_f64().unwrap(),
            c(&counts.dropped),
            c(&counts.dropped) + c(&counts.forwarded),
        ));
        // Every forged packet and every copy was caught, none more: the counts match exactly.
        assert_eq!(summary["unauthenticated"].as_u64().unwrap(), c(&counts.tampered), "{summary}");
        assert_eq!(summary["replayed"].as_u64().unwrap(), c(&counts.duplicated) + c(&counts.replayed), "{summary}");
        // Playback never stopped: the whole clip (8.70 s) came out, gaps concealed.
        let seconds = summary["heard_seconds"].as_f64().unwrap();
        assert!((8.4..=9.2).contains(&seconds), "heard {seconds} s of 8.70: {summary}");
        // Against the same codes decoded from a file. Without loss only reordering remains,
        // and the buffer absorbs it (measured 1.000 in 4 runs). With loss quality degrades
        // gracefully: measured 0.991 at 10 %, 0.92-0.96 at 20 % (redundancy recovers most
        // single losses). The floors leave room for timing differences on a busy machine.
        let floor = if loss == 0.0 {
            0.97
        } else if loss < 0.15 {
            0.94
        } else {
            0.85
        };
        assert!(score >= floor, "STOI below {floor}: {}", table.last().unwrap());
    }
    eprintln!("{}", table.join("\n"));
}

#[test]
fn a_sender_without_the_key_gets_nothing_back_and_is_never_heard() {
    let _shared = REAL_TIME.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let (key, wrong) = (key_file(&dir, "right.key"), key_file(&dir, "wrong.key"));
    let heard = dir.path().join("never.wav");
    let (receiver, at, stderr) = receiver(&["--key-file", &key, "--output", heard.to_str().unwrap(), "--timeout", "7"]);
    let none = Impairment { loss: 0.0, duplicate: 0.0, reorder: 0.0, replay: 0.0, tamper: 0.0 };
    let (relay_at, counts, stop) = relay(at, none, 1);
    let sent = tokenwave(&["send", "--to", &relay_at.to_string(), "--key-file", &wrong, "--input", SPEECH]);
    let received = receiver.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    let stderr = stderr.join().unwrap();
    let sent_err = String::from_utf8_lossy(&sent.stderr);
    assert!(!sent.status.success());
    assert_eq!(sent_err.trim_end().lines().count(), 1, "{sent_err}");
    assert!(sent_err.contains("no answer") && sent_err.contains("same key"), "{sent_err}");
    assert!(!received.status.success());
    assert!(stderr.contains("no sender connected") && stderr.contains("unauthenticated"), "{stderr}");
    // The sender's hellos (one every 200 ms for 5 s) all arrived and were all refused
    // silently: not one packet went back, and nothing was written.
    let hellos = counts.forwarded.load(Ordering::Relaxed);
    assert!(hellos >= 10, "{hellos} hellos relayed");
    assert_eq!(counts.back.load(Ordering::Relaxed), 0);
    assert!(stderr.contains(&format!("{hellos} unauthenticated")), "{stderr}");
    assert!(!heard.exists());
}

#[test]
fn a_model_mismatch_is_a_clear_error_on_both_ends() {
    let _shared = REAL_TIME.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let key = key_file(&dir, "shared.key");
    let other = dir.path().join("other.safetensors");
    assert!(tokenwave(&["init-model", other.to_str().unwrap()]).status.success());
    let heard = dir.path().join("heard.wav");
    let (receiver, at, stderr) = receiver(&[
        "--key-file",
        &key,
        "--output",
        heard.to_str().unwrap(),
        "--model",
        other.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    let sent = tokenwave(&["send", "--to", &at.to_string(), "--key-file", &key, "--input", SPEECH]);
    let received = receiver.wait_with_output().unwrap();
    let (sent_err, received_err) = (String::from_utf8_lossy(&sent.stderr).to_string(), stderr.join().unwrap());
    assert!(!sent.status.success() && !received.status.success());
    assert_eq!(sent_err.trim_end().lines().count(), 1, "{sent_err}");
    assert!(sent_err.contains("refused") && sent_err.contains("same model"), "{sent_err}");
    assert!(received_err.contains("refused a sender") && received_err.contains("same model"), "{received_err}");
    assert!(!heard.exists());
}

#[test]
fn packets_of_another_release_are_counted_and_named() {
    let _shared = REAL_TIME.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let key = key_file(&dir, "k.key");
    let heard = dir.path().join("never.wav");
    let (receiver, at, stderr) = receiver(&["--key-file", &key, "--output", heard.to_str().unwrap(), "--timeout", "3"]);
    // Hellos as an older release sends them: the magic, packet version 2, kind 1, and a
    // sealed body of that release's size.
    let mut hello = vec![0x54, 2 << 4 | 1];
    hello.resize(14 + 25 + 16, 0);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        socket.send_to(&hello, at).unwrap();
    }
    let received = receiver.wait_with_output().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(!received.status.success());
    assert!(stderr.contains("5 of another release") && stderr.contains("same release at both ends"), "{stderr}");
    assert!(!heard.exists());
}
