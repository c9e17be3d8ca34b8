"""What generation gives back: pieces, streamed bars and a batch's result, and the limits
every generation runs under (shared by :mod:`aurl.api` and its helpers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic

MAX_BARS = 512
TOKENS_PER_BAR_LIMIT = 512  # safety stop for a model that never closes its bars


@dataclass
class Piece:
    """One generated piece: its ids, its score and a few numbers about it. ``asked_bars``
    is how many bars it should have had (prompt included); ``short`` says it ended before
    (the model did not close its bars within its token budget)."""

    ids: np.ndarray
    score: symusic.Score
    bars: int
    notes: int
    seconds: float
    asked_bars: int = 0

    @property
    def short(self) -> bool:
        return self.bars < self.asked_bars


@dataclass
class BarEvent:
    """A bar just finished while streaming: piece ``piece`` now holds ``bar`` bars (``ids``
    and ``score`` up to the end of that bar), ``elapsed`` seconds after the start, and the
    bar plays for ``bar_seconds``; ``last`` marks the piece's end."""

    piece: int
    bar: int
    ids: np.ndarray
    score: symusic.Score
    elapsed: float
    bar_seconds: float
    last: bool


@dataclass
class GenerationResult:
    pieces: list[Piece]
    new_tokens: int
    wall_time: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / max(self.wall_time, 1e-9)
