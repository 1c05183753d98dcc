//! `tokenwave receive`: authenticated UDP packets from a `tokenwave send` → jitter buffer →
//! decoder → speaker (or a WAV file).
//!
//! A tokio thread receives, authenticates and files frames into the jitter buffer the
//! moment they arrive (so arrival times are honest); this thread takes one frame per
//! 20 ms period out of it — when the speaker wants one, or by the clock for a file — and
//! decodes it.

use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;
use tokenwave_core::audio::WavSink;
use tokenwave_core::{Codec, Codes, StreamDecoder};
use tokenwave_live::{JitterStats, Latency, LinkStats, Playout, Receiver, Speaker, StreamInfo};

use super::output::Output;
use super::send::read_key;
use super::{Global, interrupted, load_codec, report};

#[derive(Args)]
pub struct ReceiveArgs {
    /// Address to listen on, ADDR:PORT (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: String,
    /// Key shared with the sender: a file of 64 hex digits (`tokenwave keygen FILE`).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Write what arrives to this WAV file (the model's rate) instead of playing it; ends
    /// when the sender stops.
    #[arg(long, value_name = "FILE", conflicts_with = "output_device")]
    output: Option<PathBuf>,
    /// Output device (default: the system's; `tokenwave devices` lists them).
    #[arg(long, value_name = "NAME")]
    output_device: Option<String>,
    /// Give up if no sender has connected after this many seconds (default: wait).
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
    /// Most delay the jitter buffer may hold, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    max_delay: u32,
}

/// The speaker is handed a frame when it has less than this much queued: a little over one
/// 10 ms device period, so frames are taken a frame period apart, when the last one is
/// nearly played, keeping the slack the jitter buffer set at the start.
const SPEAKER_LOW_WATER: f64 = 0.012;

pub fn run<B: Backend>(args: &ReceiveArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let key = read_key(&args.key_file)?;
    let listen: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?} is not ADDR:PORT, e.g. 0.0.0.0:7070", args.listen))?;
    let config = codec.config();
    let frame_seconds = config.hop() as f64 / f64::from(config.sample_rate);
    let max_depth = ((f64::from(args.max_delay) / 1000.0 / frame_seconds) as usize).max(1);
    let info = StreamInfo::new(config, codec.model_id(), config.max_stages, 8);
    let receiver = Receiver::start(listen, key, info, frame_seconds, max_depth)?;
    if !global.quiet {
        eprintln!("tokenwave: listening on {}", receiver.local_addr());
    }

    let mut playout = Renderer::new(&codec, args)?;
    let started = Instant::now();
    let mut sessions_seen = 0;
    let mut window = Instant::now();
    while !interrupted() {
        let state = match receiver.state() {
            Ok(state) => state,
            Err(e) => {
                playout.abandon();
                return Err(e.into());
            }
        };
        if state.sessions == 0 {
            if args.timeout.is_some_and(|t| started.elapsed().as_secs_f64() > t) {
                playout.abandon();
                return Err(nobody_came(args.timeout.unwrap_or_default(), state.link));
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if state.sessions != sessions_seen {
            sessions_seen = state.sessions;
            playout.restart(state.low_band);
        }
        if state.over {
            receiver.end_session();
            if playout.to_file() {
                break;
            }
        }
        if !state.active || state.over {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if !playout.wants_frame() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        playout.play(receiver.next_frame())?;
        if window.elapsed() >= Duration::from_secs(1) && !global.quiet && !global.json {
            status_line(&receiver, &playout, started, frame_seconds);
            window = Instant::now();
        }
    }
    let (jitter, link) = receiver.totals();
    let heard = playout.finish()?;
    if sessions_seen == 0 {
        bail!("no sender connected; nothing was received");
    }
    summary(global, started.elapsed().as_secs_f64(), heard, sessions_seen, jitter, link);
    Ok(())
}

/// Why no sender connected within `timeout` seconds, from what the link refused.
fn nobody_came(timeout: f64, link: LinkStats) -> anyhow::Error {
    let hint = if link.other_version > 0 {
        "a sender runs another tokenwave release, whose packets this one cannot read: run the same release at both ends"
    } else {
        "check the address and that both ends use the same key file"
    };
    anyhow!(
        "no sender connected within {timeout} s ({} packets refused: {} unauthenticated, {} replayed, {} malformed, {} of another release); {hint}",
        link.unauthenticated + link.replayed + link.malformed + link.other_version,
        link.unauthenticated,
        link.replayed,
        link.malformed,
        link.other_version
    )
}

/// The closing report of a receive.
fn summary(global: &Global, seconds: f64, heard: f64, sessions: u64, jitter: JitterStats, link: LinkStats) {
    let mean_delay_ms = jitter.waited_micros as f64 / 1000.0 / jitter.played.max(1) as f64;
    let periods = jitter.played + jitter.concealed;
    let concealed_share = if periods == 0 { 0.0 } else { jitter.concealed as f64 / periods as f64 };
    report(
        global,
        false,
        json!({
            "seconds": seconds, "heard_seconds": heard, "sessions": sessions,
            "frames_played": jitter.played, "frames_concealed": jitter.concealed, "concealed_share": concealed_share,
            "late": jitter.late, "redundant_or_duplicate": jitter.duplicate, "trimmed": jitter.trimmed,
            "packets_accepted": link.accepted, "bytes_accepted": link.accepted_bytes,
            "unauthenticated": link.unauthenticated, "replayed": link.replayed, "malformed": link.malformed,
            "other_version": link.other_version,
            "stale": link.stale, "mean_buffer_delay_ms": mean_delay_ms,
        }),
        format!(
            "receive: {heard:.1} s heard, {} frames played, {:.1}% concealed, {} late; refused {} unauthenticated, {} replayed, {} malformed, {} of another release",
            jitter.played,
            concealed_share * 100.0,
            jitter.late,
            link.unauthenticated,
            link.replayed,
            link.malformed,
            link.other_version
        ),
    );
}

/// Where decoded frames go, and the clock that asks for them.
struct Renderer<B: Backend> {
    codec: Codec<B>,
    /// The session's decoder, made at its first frame (whose length gives the stages).
    decoder: Option<StreamDecoder<B>>,
    /// Low-band codes per frame of the session.
    low_band: usize,
    speaker: Option<Speaker>,
    wav: Option<(Output, WavSink<BufWriter<std::fs::File>>)>,
    hop: usize,
    rate: u32,
    /// Samples handed on.
    samples: u64,
    /// A real frame has been played in this session (silence before it is not written).
    started: bool,
    /// When to ask for the next frame (file output), or poll the jitter buffer (start).
    poll: Instant,
}

impl<B: Backend> Renderer<B> {
    fn new(codec: &Codec<B>, args: &ReceiveArgs) -> Result<Self> {
        let rate = codec.config().sample_rate;
        let (speaker, wav) = match &args.output {
            Some(path) => {
                let mut output = Output::create(path)?;
                let sink = WavSink::new(BufWriter::new(output.file().try_clone()?), rate)?;
                (None, Some((output, sink)))
            }
            None => (Some(Speaker::open(args.output_device.as_deref(), rate, Latency::Live)?), None),
        };
        Ok(Self {
            codec: codec.clone(),
            decoder: None,
            low_band: 0,
            speaker,
            wav,
            hop: codec.config().hop(),
            rate,
            samples: 0,
            started: false,
            poll: Instant::now(),
        })
    }

    /// One frame period.
    fn frame(&self) -> Duration {
        Duration::from_secs_f64(self.hop as f64 / f64::from(self.rate))
    }

    fn to_file(&self) -> bool {
        self.wav.is_some()
    }

    /// A new session, whose frames end with `low_band` low-band codes: fresh decoder state.
    fn restart(&mut self, low_band: usize) {
        (self.decoder, self.low_band) = (None, low_band);
        self.started = false;
    }

    /// Whether the next period is due. Until the first frame plays, every millisecond (the
    /// jitter buffer says when to start); then by the speaker's appetite, or for a file by
    /// the clock, one frame period after another from the first frame on.
    fn wants_frame(&mut self) -> bool {
        let now = Instant::now();
        if !self.started {
            let due = now >= self.poll;
            self.poll = now + Duration::from_millis(1);
            return due;
        }
        match &self.speaker {
            Some(speaker) => speaker.queued_seconds() < SPEAKER_LOW_WATER,
            None => {
                if now < self.poll {
                    return false;
                }
                self.poll += self.frame();
                true
            }
        }
    }

    fn play(&mut self, next: Playout) -> Result<()> {
        let audio = match next {
            Playout::Frame(codes) => {
                if !self.started {
                    self.started = true;
                    self.poll = Instant::now() + self.frame();
                }
                self.decode(codes)?
            }
            Playout::Concealed { codes, gain } => self.decode(codes)?.into_iter().map(|x| x * gain).collect(),
            Playout::Silence => vec![0.0; self.hop],
        };
        if !self.started {
            return Ok(());
        }
        self.samples += audio.len() as u64;
        if let Some((_, wav)) = &mut self.wav {
            wav.write(&audio)?;
        }
        if let Some(speaker) = &mut self.speaker {
            speaker.play(&audio)?;
        }
        Ok(())
    }

    fn decode(&mut self, codes: Vec<u16>) -> Result<Vec<f32>> {
        let codec = &self.codec;
        let per_frame = codes.len();
        let decoder = match &mut self.decoder {
            Some(decoder) => decoder,
            None => {
                let pitch = usize::from(codec.uses_pitch());
                let stages = per_frame.checked_sub(self.low_band + pitch).filter(|&s| s > 0).unwrap_or(0);
                self.decoder.insert(codec.stream_decoder(codec.layout(stages, self.low_band)?)?)
            }
        };
        Ok(decoder.push(&Codes::from_frame_major(per_frame, codes)?)?)
    }

    /// Leaves no output file behind.
    fn abandon(&mut self) {
        self.wav = None;
    }

    /// Completes the WAV (only if something was heard) or plays out the speaker; returns
    /// the seconds heard.
    fn finish(self) -> Result<f64> {
        let seconds = self.samples as f64 / f64::from(self.rate);
        if let Some((output, wav)) = self.wav {
            wav.finish()?;
            if self.samples > 0 {
                output.commit()?;
            }
        }
        if let Some(speaker) = self.speaker {
            speaker.finish()?;
        }
        Ok(seconds)
    }
}

fn status_line<B: Backend>(receiver: &Receiver, playout: &Renderer<B>, started: Instant, frame_seconds: f64) {
    let b = receiver.buffer();
    let periods = (b.stats.played + b.stats.concealed).max(1);
    let peer = b.peer.map_or_else(|| "nobody".to_string(), |peer| peer.to_string());
    eprintln!(
        "receive {:>5.0} s | from {peer} | buffer {} frames ({:.0} ms, jitter {:.1} ms) | concealed {:.1}% | late {} | refused {} unauthenticated, {} replayed, {} malformed, {} of another release | underruns {}",
        started.elapsed().as_secs_f64(),
        b.depth,
        b.depth as f64 * frame_seconds * 1000.0,
        b.jitter_seconds * 1000.0,
        b.stats.concealed as f64 / periods as f64 * 100.0,
        b.stats.late,
        b.link.unauthenticated,
        b.link.replayed,
        b.link.malformed,
        b.link.other_version,
        playout.speaker.as_ref().map_or(0, Speaker::underruns),
    );
}
