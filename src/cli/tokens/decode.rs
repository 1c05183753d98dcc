//! `tokenwave tokens decode CODES [OUT.wav] [--play]`: renders token arrays to audio.

use std::io::{BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;

use tokenwave_core::audio::{Resampler, WavSink};
use tokenwave_core::tokens::{self, JsonlFrames, TokenFormat, npy_metadata_path};
use tokenwave_core::{Codec, Codes, FrameLayout};
use tokenwave_live::{Latency, Speaker};

use super::super::output::Output;
use super::super::{Global, check_interrupt, load_codec, report};
use super::FormatArg;

#[derive(Args)]
pub struct DecodeArgs {
    /// Token file (npy, safetensors, jsonl), or `-` for JSON Lines on stdin, rendered frame by
    /// frame as the lines arrive.
    input: PathBuf,
    /// Output WAV file (`-` for stdout); optional with --play.
    #[arg(required_unless_present = "play")]
    output: Option<PathBuf>,
    /// Play through the speaker as frames are rendered.
    #[arg(long)]
    play: bool,
    /// Output device for --play (default: the system's; `tokenwave devices` lists them).
    #[arg(long, value_name = "NAME", requires = "play")]
    output_device: Option<String>,
    /// Input format (default: from the extension; jsonl for stdin).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Sample rate of the WAV (default: the model's rate).
    #[arg(long, value_name = "HZ")]
    rate: Option<u32>,
}

/// Frames decoded at once when frames are already waiting (0.5 s of audio at 50 Hz).
const MAX_FRAMES_PER_STEP: usize = 25;

pub fn run<B: Backend>(args: &DecodeArgs, global: &Global, device: B::Device) -> Result<()> {
    let codec = load_codec::<B>(global, device)?;
    let format = match (args.format, args.input == Path::new("-")) {
        (Some(format), _) => format.into(),
        (None, true) => TokenFormat::Jsonl,
        (None, false) => TokenFormat::from_path(&args.input).with_context(|| {
            format!("cannot tell the format of {} from its extension; give --format", args.input.display())
        })?,
    };
    let model_rate = codec.config().sample_rate;
    let rate = args.rate.unwrap_or(model_rate);
    let mut output = args.output.as_deref().map(Output::create).transpose()?;
    let wav = match output.as_mut() {
        Some(output) => Some((WavSink::new(BufWriter::new(output.file()), rate)?, Resampler::new(model_rate, rate)?)),
        None => None,
    };
    // Tokens arriving on stdin may come from a generator someone is listening to.
    let latency = if args.input == Path::new("-") { Latency::Live } else { Latency::Playback };
    let speaker =
        if args.play { Some(Speaker::open(args.output_device.as_deref(), model_rate, latency)?) } else { None };
    let mut sink = Sink { wav, speaker, written: 0, limit: None };
    let started = Instant::now();
    let frames = match format {
        TokenFormat::Jsonl => {
            let live = args.input == Path::new("-");
            render_jsonl(&codec, open(&args.input)?, live, &mut sink)
        }
        format => render_array(&codec, &args.input, format, &mut sink),
    }
    .with_context(|| format!("cannot decode {}", args.input.display()))?;
    let (samples, underruns) = sink.finish()?;
    if let Some(output) = output {
        output.commit()?;
    }
    let seconds = samples as f64 / f64::from(codec.config().sample_rate);
    let work = started.elapsed().as_secs_f64();
    report(
        global,
        args.output.as_deref() == Some(Path::new("-")),
        json!({
            "input": args.input, "output": args.output, "frames": frames, "seconds": seconds, "rate": rate,
            "played": args.play, "underruns": underruns,
        }),
        match underruns {
            Some(n) => format!("played {frames} frames, {seconds:.2} s of audio ({n} underruns)"),
            None => format!("rendered {frames} frames, {seconds:.2} s of audio, {:.1}x real time", seconds / work),
        },
    );
    Ok(())
}

fn open(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

/// Decoded audio on its way to the WAV and/or the speaker, cut at the length the
/// metadata gives.
struct Sink<W: std::io::Write + std::io::Seek> {
    wav: Option<(WavSink<W>, Resampler)>,
    speaker: Option<Speaker>,
    written: u64,
    limit: Option<u64>,
}

impl<W: std::io::Write + std::io::Seek> Sink<W> {
    fn push(&mut self, samples: &[f32]) -> Result<()> {
        let room = self.limit.map_or(samples.len() as u64, |limit| limit.saturating_sub(self.written));
        let take = &samples[..samples.len().min(room as usize)];
        self.written += take.len() as u64;
        if let Some((wav, resampler)) = &mut self.wav {
            wav.write(&resampler.process(take))?;
        }
        if let Some(speaker) = &mut self.speaker {
            speaker.play(take)?;
        }
        Ok(())
    }

    /// Completes the WAV and plays out the speaker; returns the samples rendered and the
    /// speaker's underruns.
    fn finish(self) -> Result<(u64, Option<u64>)> {
        if let Some((mut wav, mut resampler)) = self.wav {
            wav.write(&resampler.finish())?;
            wav.finish()?;
        }
        let underruns = match self.speaker {
            Some(speaker) => {
                let underruns = speaker.underruns();
                speaker.finish()?;
                Some(underruns)
            }
            None => None,
        };
        Ok((self.written, underruns))
    }
}

/// Whole-file formats: read, validate everything, then decode.
fn render_array<B: Backend, W: std::io::Write + std::io::Seek>(
    codec: &Codec<B>,
    path: &Path,
    format: TokenFormat,
    sink: &mut Sink<W>,
) -> Result<usize> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).context("cannot read stdin")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    let meta_path = npy_metadata_path(path);
    let meta = if format == TokenFormat::Npy && meta_path.exists() {
        Some(std::fs::read_to_string(&meta_path).with_context(|| format!("cannot read {}", meta_path.display()))?)
    } else {
        None
    };
    let raw = tokens::read(format, &bytes, meta.as_deref())?;
    let tokens = raw.into_tokens(codec.config(), codec.model_id())?;
    if tokens.codes.is_empty() {
        bail!("the token array holds no frames");
    }
    sink.limit = tokens.meta.samples;
    let layout = FrameLayout { stages: tokens.meta.stages, low_band: None, pitch: tokens.meta.pitch };
    let mut decoder = codec.stream_decoder(layout)?;
    let frames = tokens.codes.frames();
    for start in (0..frames).step_by(MAX_FRAMES_PER_STEP * 20) {
        check_interrupt()?;
        let count = (MAX_FRAMES_PER_STEP * 20).min(frames - start);
        sink.push(&decoder.push(&tokens.codes.slice_frames(start, count))?)?;
    }
    Ok(frames)
}

/// JSON Lines: frames are parsed on a reader thread. A `live` stream (stdin) is decoded as
/// soon as frames arrive, a few at a time when several are waiting; a file is decoded in
/// fixed steps, so the same file always renders to the same samples.
fn render_jsonl<B: Backend, W: std::io::Write + std::io::Seek>(
    codec: &Codec<B>,
    input: Box<dyn BufRead + Send>,
    live: bool,
    sink: &mut Sink<W>,
) -> Result<usize> {
    let mut frames = JsonlFrames::new(input, codec.config(), codec.model_id())?;
    sink.limit = frames.meta().and_then(|m| m.samples);
    let pitch = frames.meta().is_some_and(|m| m.pitch);
    let (send, receive) = mpsc::sync_channel::<tokenwave_core::Result<Vec<u16>>>(4 * MAX_FRAMES_PER_STEP);
    std::thread::spawn(move || {
        loop {
            let next = frames.next_frame().transpose();
            let stop = !matches!(next, Some(Ok(_)));
            if let Some(item) = next
                && send.send(item).is_err()
            {
                return;
            }
            if stop {
                return;
            }
        }
    });
    let mut decoder = None;
    let mut total = 0;
    while let Ok(first) = receive.recv() {
        check_interrupt()?;
        let first = first?;
        let stages = first.len();
        let decoder = match &mut decoder {
            Some(decoder) => decoder,
            None => {
                let layout = FrameLayout { stages: stages - usize::from(pitch), low_band: None, pitch };
                decoder.insert(codec.stream_decoder(layout)?)
            }
        };
        let mut data = first;
        while data.len() < MAX_FRAMES_PER_STEP * stages {
            let next = if live { receive.try_recv().ok() } else { receive.recv().ok() };
            match next {
                Some(frame) => data.extend(frame?),
                None => break,
            }
        }
        let codes = Codes::from_frame_major(stages, data)?;
        total += codes.frames();
        sink.push(&decoder.push(&codes)?)?;
    }
    if total == 0 {
        bail!("the token stream holds no frames");
    }
    Ok(total)
}
