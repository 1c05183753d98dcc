"""A torch-free Dataset/DataLoader loop over a folder, as a training script would write it."""

import numpy as np

import tokenwave

from conftest import SAMPLES


class FolderTokens:
    """Map-style dataset: item i is the flat token sequence of the i-th audio file."""

    def __init__(self, folder, codec):
        self.files = sorted(p for p in folder.iterdir() if p.suffix in {".wav", ".flac", ".ogg", ".mp3"})
        self.codec = codec

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return tokenwave.flatten(self.codec.encode_file(self.files[index]))


def batches(dataset, batch_size, pad):
    """Collates items into [B, L] padded with `pad`, and a mask of the real tokens."""
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        length = max(len(item) for item in items)
        batch = np.full((len(items), length), pad, dtype=np.int64)
        mask = np.zeros((len(items), length), dtype=bool)
        for row, item in enumerate(items):
            batch[row, : len(item)] = item
            mask[row, : len(item)] = True
        yield batch, mask


def test_a_folder_loads_as_padded_batches_and_decodes_back(codec):
    info = codec.codec_info()
    dataset = FolderTokens(SAMPLES, codec)
    assert len(dataset) == 4
    seen = 0
    for batch, mask in batches(dataset, batch_size=3, pad=info["special_tokens"]["pad"]):
        assert batch.shape[0] in (3, 1) and batch.max() < info["vocab_size"]
        for tokens, real in zip(batch, mask):
            sequence = tokens[real]
            assert len(sequence) % info["num_codebooks"] == 0
            assert (tokens[~real] == info["special_tokens"]["pad"]).all()
            codes = tokenwave.unflatten(sequence, info["num_codebooks"])
            assert np.array_equal(codes, codec.encode_file(dataset.files[seen]))
            audio = codec.decode(codes)
            assert audio.shape == (1, codes.shape[1] * codec.hop) and np.isfinite(audio).all()
            seen += 1
    assert seen == len(dataset)
