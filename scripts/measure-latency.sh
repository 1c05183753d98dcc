#!/bin/bash
# Mic-to-speaker latency of `tokenwave live` (or send -> receive over loopback) through the
# headless PipeWire of .ci/headless-audio: speech is played into the fake microphone, and
# one stereo recording holds the microphone (left) and the speaker (right), so both sides
# share one clock; the lag between their log-energy envelopes is the latency.
#
#   eval "$(.ci/headless-audio start)"
#   scripts/measure-latency.sh target/release/tokenwave live 6 [--threads 1]
#   scripts/measure-latency.sh target/release/tokenwave net 3
#
# Needs pactl, pw-link, parecord, paplay and python3 with numpy.
set -euo pipefail
BIN=$1 MODE=$2 KBPS=$3
shift 3
EXTRA=("$@")
DIR=$(mktemp -d)
PROBE=$(pactl load-module module-null-sink sink_name=latency_probe channel_map=front-left,front-right)
cleanup() { pactl unload-module "$PROBE"; rm -rf "$DIR"; }
trap cleanup EXIT
sleep 0.5
pw-link fake_mic:monitor_FL latency_probe:playback_FL
pw-link fake_spk:monitor_FL latency_probe:playback_FR
parecord --device=latency_probe.monitor --rate=16000 --channels=2 --format=s16le --file-format=wav "$DIR/probe.wav" &
RECORDER=$!
if [ "$MODE" = live ]; then
    "$BIN" live "${EXTRA[@]}" --seconds 8 --kbps "$KBPS" --json >"$DIR/out.json" 2>"$DIR/err" &
    RUN=$!
else
    "$BIN" keygen "$DIR/k.key"
    "$BIN" receive "${EXTRA[@]}" --listen 127.0.0.1:0 --key-file "$DIR/k.key" --json >"$DIR/out.json" 2>"$DIR/receiver" &
    RECEIVER=$!
    sleep 0.5
    "$BIN" send "${EXTRA[@]}" --to "$(grep -o '127.0.0.1:[0-9]*' "$DIR/receiver")" --key-file "$DIR/k.key" \
        --seconds 8 --kbps "$KBPS" --json >"$DIR/send.json" 2>"$DIR/err" &
    RUN=$!
fi
sleep 1.5
paplay --device=fake_mic "$(dirname "$0")/../samples/speech_cs.wav"
wait $RUN
if [ "$MODE" != live ]; then
    sleep 0.3
    kill -INT $RECEIVER
    wait $RECEIVER
    echo "sender: $(cat "$DIR/send.json")"
fi
sleep 0.5
kill -INT $RECORDER
wait $RECORDER || true
python3 - "$DIR/probe.wav" <<'PY'
import sys, wave
import numpy as np
w = wave.open(sys.argv[1])
x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(float).reshape(-1, 2)
def envelope(s):  # log energy per millisecond
    n = len(s) // 16
    return np.log10((s[: n * 16].reshape(n, 16) ** 2).mean(1) + 1.0)
mic, speaker = envelope(x[:, 0]), envelope(x[:, 1])
def corr(lag):
    n = len(mic) - lag
    return np.corrcoef(mic[:n], speaker[lag : lag + n])[0, 1]
lag = max(range(300), key=corr)
print(f"latency {lag} ms (envelope correlation {corr(lag):.3f})")
PY
echo "$(basename "$BIN") $MODE: $(cat "$DIR/out.json")"
