"""Key and chord analysis of a piece, beat by beat.

The global key comes from the whole piece's pitch-class durations, its opening eighth
counted three times and its closing eighth twice (a key is stated at the start and confirmed
at the end; modulations fall between; a modal piece may close on another degree than it
opens on), the local key of every beat
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
    recognize_chords,
    refine_chords,
    subdivide,
)
from aurl.analysis.chroma import chroma, overlaps
from aurl.analysis.key import DEFAULT_PROFILE, Key, find_key, local_keys
from aurl.analysis.piece import Piece
from aurl.analysis.roman import roman_numeral


@dataclass(frozen=True)
class HarmonyParams:
    """Settings of the key and chord analysis."""

    profile: str = DEFAULT_PROFILE  # key profile of the global key
    local_profile: str = "temperley"  # key profile of the local keys
    key_half_width: int = 4  # beats on each side of the local-key window
    key_switch_penalty: float = 1.0  # summed correlation a modulation must earn
    final_bass_bonus: float = 0.05  # added to keys whose tonic is the last bass note
    key_frame: float = 0.125  # share of beats at each end that count more for the global key
    key_open_weight: float = 2.0  # extra weight of the opening frame's beats
    key_close_weight: float = 1.0  # extra weight of the closing frame's beats
    slow_tactus: float = 1.75  # mean note length (beats, by duration) that makes it 2 beats
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
        half_beats: One chord per half beat (a third of a compound meter's beat): the
            beat's chord, or the chord struck there when it fits clearly better.
        tactus: Beats per harmonic beat: 2 where the music moves in half bars (a 4/4 madrigal
            in half notes), else 1. Chords are decided per tactus and change inside it only
            where a chord struck there fits clearly better.
    """

    key: Key
    beats: np.ndarray
    local_key: np.ndarray
    key_margin: np.ndarray
    chords: Chords
    numerals: list[str]
    half_beats: Chords
    tactus: int = 1


def analyze_harmony(piece: Piece, params: HarmonyParams | None = None) -> Harmony:
    """Global key, local keys and one chord per beat, each named in its local key.

    Raises:
        ValueError: If the piece has no notes.
    """
    params = params or HarmonyParams()
    ends = piece.time + piece.duration
    last = ends >= ends.max() - piece.steps_per_quarter // 2
    final_bass = int(piece.pitch[last].min() % 12)
    beats = piece.beat_starts()
    bounds = np.append(beats, max(piece.end, int(beats[-1]) + 1))
    beat_chroma = chroma(piece, overlaps(piece, bounds))
    hist = framed_histogram(
        beat_chroma, params.key_frame, params.key_open_weight, params.key_close_weight
    )
    key = find_key(hist, params.profile, final_bass, params.final_bass_bonus)
    keys, margin = local_keys(
        beat_chroma, params.local_profile, params.key_half_width, params.key_switch_penalty
    )
    tactus = harmonic_beat(piece, params.slow_tactus)
    if tactus == 1:
        chords = recognize_chords(piece, bounds, keys, params.chords)
    else:  # a pickup's first beat starts a coarse segment too
        strong = np.flatnonzero(_beat_in_bar(piece, beats) % tactus == 0)
        strong = np.union1d(strong, [0])
        coarse = recognize_chords(piece, np.append(beats[strong], bounds[-1]), keys[strong],
                                  params.chords)  # fmt: skip
        chords = refine_chords(piece, coarse, bounds, keys, params.chords)
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
    fine = subdivide(bounds)
    beat_of = np.searchsorted(beats, fine[:-1], side="right") - 1
    halves = refine_chords(piece, chords, fine, keys[beat_of], params.chords)
    return Harmony(key, beats, keys, margin, chords, numerals, halves, tactus)


def framed_histogram(
    beat_chroma: np.ndarray, frame: float, open_weight: float = 1.0, close_weight: float = 1.0
) -> np.ndarray:
    """Pitch-class durations of the whole piece with the first and last ``frame`` of its
    beats (at least one each) weighted ``1 + open_weight`` and ``1 + close_weight``;
    ``frame=0`` gives the plain sum."""
    weight = np.ones(len(beat_chroma))
    if frame > 0:
        n = max(1, int(len(beat_chroma) * frame))
        weight[:n] += open_weight
        weight[-n:] += close_weight
    return (beat_chroma * weight[:, None]).sum(0)


def _beat_in_bar(piece: Piece, beats: np.ndarray) -> np.ndarray:
    """Index of every beat within its bar (0 on the downbeat)."""
    bar = np.clip(np.searchsorted(piece.bar_starts, beats, side="right") - 1, 0, None)
    return (beats - piece.bar_starts[bar]) // piece.beat_steps[bar]


def harmonic_beat(piece: Piece, slow: float) -> int:
    """2 when the music moves in half bars, else 1: every bar has an even number of simple
    beats and notes last ``slow`` beats or more on average (weighted by duration)."""
    bar_len = np.diff(piece.bar_starts)
    if not len(bar_len) or np.any((bar_len // piece.beat_steps[:-1]) % 2):
        return 1
    if np.any((piece.beat_steps % 3 == 0) & np.isin(piece.beat_steps // 3, (6, 12))):
        return 1  # compound beats
    d = piece.duration.astype(float)
    mean_beats = float((d * d).sum() / d.sum()) / float(np.median(piece.beat_steps))
    return 2 if mean_beats >= slow else 1
