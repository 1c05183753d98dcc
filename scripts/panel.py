#!/usr/bin/env python3
"""The quality panel: tokenwave beside Opus and Codec2 on the same clips, judged by several
measures side by side, never by one number (issue 25, item 5).

Every clip is cut to --max-seconds, mixed to mono, resampled to 16 kHz (soxr) and stored as
16-bit PCM: that is the reference, and the input of every system. Systems:

  tokenwave K          BIN [--model M] encode REF.wav x.tkw --kbps K; BIN decode x.tkw y.wav
  tokenwave K lb0      the same with --low-band 0 (neural codes only)   (--low-band-zero K,..)
  opus K               opusenc --bitrate K --serial 1 REF.wav x.opus; opusdec --rate 16000
  codec2 M             sox -D to 8 kHz raw, c2enc M, c2dec M, sox -D back to 16 kHz

Real bitrate is always the coded file's size with its container (.tkw, Ogg, .c2 header):
bytes x 8 / reference duration, per clip; the table shows its mean over clips, the JSON also
the pooled figure (all bytes over all seconds), which short clips weigh less.

Alignment: Opus's and Codec2's outputs (and the resamplers around Codec2) carry a delay, so
each is shifted by the lag within +-40 ms (640 samples) that maximises its cross-correlation
with the reference. tokenwave's output is on its input's timeline by construction and is not
shifted (its decoder makes its own phase, so a correlation peak would be noise; see
crates/eval/src/harness.rs `align`). Every output is then cut or zero-padded to the
reference's length.

Measures (higher is better except log-mel L1):
  PESQ-WB          ITU-T P.862.2 wideband MOS-LQO, 1.0-4.64 (pip `pesq`)
  DNSMOS ovrl      Microsoft's non-intrusive P.835 model, overall quality, ~1-5, of the output
                   alone (pip `speechmos`, module `dnsmos`; its ONNX models ship inside the
                   wheel, it needs `onnxruntime`; runs offline). Clips under 9.01 s are tiled
                   to that length by speechmos itself. The reference's own score is shown.
  ViSQOL           speech mode, 16 kHz, MOS-LQO 1-5 (pip `visqol-python`, a Python port of
                   Google's ViSQOL; with `ai-edge-litert` installed it uses the deep-lattice
                   mapper, C++ ViSQOL's default, else the polynomial fallback, which reads
                   higher; the JSON records which)
  STOI, ESTOI      short-time objective intelligibility and its extended form, 0-1
                   (pip `pystoi`)
  harmonic dB      harmonic contrast, 1-4 kHz, as ../shared/tools/harmonic_contrast.py (beside this repository)
                   defines it (reimplemented here, same constants): on the REFERENCE's voiced
                   frames (librosa.pyin 60-400 Hz, frame 2048, hop 160), power of the output's
                   spectrum (n_fft 2048, Hann) on the harmonics k*f0 (+-1 bin) over the power
                   midway between them, in dB, averaged over voiced frames with at least 3
                   harmonics in 1-4 kHz. ~0 dB: no harmonic structure left. The reference's
                   own contrast is shown.
  log-mel L1       as `tokenwave eval` (crates/eval/src/lib.rs `LogMel`): periodic-Hann
                   STFT, n_fft 1024, hop 256, frames from sample 0 while they fit (no
                   padding), |X| through 64 triangular HTK-mel filters 0 Hz-Nyquist,
                   ln(energy + 1e-5), mean absolute difference; lower is better
A clip a measure cannot score (too short for PESQ's or ViSQOL's analysis, no frames left for
STOI after silence removal, no voiced frame for the harmonic contrast, under 1024 samples for
the log-mel) is skipped for that measure only, and counted (the table's `n` line and the JSON).

Setup (Python >= 3.10; tools from Debian: apt-get install opus-tools codec2 sox):
  python3 -m venv .venv-panel
  .venv-panel/bin/pip install numpy scipy soundfile soxr librosa pesq pystoi speechmos \
      onnxruntime visqol-python ai-edge-litert
(speechmos does not declare onnxruntime; ai-edge-litert is visqol-python's `[lattice]` extra.)
Run with .venv-panel/bin/python, or plainly: when the imports fail, the script re-runs itself
under the repository's .venv-panel if there is one.

Usage:
  scripts/panel.py --tokenwave BIN [--model M] --kbps 1.5,3,6 --low-band-zero 3,6 \
      --opus 6,9 --codec2 3200 --max-seconds 10 [--limit N] [--json OUT.json] CLIPS_OR_DIRS...
Directories are searched recursively for .wav .flac .ogg .oga .mp3; --limit N takes the
first N files (sorted paths) of each directory; files named on the command line are taken
as they are. All clips are then scored in sorted path order. Nothing is random: Opus gets a
fixed Ogg serial number and sox never dithers, so runs repeat exactly.
"""
import os
import sys

try:
    import numpy as np
    import soundfile as sf
    import soxr
except ImportError as missing:
    venv = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv-panel"))
    venv_python = os.path.join(venv, "bin", "python")
    if os.path.exists(venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(venv) \
            and not os.environ.get("PANEL_REEXEC"):
        os.environ["PANEL_REEXEC"] = "1"
        os.execv(venv_python, [venv_python, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit(f"panel.py: {missing}; set up the venv as the header of {__file__} says")

import argparse
import json
import math
import shutil
import subprocess
import tempfile
import time
import warnings
from importlib import metadata

RATE = 16000
MAX_LAG = 640  # +-40 ms at 16 kHz
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")

# (key, column title, format)
MEASURES = [
    ("pesq_wb", "PESQ-WB", "{:.3f}"),
    ("dnsmos_ovrl", "DNSMOS", "{:.3f}"),
    ("visqol", "ViSQOL", "{:.3f}"),
    ("stoi", "STOI", "{:.4f}"),
    ("estoi", "ESTOI", "{:.4f}"),
    ("harmonic_db", "harm dB", "{:.2f}"),
    ("log_mel_l1", "logmel L1", "{:.4f}"),
]


class Unscorable(Exception):
    """A clip this measure cannot score (too short, nothing voiced, ...)."""


# ----------------------------------------------------------------------------- measures

class LogMel:
    """`tokenwave eval`'s log-mel L1 (crates/eval/src/lib.rs `LogMel`, crates/core/src/dsp.rs)."""

    N_FFT, HOP, MELS, EPS = 1024, 256, 64, 1e-5

    def __init__(self, rate=RATE):
        t = np.arange(self.N_FFT)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * t / self.N_FFT)  # periodic Hann
        bins = self.N_FFT // 2 + 1

        def to_mel(hz):
            return 2595.0 * np.log10(1.0 + hz / 700.0)

        def to_hz(mel):
            return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

        top = to_mel(rate / 2.0)
        edges = to_hz(top * np.arange(self.MELS + 2) / (self.MELS + 1))
        hz = np.arange(bins) * rate / self.N_FFT
        filters = np.zeros((bins, self.MELS))
        for m in range(self.MELS):
            lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
            rising = (hz > lo) & (hz <= mid)
            falling = (hz > mid) & (hz < hi)
            filters[rising, m] = (hz[rising] - lo) / (mid - lo)
            filters[falling, m] = (hi - hz[falling]) / (hi - mid)
        # The Rust filterbank is stored as f32.
        self.filters = filters.astype(np.float32).astype(np.float64)

    def spectrogram(self, x):
        x = np.asarray(x, dtype=np.float64)
        frames = (len(x) - self.N_FFT) // self.HOP + 1 if len(x) >= self.N_FFT else 0
        if frames <= 0:
            return np.zeros((0, self.MELS))
        idx = np.arange(frames)[:, None] * self.HOP + np.arange(self.N_FFT)[None, :]
        mag = np.abs(np.fft.rfft(x[idx] * self.window, axis=1))
        return np.log(mag @ self.filters + self.EPS)

    def l1(self, ref, dec):
        n = min(len(ref), len(dec))
        a, b = self.spectrogram(ref[:n]), self.spectrogram(dec[:n])
        if len(a) == 0:
            raise Unscorable(f"under {self.N_FFT} samples")
        return float(np.mean(np.abs(a - b)))


class HarmonicContrast:
    """The measure of ../shared/tools/harmonic_contrast.py (beside this repository), reimplemented with its constants.

    The reference's pitch track is computed once per clip and reused for every output."""

    N_FFT, HOP, LO, HI = 2048, 160, 1000.0, 4000.0

    def __init__(self):
        import librosa
        self.librosa = librosa

    def pitch(self, ref):
        f0, voiced, _ = self.librosa.pyin(ref.astype(np.float32), fmin=60, fmax=400, sr=RATE,
                                          frame_length=self.N_FFT, hop_length=self.HOP)
        return f0, voiced

    def contrast(self, sig, track):
        f0, voiced = track
        spec = np.abs(self.librosa.stft(sig.astype(np.float32), n_fft=self.N_FFT, hop_length=self.HOP,
                                        window="hann", center=True)) ** 2
        values = []
        for t in range(min(spec.shape[1], len(f0))):
            if not voiced[t] or not np.isfinite(f0[t]):
                continue
            h = np.arange(1, int(self.HI / f0[t]) + 1) * f0[t]
            h = h[(h >= self.LO) & (h <= self.HI)]
            if len(h) < 3:
                continue
            on = np.round(h * self.N_FFT / RATE).astype(int)
            mid = np.round((h + f0[t] / 2) * self.N_FFT / RATE).astype(int)
            e_on = np.mean([spec[b - 1:b + 2, t].mean() for b in on])
            e_mid = np.mean([spec[b - 1:b + 2, t].mean() for b in mid])
            if e_on > 0 and e_mid > 0:
                values.append(10.0 * math.log10(e_on / e_mid))
        if not values:
            raise Unscorable("no voiced frame with 3 harmonics in 1-4 kHz")
        return float(np.mean(values))


class Panel:
    """Loads the measures that are installed; says why any is left out."""

    def __init__(self, skip):
        self.left_out = {}
        self.info = {}
        self.logmel = LogMel()
        self._pesq = self._dnsmos = self._visqol = self._stoi = self.harmonic = None
        if "pesq_wb" not in skip:
            try:
                from pesq import pesq
                self._pesq = pesq
            except Exception as e:
                self.left_out["pesq_wb"] = f"pip package pesq not usable: {e}"
        if "dnsmos_ovrl" not in skip:
            try:
                from speechmos import dnsmos
                dnsmos.run(np.zeros(RATE, dtype=np.float32), RATE)  # loads the bundled ONNX models
                self._dnsmos = dnsmos
            except Exception as e:
                self.left_out["dnsmos_ovrl"] = (f"speechmos' dnsmos does not run here ({type(e).__name__}: {e}); "
                                                "it needs onnxruntime and its bundled models")
        if "visqol" not in skip:
            try:
                from visqol import VisqolApi
                from visqol.visqol_manager import has_lattice_runtime
                lattice = bool(has_lattice_runtime())
                api = VisqolApi()
                api.create(mode="speech", use_lattice_model=lattice)
                self._visqol = api
                self.info["visqol_mapper"] = "lattice" if lattice else "polynomial (ai-edge-litert missing)"
            except Exception as e:
                self.left_out["visqol"] = f"visqol-python not usable: {type(e).__name__}: {e}"
        if "stoi" not in skip or "estoi" not in skip:
            try:
                from pystoi import stoi
                self._stoi = stoi
            except Exception as e:
                self.left_out["stoi"] = self.left_out["estoi"] = f"pip package pystoi not usable: {e}"
        if "harmonic_db" not in skip:
            try:
                self.harmonic = HarmonicContrast()
            except Exception as e:
                self.left_out["harmonic_db"] = f"librosa not usable: {e}"
        for key in skip:
            self.left_out.setdefault(key, "left out by --skip")
        for key, why in self.left_out.items():
            print(f"panel: {key} left out: {why}", file=sys.stderr)

    def available(self, key):
        return key not in self.left_out

    def dnsmos(self, x):
        return float(self._dnsmos.run(np.clip(x, -1.0, 1.0).astype(np.float32), RATE)["ovrl_mos"])

    def pitch(self, ref):
        return self.harmonic.pitch(ref) if self.harmonic else None

    def score(self, key, ref, dec, track):
        if key == "pesq_wb":
            try:
                return float(self._pesq(RATE, ref.astype(np.float32), dec.astype(np.float32), "wb"))
            except Exception as e:  # NoUtterancesError, BufferTooShortError
                raise Unscorable(f"PESQ failed ({type(e).__name__}: {e}), clip {len(ref) / RATE:.2f} s")
        if key == "dnsmos_ovrl":
            return self.dnsmos(dec)
        if key == "visqol":
            try:
                return float(self._visqol.measure_from_arrays(ref.astype(np.float64), dec.astype(np.float64),
                                                              sample_rate=RATE).moslqo)
            except Exception as e:  # visqol-python fails inside on clips too short for its patches
                raise Unscorable(f"ViSQOL failed ({type(e).__name__}: {e}), clip {len(ref) / RATE:.2f} s")
        if key in ("stoi", "estoi"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = float(self._stoi(ref.astype(np.float64), dec.astype(np.float64), RATE,
                                         extended=key == "estoi"))
            if any("Not enough STFT frames" in str(w.message) for w in caught):
                raise Unscorable("not enough frames after silence removal")
            return value
        if key == "harmonic_db":
            return self.harmonic.contrast(dec, track)
        if key == "log_mel_l1":
            return self.logmel.l1(ref, dec)
        raise KeyError(key)


# ----------------------------------------------------------------------------- audio, systems

def load_reference(path, max_seconds):
    """First `max_seconds` of `path`, mono, 16 kHz, quantised to 16-bit PCM."""
    x, rate = sf.read(path, dtype="float64", always_2d=True)
    x = x[: int(max_seconds * rate)].mean(axis=1)
    if rate != RATE:
        x = soxr.resample(x, rate, RATE)
    x = x[: int(max_seconds * RATE)]
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    return pcm


def read_wav(path):
    x, rate = sf.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if rate != RATE:
        raise RuntimeError(f"{path} is at {rate} Hz, not {RATE}")
    return x


def fit(x, n):
    return np.concatenate([x[:n], np.zeros(max(0, n - len(x)))])


def align(ref, dec, max_lag=MAX_LAG):
    """`dec` shifted by the lag in [-max_lag, max_lag] maximising sum_i ref[i] dec[i + lag]."""
    size = 1 << int(math.ceil(math.log2(len(ref) + len(dec) + 1)))
    cc = np.fft.irfft(np.fft.rfft(dec, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    lag = int(lags[int(np.argmax(cc[lags % size]))])
    shifted = dec[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), dec])
    return fit(shifted, len(ref)), lag


def run(cmd):
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.decode(errors='replace').strip()}")


class System:
    def __init__(self, name, kind, rate, low_band_zero=False):
        self.name, self.kind, self.rate, self.low_band_zero = name, kind, rate, low_band_zero

    def code(self, ref_wav, n, work, args):
        """Decoded signal (aligned, reference length), coded bytes, lag applied."""
        if self.kind == "tokenwave":
            tkw, out = os.path.join(work, "x.tkw"), os.path.join(work, "y.wav")
            model = ["--model", args.model] if args.model else []
            extra = ["--low-band", "0"] if self.low_band_zero else []
            run([args.tokenwave, *model, "encode", ref_wav, tkw, "--kbps", self.rate, *extra, "-q"])
            run([args.tokenwave, *model, "decode", tkw, out, "-q"])
            return fit(read_wav(out), n), os.path.getsize(tkw), 0
        if self.kind == "opus":
            coded, out = os.path.join(work, "x.opus"), os.path.join(work, "y.wav")
            run(["opusenc", "--quiet", "--serial", "1", "--bitrate", self.rate, ref_wav, coded])
            run(["opusdec", "--quiet", "--rate", str(RATE), coded, out])
        else:
            raw, coded, back, out = (os.path.join(work, f) for f in ("x8k.raw", "x.c2", "y8k.raw", "y.wav"))
            pcm = ["-e", "signed-integer", "-b", "16", "-c", "1"]
            run(["sox", "-D", ref_wav, "-r", "8000", *pcm, "-t", "raw", raw])
            run(["c2enc", self.rate, raw, coded])
            run(["c2dec", self.rate, coded, back])
            run(["sox", "-D", "-t", "raw", "-r", "8000", *pcm, back, "-r", str(RATE), *pcm, out])
        ref = sf.read(ref_wav, dtype="float64")[0]
        decoded, lag = align(ref, read_wav(out))
        return decoded, os.path.getsize(coded), lag


def systems_from(args):
    def rates(text):
        return [r.strip() for r in text.split(",") if r.strip()] if text else []

    out = [System(f"tokenwave {k}", "tokenwave", k) for k in rates(args.kbps)]
    out += [System(f"tokenwave {k} lb0", "tokenwave", k, low_band_zero=True) for k in rates(args.low_band_zero)]
    out += [System(f"opus {k}", "opus", k) for k in rates(args.opus)]
    out += [System(f"codec2 {m}", "codec2", m) for m in rates(args.codec2)]
    if any(s.kind == "tokenwave" for s in out) and not args.tokenwave:
        sys.exit("panel.py: --kbps/--low-band-zero need --tokenwave BIN")
    for tool, kind in (("opusenc", "opus"), ("opusdec", "opus"), ("c2enc", "codec2"), ("c2dec", "codec2"),
                       ("sox", "codec2")):
        if any(s.kind == kind for s in out) and shutil.which(tool) is None:
            package = {"opus": "opus-tools", "codec2": "codec2 and sox"}[kind]
            sys.exit(f"panel.py: {tool} not found; install Debian's {package}")
    return out


def collect(paths, limit):
    clips = set()
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p, followlinks=True):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
            found.sort()
            clips.update(found[:limit] if limit else found)
        elif os.path.isfile(p):
            clips.add(p)
        else:
            sys.exit(f"panel.py: no such file or directory: {p}")
    return sorted(clips)


# ----------------------------------------------------------------------------- report

def mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def versions(args):
    out = {}
    for package in ("numpy", "soxr", "librosa", "pesq", "pystoi", "speechmos", "onnxruntime", "visqol-python",
                    "ai-edge-litert"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    for cmd in (["opusenc", "--version"], [args.tokenwave, "--version"] if args.tokenwave else None, ["sox", "--version"]):
        if cmd and shutil.which(cmd[0]):
            text = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode().strip()
            out[os.path.basename(cmd[0])] = text.splitlines()[0] if text else None
    return out


def table(systems, means, ref_means, panel, n_clips):
    keys = [k for k, _, _ in MEASURES]
    head = ["system", "kbps"] + [title for _, title, _ in MEASURES]
    rows = [["reference", "",
             *(fmt.format(ref_means[k]) if ref_means.get(k) is not None else ""
               for k, _, fmt in MEASURES)]]
    counts = []
    for s in systems:
        m = means[s.name]
        row = [s.name, "{:.2f}".format(m["kbps"]) if m["kbps"] is not None else "-"]
        for k, _, fmt in MEASURES:
            row.append("n/a" if not panel.available(k) else fmt.format(m[k]) if m[k] is not None else "-")
        rows.append(row)
        counts.append([s.name, ""] + [str(m["n"][k]) if panel.available(k) else "" for k in keys])
    widths = [max(len(r[i]) for r in [head] + rows + counts) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    short = {s.name: {k: n_clips - means[s.name]["n"][k] for k in keys
                      if panel.available(k) and means[s.name]["n"][k] < n_clips} for s in systems}
    if any(short.values()):
        print(f"\nclips scored per measure, of {n_clips} (the rest skipped: too short or nothing voiced):")
        for c in counts:
            print(line(c))
    for k, why in panel.left_out.items():
        print(f"{k}: left out: {why}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the header of scripts/panel.py for the measures and setup.")
    p.add_argument("clips", nargs="+", metavar="CLIPS_OR_DIRS")
    p.add_argument("--tokenwave", metavar="BIN", help="tokenwave binary")
    p.add_argument("--model", metavar="M", help="model weights for tokenwave (default: the embedded model)")
    p.add_argument("--kbps", default="", help="tokenwave rates, comma-separated, e.g. 1.5,3,6")
    p.add_argument("--low-band-zero", default="", metavar="KBPS", help="tokenwave rates with --low-band 0")
    p.add_argument("--opus", default="", metavar="KBPS", help="Opus bitrates, e.g. 6,9")
    p.add_argument("--codec2", default="", metavar="MODES", help="Codec2 modes, e.g. 3200,1600")
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="first N files (sorted) of each directory; 0: all")
    p.add_argument("--skip", default="", help="measures to leave out, comma-separated: " +
                   ",".join(k for k, _, _ in MEASURES))
    p.add_argument("--json", metavar="OUT.json", help="write per-clip and mean figures")
    args = p.parse_args()

    started = time.time()
    skip = {k.strip() for k in args.skip.split(",") if k.strip()}
    unknown = skip - {k for k, _, _ in MEASURES}
    if unknown:
        sys.exit(f"panel.py: unknown measures in --skip: {','.join(sorted(unknown))}")
    systems = systems_from(args)
    clips = collect(args.clips, args.limit)
    if not clips:
        sys.exit("panel.py: no clips")
    panel = Panel(skip)
    keys = [k for k, _, _ in MEASURES]

    per_clip = []
    with tempfile.TemporaryDirectory(prefix="panel-") as work:
        ref_wav = os.path.join(work, "ref.wav")
        for i, clip in enumerate(clips):
            pcm = load_reference(clip, args.max_seconds)
            sf.write(ref_wav, pcm, RATE, subtype="PCM_16")
            ref = pcm.astype(np.float64) / 32768.0
            seconds = len(ref) / RATE
            entry = {"file": clip, "seconds": seconds, "reference": {}, "systems": []}
            print(f"[{i + 1}/{len(clips)}] {clip} ({seconds:.2f} s)", file=sys.stderr)
            if len(ref) == 0:
                entry["error"] = "empty"
                per_clip.append(entry)
                continue
            track = panel.pitch(ref) if panel.available("harmonic_db") else None
            if panel.available("dnsmos_ovrl"):
                entry["reference"]["dnsmos_ovrl"] = panel.dnsmos(ref)
            if panel.available("harmonic_db"):
                try:
                    entry["reference"]["harmonic_db"] = panel.harmonic.contrast(ref, track)
                except Unscorable as e:
                    entry["reference"]["harmonic_db_skipped"] = str(e)
            for s in systems:
                result = {"system": s.name, "scores": {}, "skipped": {}}
                try:
                    t0 = time.time()
                    dec, size, lag = s.code(ref_wav, len(ref), work, args)
                    result.update(bytes=size, kbps=size * 8 / seconds / 1000.0, lag=lag,
                                  coding_seconds=round(time.time() - t0, 3))
                except Exception as e:
                    result["error"] = str(e)
                    print(f"  {s.name}: {e}", file=sys.stderr)
                    entry["systems"].append(result)
                    continue
                for k in keys:
                    if not panel.available(k):
                        continue
                    try:
                        result["scores"][k] = panel.score(k, ref, dec, track)
                    except Unscorable as e:
                        result["skipped"][k] = str(e)
                entry["systems"].append(result)
            per_clip.append(entry)

    means, n_clips = {}, len(per_clip)
    for s in systems:
        results = [r for c in per_clip for r in c["systems"] if r["system"] == s.name and "error" not in r]
        m = {"kbps": mean_or_none([r["kbps"] for r in results]),
             "kbps_pooled": (sum(r["bytes"] for r in results) * 8 / 1000.0 /
                             sum(c["seconds"] for c in per_clip for r in c["systems"]
                                 if r["system"] == s.name and "error" not in r)) if results else None,
             "failed": n_clips - len(results), "n": {}}
        for k in keys:
            values = [r["scores"][k] for r in results if k in r["scores"]]
            m[k] = mean_or_none(values)
            m["n"][k] = len(values)
        means[s.name] = m
    ref_means = {k: mean_or_none([c["reference"].get(k) for c in per_clip]) for k in ("dnsmos_ovrl", "harmonic_db")}
    ref_means["n"] = {k: sum(k in c["reference"] for c in per_clip) for k in ("dnsmos_ovrl", "harmonic_db")}

    total = sum(c["seconds"] for c in per_clip)
    print(f"\n{n_clips} clips, {total:.1f} s of audio; means over clips (real kbps: file bytes x 8 / duration)\n")
    table(systems, means, ref_means, panel, n_clips)
    failed = {s.name: means[s.name]["failed"] for s in systems if means[s.name]["failed"]}
    if failed:
        print(f"systems that failed on some clips: {failed}")
    elapsed = time.time() - started
    print(f"\nrun time {elapsed:.0f} s")

    if args.json:
        out = {"command": sys.argv, "max_seconds": args.max_seconds, "limit": args.limit,
               "clips_total_seconds": total, "run_seconds": round(elapsed, 1), "versions": versions(args),
               "measures_left_out": panel.left_out, **panel.info,
               "means": {"reference": ref_means, **means}, "clips": per_clip}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
