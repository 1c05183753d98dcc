"""Dataset tokenization speed from Python next to the `tokenwave tokens batch` command, on
the same files in one run, in seconds of audio per second per core.

    python scripts/python-tokenize-bench.py --bin target/release/tokenwave [--jobs 1] [--copies 8] [--rounds 6]

Both sides use one release build of tokenwave-core: the CLI binary given by --bin and the
installed `tokenwave` package (`pip install ./python`, or `maturin develop --release`).
The data is --copies copies of the four clips in samples/ (7.4 s of audio each on
average). Each round runs the CLI (`tokens batch --jobs J --threads J`, npy out) and then
Python (`Codec.encode_files(paths, jobs=J)`, then `np.save` of every array as int16 and a
JSON metadata file beside it, each fsynced as the CLI's outputs are), each in a fresh
process with J model threads; the figures are the medians over the rounds. Model loading
is left out of both timings.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
CLIPS = ["speech_nl.ogg", "speech_cs.wav", "speech_nl2.mp3", "music.flac"]


def python_worker(data: str, out: str, jobs: int) -> None:
    """Runs in the child: tokenizes every file under `data` into `out`, prints the seconds."""
    import numpy as np

    import tokenwave

    codec = tokenwave.Codec(kbps=3.0)
    meta = json.dumps(codec.codec_info())
    paths = sorted(pathlib.Path(data).iterdir())
    started = time.perf_counter()
    grids = codec.encode_files(paths, jobs=jobs)
    for path, codes in zip(paths, grids):
        # As durable as the CLI's outputs: a metadata file and the array, each synced.
        target = pathlib.Path(out) / f"{path.name}.npy"
        for name, write in ((f"{target}.json", lambda f: f.write(meta.encode())),
                            (str(target), lambda f: np.save(f, codes.astype(np.int16)))):
            with open(name, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
    print(json.dumps({"seconds": time.perf_counter() - started, "files": len(grids)}))


def run(command, jobs):
    env = dict(os.environ, RAYON_NUM_THREADS=str(jobs))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "tokenwave"))
    parser.add_argument("--jobs", type=int, default=1, help="files at once and model threads, both sides")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--worker", nargs=3, metavar=("DATA", "OUT", "JOBS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        python_worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "data"
        data.mkdir()
        for copy in range(args.copies):
            for clip in CLIPS:
                shutil.copy(REPO / "samples" / clip, data / f"{copy}_{clip}")
        cli_rates, py_rates, audio = [], [], 0.0
        for round_ in range(args.rounds):
            cli_out, py_out = pathlib.Path(tmp) / f"cli{round_}", pathlib.Path(tmp) / f"py{round_}"
            py_out.mkdir()
            cli_command = [args.bin, "tokens", "batch", "--manifest", str(data), "--out", str(cli_out), "--kbps", "3",
                           "--jobs", str(args.jobs), "--threads", str(args.jobs), "--json"]
            py_command = [sys.executable, __file__, "--worker", str(data), str(py_out), str(args.jobs)]
            # Every other round Python goes first, so neither side always meets the other's leftovers.
            if round_ % 2:
                timing, summary = run(py_command, args.jobs), run(cli_command, args.jobs)
            else:
                summary, timing = run(cli_command, args.jobs), run(py_command, args.jobs)
            audio = summary["hours"] * 3600
            cli_rates.append(summary["x_real_time"] / args.jobs)
            assert timing["files"] == summary["encoded"] == len(CLIPS) * args.copies
            py_rates.append(audio / timing["seconds"] / args.jobs)
        cli, py = statistics.median(cli_rates), statistics.median(py_rates)
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"data: {len(CLIPS) * args.copies} files, {audio:.1f} s of audio; {args.jobs} job(s) on "
              f"{args.jobs} thread(s); median of {args.rounds} rounds")
        print(f"CLI tokens batch: {cli:.1f} audio-s/s per core (rounds: {', '.join(f'{r:.1f}' for r in cli_rates)})")
        print(f"Python encode_files: {py:.1f} audio-s/s per core (rounds: {', '.join(f'{r:.1f}' for r in py_rates)})")
        print(f"Python / CLI: {py / cli:.3f} ({(1 - py / cli) * 100:+.1f}% Python overhead)")


if __name__ == "__main__":
    main()
