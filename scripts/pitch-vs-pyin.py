#!/usr/bin/env python3
"""Compare the Rust pitch tracker with librosa.pyin on 16 kHz mono WAV files.

Reference: librosa.pyin(y, sr=16000, fmin=50, fmax=550, frame_length=1024, hop_length=320, center=True).
With center=True, pyin frame t is centred on sample t*320. Our frame n is computed from the 833 samples
ending at sample (n+1)*320, i.e. centred on sample n*320 - 96.5 (0.3 frame before pyin frame n); the nearest
whole offset is 0, so frame n is compared with pyin frame n. The script checks this: for offsets -4..4 it correlates the two log-F0 tracks on frames both
call voiced and prints the correlation per offset, pooled over all clips; the best offset should be 0.

Metrics per clip (on the frames both tracks have, at offset 0):
  voicing agreement  share of frames where the voiced/unvoiced decisions match (also on the frames whose
                     own 320 samples are at -50 dBFS or louder: pyin, having no level gate, voices hum and
                     faint residue that a codec should not spend pitch on)
  GPE                share of frames both call voiced where |ours / pyin - 1| > 20 %
  fine               median |1200 log2(ours / pyin)| (cents) on those frames that are not gross errors
Also the share of frames each calls voiced, and the counts behind the percentages.

pyin results are cached next to each WAV (FILE.pyin.npz, keyed on the file's size and mtime).

Usage: scripts/pitch-vs-pyin.py [--bin target/release/examples/pitch_track] FILE.wav...
(build the example first: cargo build --release -p tokenwave-core --example pitch_track;
needs pip numpy soundfile librosa)
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

SR = 16000
HOP = 320


def pyin_track(path):
    cache = path + ".pyin.npz"
    st = os.stat(path)
    key = np.array([st.st_size, int(st.st_mtime)])
    if os.path.exists(cache):
        z = np.load(cache)
        if np.array_equal(z["key"], key):
            return z["f0"], z["voiced"]
    import librosa

    y, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SR and y.shape[1] == 1, f"{path}: need 16 kHz mono"
    f0, voiced, _ = librosa.pyin(
        y[:, 0], fmin=50, fmax=550, sr=SR, frame_length=1024, hop_length=HOP, center=True
    )
    f0 = np.where(voiced, f0, 0.0)
    np.savez(cache, key=key, f0=f0, voiced=voiced)
    return f0, voiced


def frame_db(path, n):
    """RMS level (dBFS) of each frame's own hop of samples [t*HOP, (t+1)*HOP)."""
    y, _ = sf.read(path, dtype="float32", always_2d=True)
    y = y[:, 0]
    out = np.full(n, -200.0)
    for t in range(min(n, len(y) // HOP)):
        out[t] = 20 * np.log10(np.sqrt(np.mean(y[t * HOP:(t + 1) * HOP] ** 2)) + 1e-10)
    return out


def our_track(binary, path):
    out = subprocess.run([binary, path], check=True, capture_output=True, text=True).stdout
    rows = np.array([[float(v) for v in line.split()] for line in out.splitlines()]).reshape(-1, 4)
    return rows[:, 1], rows[:, 2] > 0.5


def shifted(ours, ref, offset):
    """Pairs ours[n] with ref[n + offset] over the frames both have."""
    (f_o, v_o), (f_r, v_r) = ours, ref
    lo = max(0, -offset)
    hi = min(len(f_o), len(f_r) - offset)
    sl_o, sl_r = slice(lo, hi), slice(lo + offset, hi + offset)
    return f_o[sl_o], v_o[sl_o], f_r[sl_r], v_r[sl_r]


def metrics(f_o, v_o, f_r, v_r, db):
    both = v_o & v_r
    loud = db >= -50
    ratio = f_o[both] / f_r[both]
    gross = np.abs(ratio - 1) > 0.2
    cents = np.abs(1200 * np.log2(ratio[~gross]))
    return dict(
        frames=len(f_o),
        vagree=100 * np.mean(v_o == v_r) if len(f_o) else float("nan"),
        vagree_loud=100 * np.mean(v_o[loud] == v_r[loud]) if loud.any() else float("nan"),
        ours_v=100 * np.mean(v_o) if len(f_o) else float("nan"),
        pyin_v=100 * np.mean(v_r) if len(f_o) else float("nan"),
        both=int(both.sum()),
        gross=int(gross.sum()),
        gpe=100 * np.mean(gross) if both.any() else float("nan"),
        fine=float(np.median(cents)) if len(cents) else float("nan"),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                  "target/release/examples/pitch_track"))
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    tracks = []
    for path in args.files:
        ours = our_track(args.bin, path)
        tracks.append((os.path.basename(path), ours, pyin_track(path), frame_db(path, len(ours[0]))))

    print("alignment: pooled correlation of log-F0 (frames both voiced), ours[n] vs pyin[n+offset]")
    best = None
    for offset in range(-4, 5):
        lo, lr = [], []
        for _, ours, ref, _ in tracks:
            f_o, v_o, f_r, v_r = shifted(ours, ref, offset)
            both = v_o & v_r
            lo.append(np.log(f_o[both]))
            lr.append(np.log(f_r[both]))
        lo, lr = np.concatenate(lo), np.concatenate(lr)
        corr = np.corrcoef(lo, lr)[0, 1] if len(lo) > 2 else float("nan")
        print(f"  offset {offset:+d}: corr {corr:.4f} on {len(lo)} frames")
        if best is None or corr > best[1]:
            best = (offset, corr)
    print(f"  best offset {best[0]:+d} (metrics below use offset 0)\n")

    hdr = f"{'clip':<40} {'frames':>6} {'voicing agr %':>13} {'agr >=-50dB %':>13} {'ours V %':>8} {'pyin V %':>8} " \
          f"{'both V':>6} {'GPE %':>6} {'fine ¢':>6}"
    print(hdr)
    print("-" * len(hdr))
    pooled = [np.array([]), np.array([], bool), np.array([]), np.array([], bool), np.array([])]
    for name, ours, ref, db in tracks:
        parts = shifted(ours, ref, 0) + (db[: min(len(ours[0]), len(ref[0]))],)
        pooled = [np.concatenate([p, q]) for p, q in zip(pooled, parts)]
        m = metrics(*parts)
        print(f"{name:<40} {m['frames']:>6} {m['vagree']:>13.1f} {m['vagree_loud']:>13.1f} {m['ours_v']:>8.1f} {m['pyin_v']:>8.1f} "
              f"{m['both']:>6} {m['gpe']:>6.1f} {m['fine']:>6.1f}")
    m = metrics(*pooled)
    print("-" * len(hdr))
    print(f"{'ALL (pooled frames)':<40} {m['frames']:>6} {m['vagree']:>13.1f} {m['vagree_loud']:>13.1f} {m['ours_v']:>8.1f} "
          f"{m['pyin_v']:>8.1f} {m['both']:>6} {m['gpe']:>6.1f} {m['fine']:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
