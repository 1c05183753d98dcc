#!/usr/bin/env bash
# Prints the speech directories of one side of the corpus that
# shared/corpus/fetch_training_audio.sh unpacks (its DEST, default ~/.cache/tokenwave/train_raw):
#
#   scripts/speech-dirs.sh train        every speech source but the held-out ones
#   scripts/speech-dirs.sh validation   whole sources the training set never sees
#   scripts/speech-dirs.sh shipped      the nine directories the shipped model was trained on
#
#   tokenwave train --data $(scripts/speech-dirs.sh train) ...
#   tokenwave eval --data $(scripts/speech-dirs.sh validation) ...
#
# Held out, whole (other speakers, languages and microphones than any training file):
#   asterisk-core-sounds-ru-g722   Russian, one professional female voice, studio (24.8 min)
#   tuxpaint el and bg             Greek and Bulgarian volunteers on their own microphones (39 min)
#   kajongg                        4 English + 4 German voices, Mahjongg calls (4.8 min)
#   pyannote sample.wav            a two-speaker meeting-room recording (0.5 min), when fetched
# tuxpaint's files of all languages share its folders, so its two sides are symlink trees
# built here under $DEST/split (rebuilt when missing). Music and sound effects are left out.
set -euo pipefail
side="${1:-train}"
root="${DEST:-$HOME/.cache/tokenwave/train_raw}"
x="$root/x"
wz="$x/warzone2100-data/wz_audio/audio"
held_out_langs="el bg"

need() {
    for d in "$@"; do
        [ -d "$d" ] || { echo "missing $d: run shared/corpus/fetch_training_audio.sh first" >&2; exit 1; }
    done
}

# Symlink trees of tuxpaint's spoken descriptions: train/ (every language but the held-out
# ones) and validation/ (those).
tuxpaint_split() {
    local src="$x/tuxpaint-stamps-default" out="$root/split/tuxpaint"
    need "$src"
    [ -e "$out/.done" ] && return
    rm -rf "$out"
    mkdir -p "$out/train" "$out/validation"
    local n=0 f base lang
    while IFS= read -r f; do
        base="${f##*/}"
        lang="${base#*_desc_}"
        lang="${lang%%.*}"
        side_dir=train
        for h in $held_out_langs; do [ "$lang" = "$h" ] && side_dir=validation; done
        n=$((n + 1))
        ln -s "$f" "$out/$side_dir/$n-$base"
    done < <(find "$src" -type f \( -name '*_desc*.ogg' -o -name '*_desc*.wav' -o -path '*/symbols/math/*' \) | sort)
    touch "$out/.done"
}

shipped=(
    "$x/fillets-ng-data/usr/share/games/fillets-ng/sound"
    "$x/fillets-ng-data-cs/usr/share/games/fillets-ng/sound"
    "$x/fillets-ng-data-nl/usr/share/games/fillets-ng/sound"
    "$x/klettres-data/usr/share/klettres"
    "$x/hedgewars-data/usr/share/games/hedgewars/Data/Sounds/voices"
    "$wz/tutorial" "$wz/taunts" "$wz/vtoltalk" "$wz/countdown"
)

case "$side" in
shipped)
    dirs=("${shipped[@]}")
    ;;
train)
    tuxpaint_split
    dirs=("${shipped[@]}"
        "$x/asterisk-core-sounds-en-g722" "$x/asterisk-core-sounds-es-g722" "$x/asterisk-core-sounds-fr-g722"
        "$x/asterisk-core-sounds-it-g722"
        "$root/split/tuxpaint/train"
        "$x/gcin-voice/usr/share"
        "$x/megaglest-data"
    )
    # The 8 kHz telephone prompts, unless the fetch left them out (SPEECH_8K=0).
    for d in asterisk-prompt-it-menardi-wav asterisk-prompt-fr-armelle asterisk-prompt-es-co; do
        [ -d "$x/$d" ] && dirs+=("$x/$d")
    done
    ;;
validation)
    tuxpaint_split
    dirs=("$x/asterisk-core-sounds-ru-g722" "$root/split/tuxpaint/validation" "$x/kajongg")
    pyannote=$(find "$x" -maxdepth 6 -path '*pyannote*' -name 'sample.wav' 2>/dev/null | head -1)
    [ -n "$pyannote" ] && dirs+=("$(dirname "$pyannote")")
    ;;
*)
    echo "usage: scripts/speech-dirs.sh [train|validation|shipped]" >&2
    exit 2
    ;;
esac
need "${dirs[@]}"
echo "${dirs[@]}"
