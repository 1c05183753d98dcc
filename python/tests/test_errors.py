"""Bad input raises ValueError or OSError with one line, the command line's wording; never a
panic (pyo3 would raise PanicException, which is neither)."""

import subprocess

import numpy as np
import pytest

import tokenwave

from conftest import REPO, SAMPLES, SPEECH
from test_lm import tokenwave_binary

GOOD = np.zeros((6, 4), np.int64)


@pytest.mark.parametrize(
    "call, kind, needle",
    [
        (lambda c: c.encode(np.zeros((2, 2, 2), np.float32), 16000), ValueError, "audio must be [samples] or [batch, samples]"),
        (lambda c: c.encode(np.zeros(0, np.float32), 16000), ValueError, "the input contains no audio samples"),
        (lambda c: c.encode(np.array([0.0, 0.1, np.nan], np.float32), 16000), ValueError, "sample 2 is not a finite number"),
        (lambda c: c.encode(np.zeros(320, np.float32), 0), ValueError, "cannot resample from 0 Hz to 16000 Hz"),
        (lambda c: c.encode(np.zeros(320, np.float32), -8000), ValueError, "cannot resample from -8000 Hz to 16000 Hz"),
        (lambda c: c.encode(np.zeros(320, np.float32), 16000, jobs=0), ValueError, "jobs must be at least 1"),
        (lambda c: c.decode(np.zeros((6, 4))), ValueError, "codes must be an integer array, not float64"),
        (lambda c: c.decode(np.zeros((1, 1, 6, 4), np.int64)), ValueError, "codes must be [codebooks, frames] or [batch, codebooks, frames]"),
        (lambda c: c.decode(np.where(np.arange(24).reshape(6, 4) == 13, 1024, 0)), ValueError,
         "code 1024 at frame 1, stage 3 is out of range (codebook size 1024)"),
        (lambda c: c.decode(np.full((2, 6, 4), -1)), ValueError, "item 0: code -1 at frame 0, stage 0 is out of range"),
        (lambda c: c.decode(np.zeros((13, 4), np.int64)), ValueError, "quantizer stages"),
        (lambda c: c.decode(np.zeros((0, 4), np.int64)), ValueError, "quantizer stages"),
        (lambda c: c.encode_file(REPO / "no-such.wav"), FileNotFoundError, "cannot open"),
        (lambda c: c.encode_file(REPO / "README.md"), OSError, "not a recognised audio format"),
        (lambda c: c.encode_file(SAMPLES), OSError, "is a directory, not an audio file"),
        (lambda c: c.encode_files([SPEECH, REPO / "README.md"]), OSError, "item 1: "),
        (lambda c: c.read_tkw(SPEECH), ValueError, "not a valid .tkw stream"),
        (lambda c: c.read_tkw(REPO / "no-such.tkw"), FileNotFoundError, "cannot open"),
        (lambda c: c.decode_to_file(GOOD, REPO / "no-such-dir" / "x.wav"), FileNotFoundError, "cannot create"),
        (lambda c: c.decode_to_file(np.zeros((2, 6, 4), np.int64), "x.wav"), ValueError, "not a batch of 2"),
        (lambda c: c.write_tkw(GOOD, "x.tkw", samples=4 * 320 + 1), ValueError, "is more than the 1280 samples"),
        (lambda c: c.stream_encoder(sample_rate=0), ValueError, "cannot resample from 0 Hz"),
        (lambda c: c.stream_encoder().push(np.zeros((2, 3), np.float32)), ValueError, "audio must be [samples]"),
        (lambda c: tokenwave.Codec(kbps=-1), ValueError, "bitrate must be positive, not -1"),
        (lambda c: tokenwave.Codec(kbps=100), ValueError, "1 to 12 quantizer stages"),
        (lambda c: tokenwave.Codec(kbps=3, low_band=1), ValueError, "low"),
        (lambda c: tokenwave.Codec(model=REPO / "no-such.safetensors"), FileNotFoundError, "cannot read model"),
        (lambda c: tokenwave.Codec(model=SPEECH), ValueError, "model weights"),
        (lambda c: tokenwave.Codec(device="tpu"), ValueError, 'device must be "cpu" or "cuda"'),
    ],
)
def test_bad_input_raises_one_line(codec, call, kind, needle):
    with pytest.raises(kind) as error:
        call(codec)
    message = str(error.value)
    assert needle in message and "\n" not in message, message
    assert type(error.value).__name__ != "PanicException"


def test_a_stream_decoder_counts_frames_across_pushes(codec):
    decoder = codec.stream_decoder()
    decoder.push(GOOD)
    bad = GOOD.copy()
    bad[2, 1] = 4000
    with pytest.raises(ValueError, match=r"code 4000 at frame 5, stage 2 is out of range"):
        decoder.push(bad)
    encoder = codec.stream_encoder()
    encoder.push(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="sample 103 is not a finite number"):
        encoder.push(np.array([0, 0, 0, np.inf], np.float32))


@pytest.mark.parametrize(
    "args, call",
    [
        (["encode", "no-such.wav", "out.tkw"], lambda c: c.encode_file("no-such.wav")),
        (["encode", "README.md", "out.tkw"], lambda c: c.encode_file("README.md")),
        (["tokens", "export", "samples", "--out", "x.npy", "--kbps", "100"], lambda c: tokenwave.Codec(kbps=100)),
    ],
)
def test_messages_are_the_command_lines(codec, args, call, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cli = subprocess.run([tokenwave_binary(), *args], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode != 0
    with pytest.raises((ValueError, OSError)) as error:
        call(codec)
    assert cli.stderr.strip() == f"tokenwave: error: {error.value}"
