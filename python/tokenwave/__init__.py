"""tokenwave: a streaming neural speech codec, numpy in and out.

>>> import numpy as np, tokenwave
>>> codec = tokenwave.Codec(kbps=3.0)              # the embedded model, 6 codes per frame
>>> codes = codec.encode(np.zeros(16000, np.float32), 16000)   # int64 [1, 6, 50]
>>> audio = codec.decode(codes)                    # float32 [1, 16000]

``Codec`` encodes and decodes arrays, batches and files; ``StreamEncoder``/``StreamDecoder``
work a few frames at a time with the same results; ``flatten``, ``unflatten``,
``delay_pattern`` and ``undelay`` arrange codes for language models; ``codec_info()``
describes the tokens as codec-bpe's codec_info.json does. docs/TOKENS.md has the details.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ._tokenwave import CODEBOOK_SIZE, Codec, StreamDecoder, StreamEncoder, __version__
from .lm import delay_pattern, flatten, undelay, unflatten

__all__ = [
    "CODEBOOK_SIZE",
    "Codec",
    "StreamDecoder",
    "StreamEncoder",
    "codec_info",
    "delay_pattern",
    "flatten",
    "undelay",
    "unflatten",
    "__version__",
]


def codec_info(model: Optional[str] = None, kbps: float = 3.0, low_band: Optional[int] = 0) -> Dict[str, Any]:
    """``Codec(model, kbps, low_band=low_band).codec_info()``: what `tokenwave tokens info
    --json` prints for the same model and rate."""
    return Codec(model, kbps, low_band=low_band).codec_info()
