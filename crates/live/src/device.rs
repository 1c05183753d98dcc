//! Real audio devices through cpal. The device callback only moves samples out of a
//! lock-free ring buffer (rtrb): no allocation, locks or logging on the audio thread.
//!
//! cpal's PulseAudio host is built in and preferred wherever a PulseAudio server (or
//! PipeWire's pipewire-pulse) answers; plain ALSA is the fallback. Through PipeWire's ALSA
//! plugin, cpal's ALSA callback threads spin in `poll`: measured on 2 cores, `live` took
//! 7.3 CPU-seconds in 6 s with ALSA and 2.3 with PulseAudio (the model's share the same),
//! and a loaded CI machine starved the model thread into dropouts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use crate::error::{Error, Result};
use tokenwave_core::audio::Resampler;

/// How long the speaker may stop taking samples before we call it gone rather than hang.
const STALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Ring buffer size, in seconds of device audio: how far ahead of the speaker we may run.
const RING_SECONDS: f64 = 0.5;

/// An audio device as `--output-device` can name it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// The host's id for it (e.g. a PulseAudio sink name): what to pass to select it.
    pub id: String,
    /// Human-readable description.
    pub name: String,
    /// True for the system's default device.
    pub is_default: bool,
}

/// cpal's default host, with libasound's diagnostics (on Linux) kept off stderr on this
/// thread: where no sound card or server exists it prints a dozen lines of its own before
/// cpal's error, which the caller turns into one line that says what to do.
fn default_host() -> cpal::Host {
    // Should the buffer fail to open, the diagnostics reach stderr as before.
    #[cfg(target_os = "linux")]
    let _buffered = alsa::Output::local_error_handler().ok();
    cpal::default_host()
}

/// The output devices.
pub fn output_devices() -> Result<Vec<DeviceInfo>> {
    let host = default_host();
    let default = host.default_output_device().and_then(|d| d.id().ok());
    describe(host.output_devices().map_err(device_error)?, default)
}

/// The input devices.
pub fn input_devices() -> Result<Vec<DeviceInfo>> {
    let host = default_host();
    let default = host.default_input_device().and_then(|d| d.id().ok());
    describe(host.input_devices().map_err(device_error)?, default)
}

fn describe(devices: impl Iterator<Item = cpal::Device>, default: Option<cpal::DeviceId>) -> Result<Vec<DeviceInfo>> {
    Ok(devices
        .filter_map(|d| {
            let id = d.id().ok()?;
            Some(DeviceInfo { is_default: Some(&id) == default.as_ref(), id: id.id().to_string(), name: d.to_string() })
        })
        .collect())
}

/// `name` (an id from [`output_devices`] / [`input_devices`] or a full name) among `devices`.
fn find(mut devices: impl Iterator<Item = cpal::Device>, name: &str, what: &str) -> Result<cpal::Device> {
    devices
        .find(|d| d.to_string() == name || d.id().is_ok_and(|id| id.id() == name))
        .ok_or_else(|| Error::Device(format!("no {what} device named {name:?}; `tokenwave devices` lists them")))
}

/// Counters shared with the device callback.
#[derive(Default)]
struct Shared {
    /// Callbacks that found the ring empty after playback had started.
    underruns: AtomicU64,
    /// Device frames written with real samples.
    played: AtomicU64,
    started: AtomicBool,
    /// Device errors other than xruns end playback with this message.
    error: Mutex<Option<String>>,
    xruns: AtomicU64,
}

/// How much the device may buffer: the trade between delay and robustness to a busy CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Small device buffers, for live audio where every millisecond of delay counts: 5 ms
    /// through a PulseAudio server, 10 ms through ALSA.
    Live,
    /// 100 ms device buffers, for playing what is already decided (files, token arrays):
    /// with 10 ms, a few late wake-ups on a loaded machine made the sound server insert
    /// silence (measured: 2 of 10 plays under two busy training threads), which no delay
    /// would buy back.
    Playback,
}

impl Latency {
    /// Through PulseAudio, 5 ms live buffers measured 52-55 ms mic to speaker (`live --kbps
    /// 6`, scripts/measure-latency.sh) against 65-70 ms with 10 ms, and kept every frame
    /// beside a busy loop on the other core; through pipewire-alsa, buffers under 10 ms
    /// showed xruns under load. The host is told by name: `HostId::PulseAudio` exists only
    /// on the platforms that have the host.
    fn device_buffer_seconds(self, host: cpal::HostId) -> f64 {
        match self {
            Latency::Live if host.name() == "PulseAudio" => 0.005,
            Latency::Live => 0.01,
            Latency::Playback => 0.1,
        }
    }
}

/// The default (or a named) output device, fed with mono samples at any rate.
pub struct Speaker {
    _stream: cpal::Stream,
    producer: rtrb::Producer<f32>,
    resampler: Resampler,
    shared: Arc<Shared>,
    device_rate: u32,
}

impl Speaker {
    /// Opens `name` (or the default output device) for mono audio at `rate` Hz.
    pub fn open(name: Option<&str>, rate: u32, latency: Latency) -> Result<Self> {
        let host = default_host();
        let device = match name {
            None => host
                .default_output_device()
                .ok_or_else(|| Error::Device("no audio output device found (is a sound server running?)".into()))?,
            Some(name) => find(host.output_devices().map_err(device_error)?, name, "output")?,
        };
        let default = device.default_output_config().map_err(device_error)?;
        let ranges = device.supported_output_configs().map(|r| r.collect::<Vec<_>>()).unwrap_or_default();
        let supported = at_rate(default, ranges, rate);
        let config = with_buffer(&supported, latency, host.id());
        let device_rate = config.sample_rate;
        let capacity = (f64::from(device_rate) * RING_SECONDS) as usize;
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        let shared = Arc::new(Shared::default());
        let stream = match supported.sample_format() {
            SampleFormat::F32 => build::<f32>(&device, config, consumer, &shared),
            SampleFormat::I16 => build::<i16>(&device, config, consumer, &shared),
            SampleFormat::I32 => build::<i32>(&device, config, consumer, &shared),
            SampleFormat::U16 => build::<u16>(&device, config, consumer, &shared),
            other => {
                return Err(Error::Device(format!(
                    "the output device wants {other} samples, which tokenwave does not produce"
                )));
            }
        }?;
        stream.play().map_err(device_error)?;
        Ok(Self {
            _stream: stream,
            producer,
            resampler: Resampler::low_latency(rate, device_rate)?,
            shared,
            device_rate,
        })
    }

    /// The device's sample rate.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// Times the device found nothing to play after playback started.
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }

    /// Over- and underruns the device itself reported.
    pub fn xruns(&self) -> u64 {
        self.shared.xruns.load(Ordering::Relaxed)
    }

    /// Seconds of audio queued for the device, not yet handed to it.
    pub fn queued_seconds(&self) -> f64 {
        (self.producer.buffer().capacity() - self.producer.slots()) as f64 / f64::from(self.device_rate)
    }

    /// Queues samples, waiting while the ring is full (so a fast producer runs at most
    /// half a second ahead of the speaker).
    pub fn play(&mut self, samples: &[f32]) -> Result<()> {
        let resampled = self.resampler.process(samples);
        self.push(&resampled)
    }

    fn push(&mut self, mut samples: &[f32]) -> Result<()> {
        let mut last_progress = Instant::now();
        while !samples.is_empty() {
            self.check()?;
            let room = self.producer.slots().min(samples.len());
            if room == 0 {
                if last_progress.elapsed() > STALL_TIMEOUT {
                    return Err(Error::Device("the output device stopped taking audio".into()));
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let mut chunk = self.producer.write_chunk(room).expect("room was checked");
            let (first, second) = chunk.as_mut_slices();
            let split = first.len();
            first.copy_from_slice(&samples[..split]);
            second.copy_from_slice(&samples[split..room]);
            chunk.commit_all();
            samples = &samples[room..];
            last_progress = Instant::now();
        }
        Ok(())
    }

    /// Plays out what is queued, then returns.
    pub fn finish(mut self) -> Result<()> {
        let tail = self.resampler.finish();
        self.push(&tail)?;
        let mut last = (self.producer.slots(), Instant::now());
        while !self.producer.is_abandoned() && self.producer.slots() < self.producer.buffer().capacity() {
            self.check()?;
            let slots = self.producer.slots();
            if slots != last.0 {
                last = (slots, Instant::now());
            } else if last.1.elapsed() > STALL_TIMEOUT {
                return Err(Error::Device("the output device stopped taking audio".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // What left the ring is still in the device's own buffer.
        std::thread::sleep(Duration::from_millis(150));
        self.check()
    }

    fn check(&self) -> Result<()> {
        match self.shared.error.lock().expect("error slot").as_ref() {
            Some(message) => Err(Error::Device(message.clone())),
            None => Ok(()),
        }
    }
}

fn build<T: SizedSample + FromSample<f32>>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut consumer: rtrb::Consumer<f32>,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream> {
    let channels = usize::from(config.channels).max(1);
    let on_data = {
        let shared = shared.clone();
        move |out: &mut [T], _: &cpal::OutputCallbackInfo| {
            let frames = out.len() / channels;
            let available = consumer.slots().min(frames);
            if let Ok(chunk) = consumer.read_chunk(available) {
                let (a, b) = chunk.as_slices();
                for (frame, &s) in out.chunks_exact_mut(channels).zip(a.iter().chain(b)) {
                    frame.fill(T::from_sample(s));
                }
                chunk.commit_all();
            }
            for frame in out.chunks_exact_mut(channels).skip(available) {
                frame.fill(T::from_sample(0.0f32));
            }
            if available > 0 {
                shared.started.store(true, Ordering::Relaxed);
                shared.played.fetch_add(available as u64, Ordering::Relaxed);
            }
            if available < frames && shared.started.load(Ordering::Relaxed) {
                shared.underruns.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let on_error = error_callback(shared, "output");
    device.build_output_stream::<T, _, _>(config, on_data, on_error, Some(Duration::from_secs(5))).map_err(device_error)
}

/// The device's error callback (not the audio callback, so it may lock): counts xruns and
/// keeps the first real failure for the next read or write to report.
fn error_callback(shared: &Arc<Shared>, direction: &'static str) -> impl FnMut(cpal::Error) + Send + 'static {
    let shared = shared.clone();
    move |e: cpal::Error| {
        if e.kind() == cpal::ErrorKind::Xrun {
            shared.xruns.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut slot) = shared.error.lock() {
            slot.get_or_insert_with(|| format!("audio {direction} device failed: {e}"));
        }
    }
}

/// The device's default configuration, at `rate` if the device offers that rate with the
/// same channels and sample format: then no resampler runs on our side. Through PipeWire
/// (which then converts in its graph) `live` measured 53-57 ms mic to speaker instead of
/// 70 ms with our 10 ms resampler pieces at 48 kHz.
fn at_rate(
    default: cpal::SupportedStreamConfig,
    ranges: Vec<cpal::SupportedStreamConfigRange>,
    rate: u32,
) -> cpal::SupportedStreamConfig {
    ranges
        .into_iter()
        .filter(|r| r.channels() == default.channels() && r.sample_format() == default.sample_format())
        .find_map(|r| r.try_with_sample_rate(rate))
        .unwrap_or(default)
}

/// The stream configuration with the buffer `latency` asks for, where the device allows one
/// of that size (see [`Latency`]); the server's default measured 170 ms mic to speaker
/// instead of under 60.
fn with_buffer(supported: &cpal::SupportedStreamConfig, latency: Latency, host: cpal::HostId) -> cpal::StreamConfig {
    let mut config = supported.config();
    let wanted = (f64::from(config.sample_rate) * latency.device_buffer_seconds(host)) as u32;
    if let cpal::SupportedBufferSize::Range { min, max } = supported.buffer_size()
        && (*min..=*max).contains(&wanted)
    {
        config.buffer_size = cpal::BufferSize::Fixed(wanted);
    }
    config
}

fn device_error(e: cpal::Error) -> Error {
    Error::Device(format!(
        "audio device: {e}; check that a sound card or sound server is available (`tokenwave devices` lists devices)"
    ))
}

/// The default (or a named) input device, read as mono samples at any rate.
pub struct Microphone {
    _stream: cpal::Stream,
    consumer: rtrb::Consumer<f32>,
    resampler: Resampler,
    shared: Arc<Shared>,
    /// Samples dropped because the ring was full (the reader fell behind).
    overruns: Arc<AtomicU64>,
}

impl Microphone {
    /// Opens `name` (or the default input device), delivering mono audio at `rate` Hz.
    pub fn open(name: Option<&str>, rate: u32) -> Result<Self> {
        let host = default_host();
        let device = match name {
            None => host
                .default_input_device()
                .ok_or_else(|| Error::Device("no audio input device found (is a sound server running?)".into()))?,
            Some(name) => find(host.input_devices().map_err(device_error)?, name, "input")?,
        };
        let default = device.default_input_config().map_err(device_error)?;
        let ranges = device.supported_input_configs().map(|r| r.collect::<Vec<_>>()).unwrap_or_default();
        let supported = at_rate(default, ranges, rate);
        let config = with_buffer(&supported, Latency::Live, host.id());
        let device_rate = config.sample_rate;
        let (producer, consumer) = rtrb::RingBuffer::new((f64::from(device_rate) * RING_SECONDS) as usize);
        let shared = Arc::new(Shared::default());
        let overruns = Arc::new(AtomicU64::new(0));
        let stream = match supported.sample_format() {
            SampleFormat::F32 => build_input::<f32>(&device, config, producer, &shared, &overruns),
            SampleFormat::I16 => build_input::<i16>(&device, config, producer, &shared, &overruns),
            SampleFormat::I32 => build_input::<i32>(&device, config, producer, &shared, &overruns),
            SampleFormat::U16 => build_input::<u16>(&device, config, producer, &shared, &overruns),
            other => {
                return Err(Error::Device(format!(
                    "the input device delivers {other} samples, which tokenwave does not read"
                )));
            }
        }?;
        stream.play().map_err(device_error)?;
        Ok(Self { _stream: stream, consumer, resampler: Resampler::low_latency(device_rate, rate)?, shared, overruns })
    }

    /// Everything captured since the last call, resampled; fails if the device failed.
    pub fn read(&mut self) -> Result<Vec<f32>> {
        if let Some(message) = self.shared.error.lock().expect("error slot").as_ref() {
            return Err(Error::Device(message.clone()));
        }
        let available = self.consumer.slots();
        let chunk = self.consumer.read_chunk(available).expect("slots were counted");
        let (a, b) = chunk.as_slices();
        let mut captured = Vec::with_capacity(available);
        captured.extend_from_slice(a);
        captured.extend_from_slice(b);
        chunk.commit_all();
        Ok(self.resampler.process(&captured))
    }

    /// Samples lost because they were not read in time.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }

    /// Over- and underruns the device itself reported.
    pub fn xruns(&self) -> u64 {
        self.shared.xruns.load(Ordering::Relaxed)
    }
}

fn build_input<T: SizedSample>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut producer: rtrb::Producer<f32>,
    shared: &Arc<Shared>,
    overruns: &Arc<AtomicU64>,
) -> Result<cpal::Stream>
where
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels).max(1);
    let on_data = {
        let overruns = overruns.clone();
        move |input: &[T], _: &cpal::InputCallbackInfo| {
            let frames = input.len() / channels;
            let room = producer.slots().min(frames);
            if let Ok(mut chunk) = producer.write_chunk(room) {
                let (a, b) = chunk.as_mut_slices();
                for (slot, frame) in a.iter_mut().chain(b.iter_mut()).zip(input.chunks_exact(channels)) {
                    *slot =
                        frame.iter().map(|&s| <f32 as FromSample<T>>::from_sample_(s)).sum::<f32>() / channels as f32;
                }
                chunk.commit_all();
            }
            if room < frames {
                overruns.fetch_add((frames - room) as u64, Ordering::Relaxed);
            }
        }
    };
    let on_error = error_callback(shared, "input");
    device.build_input_stream::<T, _, _>(config, on_data, on_error, Some(Duration::from_secs(5))).map_err(device_error)
}
