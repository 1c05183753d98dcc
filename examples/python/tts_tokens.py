"""Tokenize a folder of speech into one LM dataset file, then read it back and decode it.

    python examples/python/tts_tokens.py [FOLDER] [OUT]     # default: samples/ -> tts_tokens/

1. Every audio file in FOLDER becomes codes [K, F] (3 kbps: 6 codebooks, 50 frames/s).
2. Each is flattened to one sequence (row k offset by k * 1024), framed by the bos and eos
   ids of codec_info(), and all are joined into OUT/dataset.npz with the start of each
   sequence; OUT/codec_info.json describes the tokens (codec-bpe reads the same file).
3. The dataset is read back as a trainer's sampler would: each sequence is cut out, the
   special tokens are stripped, unflattened and decoded to OUT/NAME.wav.
"""

import json
import pathlib
import sys
import time

import numpy as np

import tokenwave

AUDIO = {".wav", ".flac", ".ogg", ".oga", ".mp3"}


def build(folder: pathlib.Path, out: pathlib.Path, codec: tokenwave.Codec) -> None:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO)
    if not files:
        sys.exit(f"no audio files in {folder}")
    info = codec.codec_info()
    bos, eos = info["special_tokens"]["bos"], info["special_tokens"]["eos"]
    started = time.perf_counter()
    grids = codec.encode_files(files)  # one [K, F] array per file, on every core
    seconds = sum(g.shape[1] for g in grids) / codec.frame_rate
    print(f"tokenized {len(files)} files, {seconds:.1f} s of audio, in {time.perf_counter() - started:.2f} s")
    sequences = [np.concatenate([[bos], tokenwave.flatten(g), [eos]]) for g in grids]
    starts = np.cumsum([0] + [len(s) for s in sequences])
    np.savez(
        out / "dataset.npz",
        tokens=np.concatenate(sequences).astype(np.int32),
        starts=starts,
        names=np.array([str(f.relative_to(folder)) for f in files]),
    )
    (out / "codec_info.json").write_text(json.dumps(info, indent=2))
    print(f"wrote {out / 'dataset.npz'}: {starts[-1]} tokens, vocabulary {info['vocab_size']}")


def render(out: pathlib.Path, codec: tokenwave.Codec) -> None:
    info = json.loads((out / "codec_info.json").read_text())
    data = np.load(out / "dataset.npz")
    tokens, starts, names = data["tokens"], data["starts"], data["names"]
    for i, name in enumerate(names):
        sequence = tokens[starts[i] : starts[i + 1]]
        assert sequence[0] == info["special_tokens"]["bos"] and sequence[-1] == info["special_tokens"]["eos"]
        codes = tokenwave.unflatten(sequence[1:-1], info["num_codebooks"])
        target = out / (pathlib.Path(name).with_suffix("").as_posix().replace("/", "_") + ".wav")
        codec.decode_to_file(codes, target)
        print(f"{name}: {codes.shape[1]} frames -> {target}")


def main() -> None:
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "samples")
    out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "tts_tokens")
    out.mkdir(parents=True, exist_ok=True)
    codec = tokenwave.Codec(kbps=3.0)
    print(codec)
    build(folder, out, codec)
    render(out, codec)


if __name__ == "__main__":
    main()
