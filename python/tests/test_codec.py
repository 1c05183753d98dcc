"""Arrays, batches, files and streams through tokenwave.Codec, on real speech."""

import math
import threading
import wave

import numpy as np
import pytest

import tokenwave

from conftest import SAMPLES, SPEECH


def envelope(audio: np.ndarray, window: int) -> np.ndarray:
    frames = audio[: len(audio) // window * window].reshape(-1, window)
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))


def test_properties_describe_the_default_model(codec):
    assert (codec.sample_rate, codec.frame_rate, codec.hop) == (16000, 50.0, 320)
    assert codec.codebook_size == tokenwave.CODEBOOK_SIZE == 1024
    assert codec.num_codebooks == 6 and codec.kbps == 3.0
    assert codec.layout == {"stages": 6, "low_band": 0, "pitch": False, "rows": ["neural"] * 6}
    assert len(codec.model_id) == 32
    split = tokenwave.Codec(kbps=3.0, low_band=None)
    assert split.layout["stages"] + split.layout["low_band"] == split.num_codebooks == 6
    assert split.layout["rows"].count("low_band") == split.layout["low_band"] > 0


def test_round_trip_keeps_the_speech(codec, speech):
    audio, rate = speech
    codes = codec.encode(audio, rate)
    frames = math.ceil(round(len(audio) * 16000 / rate) / 320)
    assert codes.dtype == np.int64 and codes.shape == (1, 6, frames)
    assert codes.min() >= 0 and codes.max() < 1024
    decoded = codec.decode(codes)
    assert decoded.dtype == np.float32 and decoded.shape == (1, frames * 320)
    # The loudness contour over 20 ms windows survives the codec.
    original, back = envelope(audio, rate // 50), envelope(decoded[0], 320)
    n = min(len(original), len(back))
    assert np.corrcoef(original[:n], back[:n])[0, 1] > 0.9


def test_batches_equal_single_calls_on_any_number_of_threads(codec, speech):
    audio, rate = speech
    piece = audio[: rate * 2]
    batch = np.stack([piece, piece[::-1].copy(), 0.5 * piece])
    one_by_one = np.concatenate([codec.encode(row, rate) for row in batch])
    assert np.array_equal(codec.encode(batch, rate, jobs=1), one_by_one)
    assert np.array_equal(codec.encode(batch, rate, jobs=3), one_by_one)
    decoded = codec.decode(one_by_one, jobs=2)
    assert decoded.shape == (3, one_by_one.shape[2] * 320)
    assert np.array_equal(decoded[1], codec.decode(one_by_one[1])[0])


def test_anything_with_array_and_any_rate_is_taken(codec, speech):
    audio, rate = speech

    class Tensorish:
        def __array__(self, dtype=None, copy=None):
            return audio[:8000].astype(np.float64)

    from_object = codec.encode(Tensorish(), rate)
    assert np.array_equal(from_object, codec.encode(audio[:8000], rate))
    assert codec.encode([0.0] * 640, 16000).shape == (1, 6, 2)
    assert codec.encode(np.zeros(4800, np.float32), 48000).shape == (1, 6, 5)
    assert np.array_equal(codec.decode(from_object[0].tolist()), codec.decode(from_object))


def test_the_gil_is_released_while_encoding(codec, speech):
    audio, rate = speech
    long = np.tile(audio, 4)
    worker = threading.Thread(target=codec.encode, args=(long, rate))
    spins = 0
    worker.start()
    while worker.is_alive():
        spins += 1
    worker.join()
    assert spins > 10_000, f"the main thread ran {spins} times during encode"


def test_a_file_encodes_as_its_samples_do(codec, speech):
    audio, rate = speech
    assert np.array_equal(codec.encode_file(SPEECH), codec.encode(audio, rate)[0])
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".wav", ".ogg", ".mp3", ".flac"})
    together = codec.encode_files(files, jobs=2)
    assert len(together) == len(files) == 4
    for path, codes in zip(files, together):
        assert np.array_equal(codes, codec.encode_file(str(path))), path


def test_files_round_trip(codec, speech, tmp_path):
    audio, rate = speech
    codes = codec.encode(audio, rate)[0]
    codec.decode_to_file(codes, tmp_path / "out.wav")
    with wave.open(str(tmp_path / "out.wav")) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getnframes()) == (16000, 1, codes.shape[1] * 320)
    codec.decode_to_file(codes, tmp_path / "out48.wav", sample_rate=48000)
    with wave.open(str(tmp_path / "out48.wav")) as wav:
        assert (wav.getframerate(), wav.getnframes()) == (48000, codes.shape[1] * 320 * 3)

    length = round(len(audio) * 16000 / rate)
    codec.write_tkw(codes, tmp_path / "speech.tkw", samples=length)
    assert np.array_equal(codec.read_tkw(tmp_path / "speech.tkw"), codes)

    split = tokenwave.Codec(kbps=3.0, low_band=None)
    split_codes = split.encode_file(SPEECH)
    split.write_tkw(split_codes, tmp_path / "split.tkw")
    assert np.array_equal(split.read_tkw(tmp_path / "split.tkw"), split_codes)
    assert split.decode(split_codes).shape == (1, (split_codes.shape[1] - 1) * 320)
    with pytest.raises(ValueError, match="make one with low_band="):
        codec.read_tkw(tmp_path / "split.tkw")


@pytest.mark.parametrize("low_band", [0, None])
def test_streaming_equals_whole_calls_bit_for_bit(low_band, speech):
    codec = tokenwave.Codec(kbps=3.0, low_band=low_band)
    audio, rate = speech
    whole = codec.encode(audio, rate)[0]

    encoder = codec.stream_encoder(sample_rate=rate)
    pieces, at, sizes = [], 0, [1, 7, 319, 441, 2000, 4801, 160]
    while at < len(audio):
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(encoder.push(audio[at : at + size]))
        at += size
    pieces.append(encoder.flush())
    assert all(p.shape[0] == codec.num_codebooks for p in pieces)
    assert np.array_equal(np.concatenate(pieces, axis=1), whole)

    decoder = codec.stream_decoder()
    audio_out, frame, counts = [], 0, [1, 3, 2, 7, 1, 25]
    while frame < whole.shape[1]:
        count = counts[len(audio_out) % len(counts)]
        audio_out.append(decoder.push(whole[:, frame : frame + count]))
        frame += count
    streamed = np.concatenate(audio_out)
    assert np.array_equal(streamed, codec.decode(whole)[0])
