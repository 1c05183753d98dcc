#!/usr/bin/env python3
"""Does the decoder keep the pitch of a steady voiced sound?

Synthesises steady harmonic tones (f0 of 110, 130, 170 and 230 Hz, 19 harmonics falling
as 1/h, 3 s), codes each with `tokenwave roundtrip --kbps K` and measures, on the 2 s after
the first half second, the share of the output's energy between 60 Hz and 2 kHz that lies
within 3 Hz of the tone's harmonics, and the share within 3 Hz of multiples of 50 Hz (the
frame rate: a decoder that cannot carry phase from frame to frame repeats one frame per
20 ms hop, which puts all of its energy there). The input itself scores 1.00 on its own
harmonics (a few per cent at 50 Hz multiples where they coincide, e.g. 650 Hz for 130).

With --speech FILE..., also a pitch track of real speech (each file converted to 16 kHz
mono by sox, no dither; frames pooled over the files): per 40 ms
frame (hop 20 ms) the autocorrelation peak between 70 and 400 Hz, on frames where the
input's normalised peak exceeds 0.6 (clearly voiced); printed: the input's and the output's
mean peak (periodicity) and the share of those frames whose output pitch is within 5 % of
the input's.

--opus K adds Opus at K kbps (opusenc / opusdec, which removes the codec's delay) as a
reference row.

Needs numpy (sox for --speech, opus-tools for --opus).
Usage: scripts/pitch-check.py --tokenwave T [--kbps 6] [--opus 6] [--speech F...] --model M...
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


def pitch_track(samples):
    """Per 640-sample frame (hop 320): (pitch Hz, normalised autocorrelation peak) or None."""
    track = []
    for start in range(0, len(samples) - 640, 320):
        frame = samples[start : start + 640] * np.hanning(640)
        if np.sqrt((frame**2).mean()) < 0.01:
            track.append(None)
            continue
        ac = np.correlate(frame, frame, "full")[639:]
        ac = ac / (ac[0] + 1e-9)
        lo, hi = RATE // 400, RATE // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        track.append((RATE / lag, ac[lag]))
    return track


def pitch_agreement(clips):
    """(voiced frames, input periodicity, output periodicity, share of pitch within 5 %)
    over (reference, decoded) pairs."""
    pairs = []
    for reference, decoded in clips:
        n = min(len(reference), len(decoded))
        tracks = zip(pitch_track(reference[:n]), pitch_track(decoded[:n]))
        pairs += [(r, d) for r, d in tracks if r and d and r[1] > 0.6]
    if not pairs:
        return (0, float("nan"), float("nan"), float("nan"))
    return (
        len(pairs),
        float(np.mean([r[1] for r, _ in pairs])),
        float(np.mean([d[1] for _, d in pairs])),
        float(np.mean([abs(d[0] / r[0] - 1) < 0.05 for r, d in pairs])),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenwave", required=True, help="the tokenwave binary")
    parser.add_argument("--kbps", default="6")
    parser.add_argument("--speech", nargs="*", default=[], help="speech files for the pitch track")
    parser.add_argument("--model", action="append", required=True, help="weights; repeat to compare")
    parser.add_argument("--opus", help="also Opus at this bitrate (kbps)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
        speech = []
        for path in args.speech:
            subprocess.run(["sox", "-D", path, "-r", str(RATE), "-c", "1", "-b", "16", src], check=True)
            speech.append(read_wav(src))

        def roundtrip(model, samples):
            write_wav(src, samples)
            command = [args.tokenwave, "--threads", "1", "--model", model, "roundtrip", src, out]
            subprocess.run(command + ["--kbps", args.kbps, "-q"], check=True)
            return read_wav(out)

        def opus(samples):
            write_wav(src, samples)
            coded = os.path.join(tmp, "coded.opus")
            subprocess.run(["opusenc", "--quiet", "--bitrate", args.opus, src, coded], check=True)
            subprocess.run(["opusdec", "--quiet", "--rate", str(RATE), coded, out], check=True)
            return read_wav(out)

        rows = [("input", [shares(tone(f0), f0) for f0 in F0S], speech and pitch_agreement(zip(speech, speech)))]
        for model in args.model:
            scores = [shares(roundtrip(model, tone(f0)), f0) for f0 in F0S]
            track = speech and pitch_agreement([(clip, roundtrip(model, clip)) for clip in speech])
            rows.append((os.path.basename(model), scores, track))
        if args.opus:
            scores = [shares(opus(tone(f0)), f0) for f0 in F0S]
            rows.append((f"opus {args.opus} kbps", scores, speech and pitch_agreement([(c, opus(c)) for c in speech])))
    header = "  ".join(f"{f0:>5.0f} Hz: f0  50Hz" for f0 in F0S)
    speech_header = "  speech: frames  period. in/out  pitch within 5 %" if args.speech else ""
    print(f"{'system':32s}  {header}{speech_header}")
    for name, scores, track in rows:
        cells = "  ".join(f"      {h:4.2f}  {c:4.2f}" for h, c in scores)
        if track:
            cells += f"          {track[0]:4d}       {track[1]:.2f} / {track[2]:.2f}  {track[3]:.2f}"
        print(f"{name:32s}  {cells}")


if __name__ == "__main__":
    main()
