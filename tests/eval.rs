//! `tokenwave eval` end to end: figures in range, the comparison codecs on the same clip,
//! the spectrogram picture. (Bad arguments: tests/bad_input.rs.)

mod common;

use std::process::{Command, Stdio};

use tempfile::TempDir;

use common::tokenwave;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn eval_reports_every_measure_and_compares_with_opus_and_codec2() {
    let dir = TempDir::new().unwrap();
    let png = dir.path().join("spec.png");
    let mut args =
        vec!["eval", "--data", "samples/speech_cs.wav", "--kbps", "1.5,6", "--json", "--plot", png.to_str().unwrap()];
    // CI installs opus-tools and codec2; elsewhere the comparison runs when they are there.
    let compare = have("opusenc") && have("c2enc");
    if compare {
        args.extend(["--compare", "opus,codec2"]);
    }
    let out = tokenwave(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let means = report["mean"].as_array().unwrap();
    assert_eq!(means.len(), if compare { 7 } else { 2 });
    for system in means {
        let s = &system["scores"];
        for key in ["stoi", "estoi"] {
            let v = s[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{system}");
        }
        assert!(s["log_mel_l1"].as_f64().unwrap() > 0.0 && s["rtf"].as_f64().unwrap() > 0.0, "{system}");
        assert!(s["si_sdr"].as_f64().unwrap().is_finite());
        assert!(s["harmonic_contrast_db"].as_f64().unwrap().is_finite(), "{system}");
    }
    // The original's harmonics stand well clear of what lies between them (the shared tool
    // reads 3.1 dB on this clip with pYIN's frames).
    let original = report["reference_harmonic_contrast_db"].as_f64().unwrap();
    assert!(original > 2.0, "the original's harmonic contrast {original} dB");
    // Real bitrates include the container: above the nominal rate, but not by much.
    let kbps = |i: usize| means[i]["scores"]["real_kbps"].as_f64().unwrap();
    assert!(kbps(0) > 1.5 && kbps(0) < 1.8, "{}", kbps(0));
    assert!(kbps(1) > 6.0 && kbps(1) < 6.4, "{}", kbps(1));
    if compare {
        assert_eq!(means[2]["system"], "opus 6 kbps");
        assert!(means[6]["scores"]["real_kbps"].as_f64().unwrap() > 3.1);
        // Opus at 12 kbps is a working codec: its STOI on clean speech is high.
        assert!(means[4]["scores"]["stoi"].as_f64().unwrap() > 0.85);
    }
    let utilization = report["codebook_utilization"].as_array().unwrap();
    assert_eq!(utilization.len(), 5, "every neural stage used: 6 kbps takes 5 beside the low band");
    let picture = std::fs::read(&png).unwrap();
    assert_eq!(&picture[1..4], b"PNG");
    // Three panels (original, 1.5 and 6 kbps) of 64 mel bands, 3 pixels each, and a gap:
    // the height in the PNG header says so, and stderr names them in that order.
    let height = u32::from_be_bytes(picture[20..24].try_into().unwrap());
    assert_eq!(height, 3 * (64 * 3 + 6));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("top to bottom: original, tokenwave 1.5 kbps, tokenwave 6 kbps (2.5 + low band 3.5)"),
        "{stderr}"
    );
}

#[test]
fn eval_measures_each_rate_with_and_without_the_low_band() {
    let args = ["eval", "--data", "samples/speech_nl.ogg", "--kbps", "2,6", "--low-band", "0,4,7", "--json"];
    let out = tokenwave(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped 2 kbps with 4 low-band codes"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let means = report["mean"].as_array().unwrap();
    let systems: Vec<&str> = means.iter().map(|m| m["system"].as_str().unwrap()).collect();
    assert_eq!(
        systems,
        [
            "tokenwave 2 kbps",
            "tokenwave 6 kbps",
            "tokenwave 6 kbps (4 + low band 2)",
            "tokenwave 6 kbps (2.5 + low band 3.5)"
        ]
    );
    let score = |i: usize, key: &str| means[i]["scores"][key].as_f64().unwrap();
    // The same bitrate in the container (the low band's extra frame aside).
    assert!((score(3, "real_kbps") - score(1, "real_kbps")).abs() < 0.15, "{report}");
    // The low band carries the waveform from 75 to 700 Hz: SI-SDR turns from far negative
    // (the decoder's own phase) to positive.
    assert!(score(1, "si_sdr") < -10.0 && score(3, "si_sdr") > 0.0, "{report}");
    assert_eq!(report["codebook_utilization"].as_array().unwrap().len(), 12, "neural stages only");
    let args = ["eval", "--data", "samples/speech_nl.ogg", "--kbps", "1.5,6", "--json"];
    let out = tokenwave(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let systems: Vec<&str> = report["mean"].as_array().unwrap().iter().map(|m| m["system"].as_str().unwrap()).collect();
    assert_eq!(systems, ["tokenwave 1.5 kbps", "tokenwave 6 kbps (2.5 + low band 3.5)"], "each rate's own split");
    let out = tokenwave(&["eval", "--data", "samples/speech_nl.ogg", "--low-band", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 to 8 codes per frame"));
}

#[test]
fn the_table_goes_to_stdout() {
    let out = tokenwave(&["eval", "--data", "samples/speech_cs.wav", "--kbps", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("mean over 1 clips (0 skipped; the originals' harmonic contrast "), "{table}");
    assert!(table.contains("harm dB"), "{table}");
    assert!(
        table.contains("tokenwave 3 kbps (1.5 + low band 1.5)") && table.contains("codebook utilization"),
        "{table}"
    );
}
