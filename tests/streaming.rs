//! Streaming in odd-sized pieces gives exactly the offline codes and (within 1e-4) the
//! offline samples, on real speech.

use std::path::Path;

use tokenwave::audio::AudioSource;
use tokenwave::{Codec, Codes, CpuBackend, Weights};

fn speech() -> Vec<f32> {
    let mut source = AudioSource::open(Path::new("samples/speech_nl.ogg"), 16_000).unwrap();
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

    let offline_codes = codec.encode(&samples, stages).unwrap();
    let offline_audio = codec.decode(&offline_codes).unwrap();

    let mut encoder = codec.stream_encoder(stages).unwrap();
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

    let mut decoder = codec.stream_decoder();
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
    assert_eq!(audio.len(), offline_audio.len());
    let worst = audio.iter().zip(&offline_audio).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "streamed samples differ from offline by {worst}");
}

#[test]
fn decoder_rejects_bad_codes_with_their_position() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let mut decoder = codec.stream_decoder();
    let codes = Codes::from_frame_major(2, vec![1, 2, 3, 5000]).unwrap();
    let err = decoder.push(&codes).unwrap_err().to_string();
    assert!(err.contains("code 5000 at frame 1, stage 1"), "{err}");
    let too_many = Codes::from_frame_major(13, vec![0; 13]).unwrap();
    assert!(decoder.push(&too_many).unwrap_err().to_string().contains("13 stages"));
}

#[test]
fn the_low_band_streams_like_the_whole_signal_and_ends_where_the_input_ends() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let samples = speech();
    let layer = codec.low_band(4).unwrap();
    let offline_codes = codec.encode_layers(&samples, 3, Some(layer)).unwrap();
    assert_eq!(offline_codes.stages(), 3 + 4);
    assert_eq!(offline_codes.frames(), samples.len().div_ceil(320) + 1, "one extra frame ends the low band");
    let offline_audio = codec.decode_layers(&offline_codes, Some(layer)).unwrap();
    assert_eq!(offline_audio.len(), samples.len().div_ceil(320) * 320);

    let mut encoder = codec.stream_encoder(3).unwrap().with_low_band(layer);
    let mut streamed = Codes::empty(7);
    for piece in samples.chunks(777) {
        streamed.extend(&encoder.push(piece).unwrap()).unwrap();
    }
    streamed.extend(&encoder.flush()).unwrap();
    assert_eq!(streamed, offline_codes, "streaming must give identical codes");

    let mut decoder = codec.stream_decoder().with_low_band(layer);
    let mut audio = Vec::new();
    for start in (0..streamed.frames()).step_by(3) {
        let count = 3.min(streamed.frames() - start);
        audio.extend(decoder.push(&streamed.slice_frames(start, count)).unwrap());
    }
    assert_eq!(audio.len(), offline_audio.len());
    let worst = audio.iter().zip(&offline_audio).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "streamed samples differ from offline by {worst}");
}

/// The part of `signal` below `hz`, by zeroing the bins of one FFT over all of it.
fn below(signal: &[f32], hz: f32) -> Vec<f32> {
    let mut planner = realfft::RealFftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(signal.len());
    let inverse = planner.plan_fft_inverse(signal.len());
    let mut input = signal.to_vec();
    let mut spectrum = forward.make_output_vec();
    forward.process(&mut input, &mut spectrum).unwrap();
    let cut = (hz * signal.len() as f32 / 16_000.0) as usize;
    spectrum.iter_mut().skip(cut).for_each(|c| *c = Default::default());
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
fn the_low_band_carries_the_waveform_below_its_cut_that_the_neural_decoder_misses() {
    let codec = Codec::<CpuBackend>::new(&Weights::embedded().unwrap(), Default::default()).unwrap();
    let samples = speech();
    let layer = codec.low_band(4).unwrap();
    let neural = codec.decode(&codec.encode(&samples, 3).unwrap()).unwrap();
    let hybrid = codec.decode_layers(&codec.encode_layers(&samples, 3, Some(layer)).unwrap(), Some(layer)).unwrap();
    let n = samples.len();
    let reference = below(&samples, 400.0);
    let neural_snr = snr_db(&reference, &below(&neural[..n], 400.0));
    let hybrid_snr = snr_db(&reference, &below(&hybrid[..n], 400.0));
    assert!(
        hybrid_snr > 10.0 && neural_snr < 1.0,
        "below 400 Hz: {hybrid_snr:.1} dB with the low band, {neural_snr:.1} dB without"
    );
}
