//! Streaming in odd-sized pieces gives exactly the offline codes and (within 1e-4) the
//! offline samples, on real speech; the low band and how a bitrate is split.

mod common;

use std::path::Path;

use tokenwave_core::audio::AudioSource;
use tokenwave_core::bitstream::{Chunk, TkwReader};
use tokenwave_core::{Codec, Codes, CpuBackend, FrameLayout, Weights};

use common::SPEECH;

fn speech() -> Vec<f32> {
    let mut source = AudioSource::open(Path::new(SPEECH), 16_000).unwrap();
    let mut samples = Vec::new();
    while let Some(piece) = source.next_chunk().unwrap() {
        samples.extend(piece);
    }
    samples
}

#[test]
fn streaming_matches_offline_on_real_speech() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let samples = speech();
    assert!(samples.len() > 8 * 16_000, "the sample is 8.7 s long");
    let stages = codec.config().max_stages;

    let offline_codes = codec.encode(&samples, FrameLayout::neural(stages)).unwrap();
    let offline_audio = codec.decode(&offline_codes, FrameLayout::neural(stages)).unwrap();

    let mut encoder = codec.stream_encoder(FrameLayout::neural(stages)).unwrap();
    let mut streamed = Codes::empty(stages);
    let sizes = [1usize, 7, 319, 321, 1000, 4801, 160, 640];
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= samples.len() {
            break;
        }
        let end = (at + size).min(samples.len());
        streamed.extend(&encoder.push(&samples[at..end]).unwrap()).unwrap();
        at = end;
    }
    streamed.extend(&encoder.flush()).unwrap();
    assert_eq!(streamed.frames(), samples.len().div_ceil(320));
    assert_eq!(streamed, offline_codes, "streaming must give identical codes");

    let mut decoder = codec.stream_decoder(FrameLayout::neural(stages)).unwrap();
    let mut audio = Vec::new();
    let mut frame = 0;
    for count in [1usize, 3, 2, 7, 1].iter().cycle() {
        if frame >= streamed.frames() {
            break;
        }
        let count = (*count).min(streamed.frames() - frame);
        audio.extend(decoder.push(&streamed.slice_frames(frame, count)).unwrap());
        frame += count;
    }
    assert_streams_like(&audio, &offline_audio);
}

#[test]
fn decoder_rejects_bad_codes_with_their_position() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let mut decoder = codec.stream_decoder(FrameLayout::neural(2)).unwrap();
    let codes = Codes::from_frame_major(2, vec![1, 2, 3, 5000]).unwrap();
    let err = decoder.push(&codes).unwrap_err().to_string();
    assert!(err.contains("code 5000 at frame 1, stage 1"), "{err}");
    let too_wide = Codes::from_frame_major(3, vec![0; 3]).unwrap();
    let err = decoder.push(&too_wide).unwrap_err().to_string();
    assert!(err.contains("3 per frame") && err.contains("2 stages"), "{err}");
    let err = codec.stream_decoder(FrameLayout::neural(13)).err().expect("13 stages refused").to_string();
    assert!(err.contains("1 to 12") && err.contains("13"), "{err}");
}

#[test]
fn the_low_band_streams_like_the_whole_signal_and_ends_where_the_input_ends() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let samples = speech();
    let layer = codec.low_band(4).unwrap();
    let offline_codes = codec.encode(&samples, FrameLayout { stages: 3, low_band: Some(layer), pitch: false }).unwrap();
    assert_eq!(offline_codes.stages(), 3 + 4);
    assert_eq!(offline_codes.frames(), samples.len().div_ceil(320) + 1, "one extra frame ends the low band");
    let offline_audio =
        codec.decode(&offline_codes, FrameLayout { stages: 3, low_band: Some(layer), pitch: false }).unwrap();
    assert_eq!(offline_audio.len(), samples.len().div_ceil(320) * 320);

    let hybrid = FrameLayout { stages: 3, low_band: Some(layer), pitch: false };
    let streamed = stream_encode(&codec, hybrid, &samples, 777);
    assert_eq!(streamed, offline_codes, "streaming must give identical codes");
    assert_streams_like(&stream_decode(&codec, hybrid, &streamed, 3), &offline_audio);
}

/// `samples` through a stream encoder of `layout` in pieces of `piece` samples, flushed.
fn stream_encode(codec: &Codec<CpuBackend>, layout: FrameLayout, samples: &[f32], piece: usize) -> Codes {
    let mut encoder = codec.stream_encoder(layout).unwrap();
    let mut streamed = Codes::empty(layout.codes_per_frame());
    for piece in samples.chunks(piece) {
        streamed.extend(&encoder.push(piece).unwrap()).unwrap();
    }
    streamed.extend(&encoder.flush()).unwrap();
    streamed
}

/// `codes` through a stream decoder of `layout`, `frames` frames at a time.
fn stream_decode(codec: &Codec<CpuBackend>, layout: FrameLayout, codes: &Codes, frames: usize) -> Vec<f32> {
    let mut decoder = codec.stream_decoder(layout).unwrap();
    let mut audio = Vec::new();
    for start in (0..codes.frames()).step_by(frames) {
        audio.extend(decoder.push(&codes.slice_frames(start, frames.min(codes.frames() - start))).unwrap());
    }
    audio
}

/// Streamed audio has the whole decode's length and samples within 1e-4 of it.
fn assert_streams_like(audio: &[f32], offline: &[f32]) {
    assert_eq!(audio.len(), offline.len());
    let worst = audio.iter().zip(offline).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "streamed samples differ from offline by {worst}");
}

/// The part of `signal` from `low` to `high` Hz, by zeroing the other bins of one FFT over
/// all of it.
fn band(signal: &[f32], low: f32, high: f32) -> Vec<f32> {
    let mut planner = realfft::RealFftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(signal.len());
    let inverse = planner.plan_fft_inverse(signal.len());
    let mut input = signal.to_vec();
    let mut spectrum = forward.make_output_vec();
    forward.process(&mut input, &mut spectrum).unwrap();
    let bin = |hz: f32| (hz * signal.len() as f32 / 16_000.0) as usize;
    let (first, end) = (bin(low), bin(high));
    for (i, c) in spectrum.iter_mut().enumerate() {
        if i < first || i >= end {
            *c = Default::default();
        }
    }
    let mut out = inverse.make_output_vec();
    inverse.process(&mut spectrum, &mut out).unwrap();
    out.iter().map(|s| s / signal.len() as f32).collect()
}

fn snr_db(reference: &[f32], test: &[f32]) -> f32 {
    let noise: f32 = reference.iter().zip(test).map(|(a, b)| (a - b) * (a - b)).sum();
    let power: f32 = reference.iter().map(|a| a * a).sum();
    10.0 * (power / noise).log10()
}

#[test]
fn the_low_band_carries_the_waveform_in_its_band_that_the_neural_decoder_misses() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let samples = speech();
    let layer = codec.low_band(4).unwrap();
    assert_eq!(layer.bins(), 3..20, "75 to 500 Hz");
    let neural =
        codec.decode(&codec.encode(&samples, FrameLayout::neural(3)).unwrap(), FrameLayout::neural(3)).unwrap();
    let hybrid = FrameLayout { stages: 3, low_band: Some(layer), pitch: false };
    let hybrid = codec.decode(&codec.encode(&samples, hybrid).unwrap(), hybrid).unwrap();
    let n = samples.len();
    let reference = band(&samples, 75.0, 500.0);
    let neural_snr = snr_db(&reference, &band(&neural[..n], 75.0, 500.0));
    let hybrid_snr = snr_db(&reference, &band(&hybrid[..n], 75.0, 500.0));
    assert!(
        hybrid_snr > 10.0 && neural_snr < 1.0,
        "75-500 Hz: {hybrid_snr:.1} dB with the low band, {neural_snr:.1} dB without"
    );
}

/// Decodes the fixture `path`, written by the tokenwave of container `version` with
/// `--codebooks 2 --low-band 3` from samples/speech_cs.wav, and checks that its low band
/// (`bins`, `low_hz` to `high_hz`) comes back, while the present edition of the layer
/// refuses the same codes or garbles that band. The low band does not depend on the
/// model, so it comes back whichever model decodes the neural codes.
fn an_old_stream_decodes_with_its_own_low_band(path: &str, version: u8, bins: std::ops::Range<usize>, hz: (f32, f32)) {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let mut reader = TkwReader::open(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!((reader.header().version, reader.header().low_band), (version, 3));
    let layout = codec.layout_of(reader.header()).unwrap();
    let layer = layout.low_band.expect("a low band");
    assert_eq!(layer.bins(), bins);
    let mut codes = Codes::empty(reader.header().codes_per_frame());
    while let Some(chunk) = reader.next_chunk().unwrap() {
        match chunk {
            Chunk::Codes(c) => codes.extend(&c).unwrap(),
            Chunk::Damaged { .. } => panic!("the fixture is intact"),
        }
    }
    let decoded = codec.decode(&codes, layout).unwrap();
    let mut source = AudioSource::open(Path::new("samples/speech_cs.wav"), 16_000).unwrap();
    let mut samples = Vec::new();
    while let Some(piece) = source.next_chunk().unwrap() {
        samples.extend(piece);
    }
    let n = samples.len();
    let (low, high) = hz;
    let snr = snr_db(&band(&samples, low, high), &band(&decoded[..n], low, high));
    let current = codec.low_band(3).unwrap();
    let misread = codec
        .decode(&codes, FrameLayout { low_band: Some(current), ..layout })
        .map(|d| snr_db(&band(&samples, low, high), &band(&d[..n], low, high)));
    assert!(snr > 8.0, "{low}-{high} Hz: {snr:.1} dB");
    assert!(misread.as_ref().map_or(true, |&wrong| wrong < snr - 6.0), "misread: {misread:?}, right: {snr:.1} dB");
}

/// tests/data/v1-low-band.tkw: written by commit 0ad2808 (model `long12`), whose low band
/// ran from 0 to 450 Hz.
#[test]
fn a_version_1_stream_decodes_with_its_own_low_band() {
    an_old_stream_decodes_with_its_own_low_band("tests/data/v1-low-band.tkw", 1, 0..18, (0.0, 450.0));
}

/// tests/data/v2-low-band.tkw: written by commit 1555ec0 (model `long14`): the band of
/// today's layer (75-400 Hz) with one pulse fewer and a 6-bit gain.
#[test]
fn a_version_2_stream_decodes_with_its_own_low_band() {
    an_old_stream_decodes_with_its_own_low_band("tests/data/v2-low-band.tkw", 2, 3..16, (75.0, 400.0));
}

#[test]
fn each_bitrate_gets_the_ladders_split_or_the_one_asked_for() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let split = |kbps: f64, low_band: Option<usize>| {
        codec.layout_for_kbps(kbps, low_band).map(|l| (l.stages, l.low_band_digits())).map_err(|e| e.to_string())
    };
    for codes in 1..=20 {
        let layout = codec.layout_for_kbps(codes as f64 * 0.5, None).unwrap();
        assert_eq!(layout.codes_per_frame(), codes, "every rate is spent in full");
        assert!(layout.stages <= 12 && layout.low_band_digits() != 1);
    }
    assert_eq!(split(1.5, None), Ok((3, 0)), "low rates: neural stages only");
    assert_eq!(split(6.0, None), Ok((5, 7)));
    assert_eq!(split(10.0, None), Ok((12, 8)), "the most this model codes");
    assert_eq!(split(6.0, Some(0)), Ok((12, 0)));
    assert_eq!(split(6.0, Some(3)), Ok((9, 3)));
    assert_eq!(split(6.2, Some(3)), Ok((9, 3)), "rounded to whole codes");
    for (kbps, low_band, needle) in [
        (2.0, Some(4), "leaves nothing for the neural stages"),
        (3.0, Some(1), "2 to 8 codes per frame"),
        (6.0, Some(9), "2 to 8 codes per frame"),
        (10.5, None, "at most 10 kbps"),
        (0.0, None, "must be positive"),
        (f64::NAN, Some(3), "must be positive"),
        (8.0, Some(2), "1 to 12 quantizer stages"),
    ] {
        let err = split(kbps, low_band).unwrap_err();
        assert!(err.contains(needle), "{kbps} kbps, {low_band:?}: {err}");
    }
    assert_eq!(codec.layout(4, 3).map(|l| l.to_string()).unwrap(), "4 stages and 3 low-band codes");
}

#[test]
fn pitch_travels_with_the_codes_and_streams_like_the_whole_signal() {
    let dir = tempfile::tempdir().unwrap();
    let weights = Weights::from_file(&common::pitch_model(&dir)).unwrap();
    let codec = Codec::<CpuBackend>::new(&weights, Default::default()).unwrap();
    assert!(codec.uses_pitch());
    let samples = speech();
    let layout = codec.layout(2, 0).unwrap();
    assert_eq!((layout.pitch, layout.codes_per_frame()), (true, 3));
    assert_eq!(codec.bitrate(layout), 50.0 * (2.0 * 6.0 + 8.0), "two 6-bit codes and a pitch byte per frame");

    let whole = codec.encode(&samples, layout).unwrap();
    let mut padded = samples.clone();
    padded.resize(whole.frames() * 320, 0.0);
    let pitch: Vec<u16> = tokenwave_core::pitch::codes(&padded, 16_000, 320).into_iter().map(u16::from).collect();
    let sent: Vec<u16> = (0..whole.frames()).map(|f| whole.frame(f)[2]).collect();
    assert_eq!(sent, pitch, "the last code of each frame is the tracker's pitch code");
    let voiced = sent.iter().filter(|&&p| p > 0).count();
    assert!(voiced > whole.frames() / 4, "speech is voiced in {voiced} of {} frames", whole.frames());

    assert_eq!(
        stream_encode(&codec, layout, &samples, 1234),
        whole,
        "streaming must give identical codes, pitch included"
    );

    let offline = codec.decode(&whole, layout).unwrap();
    assert_streams_like(&stream_decode(&codec, layout, &whole, 7), &offline);

    // Without the pitch row the same model still decodes, as if every frame were unvoiced.
    let neural: Vec<u16> = whole.as_frame_major().chunks_exact(3).flat_map(|f| f[..2].to_vec()).collect();
    let neural = Codes::from_frame_major(2, neural).unwrap();
    let unvoiced = codec.decode(&neural, FrameLayout::neural(2)).unwrap();
    assert_eq!(unvoiced.len(), offline.len());
    assert!(unvoiced.iter().zip(&offline).any(|(a, b)| a != b), "the pitch must reach the decoder");

    let mut bad = whole.as_frame_major().to_vec();
    bad[3 * 5 + 2] = 256;
    let err = codec.decode(&Codes::from_frame_major(3, bad).unwrap(), layout).unwrap_err().to_string();
    assert!(err.contains("code 256 at frame 5, pitch"), "{err}");
}
