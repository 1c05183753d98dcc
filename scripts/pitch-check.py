#!/usr/bin/env python3
"""Does the decoder keep the pitch of a steady voiced sound?

Synthesises steady harmonic tones (f0 of 110, 130, 170 and 230 Hz, 19 harmonics falling
as 1/h, 3 s), codes each with `tokenwave roundtrip --kbps K` and measures, on the 2 s after
the first half second, the share of the output's energy between 60 Hz and 2 kHz that lies
within 3 Hz of the tone's harmonics, and the share within 3 Hz of multiples of 50 Hz (the
frame rate: a decoder that cannot carry phase from frame to frame repeats one frame per
20 ms hop, which puts all of its energy there). The input itself scores 1.00 on its own
harmonics (a few per cent at 50 Hz multiples where they coincide, e.g. 650 Hz for 130).

Needs numpy. Usage: scripts/pitch-check.py --tokenwave T [--kbps 6] MODEL...
"""
import argparse
import os
import subprocess
import tempfile
import wave

import numpy as np

RATE = 16000
F0S = (110.0, 130.0, 170.0, 230.0)


def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def read_wav(path):
    with wave.open(path) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1, path
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float) / 32768


def tone(f0):
    t = np.arange(3 * RATE) / RATE
    return 0.1 * sum(np.sin(2 * np.pi * f0 * h * t + h) / h for h in range(1, 20))


def shares(samples, f0):
    """(share at the harmonics of f0, share at multiples of 50 Hz) of 60 Hz–2 kHz energy."""
    steady = samples[RATE // 2 : RATE // 2 + 2 * RATE]
    energy = np.abs(np.fft.rfft(steady * np.hanning(len(steady)))) ** 2
    freqs = np.fft.rfftfreq(len(steady), 1 / RATE)
    band = (freqs > 60) & (freqs < 2000)

    def near(multiples):
        mask = np.zeros_like(band)
        for f in multiples:
            mask |= np.abs(freqs - f) < 3
        return energy[mask & band].sum() / energy[band].sum()

    return near(f0 * np.arange(1, 2000 // f0 + 1)), near(50.0 * np.arange(2, 40))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenwave", required=True, help="the tokenwave binary")
    parser.add_argument("--kbps", default="6")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("input", [shares(tone(f0), f0) for f0 in F0S])]
        for model in args.models:
            scores = []
            for f0 in F0S:
                src, out = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
                write_wav(src, tone(f0))
                subprocess.run(
                    [args.tokenwave, "--threads", "1", "--model", model, "roundtrip", src, out, "--kbps", args.kbps, "-q"],
                    check=True,
                )
                scores.append(shares(read_wav(out), f0))
            rows.append((os.path.basename(model), scores))
    header = "  ".join(f"{f0:>5.0f} Hz: f0  50Hz" for f0 in F0S)
    print(f"{'system':32s}  {header}")
    for name, scores in rows:
        cells = "  ".join(f"      {h:4.2f}  {c:4.2f}" for h, c in scores)
        print(f"{name:32s}  {cells}")


if __name__ == "__main__":
    main()
