"""Training windows: random slices of the token shards that start at bar boundaries.

With tracks or controls, a window that starts inside a piece opens with the piece's BOS,
controls and track declarations (everything before its first Bar), so every window says
which tracks its notes name and what the piece was asked to be. With controls, each window
holds its corpus's Style and leaves out each control type with chance ``control_dropout``.

Window ``i`` of a dataset is a pure function of ``(seed, i)`` and of the training step it is
for (``i // batch_size``): which piece, which bar it starts at, how it is augmented and, under
a sequence-length curriculum, how long it is. A resumed run that asks for the same indices gets
the same data, whatever the number of DataLoader workers. Several corpora combine with
``WeightedWindows``.
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.data.augment import augment_window, transpose, transpose_range, transposition_applies
from aurl.data.config import AugmentConfig, CurriculumConfig, InfillConfig
from aurl.data.infill_examples import make_example
from aurl.data.shards import Shard
from aurl.tokens import BOS, PAD, TokenType, Vocabulary
from aurl.tokens.controls import CONTROL_TYPES, drop_controls, transpose_controls

__all__ = ["SegmentWindows", "WeightedWindows", "WindowDataset", "eval_windows", "fixed_segments",
           "seq_len_at", "transpose", "transpose_range"]  # fmt: skip

FIXED_SEED = 20_231  # fixed_segments draws the same held-out segments every time
STREAM_SOURCE = 6  # WeightedWindows picks window i's corpus from default_rng((seed, i, 6))
STREAM_CONTROLS = 7  # which control types window i leaves out
STREAM_INFILL = 8  # whether and how window i becomes an infilling example


def seq_len_at(step: int, seq_len: int, curriculum: CurriculumConfig | None) -> int:
    """The window length at a training step: ``seq_len``, or under a curriculum
    ``start_len`` doubled once for every step of ``at_steps`` reached, at most ``seq_len``."""
    if curriculum is None or not curriculum.start_len:
        return seq_len
    doublings = sum(step >= s for s in curriculum.at_steps)
    return min(seq_len, curriculum.start_len * 2**doublings)


def _bar_steps_at(shard: Shard, vocab: Vocabulary, starts: np.ndarray) -> np.ndarray:
    """Length in steps of the bar in force at each start (0 where the window brings its own
    TimeSig or none is known): the last TimeSig of the piece before the start."""
    bars = shard.bars[shard.bars + 1 < shard.num_tokens]
    after = np.asarray(shard.tokens[bars + 1], np.int64)
    sig_at = bars[vocab.types[after] == TokenType.TIMESIG] + 1
    sig_len = vocab.bar_steps[np.asarray(shard.tokens[sig_at], np.int64)]
    if not len(sig_at):
        return np.zeros(len(starts), np.int64)
    k = np.searchsorted(sig_at, starts, side="left") - 1
    piece_start = shard.pieces[np.searchsorted(shard.pieces, starts, side="right") - 1]
    known = (k >= 0) & (sig_at[np.maximum(k, 0)] > piece_start)
    return np.where(known, sig_len[np.maximum(k, 0)], 0)


class WindowDataset(torch.utils.data.Dataset):
    """Random windows of ``seq_len + 1`` tokens, as (input, target) pairs of length seq_len.

    Window ``index`` is for training step ``index // batch_size``; its piece, start bar and
    augmentation depend only on (seed, index, that step), and under a curriculum its length
    too (shorter windows are padded to it with PAD).

    Args:
        shard: the split to read.
        vocab: the tokenizer's vocabulary.
        seq_len: model context length.
        seed: base seed.
        transpose: largest transposition in semitones (0 turns transposition off).
        length: nominal length (windows are drawn at random, so any index works).
        augment: probabilities, ranges and schedules (default: transposition only, always).
        batch_size: windows per training step, to know each window's step.
        curriculum: sequence-length curriculum (default: always ``seq_len``).
        style: the Style value of this corpus (-1: none), with controls.
        control_dropout: the chance each control type is left out of a window.
        infill: the shares of windows made into infilling examples (with infill tokens;
            the example is cut to the window's length).
    """

    def __init__(self, shard: Shard, vocab: Vocabulary, seq_len: int, seed: int = 0,
                 transpose: int = 0, length: int = 1 << 40, *, augment: AugmentConfig | None = None,
                 batch_size: int = 1, curriculum: CurriculumConfig | None = None,
                 style: int = -1, control_dropout: float = 0.0,
                 infill: InfillConfig | None = None):  # fmt: skip
        if shard.num_tokens == 0:
            raise ValueError(f"{shard.folder}: no tokens in this split")
        self.shard, self.vocab, self.seq_len = shard, vocab, seq_len
        self.seed, self.transpose, self.length = seed, transpose, length
        self.augment = augment or AugmentConfig()
        self.batch_size, self.curriculum = batch_size, curriculum
        self.style, self.control_dropout = style, control_dropout
        self.infill = infill or InfillConfig()
        # Window starts: each piece's first token (BOS) and every Bar.
        starts = np.union1d(shard.pieces[:-1], shard.bars)
        piece_of = np.searchsorted(shard.pieces, starts, side="right") - 1
        self.starts, self.ends = starts, shard.pieces[piece_of + 1]
        self.bar_steps = _bar_steps_at(shard, vocab, starts)
        # With tracks or controls: where each start's piece begins, and the length of what
        # comes before its first Bar (0 for a start at the piece's BOS: the window has it).
        self.piece_starts = shard.pieces[piece_of]
        self.heads = np.zeros(len(starts), np.int64)
        if (vocab.has_tracks or vocab.has_controls) and len(shard.bars):
            first_bar = shard.bars[np.searchsorted(shard.bars, self.piece_starts).clip(
                max=len(shard.bars) - 1)]  # fmt: skip
            inside = (first_bar > self.piece_starts) & (first_bar < self.ends)
            head = np.where(inside, first_bar - self.piece_starts, 0)
            self.heads = np.where(starts > self.piece_starts, head, 0)
        # Weight starts so that each piece is drawn in proportion to its tokens.
        per_piece = np.bincount(piece_of, minlength=shard.num_pieces)
        lengths = np.diff(shard.pieces)
        weights = lengths[piece_of] / per_piece[piece_of]
        self.cdf = np.cumsum(weights) / weights.sum()

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict:
        # Worker processes started with spawn reopen the memmap instead of copying it.
        state = dict(self.__dict__)
        state["shard"] = self.shard.folder
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.shard = Shard(state["shard"])

    def step_of(self, index: int) -> int:
        """The training step window ``index`` is for."""
        return int(index) // self.batch_size

    def _draw(self, index: int) -> tuple[int, int, int, int]:
        """(start number, first token offset, end offset, semitones) of window ``index``."""
        rng = np.random.default_rng((self.seed, int(index)))
        j = min(int(np.searchsorted(self.cdf, rng.random(), side="right")), len(self.starts) - 1)
        step = self.step_of(index)
        start = int(self.starts[j])
        room = seq_len_at(step, self.seq_len, self.curriculum) + 1 - int(self.heads[j])
        room -= int(self.style >= 0 and self.vocab.has_controls)  # the Style token added
        end = min(int(self.ends[j]), start + max(room, 1))
        shift = 0
        if self.transpose and transposition_applies(self.augment, self.seed, index, step):
            ids = np.asarray(self.shard.tokens[start:end], np.int64)
            lo, hi = transpose_range(ids, self.vocab, self.transpose)
            shift = int(rng.integers(lo, hi + 1))
        return j, start, end, shift

    def locate(self, index: int) -> tuple[int, int, int]:
        """Window ``index`` as (first token offset, end offset, semitones to transpose); with
        tracks, the piece's declarations come before these tokens (see :meth:`window`)."""
        return self._draw(index)[1:]

    def window(self, index: int) -> np.ndarray:
        """The augmented token ids of window ``index`` (up to its length + 1, unpadded)."""
        j, start, end, shift = self._draw(index)
        ids = np.asarray(self.shard.tokens[start:end], np.int64)
        if self.heads[j]:
            first = int(self.piece_starts[j])
            head = np.asarray(self.shard.tokens[first : first + int(self.heads[j])], np.int64)
            ids = np.concatenate([head, ids])
        if shift:
            ids = transpose(ids, self.vocab, shift)
        if self.vocab.has_controls:
            ids = self._controls(ids, index, shift)
        if self.vocab.has_infill:
            rng = np.random.default_rng((self.seed, int(index), STREAM_INFILL))
            ids = make_example(ids, self.vocab, self.infill, rng)
        return augment_window(ids, self.vocab, self.augment, self.seed, int(index),
                              self.step_of(index), int(self.bar_steps[j]))  # fmt: skip

    def _controls(self, ids: np.ndarray, index: int, shift: int) -> np.ndarray:
        """The corpus's Style after BOS, Key and Chord moved with a transposition, and each
        control type left out with chance ``control_dropout``."""
        ids = transpose_controls(ids, self.vocab, shift)
        if self.style >= 0 and len(ids) and ids[0] == BOS:
            ids = np.insert(ids, 1, self.vocab.token(TokenType.STYLE, self.style))
        rng = np.random.default_rng((self.seed, int(index), STREAM_CONTROLS))
        dropped = [k for k in CONTROL_TYPES if rng.random() < self.control_dropout]
        return drop_controls(ids, self.vocab, dropped)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = seq_len_at(self.step_of(index), self.seq_len, self.curriculum)
        ids = self.window(index)[: size + 1]  # an infilling example may come out longer
        window = np.full(size + 1, PAD, np.int64)
        window[: len(ids)] = ids
        t = torch.from_numpy(window)
        return t[:-1], t[1:]


class WeightedWindows(torch.utils.data.Dataset):
    """Windows drawn from several datasets: window ``index`` comes from dataset ``k`` with
    probability ``weights[k] / sum(weights)`` (chosen from (seed, index) alone) and is that
    dataset's window ``index``.

    Args:
        datasets: the window datasets, one per corpus.
        weights: their relative weights (positive).
        seed: base seed.
        length: nominal length.
    """

    def __init__(self, datasets: list[torch.utils.data.Dataset], weights: list[float],
                 seed: int = 0, length: int = 1 << 40):  # fmt: skip
        if len(datasets) != len(weights) or not datasets:
            raise ValueError("needs one weight per dataset, and at least one dataset")
        if min(weights) <= 0:
            raise ValueError(f"weights must be positive (got {weights})")
        self.datasets, self.seed, self.length = list(datasets), seed, length
        self.cdf = np.cumsum(weights) / np.sum(weights)

    def __len__(self) -> int:
        return self.length

    def source_of(self, index: int) -> int:
        """Which dataset window ``index`` comes from."""
        u = np.random.default_rng((self.seed, int(index), STREAM_SOURCE)).random()
        return min(int(np.searchsorted(self.cdf, u, side="right")), len(self.datasets) - 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.datasets[self.source_of(index)][index]


class SegmentWindows(torch.utils.data.Dataset):
    """Segments of ``bars`` bars for latent models: window ``index`` of ``windows`` (which
    starts at a piece's start or a bar line, with its augmentation) cut before its
    ``bars + 1``-th Bar, then padded with PAD to the windows' length.

    Args:
        windows: the training windows (their ``seq_len`` caps a segment's length).
        bars: bars per segment.
    """

    def __init__(self, windows: WindowDataset, bars: int):
        self.windows, self.bars = windows, bars
        self.bar_id = int(windows.vocab.offsets[TokenType.BAR])

    def __len__(self) -> int:
        return len(self.windows)

    def segment(self, index: int) -> np.ndarray:
        """The token ids of segment ``index`` (unpadded)."""
        ids = self.windows.window(index)
        bars = np.flatnonzero(ids == self.bar_id)
        return ids[: bars[self.bars]] if len(bars) > self.bars else ids

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.segment(index)
        size = seq_len_at(self.windows.step_of(index), self.windows.seq_len,
                          self.windows.curriculum)  # fmt: skip
        window = np.full(size + 1, PAD, np.int64)
        window[: min(len(ids), size + 1)] = ids[: size + 1]
        t = torch.from_numpy(window)
        return t[:-1], t[1:]


def fixed_segments(shard: Shard, vocab: Vocabulary, seq_len: int, bars: int, count: int,
                   seed: int = FIXED_SEED) -> list[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """``count`` segments of ``bars`` bars of a split, the same ones on every call (drawn as
    training windows are, without augmentation): what latent models are measured on."""
    segments = SegmentWindows(WindowDataset(shard, vocab, seq_len, seed, transpose=0), bars)
    return [segments[i] for i in range(count)]


def eval_windows(shard: Shard, seq_len: int) -> list[np.ndarray]:
    """Every piece cut into consecutive windows of ``seq_len + 1`` tokens overlapping by one,
    so each token after the first of a piece is predicted exactly once."""
    out = []
    for i in range(shard.num_pieces):
        piece = shard.piece(i)
        for s in range(0, max(len(piece) - 1, 1), seq_len):
            out.append(piece[s : s + seq_len + 1])
    return out
