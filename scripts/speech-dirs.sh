#!/usr/bin/env bash
# Prints the nine speech directories that the shipped model trains and is evaluated on,
# under the pool that shared/corpus/fetch_training_audio.sh unpacks (its DEST, default
# ~/.cache/tokenwave/train_raw). Music and sound effects are left out. Use as
#   tokenwave train --data $(scripts/speech-dirs.sh) ...
#   tokenwave eval --data $(scripts/speech-dirs.sh) --split validation ...
set -euo pipefail
x="${DEST:-$HOME/.cache/tokenwave/train_raw}/x"
wz="$x/warzone2100-data/wz_audio/audio"
dirs=(
    "$x/fillets-ng-data/usr/share/games/fillets-ng/sound"
    "$x/fillets-ng-data-cs/usr/share/games/fillets-ng/sound"
    "$x/fillets-ng-data-nl/usr/share/games/fillets-ng/sound"
    "$x/klettres-data/usr/share/klettres"
    "$x/hedgewars-data/usr/share/games/hedgewars/Data/Sounds/voices"
    "$wz/tutorial" "$wz/taunts" "$wz/vtoltalk" "$wz/countdown"
)
for d in "${dirs[@]}"; do
    [ -d "$d" ] || { echo "missing $d: run shared/corpus/fetch_training_audio.sh first" >&2; exit 1; }
done
echo "${dirs[@]}"
