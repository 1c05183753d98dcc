//! `tokenwave live`: microphone → encoder → codes → decoder → speaker, in real time, to hear
//! yourself through the codec.
//!
//! The device callbacks only move samples through lock-free rings; this thread runs the
//! model a 20 ms frame at a time and prints one status line a second.

use std::time::{Duration, Instant};

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;
use tokenwave_live::{Latency, Microphone, Speaker};

use super::{Global, LayoutArgs, interrupted, load_codec, report};

#[derive(Args)]
pub struct LiveArgs {
    #[command(flatten)]
    layout: LayoutArgs,
    /// Input device (default: the system's; `tokenwave devices` lists them).
    #[arg(long, value_name = "NAME")]
    input_device: Option<String>,
    /// Output device (default: the system's).
    #[arg(long, value_name = "NAME")]
    output_device: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
}

/// Most audio the speaker may have queued. An underrun (the model thread woke late) plays
/// silence and would push everything after it later for good; past this depth the excess
/// is dropped instead, so latency stays bounded.
const MAX_QUEUE_SECONDS: f64 = 0.03;

/// Silence queued before the first frame, so that jitter in the model thread's wake-ups
/// does not starve the speaker: one frame.
const PREROLL_SECONDS: f64 = 0.02;

pub fn run<B: Backend>(args: &LiveArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let layout = args.layout.live_layout(&codec)?;
    let rate = codec.config().sample_rate;
    let hop = codec.config().hop();
    let mut encoder = codec.stream_encoder(layout)?;
    let mut decoder = codec.stream_decoder(layout)?;
    // A frame waits a hop for its samples; the low band holds its output back one hop more.
    let lookahead_hops = if layout.low_band.is_some() { 2 } else { 1 };
    let mut speaker = Speaker::open(args.output_device.as_deref(), rate, Latency::Live)?;
    let mut microphone = Microphone::open(args.input_device.as_deref(), rate)?;
    speaker.play(&vec![0.0; (PREROLL_SECONDS * f64::from(rate)) as usize])?;
    let started = Instant::now();
    let mut pending: Vec<f32> = Vec::new();
    let (mut frames, mut model_busy, mut window_busy) = (0u64, Duration::ZERO, Duration::ZERO);
    let mut window_start = Instant::now();
    let mut worst_compute = Duration::ZERO;
    let mut dropped = 0u64;
    while !interrupted() && args.seconds.is_none_or(|s| started.elapsed().as_secs_f64() < s) {
        pending.extend(microphone.read()?);
        let whole = pending.len() / hop * hop;
        if whole == 0 {
            std::thread::sleep(Duration::from_millis(2));
        } else {
            for frame in pending[..whole].chunks_exact(hop) {
                let t = Instant::now();
                let codes = encoder.push(frame)?;
                let audio = decoder.push(&codes)?;
                let spent = t.elapsed();
                worst_compute = worst_compute.max(spent);
                window_busy += spent;
                let excess = ((speaker.queued_seconds() - MAX_QUEUE_SECONDS) * f64::from(rate)).max(0.0) as usize;
                let skip = excess.min(audio.len());
                dropped += skip as u64;
                speaker.play(&audio[skip..])?;
                frames += 1;
            }
            pending.drain(..whole);
        }
        if window_start.elapsed() >= Duration::from_secs(1) && !global.quiet && !global.json {
            let queued = pending.len() as f64 / f64::from(rate) + speaker.queued_seconds();
            let latency_ms =
                (queued + (hop * lookahead_hops) as f64 / f64::from(rate) + worst_compute.as_secs_f64()) * 1000.0;
            let kbps = codec.config().bitrate(encoder.codes_per_frame()) / 1000.0;
            let busy = window_busy.as_secs_f64() / window_start.elapsed().as_secs_f64();
            status_line(started, latency_ms, kbps, busy, (&speaker, &microphone), dropped as f64 / f64::from(rate));
            model_busy += window_busy;
            window_busy = Duration::ZERO;
            window_start = Instant::now();
            worst_compute = Duration::ZERO;
        }
    }
    model_busy += window_busy;
    let seconds = started.elapsed().as_secs_f64();
    report(
        global,
        false,
        json!({
            "seconds": seconds, "frames": frames, "stages": layout.stages,
            "low_band": layout.low_band_digits(), "kbps": codec.config().bitrate(encoder.codes_per_frame()) / 1000.0,
            "model_cpu_share": model_busy.as_secs_f64() / seconds, "underruns": speaker.underruns(),
            "overruns": microphone.overruns(), "xruns": speaker.xruns() + microphone.xruns(),
            "dropped_ms": dropped as f64 / f64::from(rate) * 1000.0,
        }),
        format!(
            "live: {seconds:.1} s, {frames} frames, model thread {:.0}% of a core, {} underruns, {} overruns",
            model_busy.as_secs_f64() / seconds * 100.0,
            speaker.underruns(),
            microphone.overruns()
        ),
    );
    Ok(())
}

/// The once-a-second status line: latency, rate, model load and what the devices lost.
fn status_line(
    started: Instant,
    latency_ms: f64,
    kbps: f64,
    busy: f64,
    (speaker, microphone): (&Speaker, &Microphone),
    dropped_seconds: f64,
) {
    eprintln!(
        "live {:>5.0} s | latency ~{latency_ms:.0} ms + device buffers | {kbps:.1} kbps | model thread {:.0}% of a core | underruns {} overruns {} xruns {} | {:.0} ms dropped to keep latency",
        started.elapsed().as_secs_f64(),
        busy * 100.0,
        speaker.underruns(),
        microphone.overruns(),
        speaker.xruns() + microphone.xruns(),
        dropped_seconds * 1000.0,
    );
}
