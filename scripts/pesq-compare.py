#!/usr/bin/env python3
"""Wideband PESQ (ITU-T P.862.2) of tokenwave, Opus and Codec2 on the same clips.

A check from outside our own metrics: `tokenwave eval` reports STOI, ESTOI and log-mel L1,
and the training's intelligibility loss is built like STOI. Each clip is cut to 10 s and
resampled to 16 kHz mono; then, against that reference (every sox call without dither, so
runs repeat exactly):
  tokenwave K       tokenwave roundtrip --kbps K (one line per --model and --kbps);
                    K+N adds --low-band N (N of K's codes per frame for the low band)
  opus K            opusenc --bitrate K, opusdec --rate 16000
  codec2 M          sox to 8 kHz raw, c2enc M, c2dec M, sox back to 16 kHz
  true-mag/random   the reference's own magnitudes (640-sample Hann frames, hop 320: the
                    decoder's frame) with random phase: perfect magnitudes, no phase
  ... /true-phase   with --phase-bound, each tokenwave output's magnitudes in the same
                    frames with the reference's phase: what a decoder that got the phase
                    (and so the pitch) right could score with the magnitudes it makes now
Prints each system's mean and its paired difference from the first system.

Needs sox, opus-tools, codec2, numpy, scipy and pesq (pip install numpy scipy pesq).
Usage: scripts/pesq-compare.py --tokenwave target/release/tokenwave --model M.safetensors CLIP...
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from pesq import pesq
from scipy.io import wavfile
from scipy.signal import istft, stft

RATE = 16000


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read(path):
    return wavfile.read(path)[1].astype(np.float32) / 32768


def random_phase(reference, rng):
    _, _, spectrum = stft(reference, nperseg=640, noverlap=320)
    phase = np.exp(1j * rng.uniform(0, 2 * np.pi, spectrum.shape))
    return istft(np.abs(spectrum) * phase, nperseg=640, noverlap=320)[1]


def with_phase_of(decoded, reference):
    n = min(len(decoded), len(reference))
    _, _, ours = stft(decoded[:n], nperseg=640, noverlap=320)
    _, _, theirs = stft(reference[:n], nperseg=640, noverlap=320)
    return istft(np.abs(ours) * np.exp(1j * np.angle(theirs)), nperseg=640, noverlap=320)[1]


def systems(args, ref, work):
    """(name, decoded samples) for every system on one reference WAV."""
    out = os.path.join(work, "out.wav")
    for model in args.model:
        for kbps in args.kbps:
            rate, _, low_band = kbps.partition("+")
            layers = ["--kbps", rate] + (["--low-band", low_band] if low_band else [])
            run(args.tokenwave, "--threads", "1", "-q", "--model", model, "roundtrip", *layers, ref, out)
            yield f"tokenwave {kbps} ({os.path.basename(model)})", read(out)
            if args.phase_bound:
                yield f"tokenwave {kbps} ({os.path.basename(model)})/true-phase", with_phase_of(read(out), read(ref))
    for kbps in args.opus:
        encoded = os.path.join(work, "x.opus")
        run("opusenc", "--quiet", "--bitrate", kbps, ref, encoded)
        run("opusdec", "--quiet", "--rate", str(RATE), encoded, out)
        yield f"opus {kbps}", read(out)
    for mode in args.codec2:
        raw, bits, decoded = (os.path.join(work, name) for name in ("x.raw", "x.c2", "y.raw"))
        run("sox", "-D", ref, "-r", "8000", "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", raw)
        run("c2enc", mode, raw, bits)
        run("c2dec", mode, bits, decoded)
        run("sox", "-D", "-r", "8000", "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", decoded, "-r", str(RATE), out)
        yield f"codec2 {mode}", read(out)
    yield "true-mag/random", random_phase(read(ref), np.random.default_rng(0))


def split(text):
    return [item for item in text.split(",") if item]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenwave", required=True, help="the tokenwave binary")
    parser.add_argument("--model", action="append", required=True, help="weights; repeat to compare")
    parser.add_argument("--kbps", default="3", type=split,
                        help="tokenwave rates, e.g. 1.5,3,6 (each with its ladder split); 6+7 is --kbps 6 --low-band 7")
    parser.add_argument("--opus", default="6,9,12", type=split, help="Opus rates (kbps); '' for none")
    parser.add_argument("--codec2", default="1600,3200", type=split, help="Codec2 modes; '' for none")
    parser.add_argument("--phase-bound", action="store_true", help="also each output's magnitudes, true phase")
    parser.add_argument("clips", nargs="+")
    args = parser.parse_args()

    scores = {}
    with tempfile.TemporaryDirectory() as work:
        ref = os.path.join(work, "ref.wav")
        for clip in args.clips:
            run("sox", "-D", clip, "-r", str(RATE), "-c", "1", "-b", "16", ref, "trim", "0", "10")
            reference = read(ref)
            try:
                row = {}
                for name, decoded in systems(args, ref, work):
                    n = min(len(reference), len(decoded))
                    row[name] = pesq(RATE, reference[:n], decoded[:n], "wb")
            except Exception as error:  # PESQ refuses clips without enough speech
                print(f"skipped {clip}: {error}", file=sys.stderr)
                continue
            for name, value in row.items():
                scores.setdefault(name, []).append(value)

    if not scores:
        sys.exit("no clip could be scored")
    first = next(iter(scores))
    for name, values in scores.items():
        values = np.array(values)
        diff = values - np.array(scores[first])
        se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
        print(f"{name:40s} PESQ-WB {values.mean():.3f}  vs {first}: {diff.mean():+.3f} ± {se:.3f}"
              f"  (better on {(diff > 0).sum()}/{len(diff)})")


if __name__ == "__main__":
    main()
