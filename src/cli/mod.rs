//! Subcommands, global options, and what they share: loading the model, picking the
//! compute device, progress bars, Ctrl-C.

/// `println!` that survives a reader who stopped reading (`tokenwave info x.tkw | head -1`):
/// see [`print_line`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

mod decode;
mod devices;
mod encode;
mod eval;
mod info;
mod init_model;
mod keygen;
mod live;
mod output;
mod receive;
mod roundtrip;
mod send;
mod tokens;
mod train;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tokenwave_core::FrameLayout;
use tokenwave_core::{Codec, Weights};

/// Set by the Ctrl-C handler; long loops check it and stop cleanly.
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Exit status after Ctrl-C, as shells expect (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(name = "tokenwave", version, about = "A streaming neural audio codec", propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Clone)]
pub struct Global {
    /// Model weights (safetensors) instead of the embedded default model.
    #[arg(long, global = true, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Compute device.
    #[arg(long, global = true, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// CPU threads for the model (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Print statistics as one JSON object on stdout (stderr when stdout carries data).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar and no summary.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// Where the model runs.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// burn's pure-Rust CPU backend.
    Cpu,
    /// An NVIDIA GPU (needs a build with `--features cuda`).
    Cuda,
}

#[derive(Subcommand)]
enum Command {
    /// Compress an audio file (WAV, FLAC, MP3, Ogg Vorbis; any rate and channels) to .tkw.
    Encode(encode::EncodeArgs),
    /// Decode a .tkw file to WAV.
    Decode(decode::DecodeArgs),
    /// Describe a .tkw file: header, duration, real bitrate, model id.
    Info(info::InfoArgs),
    /// Encode and decode in one go; prints the bitrate and the real-time factor.
    Roundtrip(roundtrip::RoundtripArgs),
    /// Write freshly initialised (untrained) weights, e.g. to start training from scratch.
    InitModel(init_model::InitModelArgs),
    /// Train a model on directories of audio; resumable with --resume.
    Train(train::TrainArgs),
    /// Talk into the microphone and hear yourself through the codec, in real time.
    Live(live::LiveArgs),
    /// Stream the microphone (or a file) to a `tokenwave receive` over UDP, authenticated.
    Send(send::SendArgs),
    /// Play (or record to a file) what a `tokenwave send` streams.
    Receive(receive::ReceiveArgs),
    /// Write a fresh random key file for `send` and `receive`.
    Keygen(keygen::KeygenArgs),
    /// List the audio devices.
    Devices,
    /// Measure quality (STOI, ESTOI, SI-SDR, log-mel, real bitrate, speed) on clips, optionally
    /// next to Opus and Codec2.
    Eval(eval::EvalArgs),
    /// Codes as arrays for TTS and speech-LM pipelines: export, decode, batch, info.
    Tokens(tokens::TokensArgs),
}

/// Runs the command line and turns any error into one line on stderr and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
        eprintln!("tokenwave: warning: Ctrl-C will not stop cleanly: {e}");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if interrupted()
                && e.downcast_ref::<tokenwave_core::Error>()
                    .is_some_and(|e| matches!(e, tokenwave_core::Error::Interrupted)) =>
        {
            eprintln!("tokenwave: interrupted; no output was written ({e:#})");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) => {
            eprintln!("tokenwave: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.global.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().context("cannot set up threads")?;
    }
    match cli.command {
        Command::InitModel(args) => init_model::run(&args),
        Command::Info(args) => info::run(&args, &cli.global),
        Command::Devices => devices::run(&cli.global),
        Command::Keygen(args) => keygen::run(&args),
        Command::Train(args) => train::run(&args, &cli.global),
        command => match cli.global.device {
            DeviceKind::Cpu => dispatch::<tokenwave_core::CpuBackend>(command, &cli.global, Default::default()),
            DeviceKind::Cuda => run_cuda(command, &cli.global),
        },
    }
}

#[cfg(feature = "cuda")]
fn run_cuda(command: Command, global: &Global) -> Result<()> {
    let device = cuda_device()?;
    dispatch::<tokenwave_core::CudaBackend>(command, global, device)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(_: Command, _: &Global) -> Result<()> {
    bail!("this tokenwave was built without CUDA support; rebuild with `cargo build --release --features cuda`")
}

/// The first CUDA device, after checking that a tiny kernel really runs there: burn-cuda
/// panics without a driver, and a user deserves a sentence instead.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_device() -> Result<burn::tensor::Device<tokenwave_core::CudaBackend>> {
    let device: burn::tensor::Device<tokenwave_core::CudaBackend> = Default::default();
    let probe_device = device.clone();
    // burn-cuda may panic on a runtime thread, leaving the caller only a closed channel:
    // keep the first panic message of any thread, which names the real cause.
    let first_panic = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let hook = std::panic::take_hook();
    let record = first_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        record.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| message.to_owned());
    }));
    let works = std::panic::catch_unwind(move || {
        let t = burn::tensor::Tensor::<tokenwave_core::CudaBackend, 1>::ones([4], &probe_device);
        t.sum().into_scalar()
    });
    std::panic::set_hook(hook);
    if works.is_ok() {
        return Ok(device);
    }
    let reason = first_panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    let reason = reason.as_deref().and_then(|m| m.lines().next()).unwrap_or("driver or device missing").to_owned();
    bail!("no usable CUDA GPU ({reason}); run without --device cuda to use the CPU")
}

fn dispatch<B: Backend>(command: Command, global: &Global, device: B::Device) -> Result<()> {
    match command {
        Command::Encode(args) => encode::run::<B>(&args, global, device),
        Command::Decode(args) => decode::run::<B>(&args, global, device),
        Command::Roundtrip(args) => roundtrip::run::<B>(&args, global, device),
        Command::Tokens(args) => tokens::run::<B>(&args, global, device),
        Command::Eval(args) => eval::run::<B>(&args, global, device),
        Command::Live(args) => live::run::<B>(&args, global, device),
        Command::Send(args) => send::run::<B>(&args, global, device),
        Command::Receive(args) => receive::run::<B>(&args, global, device),
        Command::Info(_) | Command::InitModel(_) | Command::Train(_) | Command::Devices | Command::Keygen(_) => {
            unreachable!("handled before choosing a device")
        }
    }
}

/// A model config from a JSON file, or the default speech model's.
pub fn read_config(path: Option<&std::path::Path>) -> Result<tokenwave_core::ModelConfig> {
    let Some(path) = path else { return Ok(tokenwave_core::ModelConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid model config", path.display()))
}

/// The weights named by `--model`, or the embedded default.
pub fn load_weights(global: &Global) -> Result<Weights> {
    Ok(match &global.model {
        Some(path) => Weights::from_file(path)?,
        None => Weights::embedded().context("the embedded model is unusable")?,
    })
}

/// The codec on `device`.
pub fn load_codec<B: Backend>(global: &Global, device: B::Device) -> Result<Codec<B>> {
    Ok(Codec::new(&load_weights(global)?, device)?)
}

/// Fails with [`tokenwave_core::Error::Interrupted`] once Ctrl-C was pressed.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        return Err(tokenwave_core::Error::Interrupted.into());
    }
    Ok(())
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Bitrate of the neural codes alone (token exports, which carry no low band).
#[derive(Args, Clone)]
#[group(multiple = false)]
pub struct RateArgs {
    /// Target bitrate in kbps (0.5 per quantizer stage with the default model).
    #[arg(long, value_name = "KBPS")]
    pub kbps: Option<f64>,
    /// Number of quantizer stages (codebooks) to use.
    #[arg(long, value_name = "N")]
    pub codebooks: Option<usize>,
}

/// Default bitrate: 3 kbps with the default model (6 codes per frame).
const DEFAULT_CODES: usize = 6;

impl RateArgs {
    /// Stages the user asked for.
    pub fn stages<B: Backend>(&self, codec: &Codec<B>) -> Result<usize> {
        Ok(match (self.kbps, self.codebooks) {
            (Some(kbps), _) => codec.stages_for_kbps(kbps)?,
            (None, Some(n)) => {
                codec.check_stages(n)?;
                n
            }
            (None, None) => DEFAULT_CODES.min(codec.config().max_stages),
        })
    }
}

/// Bitrate and its split between the neural stages and the low band (`encode`,
/// `roundtrip`, `live`, `send`).
#[derive(Args, Clone)]
pub struct LayoutArgs {
    /// Target bitrate in kbps, everything included (0.5 per code with the default model).
    /// Each rate gets the split between neural stages and low band that scored best
    /// (docs/journal/2026-11-29-session-17-rate-ladder.md); default 3
    #[arg(long, value_name = "KBPS", conflicts_with = "codebooks")]
    pub kbps: Option<f64>,
    /// Number of neural quantizer stages (codebooks); the low band only if `--low-band` asks
    #[arg(long, value_name = "N")]
    pub codebooks: Option<usize>,
    /// Codes per frame for the low band (0, or 2 to 8, 0.5 kbps each with the default
    /// model): the band from 75 Hz to 300-700 Hz coded as a waveform, the voice's first
    /// harmonics at their own pitch and phase, which the neural decoder alone misses. Part
    /// of `--kbps`, on top of `--codebooks`. Costs 20 ms of latency, so `live` and `send`
    /// use it only when asked
    #[arg(long, value_name = "N")]
    pub low_band: Option<usize>,
}

impl LayoutArgs {
    /// The layout asked for.
    pub fn layout<B: Backend>(&self, codec: &Codec<B>) -> Result<FrameLayout> {
        self.layout_or(codec, None)
    }

    /// The layout asked for by a live command (`live`, `send`): the low band only when
    /// `--low-band` asks, since its 20 ms would take mic-to-speaker latency past 60 ms
    /// (52-53 ms without it, 68-72 ms with it at 6 kbps; docs/PERFORMANCE.md).
    pub fn live_layout<B: Backend>(&self, codec: &Codec<B>) -> Result<FrameLayout> {
        self.layout_or(codec, Some(0))
    }

    /// The layout asked for, with `low_band` codes when `--low-band` is not given (`None`:
    /// the rate ladder's split).
    fn layout_or<B: Backend>(&self, codec: &Codec<B>, low_band: Option<usize>) -> Result<FrameLayout> {
        let default_kbps = || codec.config().bitrate(DEFAULT_CODES) / 1000.0;
        Ok(match self.codebooks {
            Some(stages) => codec.layout(stages, self.low_band.unwrap_or(0))?,
            None => codec.layout_for_kbps(self.kbps.unwrap_or_else(default_kbps), self.low_band.or(low_band))?,
        })
    }
}

/// A progress bar on a terminal, nothing otherwise; `total` in seconds of audio if known.
pub fn progress(global: &Global, total_seconds: Option<f64>) -> ProgressBar {
    if global.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total_seconds {
        Some(total) => ProgressBar::new(total.ceil() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} s of audio  {elapsed} < {eta}").expect("valid template"),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{spinner} {pos} s of audio  {elapsed}").expect("valid template")),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Writes one line to standard output. When the reader has gone away (a closed pipe) the
/// program ends quietly with success, as a Unix filter does, instead of panicking; any other
/// write error is one line on stderr and a failure.
pub fn print_line(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tokenwave: error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Prints a summary: JSON when `--json` (on stdout, or on stderr when `stdout_busy`
/// because stdout carries the data), a human line on stderr otherwise, nothing when
/// `--quiet`.
pub fn report(global: &Global, stdout_busy: bool, json: serde_json::Value, human: String) {
    if global.json {
        if stdout_busy {
            eprintln!("{json}");
        } else {
            outln!("{json}");
        }
    } else if !global.quiet {
        eprintln!("{human}");
    }
}
