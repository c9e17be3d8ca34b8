"""Chord labels to score against: the shared label type and music21's naive reading.

The baseline is what music21 offers out of the box: ``chordify()`` the score, take the chord
sounding at each compared moment, its ``root()`` and a quality from its pitch classes. The
global key is music21's ``analyze("key")``; having no local keys, the baseline uses the global
key at every moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.analysis.chords import QUALITIES, inversions

_QUALITY_OF_INTERVALS = {frozenset(iv): name for name, iv, _ in QUALITIES}
_QUALITY_INDEX = {name: i for i, (name, _, _) in enumerate(QUALITIES)}
_TRIAD_QUALITY = {"major": "maj", "minor": "min", "diminished": "dim", "augmented": "aug"}


@dataclass(frozen=True)
class Labels:
    """A reading of a piece at the compared moments of a reference.

    Attributes:
        root: Root pitch class at each moment, -1 for none.
        quality: Quality name at each moment (``"none"``, ``"other"`` outside our set).
        inversion: Inversion at each moment (see :func:`aurl.analysis.chords.inversions`).
        local_key: Key index at each moment (0-11 major, 12-23 minor).
        global_key: Key index of the whole piece.
    """

    root: np.ndarray
    quality: list[str]
    inversion: np.ndarray
    local_key: np.ndarray
    global_key: int


def key_index(key) -> int:
    """Index 0-11 (major) or 12-23 (minor) of a music21 key."""
    return key.tonic.pitchClass + (12 if key.mode == "minor" else 0)


def quality_of(pitch_classes: set[int], root: int) -> str:
    """Our quality name of pitch classes above a root (``"other"`` when none matches)."""
    return _QUALITY_OF_INTERVALS.get(frozenset((pc - root) % 12 for pc in pitch_classes), "other")


def _chord_quality(chord) -> str:
    """Exact quality where the pitch classes match a template, else music21's triad quality."""
    root = chord.root().pitchClass
    exact = quality_of({p.pitchClass for p in chord.pitches}, root)
    return exact if exact != "other" else _TRIAD_QUALITY.get(chord.quality, "other")


def music21_labels(score, times: np.ndarray, steps_per_quarter: int) -> Labels:
    """music21's ``chordify()`` + ``root()`` reading of a score at the given moments.

    Args:
        score: A music21 score, chord symbols already removed.
        times: Moments to label, in steps from the score's start as written.
        steps_per_quarter: Steps per quarter note of ``times``.
    """
    chords = [c for c in score.chordify().flatten().notes if c.isChord and len(c.pitches) > 0]
    start = np.array([round(float(c.offset) * steps_per_quarter) for c in chords], np.int64)
    end = start + np.array(
        [max(1, round(float(c.quarterLength) * steps_per_quarter)) for c in chords], np.int64
    )
    at = np.searchsorted(start, times, side="right") - 1
    sounding = (at >= 0) & (end[np.maximum(at, 0)] > times)
    picked = [chords[i] if ok else None for i, ok in zip(at, sounding, strict=True)]
    root = np.array([c.root().pitchClass if c else -1 for c in picked], np.int64)
    bass = np.array([c.bass().pitchClass if c else -1 for c in picked], np.int64)
    quality = [_chord_quality(c) if c else "none" for c in picked]
    index = np.array([_QUALITY_INDEX.get(q, -1) for q in quality], np.int64)
    key = key_index(score.analyze("key"))
    return Labels(
        root=root,
        quality=quality,
        inversion=inversions(root, index, bass),
        local_key=np.full(len(times), key, np.int64),
        global_key=key,
    )
