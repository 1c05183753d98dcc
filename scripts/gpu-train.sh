#!/usr/bin/env bash
# A time-boxed training run on a lent GPU machine, resuming from and returning weights.
#
# Here (no GPU needed):   scripts/gpu-train.sh prepare RUN_DIR [MINUTES_OF_AUDIO]
#   Builds the CUDA binary, and packs into gpu/ (git-ignored): the stripped binary (xz),
#   RUN_DIR/model.safetensors as the starting weights, and a slice of RUN_DIR's training
#   corpus as Ogg Vorbis files (default 60 minutes of audio). The device machine receives
#   the working tree plus carried paths, 64 MiB in all, and reaches nothing else, so
#   everything it trains on travels in gpu/; the script checks the budget.
# There (the device tool, carry ["gpu"]):   scripts/gpu-train.sh run MINUTES
#   Trains with --device cuda from gpu/init.safetensors for MINUTES wall-clock minutes
#   (Ctrl-C at the end, so the last step is checkpointed), then copies model.safetensors
#   and metrics.jsonl to $OUT.
# Back here: continue on the CPU with
#   tokenwave train --data ... --out RUN2 --init-from FILES_AT/model.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."

budget_bytes=$((64 * 1024 * 1024))

prepare() {
    local run="$1" minutes="${2:-60}"
    [ -f "$run/model.safetensors" ] || { echo "no $run/model.safetensors to start from" >&2; exit 1; }
    [ -f "$run/cache/train.corpus" ] || { echo "no $run/cache/train.corpus (run tokenwave train once first)" >&2; exit 1; }
    command -v sox >/dev/null || { echo "sox is needed to pack the corpus (apt-get install sox libsox-fmt-all)" >&2; exit 1; }
    grep -qx '/gpu/' .git/info/exclude 2>/dev/null || echo '/gpu/' >> .git/info/exclude
    rm -rf gpu && mkdir -p gpu/data
    cargo build --release --features cuda
    strip -o gpu/tokenwave target/release/tokenwave
    xz -T0 -6 gpu/tokenwave
    cp "$run/model.safetensors" gpu/init.safetensors
    # Whole files spread evenly over the corpus, up to MINUTES of audio, as Vorbis at 16 kHz.
    python3 - "$run/cache/train.corpus" "$minutes" gpu/data <<'PY'
import struct, sys, wave, subprocess, os
path, minutes, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
with open(path, "rb") as f:
    if f.read(8) != b"TWCORP01":
        sys.exit(f"{path} is not a tokenwave corpus cache")
    count, = struct.unpack("<Q", f.read(8))
    ranges = [struct.unpack("<QQ", f.read(16)) for _ in range(count)]
    f.read(8)
    base = f.tell()
    total = sum(e - s for s, e in ranges)
    want = minutes * 60 * 16000
    step = max(1, int(total / want))
    taken = 0
    for i, (s, e) in enumerate(ranges[::step]):
        if taken >= want:
            break
        f.seek(base + 2 * s)
        pcm = f.read(2 * (e - s))
        wav = os.path.join(out, f"{i:05d}.wav")
        with wave.open(wav, "wb") as w:
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(pcm)
        subprocess.run(["sox", wav, "-C", "1", wav[:-4] + ".ogg"], check=True)
        os.remove(wav)
        taken += e - s
print(f"packed {taken / 16000 / 60:.1f} min of audio")
PY
    local tree
    tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    local packed
    packed=$(du -sb gpu | cut -f1)
    echo "working tree ${tree} B + gpu/ ${packed} B of ${budget_bytes} B"
    if [ $((tree + packed)) -ge "$budget_bytes" ]; then
        echo "over the 64 MiB the device machine receives: prepare again with fewer MINUTES_OF_AUDIO" >&2
        exit 1
    fi
}

run() {
    local minutes="$1"
    local out="${OUT:-/tmp/gpu-out}"
    mkdir -p "$out"
    xz -dc gpu/tokenwave.xz > /tmp/tokenwave && chmod +x /tmp/tokenwave
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    set +e
    timeout -s INT -k 60 "$((minutes * 60))" /tmp/tokenwave --device cuda train \
        --data gpu/data --out /tmp/gpu-run --init-from gpu/init.safetensors \
        --batch 64 --checkpoint-minutes 2 --steps 1000000 2>&1 | tee "$out/train.log" | grep -v '^step' || true
    set -e
    cp /tmp/gpu-run/model.safetensors /tmp/gpu-run/metrics.jsonl "$out/"
    tail -3 "$out/train.log"
}

case "${1:-}" in
prepare) shift; prepare "$@" ;;
run) shift; run "$@" ;;
*) echo "usage: $0 prepare RUN_DIR [MINUTES_OF_AUDIO] | run MINUTES" >&2; exit 2 ;;
esac
