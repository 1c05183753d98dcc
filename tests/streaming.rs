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
