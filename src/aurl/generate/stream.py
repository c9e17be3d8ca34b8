"""Bars as they are finished: step an engine and report each row's bar as it closes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from aurl.generate.engine import Engine
from aurl.tokens import TokenType, Vocabulary


def finished_bars(engine: Engine, skip: list[int] | None = None
                  ) -> Iterator[tuple[int, int, bool]]:  # fmt: skip
    """Step ``engine`` until every row is done, yielding ``(row, bar, last)`` each time a row
    finishes bar number ``bar`` (1-based, prompt bars included): when its next Bar starts, or
    when the row ends (``last``). Bars up to ``skip[row]`` (a prompt's) are not reported."""
    bar_id = engine.bar_id
    counts = [int((engine.row(r) == bar_id).sum()) for r in range(engine.batch)]
    skip = skip or [0] * engine.batch
    while not bool(engine.done.all()):
        live = ~engine.done
        tok = engine.step()
        opened = ((tok == bar_id) & live).nonzero().flatten().tolist()
        ended = (live & engine.done).nonzero().flatten().tolist()
        for r in opened:
            counts[r] += 1
            if counts[r] - 1 > skip[r]:
                yield r, counts[r] - 1, False
        for r in ended:
            yield r, counts[r], True


def bar_seconds(ids: np.ndarray, vocab: Vocabulary, default_qpm: float = 120.0) -> list[float]:
    """How long each bar of ``ids`` lasts when played: its time signature's length at the
    tempo in effect (the last TimeSig and Tempo tokens before its end; 4/4 and
    ``default_qpm`` before any)."""
    types = vocab.types[ids]
    spq = vocab.config.steps_per_quarter
    steps, qpm, out = 4 * spq, default_qpm, []
    tempo_first = vocab.offsets[TokenType.TEMPO]
    started = False
    for i, kind in enumerate(types):
        if kind == TokenType.BAR:
            if started:
                out.append(steps / spq * 60.0 / qpm)
            started = True
        elif kind == TokenType.TIMESIG:
            steps = int(vocab.bar_steps[ids[i]])
        elif kind == TokenType.TEMPO:
            qpm = float(vocab.tempo_values[ids[i] - tempo_first])
    if started:
        out.append(steps / spq * 60.0 / qpm)
    return out
