//! Dataset tokenization speed, printed as figures (`cargo bench --bench tokenize`): the
//! release binary's `tokens batch` (encode only, npy out) over copies of the repository's
//! speech samples, with one and with two jobs, in × real time.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwave");
const COPIES: usize = 8;

fn main() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for copy in 0..COPIES {
        for name in ["speech_nl.ogg", "speech_cs.wav", "speech_nl2.mp3", "music.flac"] {
            std::fs::copy(Path::new("samples").join(name), data.join(format!("{copy}_{name}"))).unwrap();
        }
    }
    for jobs in [1, 2] {
        let out = dir.path().join(format!("out{jobs}"));
        let run = Command::new(BIN)
            .args(["tokens", "batch", "--manifest"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args(["--jobs", &jobs.to_string(), "--threads", &jobs.to_string(), "--json"])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        println!(
            "tokens batch, {jobs} job(s) on {jobs} thread(s): {} files, {:.1} min of audio, {:.1}x real time",
            summary["encoded"],
            summary["hours"].as_f64().unwrap() * 60.0,
            summary["x_real_time"].as_f64().unwrap()
        );
    }
}
