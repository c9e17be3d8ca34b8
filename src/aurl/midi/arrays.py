"""A Score's contents as numpy arrays, fetched from symusic once.

Getting arrays out of symusic costs more than most checks on them, so the steps that look
at one Score in turn (repair check, content hash, metadata, encoding) share one copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic


@dataclass(frozen=True)
class ScoreArrays:
    """Attributes:
    tracks: Each track's notes (``time``, ``duration``, ``pitch``, ``velocity``), in the
        Score's track order.
    tempos: ``time`` and ``mspq`` of every tempo change.
    time_signatures: ``time``, ``numerator`` and ``denominator`` of every change.
    """

    tracks: list[dict[str, np.ndarray]]
    tempos: dict[str, np.ndarray]
    time_signatures: dict[str, np.ndarray]


def score_arrays(score: symusic.Score) -> ScoreArrays:
    """The arrays of ``score`` (copies: later changes to the Score do not show)."""
    return ScoreArrays(
        [track.notes.numpy() for track in score.tracks],
        score.tempos.numpy(),
        score.time_signatures.numpy(),
    )
