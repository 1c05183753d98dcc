#!/usr/bin/env python3
"""Where does tokenwave lose STOI: magnitudes or phase?

For each clip, STOI against the original (16 kHz mono) of:
  decoded           tokenwave roundtrip at --kbps
  true-mag/random   the original's magnitudes (640-sample Hann frames, hop 320: the
                    decoder's own frame) with random phase: what a decoder that gets every
                    magnitude right but no phase would score
  true-mag/GLA      the original's magnitudes (1024/256) with 32 Griffin-Lim iterations:
                    right magnitudes, consistent phase
  decoded-mag/GLA   the decoded magnitudes with 32 Griffin-Lim iterations
  decoded-mag/true  the decoded magnitudes with the original's phase

Needs sox, numpy and pystoi (pip install numpy pystoi).
Usage: scripts/stoi-bounds.py --tokenwave target/release/tokenwave --model M.safetensors CLIP...
"""
import argparse
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np
from pystoi import stoi

RATE = 16000


def read_wav(path):
    with wave.open(path) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64) / 32768


def stft(x, n, hop):
    window = np.hanning(n + 1)[:-1]
    frames = [x[i:i + n] * window for i in range(0, len(x) - n + 1, hop)]
    return np.fft.rfft(np.array(frames), axis=1)


def istft(spectrum, n, hop, length):
    window = np.hanning(n + 1)[:-1]
    out, weight = np.zeros(length), np.zeros(length)
    for k, frame in enumerate(np.fft.irfft(spectrum, n=n, axis=1)):
        out[k * hop:k * hop + n] += frame * window
        weight[k * hop:k * hop + n] += window * window
    return out / np.maximum(weight, 1e-3)


def griffin_lim(magnitude, n, hop, length, rng, iterations=32):
    phase = np.exp(2j * np.pi * rng.random(magnitude.shape))
    for _ in range(iterations):
        signal = istft(magnitude * phase, n, hop, length)
        phase = np.exp(1j * np.angle(stft(signal, n, hop)))
    return istft(magnitude * phase, n, hop, length)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenwave", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--kbps", default="6")
    parser.add_argument("clips", nargs="+")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    names = ["decoded", "true-mag/random", "true-mag/GLA", "decoded-mag/GLA", "decoded-mag/true"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        original_path, decoded_path = os.path.join(tmp, "o.wav"), os.path.join(tmp, "d.wav")
        for clip in args.clips:
            subprocess.run(["sox", clip, "-r", str(RATE), "-c", "1", "-b", "16", original_path], check=True)
            subprocess.run([args.tokenwave, "--model", args.model, "roundtrip", original_path, decoded_path,
                            "--kbps", args.kbps, "-q"], check=True)
            x = read_wav(original_path)
            if len(x) < RATE:
                continue
            # tokenwave's output is on the input's timeline (docs/EVAL.md): no alignment.
            d = read_wav(decoded_path)[:len(x)]
            d = np.pad(d, (0, len(x) - len(d)))
            length = len(x) - 1024
            true_spec, decoded_spec = stft(x, 1024, 256), stft(d, 1024, 256)
            frame_mag = np.abs(stft(x, 640, 320))
            random_phase = istft(frame_mag * np.exp(2j * np.pi * rng.random(frame_mag.shape)), 640, 320, len(x))
            candidates = [
                d,
                random_phase,
                griffin_lim(np.abs(true_spec), 1024, 256, len(x), rng),
                griffin_lim(np.abs(decoded_spec), 1024, 256, len(x), rng),
                istft(np.abs(decoded_spec) * np.exp(1j * np.angle(true_spec)), 1024, 256, len(x)),
            ]
            try:
                scores = [stoi(x[:length], c[:length], RATE) for c in candidates]
            except Exception as error:  # pystoi refuses clips with too little speech
                print(f"{clip}: skipped ({error})", file=sys.stderr)
                continue
            rows.append(scores)
            print(os.path.basename(clip), " ".join(f"{s:.3f}" for s in scores), flush=True)
    if not rows:
        sys.exit("no clip could be scored")
    means = np.mean(np.array(rows), axis=0)
    print(f"mean over {len(rows)} clips:")
    for name, value in zip(names, means):
        print(f"  {name:18} {value:.3f}")


if __name__ == "__main__":
    main()
