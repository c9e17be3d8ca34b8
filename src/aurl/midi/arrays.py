"""Scores as numpy arrays: one Score's arrays, and the notes of many Scores as flat columns.

Getting arrays out of symusic costs more than most checks on them, and numpy's overhead per
call costs more than the work on a small piece's notes. So a Score's arrays are fetched once
(:func:`score_arrays`), and the steps that look at many Scores (repair check, content hash,
metadata, encoding) work on one :class:`NoteTable` of all of them, built once.
"""

from __future__ import annotations

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
    """

    tracks: list[dict[str, np.ndarray]]
    programs: list[int]
    tempos: dict[str, np.ndarray]
    time_signatures: dict[str, np.ndarray]
    tpq: int
    end: int


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
    )


@dataclass(frozen=True)
class NoteTable:
    """The notes of several Scores as flat int64 columns, Score by Score, track by track.

    Attributes:
        time, duration, pitch, velocity: Per note, in ticks of its Score.
        program: Per note, its track's program (``DRUMS`` for drums).
        track: Per note, the index of its track among all tracks of the table.
        piece: Per note, the index of its Score.
        notes: Per Score, its number of notes.
        empty_track: Per Score, whether it has a track without notes.
        scores: Each Score's :class:`ScoreArrays` (tempos, meters, resolution, end).
    """

    time: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray
    track: np.ndarray
    piece: np.ndarray
    notes: np.ndarray
    empty_track: np.ndarray
    scores: list[ScoreArrays]

    def __len__(self) -> int:
        return len(self.scores)

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
    if tracks:
        time, duration, pitch, velocity = (
            np.concatenate([t[key] for t in tracks]).astype(np.int64)
            for key in ("time", "duration", "pitch", "velocity")
        )
    else:
        time = duration = pitch = velocity = np.zeros(0, np.int64)
    programs = np.array([p for a in arrays for p in a.programs], np.int64)
    owners = np.repeat(np.arange(len(arrays)), [len(a.tracks) for a in arrays])
    return NoteTable(
        time=time,
        duration=duration,
        pitch=pitch,
        velocity=velocity,
        program=np.repeat(programs, sizes),
        track=np.repeat(np.arange(len(tracks)), sizes),
        piece=np.repeat(owners, sizes),
        notes=np.bincount(owners, sizes, len(arrays)).astype(np.int64),
        empty_track=np.array([any(len(t["time"]) == 0 for t in a.tracks) for a in arrays], bool),
        scores=arrays,
    )
