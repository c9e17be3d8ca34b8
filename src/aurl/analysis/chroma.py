"""Pitch-class content of time segments (beats, windows, bars), vectorized over notes.

Every note is split over the segments it overlaps; the pieces carry the overlap length and
whether the note already sounds when the segment starts (so held and struck notes count,
notes that arrive halfway through count less in the chord weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.analysis.piece import Piece


@dataclass(frozen=True)
class Overlaps:
    """Note-segment pairs.

    Attributes:
        note: Index of the note in the piece.
        segment: Index of the segment.
        length: Steps of overlap (> 0).
        at_start: Whether the note sounds at the segment's first step.
        n_segments: Number of segments.
    """

    note: np.ndarray
    segment: np.ndarray
    length: np.ndarray
    at_start: np.ndarray
    n_segments: int


def overlaps(piece: Piece, bounds: np.ndarray) -> Overlaps:
    """Split every note over the segments ``[bounds[i], bounds[i + 1])`` it overlaps.

    Args:
        piece: The piece.
        bounds: Increasing segment boundaries in steps (``n_segments + 1`` values).
    """
    bounds = np.asarray(bounds, np.int64)
    n_seg = len(bounds) - 1
    start, end = piece.time, piece.time + piece.duration
    first = np.searchsorted(bounds, start, side="right") - 1
    last = np.searchsorted(bounds, end, side="left") - 1
    first = np.clip(first, 0, n_seg - 1)
    last = np.clip(last, 0, n_seg - 1)
    count = np.maximum(last - first + 1, 0)
    note = np.repeat(np.arange(len(start)), count)
    offset = np.arange(len(note)) - np.repeat(np.cumsum(count) - count, count)
    seg = first[note] + offset
    lo = np.maximum(start[note], bounds[seg])
    hi = np.minimum(end[note], bounds[seg + 1])
    length = hi - lo
    keep = length > 0
    note, seg, length = note[keep], seg[keep], length[keep]
    at_start = start[note] <= bounds[seg]
    return Overlaps(note, seg, length, at_start, n_seg)


def chroma(piece: Piece, ov: Overlaps, held_weight: float = 0.0,
           factor: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Duration of every pitch class in every segment, shape ``(n_segments, 12)``.

    Args:
        piece: The piece the overlaps came from.
        ov: Note-segment pairs.
        held_weight: Extra weight, as a fraction of the overlap, for notes sounding at the
            segment's start.
        factor: A weight per overlap (default 1), e.g. less for non-chord tones.
    """
    weight = ov.length * (1.0 + held_weight * ov.at_start)
    if factor is not None:
        weight = weight * factor
    index = ov.segment * 12 + piece.pitch[ov.note] % 12
    flat = np.bincount(index, weights=weight, minlength=ov.n_segments * 12)
    return flat.reshape(ov.n_segments, 12)


def sounding_at_start(piece: Piece, ov: Overlaps) -> np.ndarray:
    """Whether each pitch class sounds at each segment's first step, shape ``(n_segments, 12)``."""
    out = np.zeros(ov.n_segments * 12, bool)
    held = ov.at_start
    out[ov.segment[held] * 12 + piece.pitch[ov.note[held]] % 12] = True
    return out.reshape(ov.n_segments, 12)


def extreme_pitch(piece: Piece, ov: Overlaps, lowest: bool = True) -> np.ndarray:
    """Lowest (or highest) pitch of every segment, preferring notes sounding at its start.

    Returns:
        int64 array of pitches, -1 for empty segments.
    """
    note = extreme_note(piece, ov, lowest)
    return np.where(note >= 0, piece.pitch[np.maximum(note, 0)], -1)


def extreme_note(piece: Piece, ov: Overlaps, lowest: bool = True) -> np.ndarray:
    """Index of the lowest (or highest) note of every segment, preferring notes sounding at
    its start; -1 for empty segments."""
    pitch = piece.pitch[ov.note]
    key = pitch if lowest else -pitch
    order = np.lexsort((key, ~ov.at_start, ov.segment))
    seg = ov.segment[order]
    first = np.ones(len(seg), bool)
    first[1:] = seg[1:] != seg[:-1]
    out = np.full(ov.n_segments, -1, np.int64)
    out[seg[first]] = ov.note[order][first]
    return out
