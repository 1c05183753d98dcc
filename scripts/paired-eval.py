#!/usr/bin/env python3
"""Per-clip differences between two `tokenwave eval --json` runs on the same clips.

For each system (e.g. "tokenwave 3 kbps") and measure, prints both means, the mean of
the per-clip differences (second minus first) with its standard error, and on how many
clips the second run is better (higher STOI/ESTOI, lower log-mel L1). Pairing by clip
removes most of the clip-to-clip spread, which is far larger than a model's step.

    scripts/paired-eval.py OLD.json NEW.json
"""
import json
import math
import sys

LOWER_IS_BETTER = {"log_mel_l1"}
MEASURES = ["stoi", "estoi", "log_mel_l1"]


def scores(path):
    with open(path) as f:
        run = json.load(f)
    return {(clip["file"], s["system"]): s["scores"] for clip in run["clips"] for s in clip["systems"]}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    old, new = scores(sys.argv[1]), scores(sys.argv[2])
    for system in sorted({system for _, system in old}):
        keys = [k for k in old if k[1] == system and k in new]
        if len(keys) < 2:
            continue
        for measure in MEASURES:
            diffs = [new[k][measure] - old[k][measure] for k in keys]
            n = len(diffs)
            mean = sum(diffs) / n
            error = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
            better = sum(d < 0 if measure in LOWER_IS_BETTER else d > 0 for d in diffs)
            before = sum(old[k][measure] for k in keys) / n
            after = sum(new[k][measure] for k in keys) / n
            print(f"{system:20s} {measure:10s} {before:.4f} -> {after:.4f}  "
                  f"diff {mean:+.4f} ± {error:.4f}  better on {better}/{n}")


if __name__ == "__main__":
    main()
