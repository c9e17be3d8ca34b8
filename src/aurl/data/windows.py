"""Training windows: random slices of the token shards that start at bar boundaries.

Window ``i`` of a dataset is a pure function of ``(seed, i)``: which piece, which bar it
starts at and how far it is transposed. A resumed run that asks for the same indices gets
the same data, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.data.shards import Shard
from aurl.tokens import PAD, TokenType, Vocabulary
from aurl.tokens.vocab import DRUM_PROGRAM


def transpose(ids: np.ndarray, vocab: Vocabulary, semitones: int) -> np.ndarray:
    """Move every pitched (non-drum) note by ``semitones``; ids must start at a Bar or BOS.

    Raises:
        ValueError: a pitch would leave 0..127.
    """
    types = vocab.types[ids]
    is_program = types == TokenType.PROGRAM
    is_pitch = types == TokenType.PITCH
    # The program in force at each token: the last Program token before it.
    last = np.maximum.accumulate(np.where(is_program, np.arange(len(ids)), -1))
    program = np.where(last >= 0, vocab.values[ids[np.maximum(last, 0)]], 0)
    moving = is_pitch & (program != DRUM_PROGRAM)
    pitches = vocab.values[ids[moving]] + semitones
    if len(pitches) and (pitches.min() < 0 or pitches.max() > 127):
        raise ValueError(f"transposing by {semitones} moves a pitch outside 0..127")
    out = ids.copy()
    out[moving] += semitones
    return out


def transpose_range(ids: np.ndarray, vocab: Vocabulary, limit: int) -> tuple[int, int]:
    """The semitone shifts in ``[-limit, limit]`` that keep every pitched note in 0..127."""
    types = vocab.types[ids]
    is_program = types == TokenType.PROGRAM
    last = np.maximum.accumulate(np.where(is_program, np.arange(len(ids)), -1))
    program = np.where(last >= 0, vocab.values[ids[np.maximum(last, 0)]], 0)
    pitches = vocab.values[ids[(types == TokenType.PITCH) & (program != DRUM_PROGRAM)]]
    if not len(pitches):
        return 0, 0
    return max(-limit, -int(pitches.min())), min(limit, 127 - int(pitches.max()))


class WindowDataset(torch.utils.data.Dataset):
    """Random windows of ``seq_len + 1`` tokens, as (input, target) pairs of length seq_len.

    Args:
        shard: the split to read.
        vocab: the tokenizer's vocabulary.
        seq_len: model context length.
        seed: base seed; window ``i`` depends only on (seed, i).
        transpose: largest transposition in semitones (0 turns augmentation off).
        length: nominal length (windows are drawn at random, so any index works).
    """

    def __init__(self, shard: Shard, vocab: Vocabulary, seq_len: int, seed: int = 0,
                 transpose: int = 0, length: int = 1 << 40):  # fmt: skip
        if shard.num_tokens == 0:
            raise ValueError(f"{shard.folder}: no tokens in this split")
        self.shard, self.vocab, self.seq_len = shard, vocab, seq_len
        self.seed, self.transpose, self.length = seed, transpose, length
        # Window starts: each piece's first token (BOS) and every Bar.
        starts = np.union1d(shard.pieces[:-1], shard.bars)
        piece_of = np.searchsorted(shard.pieces, starts, side="right") - 1
        self.starts, self.ends = starts, shard.pieces[piece_of + 1]
        # Weight starts so that each piece is drawn in proportion to its tokens.
        per_piece = np.bincount(piece_of, minlength=shard.num_pieces)
        lengths = np.diff(shard.pieces)
        weights = lengths[piece_of] / per_piece[piece_of]
        self.cdf = np.cumsum(weights) / weights.sum()

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[int, int, int]:
        """Window ``index`` as (first token offset, end offset, semitones to transpose)."""
        rng = np.random.default_rng((self.seed, int(index)))
        j = min(int(np.searchsorted(self.cdf, rng.random(), side="right")), len(self.starts) - 1)
        start = int(self.starts[j])
        end = min(int(self.ends[j]), start + self.seq_len + 1)
        shift = 0
        if self.transpose:
            ids = np.asarray(self.shard.tokens[start:end], np.int64)
            lo, hi = transpose_range(ids, self.vocab, self.transpose)
            shift = int(rng.integers(lo, hi + 1))
        return start, end, shift

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start, end, shift = self.locate(index)
        ids = np.asarray(self.shard.tokens[start:end], np.int64)
        if shift:
            ids = transpose(ids, self.vocab, shift)
        window = np.full(self.seq_len + 1, PAD, np.int64)
        window[: len(ids)] = ids
        t = torch.from_numpy(window)
        return t[:-1], t[1:]


def eval_windows(shard: Shard, seq_len: int) -> list[np.ndarray]:
    """Every piece cut into consecutive windows of ``seq_len + 1`` tokens overlapping by one,
    so each token after the first of a piece is predicted exactly once."""
    out = []
    for i in range(shard.num_pieces):
        piece = shard.piece(i)
        for s in range(0, max(len(piece) - 1, 1), seq_len):
            out.append(piece[s : s + seq_len + 1])
    return out
