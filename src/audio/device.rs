//! Real audio devices through cpal. The device callback only moves samples out of a
//! lock-free ring buffer (rtrb): no allocation, locks or logging on the audio thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use super::Resampler;
use crate::error::{Error, Result};

/// How long the speaker may stop taking samples before we call it gone rather than hang.
const STALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Ring buffer size, in seconds of device audio: how far ahead of the speaker we may run.
const RING_SECONDS: f64 = 0.5;

/// An audio device as `--output-device` can name it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Short host id (e.g. `default`, `pipewire`): what to pass to select it.
    pub id: String,
    /// Human-readable description.
    pub name: String,
    /// True for the system's default device.
    pub is_default: bool,
}

/// The output devices.
pub fn output_devices() -> Result<Vec<DeviceInfo>> {
    let host = cpal::default_host();
    let default = host.default_output_device().and_then(|d| d.id().ok());
    Ok(host
        .output_devices()
        .map_err(device_error)?
        .filter_map(|d| {
            let id = d.id().ok()?;
            Some(DeviceInfo { is_default: Some(&id) == default.as_ref(), id: id.id().to_string(), name: d.to_string() })
        })
        .collect())
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
    pub fn open(name: Option<&str>, rate: u32) -> Result<Self> {
        let host = cpal::default_host();
        let device = match name {
            None => host.default_output_device().ok_or_else(|| {
                Error::Device("no audio output device found (is a sound server running?)".into())
            })?,
            Some(name) => host
                .output_devices()
                .map_err(device_error)?
                .find(|d| d.to_string() == name || d.id().is_ok_and(|id| id.id() == name))
                .ok_or_else(|| Error::Device(format!("no output device named {name:?}; `tokenwave devices` lists them")))?,
        };
        let supported = device.default_output_config().map_err(device_error)?;
        let config = supported.config();
        let device_rate = config.sample_rate;
        let capacity = (f64::from(device_rate) * RING_SECONDS) as usize;
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        let shared = Arc::new(Shared::default());
        let stream = match supported.sample_format() {
            SampleFormat::F32 => build::<f32>(&device, config, consumer, &shared),
            SampleFormat::I16 => build::<i16>(&device, config, consumer, &shared),
            SampleFormat::I32 => build::<i32>(&device, config, consumer, &shared),
            SampleFormat::U16 => build::<u16>(&device, config, consumer, &shared),
            other => return Err(Error::Device(format!("the output device wants {other} samples, which tokenwave does not produce"))),
        }?;
        stream.play().map_err(device_error)?;
        Ok(Self { _stream: stream, producer, resampler: Resampler::new(rate, device_rate)?, shared, device_rate })
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

    /// Queues samples, waiting while the ring is full (so a fast producer runs at most
    /// [`RING_SECONDS`] ahead of the speaker).
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
    let on_error = {
        let shared = shared.clone();
        move |e: cpal::Error| {
            if e.kind() == cpal::ErrorKind::Xrun {
                shared.xruns.fetch_add(1, Ordering::Relaxed);
            } else if let Ok(mut slot) = shared.error.lock() {
                slot.get_or_insert_with(|| format!("audio output device failed: {e}"));
            }
        }
    };
    device.build_output_stream::<T, _, _>(config, on_data, on_error, Some(Duration::from_secs(5))).map_err(device_error)
}

fn device_error(e: cpal::Error) -> Error {
    Error::Device(format!(
        "audio device: {e}; check that a sound card or sound server is available (`tokenwave devices` lists devices)"
    ))
}
