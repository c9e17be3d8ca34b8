"""Scores as numpy arrays: one Score's arrays, and the notes of many Scores as flat columns.

Getting arrays out of symusic costs more than most checks on them, and numpy's overhead per
call costs more than the work on a small piece's notes. So a Score's arrays are fetched once
(:func:`score_arrays`), and the steps that look at many Scores (repair check, content hash,
metadata, encoding) work on one :class:`NoteTable` of all of them, built once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import symusic

DRUMS = 128  # the program number that stands for drum tracks


@dataclass(frozen=True)
class ScoreArrays:
    """Attributes:
    tracks: Each track's notes (``time``, ``duration``, ``pitch``, ``velocity``), in the
        Score's track order.
    programs: Each track's program, ``DRUMS`` for drum tracks.
    tempos: ``time`` and ``mspq`` of every tempo change.
    time_signatures: ``time``, ``numerator`` and ``denominator`` of every change.
    tpq: Ticks per quarter.
    end: ``Score.end()``.
    names: Each track's name.
    """

    tracks: list[dict[str, np.ndarray]]
    programs: list[int]
    tempos: dict[str, np.ndarray]
    time_signatures: dict[str, np.ndarray]
    tpq: int
    end: int
    names: tuple[str, ...] = ()


def score_arrays(score: symusic.Score) -> ScoreArrays:
    """The arrays of ``score`` (copies: later changes to the Score do not show)."""
    tracks = score.tracks
    return ScoreArrays(
        [track.notes.numpy() for track in tracks],
        [DRUMS if track.is_drum else int(track.program) for track in tracks],
        score.tempos.numpy(),
        score.time_signatures.numpy(),
        int(score.tpq),
        int(score.end()),
        tuple(str(track.name) for track in tracks),
    )


@dataclass(frozen=True)
class NoteTable:
    """The notes of several Scores as flat int64 columns, Score by Score, track by track.

    Attributes:
        time, duration, pitch, velocity: Per note, in ticks of its Score.
        program: Per note, its track's program (``DRUMS`` for drums).
        sizes: Notes per track, over all tracks of all Scores in order.
        notes: Notes per Score.
        empty_track: Per Score, whether it has a track without notes.
        scores: Each Score's :class:`ScoreArrays` (tempos, meters, resolution, end).
    """

    time: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray
    sizes: np.ndarray
    notes: np.ndarray
    empty_track: np.ndarray
    scores: list[ScoreArrays]

    def __len__(self) -> int:
        return len(self.scores)

    @functools.cached_property
    def piece(self) -> np.ndarray:
        """Per note, the index of its Score."""
        return np.repeat(np.arange(len(self.scores)), self.notes)

    @functools.cached_property
    def track(self) -> np.ndarray:
        """Per note, the index of its track among all tracks of the table."""
        return np.repeat(np.arange(len(self.sizes)), self.sizes)

    @property
    def starts(self) -> np.ndarray:
        """Where each Score's notes begin in the columns."""
        return np.cumsum(self.notes) - self.notes


def note_table(scores: list[symusic.Score], arrays: list[ScoreArrays] | None = None) -> NoteTable:
    """The notes of ``scores`` in one table (``arrays``: their ``score_arrays``, if the caller
    has them already)."""
    arrays = arrays if arrays is not None else [score_arrays(s) for s in scores]
    tracks = [t for a in arrays for t in a.tracks]
    sizes = [len(t["time"]) for t in tracks]
    per_score = [[len(t["time"]) for t in a.tracks] for a in arrays]
    time, duration, pitch, velocity = (
        np.concatenate([t[key] for t in tracks], dtype=np.int64) if tracks
        else np.zeros(0, np.int64)
        for key in ("time", "duration", "pitch", "velocity")
    )  # fmt: skip
    return NoteTable(
        time=time,
        duration=duration,
        pitch=pitch,
        velocity=velocity,
        program=np.repeat(np.array([p for a in arrays for p in a.programs], np.int64), sizes),
        sizes=np.array(sizes, np.int64),
        notes=np.array([sum(n) for n in per_score], np.int64),
        empty_track=np.array([0 in n for n in per_score], bool),
        scores=arrays,
    )
