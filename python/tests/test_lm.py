"""Token conventions for LMs: flat sequences, delay patterns and codec_info."""

import json
import os
import subprocess

import numpy as np
import pytest

import tokenwave

from conftest import REPO


def grid(batch=2, rows=6, frames=9, seed=0):
    return np.random.default_rng(seed).integers(0, 1024, size=(batch, rows, frames))


def test_flatten_is_the_flat_layout_of_token_files():
    codes = grid()
    flat = tokenwave.flatten(codes)
    assert flat.shape == (2, 9 * 6) and flat.dtype == np.int64
    b, k, t = 1, 4, 7
    assert flat[b, t * 6 + k] == codes[b, k, t] + k * 1024
    # docs/TOKENS.md's numpy recipe for the flat layout undoes it too.
    assert np.array_equal((flat[b].reshape(-1, 6) - np.arange(6) * 1024).T, codes[b])
    assert np.array_equal(tokenwave.unflatten(flat, 6), codes)
    assert np.array_equal(tokenwave.unflatten(tokenwave.flatten(codes[0]), 6), codes[0])


def test_other_offsets_round_trip():
    codes = grid()
    raw = tokenwave.flatten(codes, offsets="none")
    assert raw.max() < 1024
    assert np.array_equal(tokenwave.unflatten(raw, 6, offsets="none"), codes)
    shifted = np.arange(6) * 1024 + 32000  # after a 32000-token text vocabulary
    tokens = tokenwave.flatten(codes, offsets=shifted)
    assert tokens.min() >= 32000
    assert np.array_equal(tokenwave.unflatten(tokens, 6, offsets=shifted), codes)


def test_unflatten_names_the_token_out_of_its_row():
    flat = tokenwave.flatten(grid(batch=1))
    flat[0, 2 * 6 + 3] = 5  # frame 2, codebook 3 given a stage-0 id
    with pytest.raises(ValueError, match=r"item 0, frame 2, codebook 3: token 5 is outside 3072..=4095"):
        tokenwave.unflatten(flat, 6)
    with pytest.raises(ValueError, match="do not split into frames of 6"):
        tokenwave.unflatten(flat[0, :-1], 6)
    with pytest.raises(ValueError, match="out of range"):
        tokenwave.flatten(np.full((2, 3), 1024))
    with pytest.raises(ValueError, match="integer"):
        tokenwave.flatten(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="offsets"):
        tokenwave.flatten(grid(), offsets="per-stage")


def test_delay_pattern_round_trips_with_pads_where_musicgen_has_them():
    codes = grid(rows=4, frames=5)
    delayed = tokenwave.delay_pattern(codes)
    assert delayed.shape == (2, 4, 5 + 3)
    for k in range(4):
        assert np.array_equal(delayed[:, k, k : k + 5], codes[:, k])
        assert (delayed[:, k, :k] == 1024).all() and (delayed[:, k, k + 5 :] == 1024).all()
    assert np.array_equal(tokenwave.undelay(delayed), codes)
    assert np.array_equal(tokenwave.undelay(tokenwave.delay_pattern(codes[0], pad=-1)), codes[0])
    with pytest.raises(ValueError, match="at least 3 steps"):
        tokenwave.undelay(np.zeros((4, 2), np.int64))


def test_codec_info_has_codec_bpes_shape(codec):
    info = codec.codec_info()
    assert info["codec_type"] == "tokenwave" and info["codec_model"] == codec.model_id
    assert (info["sampling_rate"], info["framerate"], info["hop"]) == (16000, 50.0, 320)
    assert (info["num_codebooks"], info["codebook_size"]) == (6, 1024)
    assert info["offsets"] == [k * 1024 for k in range(6)]
    assert info["special_tokens"] == {"pad": 6144, "bos": 6145, "eos": 6146}
    assert info["vocab_size"] == 6147 and info["delay_pad"] == 1024
    assert info["rows"] == codec.layout["rows"]
    assert tokenwave.codec_info(kbps=1.5)["num_codebooks"] == 3
    # flatten's default offsets are the ones codec_info announces.
    flat = tokenwave.flatten(np.zeros((6, 1), np.int64))
    assert flat.tolist() == info["offsets"]


def tokenwave_binary():
    """The tokenwave command cargo built, if any (CI sets TOKENWAVE_BIN)."""
    candidates = [os.environ.get("TOKENWAVE_BIN")]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    candidates += [os.path.join(target, profile, "tokenwave") for profile in ("debug", "release")]
    found = next((c for c in candidates if c and os.path.exists(c)), None)
    if found is None:
        if os.environ.get("TOKENWAVE_REQUIRE_INTEROP") == "1":
            pytest.fail("no tokenwave binary found: set TOKENWAVE_BIN")
        pytest.skip("no tokenwave binary built (cargo build), nothing to compare with")
    return found


def test_the_cli_prints_the_same_codec_info(codec):
    out = subprocess.run(
        [tokenwave_binary(), "tokens", "info", "--kbps", "3", "--json"], check=True, capture_output=True, text=True
    )
    assert json.loads(out.stdout) == codec.codec_info()
    out = subprocess.run([tokenwave_binary(), "tokens", "info", "--codebooks", "2", "--json"], check=True,
                         capture_output=True, text=True)
    assert json.loads(out.stdout) == tokenwave.codec_info(kbps=1.0)
