"""Type stubs of the native module; the classes are re-exported as tokenwave.*."""

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str
CODEBOOK_SIZE: int
"""The default model's codebook size: the LM helpers' default."""

_Path = Union[str, "os.PathLike[str]"]
_Codes = npt.ArrayLike
"""Any integer array: [K, F] for one signal, [B, K, F] for a batch."""

class Codec:
    """A model at one bitrate. Every array call releases the GIL; batch calls encode or
    decode ``jobs`` items at once (default: one per core). Bad input raises ValueError,
    unreadable files OSError, with the message the tokenwave command prints."""

    def __init__(
        self,
        model: Optional[_Path] = None,
        kbps: float = 3.0,
        device: str = "cpu",
        low_band: Optional[int] = 0,
    ) -> None:
        """``model``: a .safetensors file (None: the embedded model). ``kbps``: the bitrate of
        the codes (0.5 per code with the default model). ``low_band=0``: neural codes only, as
        ``tokenwave tokens export``; ``None``: the split ``tokenwave encode --kbps`` uses;
        ``N``: N codes per frame for the low band. ``device``: "cpu"."""
    @property
    def sample_rate(self) -> int:
        """The model's sample rate, Hz (16000): what ``decode`` returns."""
    @property
    def frame_rate(self) -> float:
        """Frames (columns of codes) per second (50.0)."""
    @property
    def hop(self) -> int:
        """Samples per frame at ``sample_rate`` (320)."""
    @property
    def codebook_size(self) -> int:
        """Values a code takes: 0 to codebook_size - 1 (1024)."""
    @property
    def num_codebooks(self) -> int:
        """Rows of codes per frame: K of [B, K, F]."""
    @property
    def kbps(self) -> float:
        """Bitrate of the codes, kbps."""
    @property
    def model_id(self) -> str:
        """Hex id of the model; codes decode only with the model that made them."""
    @property
    def layout(self) -> Dict[str, Any]:
        """``{"stages": int, "low_band": int, "pitch": bool, "rows": [str, ...]}``: neural
        stages, low-band codes, whether the last row is the pitch code, and what each row
        holds ("neural", "low_band", "pitch")."""
    def codec_info(self) -> Dict[str, Any]:
        """The token conventions as codec-bpe's codec_info.json has them, plus offsets,
        special tokens and the delay pad (docs/TOKENS.md)."""
    def encode(self, audio: npt.ArrayLike, sample_rate: int, jobs: Optional[int] = None) -> npt.NDArray[np.int64]:
        """Audio [T] or [B, T] (float32, mono, at ``sample_rate`` Hz; resampled to the
        model's rate) to codes [B, K, F], F = ceil(T' / hop) for T' samples at the model
        rate (one frame more with the low band)."""
    def decode(self, codes: _Codes, jobs: Optional[int] = None) -> npt.NDArray[np.float32]:
        """Codes [B, K, F] (or [K, F]) to audio [B, F * hop] (one hop less with the low
        band) at ``sample_rate``. Fewer rows than ``num_codebooks`` decode at a lower
        bitrate (neural codes only)."""
    def encode_file(self, path: _Path) -> npt.NDArray[np.int64]:
        """Codes [K, F] of an audio file (WAV, FLAC, MP3, Ogg Vorbis; any rate, any
        channels): the array ``tokenwave tokens export`` writes."""
    def encode_files(self, paths: Sequence[_Path], jobs: Optional[int] = None) -> List[npt.NDArray[np.int64]]:
        """``encode_file`` of every path, ``jobs`` files at once (the pool of ``tokenwave
        tokens batch``); the first file that fails raises."""
    def decode_to_file(self, codes: _Codes, path: _Path, sample_rate: Optional[int] = None) -> None:
        """Decodes codes [K, F] into a 16-bit mono WAV at ``sample_rate`` (default: the
        model's)."""
    def read_tkw(self, path: _Path) -> npt.NDArray[np.int64]:
        """Codes [K, F] of a .tkw file (``tokenwave encode``) made by this model with this
        Codec's low band."""
    def write_tkw(self, codes: _Codes, path: _Path, samples: Optional[int] = None) -> None:
        """Writes codes [K, F] as a .tkw file for ``tokenwave decode``; ``samples``: the
        audio length at the model rate when shorter than the codes decode to."""
    def stream_encoder(self, sample_rate: Optional[int] = None) -> StreamEncoder:
        """A streaming encoder for audio at ``sample_rate`` (default: the model's)."""
    def stream_decoder(self) -> StreamDecoder:
        """A streaming decoder to audio at the model's rate."""

class StreamEncoder:
    """Audio in pieces of any size; codes out as frames complete. The codes of a whole
    stream equal ``Codec.encode`` of the whole signal, bit for bit."""

    @property
    def num_codebooks(self) -> int: ...
    def push(self, pcm: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Adds audio [T]; returns codes [K, n] of the n frames it completes (n may be 0)."""
    def flush(self) -> npt.NDArray[np.int64]:
        """Ends the stream: the last partial frame, padded with silence, as codes [K, n]."""

class StreamDecoder:
    """Codes a few frames at a time (as an LM generates them); audio out at once. The audio
    of a whole stream equals ``Codec.decode`` of all its codes, bit for bit."""

    def push(self, codes: _Codes) -> npt.NDArray[np.float32]:
        """Decodes codes [K, n]; returns their audio, n * hop samples (with the low band the
        output runs one hop behind)."""
