#!/usr/bin/env python3
"""STOI per third-octave band: which bands of a decoded signal lose the score.

Reads lines `REFERENCE.wav DECODED.wav` (16-bit or float WAV, any rate; the decoded file is
resampled to the reference's rate and both are cut to the shorter) on stdin, and prints
each of STOI's 15 bands' mean correlation over all clips (pystoi's construction: 10 kHz,
silent frames removed, 384 ms segments, clipping at -15 dB), then the STOI they average to.
Session 16 found with it that tokenwave loses most below 500 Hz (docs/journal/2026-11-28-session-16-low-band.md).

Needs numpy, scipy and pystoi. Usage: paste <(ls ref/*.wav) <(ls dec/*.wav) | scripts/band-stoi.py
"""
import sys

import numpy as np
from pystoi import utils
from pystoi.stoi import BETA, DYN_RANGE, FS, MINFREQ, N, N_FRAME, NFFT, NUMBAND, OBM
from scipy.io import wavfile
from scipy.signal import resample_poly


def read(path):
    rate, samples = wavfile.read(path)
    samples = samples.astype(np.float64) / (32768.0 if samples.dtype == np.int16 else 1.0)
    return (samples.mean(axis=1) if samples.ndim > 1 else samples), rate


def band_correlations(x, y, rate):
    """Mean correlation per band of one clip, or None when it is too short to score."""
    x, y = utils.resample_oct(x, FS, rate), utils.resample_oct(y, FS, rate)
    x, y = utils.remove_silent_frames(x, y, DYN_RANGE, N_FRAME, N_FRAME // 2)
    x_spec = utils.stft(x, N_FRAME, NFFT, overlap=2).transpose()
    y_spec = utils.stft(y, N_FRAME, NFFT, overlap=2).transpose()
    if x_spec.shape[-1] < N:
        return None
    x_bands, y_bands = np.sqrt(OBM @ np.abs(x_spec) ** 2), np.sqrt(OBM @ np.abs(y_spec) ** 2)
    xs = np.array([x_bands[:, m - N:m] for m in range(N, x_bands.shape[1] + 1)])
    ys = np.array([y_bands[:, m - N:m] for m in range(N, x_bands.shape[1] + 1)])
    ys = ys * np.linalg.norm(xs, axis=2, keepdims=True) / (np.linalg.norm(ys, axis=2, keepdims=True) + utils.EPS)
    ys = np.minimum(ys, xs * (1 + 10 ** (-BETA / 20)))
    ys, xs = ys - ys.mean(axis=2, keepdims=True), xs - xs.mean(axis=2, keepdims=True)
    ys /= np.linalg.norm(ys, axis=2, keepdims=True) + utils.EPS
    xs /= np.linalg.norm(xs, axis=2, keepdims=True) + utils.EPS
    return (xs * ys).sum(axis=2).mean(axis=0)


def main():
    rows = []
    for line in sys.stdin:
        if not line.strip():
            continue
        reference, decoded = line.split()
        x, rate = read(reference)
        y, decoded_rate = read(decoded)
        if decoded_rate != rate:
            y = resample_poly(y, rate, decoded_rate)
        n = min(len(x), len(y))
        scores = band_correlations(x[:n], y[:n], rate)
        if scores is None:
            print(f"skipped {decoded}: too little speech", file=sys.stderr)
        else:
            rows.append(scores)
    if not rows:
        sys.exit("no clip could be scored")
    means = np.mean(rows, axis=0)
    print(f"{len(rows)} clips; STOI {means.mean():.4f}")
    for centre, value in zip(MINFREQ * 2 ** (np.arange(NUMBAND) / 3), means):
        print(f"{centre:7.0f} Hz  {value:.3f}")


if __name__ == "__main__":
    main()
