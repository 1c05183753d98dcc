"""Token conventions for language models over codes [B, K, F] (batch, codebooks, frames).

- ``flatten``/``unflatten``: one sequence per item, frame-major (every row of frame 0, then
  frame 1, ...), row ``k`` shifted by ``offsets[k]`` so that each row has its own id range.
  With the default ``offsets="per-codebook"`` this is the ``--layout flat`` of
  ``tokenwave tokens export``: ``flat[t * K + k] = codes[k, t] + k * codebook_size``.
- ``delay_pattern``/``undelay``: MusicGen's layout for K parallel heads, row ``k`` shifted
  ``k`` frames later, the empty cells holding ``pad`` (``codebook_size`` by default, one
  past every codebook).

All of them are plain numpy and exact inverses of each other; ``Codec.codec_info()`` gives
the offsets, special token ids and the delay pad for a codec.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ._tokenwave import CODEBOOK_SIZE

__all__ = ["flatten", "unflatten", "delay_pattern", "undelay"]

Offsets = Union[str, Sequence[int], np.ndarray]


def _codes(codes: object, name: str = "codes") -> np.ndarray:
    array = np.asarray(codes)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, not {array.dtype}")
    return array.astype(np.int64, copy=False)


def _default_codebook_size(codebook_size: Optional[int]) -> int:
    if codebook_size is not None:
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, not {codebook_size}")
        return int(codebook_size)
    return CODEBOOK_SIZE


def _offsets(offsets: Offsets, rows: int, codebook_size: int) -> np.ndarray:
    if isinstance(offsets, str):
        if offsets == "per-codebook":
            return np.arange(rows, dtype=np.int64) * codebook_size
        if offsets == "none":
            return np.zeros(rows, dtype=np.int64)
        raise ValueError(f'offsets must be "per-codebook", "none" or one int per codebook, not {offsets!r}')
    values = _codes(offsets, "offsets").reshape(-1)
    if values.shape[0] != rows:
        raise ValueError(f"offsets has {values.shape[0]} values but the codes have {rows} codebooks")
    return values


def flatten(
    codes: object,
    offsets: Offsets = "per-codebook",
    codebook_size: Optional[int] = None,
) -> np.ndarray:
    """Codes [B, K, F] (or [K, F]) as token sequences [B, F * K] (or [F * K]), int64.

    ``offsets``: ``"per-codebook"`` (row k adds ``k * codebook_size``: a vocabulary of
    ``K * codebook_size``), ``"none"`` (raw codes, rows share ids), or one int per row (e.g.
    ``np.array(info["offsets"]) + first_audio_id`` to sit after a text vocabulary).
    ``codebook_size`` defaults to the embedded model's.
    """
    array = _codes(codes)
    if array.ndim not in (2, 3):
        raise ValueError(f"codes must be [codebooks, frames] or [batch, codebooks, frames], not shape {array.shape}")
    size = _default_codebook_size(codebook_size)
    if array.size and (array.min() < 0 or array.max() >= size):
        bad = array[(array < 0) | (array >= size)].flat[0]
        raise ValueError(f"code {bad} is out of range (codebook size {size})")
    rows = array.shape[-2]
    shifted = array + _offsets(offsets, rows, size)[:, None]
    # [..., K, F] -> [..., F, K] -> [..., F * K]: frame-major.
    return np.ascontiguousarray(np.swapaxes(shifted, -1, -2)).reshape(*array.shape[:-2], -1)


def unflatten(
    tokens: object,
    num_codebooks: int,
    offsets: Offsets = "per-codebook",
    codebook_size: Optional[int] = None,
) -> np.ndarray:
    """Token sequences [B, F * K] (or [F * K]) back to codes [B, K, F] (or [K, F]), int64.

    Takes the ``offsets`` that ``flatten`` was given. Every token must lie in its row's
    range (strip special tokens first); a ValueError names the first one that does not.
    """
    array = _codes(tokens, "tokens")
    if array.ndim not in (1, 2):
        raise ValueError(f"tokens must be [sequence] or [batch, sequence], not shape {array.shape}")
    if num_codebooks < 1:
        raise ValueError(f"num_codebooks must be at least 1, not {num_codebooks}")
    length = array.shape[-1]
    if length % num_codebooks:
        raise ValueError(f"{length} tokens do not split into frames of {num_codebooks} codebooks")
    size = _default_codebook_size(codebook_size)
    grid = array.reshape(*array.shape[:-1], length // num_codebooks, num_codebooks)
    shift = _offsets(offsets, num_codebooks, size)
    codes = grid - shift
    bad = np.argwhere((codes < 0) | (codes >= size))
    if bad.size:
        *item, frame, row = bad[0]
        where = f"item {item[0]}, " if item else ""
        raise ValueError(
            f"{where}frame {frame}, codebook {row}: token {grid[(*item, frame, row)]} is outside "
            f"{shift[row]}..={shift[row] + size - 1} (codebook size {size})"
        )
    return np.ascontiguousarray(np.swapaxes(codes, -1, -2))


def delay_pattern(codes: object, pad: Optional[int] = None) -> np.ndarray:
    """Codes [B, K, F] (or [K, F]) in MusicGen's delay pattern: [B, K, F + K - 1], row k
    starting k frames late; cells before and after a row's codes hold ``pad`` (default: the
    embedded model's codebook size, one past every codebook)."""
    array = _codes(codes)
    if array.ndim not in (2, 3):
        raise ValueError(f"codes must be [codebooks, frames] or [batch, codebooks, frames], not shape {array.shape}")
    rows, frames = array.shape[-2:]
    fill = CODEBOOK_SIZE if pad is None else int(pad)
    out = np.full((*array.shape[:-1], frames + rows - 1), fill, dtype=np.int64)
    for row in range(rows):
        out[..., row, row : row + frames] = array[..., row, :]
    return out


def undelay(delayed: object) -> np.ndarray:
    """The inverse of ``delay_pattern``: [B, K, F + K - 1] (or [K, F + K - 1]) back to
    [B, K, F] (or [K, F]); the pad cells are dropped whatever they hold."""
    array = _codes(delayed, "delayed codes")
    if array.ndim not in (2, 3):
        raise ValueError(f"delayed codes must be [codebooks, steps] or [batch, codebooks, steps], not shape {array.shape}")
    rows, steps = array.shape[-2:]
    frames = steps - rows + 1
    if rows == 0 or frames < 0:
        raise ValueError(f"a delay pattern of {rows} codebooks has at least {max(rows - 1, 0)} steps, not {steps}")
    out = np.empty((*array.shape[:-1], frames), dtype=np.int64)
    for row in range(rows):
        out[..., row, :] = array[..., row, row : row + frames]
    return out
