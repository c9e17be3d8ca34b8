"""Key and chord analysis of a piece, beat by beat.

The global key comes from the whole piece's pitch-class durations, the local key of every beat
from a smoothed sliding window (:mod:`aurl.analysis.key`), and the chord of every beat from
template matching in that local key (:mod:`aurl.analysis.chords`). Each chord is then named
as a Roman numeral in its local key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.analysis.chords import (
    QUALITY_NAMES,
    ChordParams,
    Chords,
    half_beat_chords,
    recognize_chords,
)
from aurl.analysis.chroma import chroma, duration_histogram, overlaps
from aurl.analysis.key import DEFAULT_PROFILE, Key, find_key, local_keys
from aurl.analysis.piece import Piece
from aurl.analysis.roman import roman_numeral


@dataclass(frozen=True)
class HarmonyParams:
    """Settings of the key and chord analysis."""

    profile: str = DEFAULT_PROFILE
    key_half_width: int = 4  # beats on each side of the local-key window
    key_switch_penalty: float = 0.7  # summed correlation a modulation must earn
    final_bass_bonus: float = 0.1  # added to keys whose tonic is the last bass note
    chords: ChordParams = ChordParams()


@dataclass(frozen=True)
class Harmony:
    """Keys and chords of a piece, one entry per beat.

    Attributes:
        key: The global key.
        beats: Beat starts in steps.
        local_key: Local key index of every beat (0-11 major, 12-23 minor).
        key_margin: Correlation margin of every beat's local key over the runner-up.
        chords: One chord per beat.
        numerals: Roman numeral of every beat's chord in its local key (``"N"`` if silent).
        half_beats: One chord per half beat: the beat's chord, or on the second half the
            chord struck there when it fits clearly better.
    """

    key: Key
    beats: np.ndarray
    local_key: np.ndarray
    key_margin: np.ndarray
    chords: Chords
    numerals: list[str]
    half_beats: Chords


def analyze_harmony(piece: Piece, params: HarmonyParams | None = None) -> Harmony:
    """Global key, local keys and one chord per beat, each named in its local key.

    Raises:
        ValueError: If the piece has no notes.
    """
    params = params or HarmonyParams()
    ends = piece.time + piece.duration
    last = ends >= ends.max() - piece.steps_per_quarter // 2
    final_bass = int(piece.pitch[last].min() % 12)
    key = find_key(duration_histogram(piece), params.profile, final_bass, params.final_bass_bonus)
    beats = piece.beat_starts()
    bounds = np.append(beats, max(piece.end, int(beats[-1]) + 1))
    beat_chroma = chroma(piece, overlaps(piece, bounds))
    keys, margin = local_keys(
        beat_chroma, params.profile, params.key_half_width, params.key_switch_penalty
    )
    chords = recognize_chords(piece, bounds, keys, params.chords)
    numerals = [
        roman_numeral(
            int(r),
            QUALITY_NAMES[q] if q >= 0 else "",
            int(i),
            int(k % 12),
            "major" if k < 12 else "minor",
        )
        for r, q, i, k in zip(chords.root, chords.quality, chords.inversion, keys, strict=True)
    ]
    halves = half_beat_chords(piece, bounds, keys, chords, params.chords)
    return Harmony(key, beats, keys, margin, chords, numerals, halves)
