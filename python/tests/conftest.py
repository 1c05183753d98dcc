import pathlib
import wave

import numpy as np
import pytest

import tokenwave

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
SPEECH = SAMPLES / "speech_cs.wav"  # 4.5 s of Czech speech, 16-bit PCM at 22.05 kHz


@pytest.fixture(scope="session")
def codec() -> tokenwave.Codec:
    return tokenwave.Codec(kbps=3.0)


@pytest.fixture(scope="session")
def speech() -> "tuple[np.ndarray, int]":
    """The speech sample as float32 and its rate, read with the standard library."""
    with wave.open(str(SPEECH)) as wav:
        assert (wav.getsampwidth(), wav.getnchannels()) == (2, 1)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return (pcm.astype(np.float32) / 32768.0, wav.getframerate())
