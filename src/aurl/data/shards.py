"""Token shards: each split's token ids in one flat uint16 file read through numpy memmap.

A split folder holds ``tokens.u16`` (every piece's ids back to back), ``pieces.npy``
(int64 offsets, one more than pieces) and ``bars.npy`` (int64 offsets of every Bar token).
Pieces are appended as they are encoded, so nothing holds the whole corpus in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aurl.tokens import TokenType, Vocabulary

TOKENS, PIECES, BARS = "tokens.u16", "pieces.npy", "bars.npy"


class ShardWriter:
    """Append pieces to a split folder; ``close()`` writes the offset tables."""

    def __init__(self, folder: Path, vocab: Vocabulary):
        if vocab.size > np.iinfo(np.uint16).max:
            raise ValueError(f"vocabulary of {vocab.size} ids does not fit uint16 shards")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.vocab = folder, vocab
        self._file = open(folder / TOKENS, "wb")  # noqa: SIM115 - closed in close()
        self._pieces, self._bars, self._count = [0], [], 0
        self._bar = vocab.offsets[TokenType.BAR]  # the one Bar id

    def add(self, ids: np.ndarray) -> None:
        ids = ids.astype(np.uint16)
        self._bars.append(np.flatnonzero(ids == self._bar) + self._count)
        self._file.write(ids.tobytes())
        self._count += len(ids)
        self._pieces.append(self._count)

    def close(self) -> None:
        self._file.close()
        np.save(self.folder / PIECES, np.array(self._pieces, np.int64))
        bars = np.concatenate(self._bars) if self._bars else np.zeros(0, np.int64)
        np.save(self.folder / BARS, bars.astype(np.int64))


class Shard:
    """Read side of a split folder: memmapped tokens plus offset tables."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.pieces = np.load(self.folder / PIECES)
        self.bars = np.load(self.folder / BARS)
        size = int(self.pieces[-1])
        self.tokens = (
            np.memmap(self.folder / TOKENS, dtype=np.uint16, mode="r", shape=(size,))
            if size
            else np.zeros(0, np.uint16)
        )

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.pieces[-1])

    def piece(self, i: int) -> np.ndarray:
        return np.asarray(self.tokens[self.pieces[i] : self.pieces[i + 1]], np.int64)
