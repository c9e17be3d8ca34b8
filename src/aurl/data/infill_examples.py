"""Training windows made into infilling examples (see :mod:`aurl.tokens.infill`).

A window becomes, with the configured chances, a bar-infill example (one to ``max_bars``
bars emptied and written after Infill) or a track-infill example (over a span of bars, the
notes of some tracks moved to the second pass: a random subset, or, a third of the time,
every track but one, as harmonizing a melody is). The window's last bar, which the window
may cut, is never filled. Everything is drawn from the window's own random stream.
"""

from __future__ import annotations

import numpy as np

from aurl.data.config import InfillConfig
from aurl.tokens import TokenType, Vocabulary
from aurl.tokens.infill import infill_example
from aurl.tokens.tracks import declared_tracks

T = TokenType


def make_example(ids: np.ndarray, vocab: Vocabulary, config: InfillConfig,
                 rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """``ids`` as an infilling example, or unchanged (an ordinary window)."""
    bars = int((vocab.types[ids] == T.BAR).sum()) - 1  # the last one may be cut
    draw = rng.random()
    if bars < 1 or draw >= config.bars + config.tracks:
        return ids
    if draw < config.bars:
        count = int(rng.integers(1, min(config.max_bars, bars) + 1))
        first = int(rng.integers(0, bars - count + 1))
        return infill_example(ids, vocab, first, count)
    n_tracks = len(declared_tracks(ids, vocab)[0])
    if n_tracks < 2:
        return ids
    if rng.random() < 1 / 3:  # every track but one
        targets = set(range(n_tracks)) - {int(rng.integers(0, n_tracks))}
    else:
        size = int(rng.integers(1, n_tracks))
        targets = {int(t) for t in rng.choice(n_tracks, size, replace=False)}
    count = int(rng.integers(1, bars + 1))
    first = int(rng.integers(0, bars - count + 1))
    return infill_example(ids, vocab, first, count, targets)
