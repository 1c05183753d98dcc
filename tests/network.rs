//! `send` → UDP → `receive` over loopback, through a relay in this test that loses,
//! reorders, duplicates, tampers with and replays packets. Files on both ends, so no audio
//! devices are needed (tests/devices.rs covers microphone and speaker).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwave");
const SPEECH: &str = "samples/speech_nl.ogg";

fn tokenwave(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("binary runs")
}

fn key_file(dir: &TempDir, name: &str) -> String {
    let path = dir.path().join(name).to_str().unwrap().to_string();
    let out = tokenwave(&["keygen", &path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

fn pcm(path: &Path) -> Vec<f32> {
    hound::WavReader::open(path).unwrap().into_samples::<i16>().map(|s| f32::from(s.unwrap()) / 32768.0).collect()
}

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
                tokenwave::eval::stoi(&reference[start..start + WINDOW], &heard[from..from + WINDOW], 16_000, false);
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
        pcm(&wav)
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
        let heard = pcm(&heard);
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
fn packets_of_another_release_are_counted_and_named() {
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
