//! Microseconds per frame of the tracker (FFT and direct difference function) on a synthetic voiced/noise
//! signal; median of several runs. Usage: cargo run --release -p tokenwave-core --example pitch_speed
use std::time::Instant;

fn main() {
    let sr = 16000u32;
    let hop = 320usize;
    let seconds = 20;
    // Voiced glide with noisy gaps, so that both the voiced and the unvoiced paths are exercised.
    let mut seed = 1u32;
    let mut phase = 0.0f32;
    let x: Vec<f32> = (0..seconds * sr as usize)
        .map(|i| {
            let t = i as f32 / sr as f32;
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            if (t as u32) % 3 == 2 {
                return 0.05 * noise;
            }
            phase = (phase + (100.0 + 150.0 * (t * 0.7).sin().abs()) / sr as f32).fract();
            0.3 * (2.0 * phase - 1.0) + 0.01 * noise
        })
        .collect();
    let frames = x.len() / hop;
    for direct in [false, true] {
        let mut times = Vec::new();
        for _ in 0..7 {
            let mut t = tokenwave_core::pitch::PitchTracker::new(sr, hop);
            t.set_direct(direct);
            let start = Instant::now();
            let mut n = 0;
            for chunk in x.chunks(hop) {
                n += std::hint::black_box(t.push(chunk)).len();
            }
            assert_eq!(n, frames);
            times.push(start.elapsed().as_secs_f64() * 1e6 / frames as f64);
        }
        times.sort_by(f64::total_cmp);
        let name = if direct { "direct" } else { "fft" };
        println!(
            "{name:>6}: {:.2} us/frame median of 7 ({frames} frames each; min {:.2}, max {:.2})",
            times[3], times[0], times[6]
        );
    }
}
