//! `tokenwave send`: microphone (or a file, in real time) → encoder → authenticated UDP
//! packets to a `tokenwave receive`.
//!
//! The model runs on this thread; a second thread runs the tokio event loop that does the
//! handshake, paces file input to real time, and sends.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;
use tokenwave_core::FrameLayout;
use tokenwave_core::audio::AudioSource;
use tokenwave_core::{Codec, Codes};
use tokenwave_live::Microphone;
use tokenwave_live::{Key, SendOptions, SenderLink, StreamInfo};
use tokio::sync::mpsc;

use super::{Global, LayoutArgs, interrupted, load_codec, report};

#[derive(Args)]
pub struct SendArgs {
    /// The receiver, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// Key shared with the receiver: a file of 64 hex digits (`tokenwave keygen FILE`).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    #[command(flatten)]
    layout: LayoutArgs,
    /// Send this audio file, in real time, instead of the microphone.
    #[arg(long, value_name = "FILE", conflicts_with = "input_device")]
    input: Option<PathBuf>,
    /// Input device (default: the system's; `tokenwave devices` lists them).
    #[arg(long, value_name = "NAME")]
    input_device: Option<String>,
    /// New 20 ms frames per packet: more saves header bytes, each one adds 20 ms of delay.
    #[arg(long, value_name = "N", default_value_t = 1)]
    frames_per_packet: usize,
    /// Earlier frames repeated in every packet, so that a lost packet costs nothing (0: off).
    #[arg(long, value_name = "N", default_value_t = 1)]
    redundancy: usize,
    /// Stop after this many seconds (default: until the input ends or Ctrl-C).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
}

/// Frames the model may run ahead of the network thread when reading a file (2 s).
const QUEUE_FRAMES: usize = 100;

/// The shared key in `path`.
pub fn read_key(path: &std::path::Path) -> Result<Key> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    Key::from_hex(&text).with_context(|| format!("{} is not a key file", path.display()))
}

fn resolve(to: &str) -> Result<SocketAddr> {
    to.to_socket_addrs()
        .with_context(|| format!("cannot resolve {to:?}; give HOST:PORT, e.g. 192.168.1.20:7070"))?
        .next()
        .ok_or_else(|| anyhow!("{to:?} resolves to no address"))
}

/// What the network thread reports when it is done.
struct Sent {
    frames: u64,
    packets: u64,
    bytes: u64,
}

pub fn run<B: Backend>(args: &SendArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let layout = args.layout.live_layout(&codec)?;
    let key = read_key(&args.key_file)?;
    let to = resolve(&args.to)?;
    let options = SendOptions { frames_per_packet: args.frames_per_packet, redundant_frames: args.redundancy };
    let info = StreamInfo::new(codec.config(), codec.model_id(), layout.stages, layout.low_band_digits());
    let frame_seconds = codec.config().hop() as f64 / f64::from(codec.config().sample_rate);
    let paced = args.input.is_some();

    let (frames_in, frames_out) = mpsc::channel::<Codes>(QUEUE_FRAMES);
    let (connected_tx, connected_rx) = std::sync::mpsc::channel::<tokenwave_live::Result<()>>();
    let network = std::thread::spawn(move || -> Result<Sent> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(stream(to, key, info, options, frame_seconds, paced, frames_out, connected_tx))
    });
    let join = |network: std::thread::JoinHandle<Result<Sent>>| -> Result<Sent> {
        network.join().map_err(|_| anyhow!("the network thread failed"))?
    };
    match connected_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(e.into());
        }
        Err(_) => return join(network).map(|_| ()),
    }
    if !global.quiet {
        eprintln!(
            "tokenwave: sending to {to} at {:.1} kbps ({layout})",
            codec.config().bitrate(layout.codes_per_frame()) / 1000.0
        );
    }
    let started = Instant::now();
    let model_busy = match &args.input {
        Some(path) => encode_file(&codec, layout, path, args.seconds, &frames_in),
        None => encode_microphone(&codec, layout, args, global, &frames_in),
    };
    drop(frames_in);
    let sent = join(network)?;
    let model_busy = model_busy?;
    let seconds = started.elapsed().as_secs_f64();
    let wire_kbps = (sent.bytes + sent.packets * UDP_IP_HEADERS) as f64 * 8.0 / seconds / 1000.0;
    report(
        global,
        false,
        json!({
            "to": to.to_string(), "seconds": seconds, "frames": sent.frames, "packets": sent.packets,
            "bytes": sent.bytes, "kbps": codec.config().bitrate(layout.codes_per_frame()) / 1000.0,
            "stages": layout.stages, "low_band": layout.low_band_digits(), "wire_kbps": wire_kbps,
            "model_cpu_share": model_busy.as_secs_f64() / seconds,
        }),
        format!(
            "send: {seconds:.1} s, {} frames in {} packets, {wire_kbps:.1} kbps on the wire (IPv4/UDP headers included)",
            sent.frames, sent.packets
        ),
    );
    Ok(())
}

/// IPv4 (20) and UDP (8) header bytes per datagram, for the on-the-wire rate.
const UDP_IP_HEADERS: u64 = 28;

/// The network side: handshake, then frames as they come (file input paced to real time).
#[allow(clippy::too_many_arguments)]
async fn stream(
    to: SocketAddr,
    key: Key,
    info: StreamInfo,
    options: SendOptions,
    frame_seconds: f64,
    paced: bool,
    mut frames: mpsc::Receiver<Codes>,
    connected: std::sync::mpsc::Sender<tokenwave_live::Result<()>>,
) -> Result<Sent> {
    let mut link = match SenderLink::connect(to, &key, info, options).await {
        Ok(link) => {
            let _ = connected.send(Ok(()));
            link
        }
        Err(e) => {
            let _ = connected.send(Err(e));
            return Ok(Sent { frames: 0, packets: 0, bytes: 0 });
        }
    };
    let start = tokio::time::Instant::now();
    while let Some(codes) = frames.recv().await {
        for f in 0..codes.frames() {
            if paced {
                let due = start + Duration::from_secs_f64(link.frames_sent() as f64 * frame_seconds);
                tokio::time::sleep_until(due).await;
            }
            link.send(&codes.slice_frames(f, 1)).await?;
        }
    }
    link.finish().await?;
    let (packets, bytes) = link.traffic();
    Ok(Sent { frames: link.frames_sent(), packets, bytes })
}

/// Encodes a file for the network thread as fast as it takes frames; returns the model time.
fn encode_file<B: Backend>(
    codec: &Codec<B>,
    layout: FrameLayout,
    path: &std::path::Path,
    seconds: Option<f64>,
    frames: &mpsc::Sender<Codes>,
) -> Result<Duration> {
    let rate = codec.config().sample_rate;
    let hop = codec.config().hop();
    let limit = seconds.map(|s| (s * f64::from(rate)) as u64);
    let mut source = AudioSource::open(path, rate)?;
    let mut encoder = codec.stream_encoder(layout)?;
    let mut busy = Duration::ZERO;
    while let Some(piece) = source.next_chunk()? {
        if interrupted() || limit.is_some_and(|l| encoder.samples_in() >= l) {
            return Ok(busy);
        }
        for part in piece.chunks(hop * 5) {
            let t = Instant::now();
            let codes = encoder.push(part)?;
            busy += t.elapsed();
            if !codes.is_empty() && frames.blocking_send(codes).is_err() {
                return Ok(busy);
            }
        }
    }
    if encoder.samples_in() == 0 {
        bail!("{} contains no audio samples", path.display());
    }
    let _ = frames.blocking_send(encoder.flush());
    Ok(busy)
}

/// Encodes the microphone until Ctrl-C or `--seconds`, a status line a second.
fn encode_microphone<B: Backend>(
    codec: &Codec<B>,
    layout: FrameLayout,
    args: &SendArgs,
    global: &Global,
    frames: &mpsc::Sender<Codes>,
) -> Result<Duration> {
    let rate = codec.config().sample_rate;
    let hop = codec.config().hop();
    let mut microphone = Microphone::open(args.input_device.as_deref(), rate)?;
    let mut encoder = codec.stream_encoder(layout)?;
    let started = Instant::now();
    let (mut busy, mut window_busy, mut window_start) = (Duration::ZERO, Duration::ZERO, Instant::now());
    let mut pending: Vec<f32> = Vec::new();
    let (mut sent, mut dropped) = (0u64, 0u64);
    while !interrupted() && args.seconds.is_none_or(|s| started.elapsed().as_secs_f64() < s) {
        pending.extend(microphone.read()?);
        let whole = pending.len() / hop * hop;
        if whole == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        for frame in pending[..whole].chunks_exact(hop) {
            let t = Instant::now();
            let codes = encoder.push(frame)?;
            window_busy += t.elapsed();
            sent += codes.frames() as u64;
            match frames.try_send(codes) {
                Ok(()) => {}
                // The network thread ended; its error is what the user sees.
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(busy + window_busy),
                Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
            }
        }
        pending.drain(..whole);
        if window_start.elapsed() >= Duration::from_secs(1) {
            if !global.quiet && !global.json {
                status_line(&microphone, started, sent, dropped, window_busy, window_start);
            }
            busy += window_busy;
            window_busy = Duration::ZERO;
            window_start = Instant::now();
        }
    }
    Ok(busy + window_busy)
}

fn status_line(microphone: &Microphone, started: Instant, frames: u64, dropped: u64, busy: Duration, window: Instant) {
    eprintln!(
        "send {:>5.0} s | {frames} frames ({dropped} dropped: network thread behind) | model thread {:.0}% of a core | overruns {} xruns {}",
        started.elapsed().as_secs_f64(),
        busy.as_secs_f64() / window.elapsed().as_secs_f64() * 100.0,
        microphone.overruns(),
        microphone.xruns(),
    );
}
