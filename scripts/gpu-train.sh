#!/usr/bin/env bash
# A time-boxed training run on a lent GPU machine, resuming from and returning weights.
#
# Here (no GPU needed):   scripts/gpu-train.sh prepare RUN_DIR [MINUTES_OF_AUDIO] [INIT]
#   Builds the CUDA binary, and packs into gpu/ (git-ignored): the stripped binary (xz),
#   the starting weights (INIT, default RUN_DIR/model.safetensors; a file tracked in the
#   repo travels anyway, so only its path is recorded), and a slice of RUN_DIR's training
#   corpus as Ogg Vorbis files (default 60 minutes of audio). The device machine receives
#   the working tree plus carried paths, 64 MiB in all, and reaches nothing else, so
#   everything it trains on travels in gpu/; the script checks the budget.
# There (the device tool, carry ["gpu"]):   scripts/gpu-train.sh run MINUTES [TRAIN_ARGS...]
#   Trains with --device cuda from the starting weights for MINUTES wall-clock minutes
#   (Ctrl-C at the end, so the last step is checkpointed), then copies the weights (split
#   into parts under the 16 MiB a returned file may have), metrics.jsonl and the log to $OUT.
# There, first in a session:   scripts/gpu-train.sh probe
#   100 seconds of training at batch 8 with cubecl's compilation/profiling log returned
#   (xz), GPU use sampled every 5 s: shows whether steps run or kernels are still compiling.
# Back here: join the parts and continue on the CPU with
#   cat FILES_AT/model.part.* > gpu.safetensors
#   tokenwave train --data ... --out RUN2 --init-from gpu.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."

budget_bytes=$((64 * 1024 * 1024))

prepare() {
    local run="$1" minutes="${2:-60}" init="${3:-$1/model.safetensors}"
    [ -f "$init" ] || { echo "no $init to start from" >&2; exit 1; }
    [ -f "$run/cache/train.corpus" ] || { echo "no $run/cache/train.corpus (run tokenwave train once first)" >&2; exit 1; }
    command -v sox >/dev/null || { echo "sox is needed to pack the corpus (apt-get install sox libsox-fmt-all)" >&2; exit 1; }
    grep -qx '/gpu/' .git/info/exclude 2>/dev/null || echo '/gpu/' >> .git/info/exclude
    rm -rf gpu && mkdir -p gpu/data
    # Without the embedded model: the starting weights travel once, not twice.
    cargo build --release --no-default-features --features cuda
    strip -o gpu/tokenwave target/release/tokenwave
    xz -T0 -6 gpu/tokenwave
    # cpal links ALSA's library, which the GPU image does not have.
    mkdir -p gpu/lib && cp -L "$(ldconfig -p | awk '/libasound\.so\.2 / {print $NF; exit}')" gpu/lib/
    if git ls-files --error-unmatch "$init" >/dev/null 2>&1; then
        echo "$init" > gpu/init.path
    else
        cp "$init" gpu/init.safetensors
        echo gpu/init.safetensors > gpu/init.path
    fi
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

# The binary, the libraries it links that the bare GPU image lacks, and NVRTC on the path.
setup() {
    xz -dc gpu/tokenwave.xz > /tmp/tokenwave && chmod +x /tmp/tokenwave
    export LD_LIBRARY_PATH="$PWD/gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    local nvrtc=""
    ldconfig -p | grep -q 'libnvrtc\.so' ||
        nvrtc=$(find /usr/local /usr/lib /opt -name 'libnvrtc.so*' 2>/dev/null | head -1 || true)
    if [ -n "$nvrtc" ]; then
        export LD_LIBRARY_PATH="$(dirname "$nvrtc"):$LD_LIBRARY_PATH"
    fi
    echo "nvrtc: ${nvrtc:-found by ldconfig, or nowhere}"
}

# Trains for SECONDS, then stops it with Ctrl-C (the last step is checkpointed and exported).
train_for() {
    local seconds="$1" out="$2"
    shift 2
    set +e
    timeout -s INT -k 30 "$seconds" /tmp/tokenwave --device cuda train \
        --data gpu/data --out /tmp/gpu-run --init-from "$(cat gpu/init.path)" \
        --checkpoint-minutes 2 --steps 1000000 "$@" 2>&1 | tee "$out/train.log"
    set -e
    cp /tmp/gpu-run/metrics.jsonl "$out/" 2>/dev/null || echo "no metrics.jsonl: not one metric line was written"
}

run() {
    local minutes="$1"
    shift
    local out="${OUT:-/tmp/gpu-out}"
    mkdir -p "$out"
    setup
    train_for "$((minutes * 60))" "$out" "$@"
    if [ -f /tmp/gpu-run/model.safetensors ]; then
        split -b 15M /tmp/gpu-run/model.safetensors "$out/model.part."
    else
        echo "no weights were exported (no step finished before the stop?)" >&2
        exit 1
    fi
}

# A short look at how the GPU spends a training step: cubecl's compilation and profiling log.
probe() {
    local out="${OUT:-/tmp/gpu-out}"
    mkdir -p "$out"
    setup
    export CUBECL_DEBUG_LOG=/tmp/cubecl.log CUBECL_DEBUG_OPTION=profile
    (for i in $(seq 1 20); do
        sleep 5
        echo "t=$((i * 5))s gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)" \
            "log $(wc -c < /tmp/cubecl.log 2>/dev/null || echo 0) B"
    done) &
    local sampler=$!
    train_for 100 "$out" --steps 30 --batch 8 "$@"
    kill "$sampler" 2>/dev/null || true
    xz -T0 -c /tmp/cubecl.log > "$out/cubecl.log.xz" 2>/dev/null || true
}

case "${1:-}" in
prepare) shift; prepare "$@" ;;
run) shift; run "$@" ;;
probe) shift; probe "$@" ;;
*) echo "usage: $0 prepare RUN_DIR [MINUTES_OF_AUDIO] [INIT] | run MINUTES [TRAIN_ARGS...] | probe" >&2; exit 2 ;;
esac
